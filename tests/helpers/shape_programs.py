"""Property: a signature-cache hit always equals a fresh trace.

Hypothesis draws small programs of TF shape arithmetic on Keras tensors:
`tf.shape`, `tf.size`, `tf.rank`, elements and slices of shapes, `tf.stack`
and `tf.concat` of shape parts with constants, `+`, `*`, `//`, scalars read
from an input's *value* (which TensorFlow cannot know), `tf.reshape`,
`tf.fill`, `tf.range`, `tf.tile`, `tf.broadcast_to`, reductions. Each
program is built several times in one process with the signature cache on,
with two sets of constants in turn (A, B, A: each build meets the entries the
other left), and once per set with the cache off; every step's outcome, the
shape and dtype of its output or the class of its error, must be the same.

CI runs a fixed sequence (`tests/test_inference.py`); for a longer search:

    python tests/helpers/shape_programs.py --examples 2000 --seed 7
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from hypothesis import strategies as st

import fuzzing  # noqa: E402
import keras_graft  # noqa: E402,F401  (auto-wrapping)
from keras_graft.core import inference  # noqa: E402

# Step kinds: (name, operand pools, number of constants). Pools: "float"
# tensors, "vec" int32 vectors of static length, "int" int32 scalars.
STEPS = {
    "shape": (("float",), 0),
    "size": (("float",), 0),
    "rank": (("float",), 0),
    "element": (("vec",), 1),
    "slice": (("vec",), 2),
    "stack": (("int", "int"), 2),
    "concat": (("vec",), 2),
    "add": (("int",), 1),
    "multiply": (("int",), 1),
    "floordiv": (("int",), 1),
    "add_two": (("int", "int"), 0),
    "from_value": (("float",), 0),
    "reshape": (("float", "vec"), 0),
    "fill": (("vec",), 0),
    "range": (("int",), 0),
    "tile": (("float", "vec"), 0),
    "broadcast_to": (("float", "vec"), 0),
    "reduce": (("float",), 1),
}


def _apply(kind: str, operands: list, constants: list):
    """One step on Keras tensors: (pool of the result, result)."""
    a = operands[0] if operands else None
    c = constants
    if kind == "shape":
        return "vec", tf.shape(a)
    if kind == "size":
        return "int", tf.size(a)
    if kind == "rank":
        return "int", tf.rank(a)
    if kind == "element":
        return "int", tf.gather(a, c[0] % a.shape[0])
    if kind == "slice":
        start = c[0] % a.shape[0]
        return "vec", tf.strided_slice(a, [start], [start + 1 + c[1] % a.shape[0]])
    if kind == "stack":
        return "vec", tf.stack([operands[0], c[0], operands[1], c[1]][: 2 + c[0] % 3])
    if kind == "concat":
        return "vec", tf.concat([a, [c[0], c[1]]], 0)
    if kind == "add":
        return "int", tf.math.add(a, c[0])
    if kind == "multiply":
        return "int", tf.math.multiply(a, c[0])
    if kind == "floordiv":
        return "int", tf.math.floordiv(a, max(c[0], 1))
    if kind == "add_two":
        return "int", tf.math.add(operands[0], operands[1])
    if kind == "from_value":  # a scalar TensorFlow cannot know: it reads the input's value
        return "int", tf.cast(tf.math.reduce_sum(a), "int32")
    if kind == "reshape":
        return "float", tf.reshape(a, operands[1])
    if kind == "fill":
        return "float", tf.fill(a, 1.0)
    if kind == "range":
        return "float", tf.cast(tf.range(a), "float32")
    if kind == "tile":
        return "float", tf.tile(a, operands[1])
    if kind == "broadcast_to":
        return "float", tf.broadcast_to(a, operands[1])
    if kind == "reduce":
        return "float", tf.math.reduce_sum(a, axis=c[0] % max(len(a.shape), 1))
    raise AssertionError(kind)


def run_program(program: dict, constants: list[int]) -> list:
    """Builds `program` with `constants`; each step's (shape, dtype) or error class."""
    x = keras.Input(program["shape"], batch_size=program["batch"])
    n = keras.Input((program["width"],), dtype="int32", batch_size=program["batch"])
    pools = {"float": [x], "vec": [tf.gather(n, 0)], "int": [tf.gather(tf.gather(n, 0), 0)]}
    outcomes = []
    for kind, picks, slots in program["steps"]:
        pool_names, _ = STEPS[kind]
        operands = [pools[p][i % len(pools[p])] for p, i in zip(pool_names, picks)]
        try:
            pool, result = _apply(kind, operands, [constants[s] for s in slots])
        except Exception as error:  # Outcomes to compare, not failures.
            outcomes.append(("error", type(error).__name__))
            continue
        outcomes.append(("ok", tuple(result.shape), result.dtype))
        if pool == "vec" and (len(result.shape) != 1 or result.shape[0] is None):
            pool = "float"  # `vec` holds int vectors of static length only
        pools[pool].append(result)
    return outcomes


# Steps that mix known and unknown parts, and those that read a shape's
# value, drawn three times as often as the others.
_FREQUENT = ("stack", "concat", "slice", "reshape", "fill", "tile", "broadcast_to")


def programs():
    kinds = sorted(STEPS) + [kind for kind in _FREQUENT for _ in range(2)]
    step = st.sampled_from(kinds).flatmap(
        lambda kind: st.tuples(
            st.just(kind),
            st.lists(st.integers(0, 7), min_size=len(STEPS[kind][0]), max_size=len(STEPS[kind][0])),
            st.lists(st.integers(0, 5), min_size=STEPS[kind][1], max_size=STEPS[kind][1]),
        )
    )
    return st.fixed_dictionaries(
        {
            "shape": st.lists(st.one_of(st.none(), st.integers(1, 6)), min_size=1, max_size=3),
            "batch": st.one_of(st.none(), st.integers(1, 3)),
            "width": st.integers(1, 3),
            # Each step twice, the second time on the pools grown since: repeats
            # of one op signature with other input values, which the cache meets.
            "steps": st.lists(step, min_size=1, max_size=6).map(lambda steps: steps + steps),
        }
    )


def constant_sets():
    """Two assignments of the program's constant slots (-1..6), usually different."""
    values = st.lists(st.integers(-1, 6), min_size=6, max_size=6)
    return st.tuples(values, values)


class _Counting(inference.SignatureCache):
    """The signature cache, counting the answers it gives."""

    hits = 0

    def get(self, key):
        found = super().get(key)
        _Counting.hits += found is not None
        return found


def check(program: dict, constants_a: list, constants_b: list) -> None:
    """Cached builds (A, B, A) equal fresh builds of the same constants."""
    original = inference.signatures
    try:
        inference.signatures = inference.SignatureCache(capacity=0)
        fresh = {"A": run_program(program, constants_a), "B": run_program(program, constants_b)}
        inference.signatures = _Counting()
        for name, constants in (("A", constants_a), ("B", constants_b), ("A", constants_a)):
            cached = run_program(program, constants)
            assert cached == fresh[name], (
                f"cache answer differs from a fresh trace for constants {name}:\n"
                f"program {program}\nconstants {constants}\ncached {cached}\nfresh  {fresh[name]}"
            )
    finally:
        inference.signatures = original


def run(examples: int, seed: int) -> dict:
    """Checks `examples` programs; returns how many and the cache hits they had."""
    _Counting.hits = 0

    def case(program, constants):
        check(program, *constants)

    fuzzing.run_cases(
        case,
        examples=examples,
        seed=seed,
        home=tempfile.mkdtemp(prefix="graft-programs-"),
        program=programs(),
        constants=constant_sets(),
    )
    return {"examples": examples, "cache_hits": _Counting.hits}


def main(argv=None) -> int:
    parser = fuzzing.argument_parser(__doc__.splitlines()[0], 200, "programs")
    arguments = parser.parse_args(argv)
    print(json.dumps(run(arguments.examples, arguments.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
