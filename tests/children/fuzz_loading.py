"""Fuzzing safe loading: forged configs derived from real keras-graft models.

Hypothesis mutates the keras-graft layers of real saved models: op names
(drawn from TensorFlow's whole export table, the allow-list and free text),
stored argument structures (every tag, malformed ones too, function
arguments named from the same tables), keyword arguments that bound an op
(`optimize`, `num_partitions`, `num`...), `Print` options (`output_stream`
to a file among them), output ranks, hyperparameters of `@keras_graft.layer`
layers, layer names and inbound call arguments. Every forged file is loaded
in safe mode; files with a `Print` layer with `keras_graft.allow("print")`,
and run on zeros when they load. Allowed outcomes:

- a clean refusal: `ValueError` or `TypeError` (keras-graft's
  `UnsafeOpError`, `OpTraceError`, `UnstorableArgumentError`,
  `MalformedModelFileError`, `TracingBudgetError` are of these kinds, as are
  Keras's own refusals);
- a loaded model whose op layers, and the functions among their arguments,
  all name allow-listed or registered ops, and whose `Print` layers hold
  formatting options only.

Anything else fails: another exception type, a crash or hang of the process
(the test runs this module in a child with a timeout and a memory limit), a
file created (also by running a model), or process state changed.

Run from the command line for a longer search:

    python tests/children/fuzz_loading.py --examples 5000 --seed 7
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The test helpers (`tests/helpers/`), imported by name as in the tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from hypothesis import strategies as st

import fuzzing  # noqa: E402
import hostile  # noqa: E402
import keras_graft  # noqa: E402
from keras_graft.core import op_names as stored_names  # noqa: E402
from keras_graft.core import safety  # noqa: E402
from keras_graft.patches import printing  # noqa: E402


@keras_graft.layer(package="fuzz")
def fuzz_scale(ctx, x, factor=2.0, use_bias=True, label="s", sizes=(1, 2), init=None):
    kernel = ctx.weight("kernel", (x.shape[-1],), initializer=init or "ones")
    return x * kernel * factor


def seed_models(directory: Path) -> list[Path]:
    """Real models covering every kind of keras-graft layer and argument."""
    paths = []
    directory.mkdir(parents=True, exist_ok=True)

    def save(name, inputs, outputs):
        path = directory / f"{name}.keras"
        keras.Model(inputs, outputs).save(path)
        paths.append(path)

    x = keras.Input((6,))
    save("clip", x, tf.clip_by_value(x, -1.0, 1.0))
    values, indices = tf.math.top_k(x, k=3)
    save("top_k", x, [values, indices])
    text = keras.Input((), dtype="string")
    save("strings", text, tf.strings.length(tf.strings.lower(text)))
    a, b = keras.Input((2,)), keras.Input((2,))
    save("concat", [a, b], tf.concat([a, b], axis=1))
    step = keras.Input((), dtype="int32")
    save("getitem", [x, step], x[:, :: step[0]])  # a symbolic slice: stored output ranks
    save("op_layer", x, keras_graft.Op(tf.math.reduce_sum, axis=-1, keepdims=True)(x))
    save("function_layer", x, fuzz_scale(factor=3.0, init=keras.initializers.Constant(0.5))(x))
    save("constants", x, tf.math.add(x, tf.constant([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])))
    save("print", x, tf.print("x:", x, sep=",", summarize=2))
    save("functions", x, [tf.map_fn(tf.math.sin, x), tf.scan(tf.math.add, x)])
    matrix = np.eye(6, dtype="float32")
    save("forwarded", x, tf.ragged.map_flat_values(tf.einsum, "bi,ij->bj", x, matrix, optimize="greedy"))
    parts = keras.Input((), dtype="int32")
    save(
        "counts",
        [x, parts],
        [
            tf.dynamic_partition(x, parts, num_partitions=2)[0],
            tf.split(x, 2, axis=1)[0],
            tf.unstack(x, num=6, axis=1)[0],
        ],
    )
    return paths


def needs_print_allowed(source: Path) -> bool:
    return source.stem == "print"


def graft_layers(config: dict) -> list[dict]:
    """The keras-graft layer configs in a model config, nested models included."""
    found = []

    def visit(layer):
        if (layer.get("module") or "").startswith("keras_graft") or (
            layer.get("registered_name") or ""
        ).startswith(("keras_graft", "fuzz")):
            found.append(layer)
        for inner in (
            layer.get("config", {}).get("layers", []) if isinstance(layer.get("config"), dict) else []
        ):
            visit(inner)

    visit(config)
    return found


_TAGS = [
    "input",
    "inputs",
    "tuple",
    "dict",
    "slice",
    "ellipsis",
    "float",
    "bytes",
    "dtype",
    "shape",
    "array",
    "tensor",
    "function",
    "module",
    "lambda",
    "",
    None,
]
_DTYPES = [
    "float32",
    "int32",
    "int64",
    "string",
    "bool",
    "resource",
    "variant",
    "qint8",
    "bfloat16",
    "complex64",
    "nonsense",
    3,
]


def json_scalars():
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**40), 2**40),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=12),
        st.sampled_from([2**31, -1, 0, 10**12, "inf", "nan", "-inf", "1e999", "AAAA"]),
    )


def stored_arguments():
    """Tagged-JSON argument trees, well-formed and not."""

    def tagged(children):
        return st.one_of(
            st.builds(lambda i: {"__graft__": "input", "index": i}, st.integers(-2, 4)),
            st.builds(lambda items: {"__graft__": "tuple", "items": items}, st.lists(children, max_size=4)),
            st.builds(
                lambda items: {"__graft__": "dict", "items": [[k, v] for k, v in items]},
                st.lists(st.tuples(st.text(max_size=5), children), max_size=3),
            ),
            st.builds(
                lambda a, b, c: {"__graft__": "slice", "start": a, "stop": b, "step": c},
                children,
                children,
                children,
            ),
            st.builds(
                lambda d, shape, values: {"__graft__": "array", "dtype": d, "shape": shape, "values": values},
                st.sampled_from(_DTYPES),
                st.lists(st.integers(-1, 5), max_size=3),
                st.lists(json_scalars(), max_size=6),
            ),
            st.builds(
                lambda d, shape, values: {
                    "__graft__": "tensor",
                    "dtype": d,
                    "shape": shape,
                    "values": values,
                },
                st.sampled_from(_DTYPES),
                st.lists(st.integers(-1, 2**20), max_size=3),
                st.lists(st.integers(0, 255), max_size=6),
            ),
            st.builds(lambda n: {"__graft__": "dtype", "name": n}, st.sampled_from(_DTYPES)),
            st.builds(
                lambda d: {"__graft__": "shape", "dims": d},
                st.one_of(st.none(), st.lists(st.one_of(st.none(), st.integers(-1, 2**40)), max_size=4)),
            ),
            st.builds(lambda v: {"__graft__": "float", "value": v}, json_scalars()),
            st.builds(lambda v: {"__graft__": "bytes", "base64": v}, st.text(max_size=12)),
            st.builds(lambda t, v: {"__graft__": t, "value": v}, st.sampled_from(_TAGS), json_scalars()),
            st.just({"__graft__": "ellipsis"}),
            st.just({"class_name": "function", "config": "os.system", "module": "os"}),
        )

    tree = st.recursive(
        json_scalars(),
        lambda children: st.one_of(st.lists(children, max_size=4), tagged(children)),
        max_leaves=12,
    )
    return st.fixed_dictionaries(
        {"args": st.lists(tree, max_size=4), "kwargs": st.dictionaries(st.text(max_size=8), tree, max_size=3)}
    )


def op_names(names: list[str]):
    """Stored op names: TF's export table, the allow-list, free text, registered names."""
    allowed = sorted(safety.allowed_ops())
    return st.one_of(
        st.sampled_from(names).map(lambda n: "tf." + n),
        st.sampled_from(allowed).map(lambda n: "tf." + n),
        st.sampled_from(names),
        st.text(max_size=20),
        st.sampled_from(["os>system", "keras_graft>TFOp", "fuzz>fuzz_scale", "tf.", "tf..", 3, None]),
    )


# Keyword arguments that bound an op from a file, and values beyond and within the bounds.
_BOUNDED_KEYWORDS = [
    "optimize",
    "num_partitions",
    "num_or_size_splits",
    "num",
    "num_split",
    "top_paths",
    "axis",
    "summarize",
    "sep",
    "end",
    "output_stream",
    "name",
]
_BOUND_BREAKERS = [
    10**6,
    4097,
    4096,
    2,
    -1,
    "optimal",
    "branch-all",
    "dp",
    "greedy",
    True,
    "file://fuzz-created.txt",
    "stdout",
    "log(info)",
    [1] * 5000,
]


def bounded_keywords():
    """Stored keyword arguments (or `Print` options) aimed at the bounds."""
    return st.dictionaries(
        st.one_of(st.sampled_from(_BOUNDED_KEYWORDS), st.text(max_size=8)),
        st.one_of(
            st.sampled_from(_BOUND_BREAKERS), json_scalars(), st.just({"__graft__": "input", "index": 0})
        ),
        max_size=3,
    )


def mutations(names: list[str]):
    """One change to one keras-graft layer's config: (field, new value)."""
    functions = op_names(names).map(lambda name: {"__graft__": "function", "name": name})
    return st.one_of(
        st.tuples(st.just("op"), op_names(names)),
        st.tuples(st.just("arguments"), stored_arguments()),
        st.tuples(st.just("function_argument"), functions),
        st.tuples(st.just("keywords"), bounded_keywords()),
        st.tuples(
            st.just("output_ranks"),
            st.one_of(st.none(), st.lists(st.integers(-1, 300), max_size=3), json_scalars()),
        ),
        # Keras's own base-layer fields: `dtype` is left out, since Keras 3.15
        # itself raises AttributeError for a non-policy object there (any layer).
        st.tuples(
            st.sampled_from(["name", "trainable"]), st.one_of(json_scalars(), st.lists(json_scalars()))
        ),
        st.tuples(
            st.sampled_from(["factor", "use_bias", "label", "sizes", "init"]),
            st.one_of(
                json_scalars(),
                st.lists(json_scalars(), max_size=3),
                st.just(
                    {
                        "module": "keras.layers",
                        "class_name": "Dense",
                        "config": {"units": 2},
                        "registered_name": None,
                    }
                ),
                st.just(
                    {
                        "module": "keras.config",
                        "class_name": "function",
                        "config": "set_epsilon",
                        "registered_name": "function",
                    }
                ),
            ),
        ),
        st.tuples(st.just("call_args"), st.lists(st.one_of(json_scalars(), stored_arguments()), max_size=3)),
    )


def forge(source: Path, target: Path, layer_index: int, field: str, value) -> Path:
    with zipfile.ZipFile(source) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    layers = graft_layers(config)
    layer = layers[layer_index % len(layers)]
    arguments = layer["config"].get("arguments")
    if field == "call_args":
        nodes = layer.get("inbound_nodes") or [{}]
        nodes[0]["args"] = value
        layer["inbound_nodes"] = nodes
    elif field == "function_argument" and isinstance(arguments, dict):
        # In place of the first function argument, or in front of the others.
        stored = arguments.setdefault("args", [])
        tagged = [i for i, a in enumerate(stored) if isinstance(a, dict) and a.get("__graft__") == "function"]
        if tagged:
            stored[tagged[0]] = value
        else:
            stored.insert(0, value)
    elif field == "keywords" and isinstance(arguments, dict):
        arguments.setdefault("kwargs", {}).update(copy.deepcopy(value))
    else:
        layer["config"][field] = copy.deepcopy(value)
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return target


def loaded_problems(model, allowed: tuple) -> list[str]:
    """What a loaded model holds that no safe load may give: a disallowed op,
    as a layer's op or among its function arguments, or a `Print` option other
    than formatting."""
    problems = []
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras_graft.TFOp):
            names = [layer.op_name] + [
                stored_names.name_of(function) or repr(function) for function in layer.arguments.functions()
            ]
            for name in names:
                tf_name = (
                    name[len(stored_names.TF_PREFIX) :] if name.startswith(stored_names.TF_PREFIX) else None
                )
                if ">" not in name and (
                    tf_name is None or (safety.refusal_reason(tf_name) is not None and tf_name not in allowed)
                ):
                    problems.append(f"loaded a disallowed op {name}")
        if isinstance(layer, printing.Print):
            options = set(layer.arguments.get_config()["kwargs"])
            if not options <= set(printing.FORMATTING_OPTIONS):
                problems.append(f"loaded a Print layer with options {sorted(options)}")
    return problems


def run_on_zeros(model) -> None:
    """Calls the model on zeros (a batch of one); its errors are the model's."""
    inputs = [np.zeros([1 if d is None else d for d in t.shape], t.dtype) for t in model.inputs]
    try:
        model(inputs if len(inputs) > 1 else inputs[0])
    except Exception:  # A forged model may fail when it runs; what it writes is checked.
        pass


def run(examples: int, seed: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="graft-fuzz-"))
    sources = seed_models(workdir / "sources")
    scratch = workdir / "scratch"
    scratch.mkdir()
    os.chdir(scratch)
    names = fuzzing.export_table_names()
    state = hostile._state()
    tally = {"refused": 0, "loaded": 0}
    kinds: dict[str, int] = {}
    problems: list[str] = []

    def case(source, layer_index, mutation):
        field, value = mutation
        target = forge(source, workdir / "forged.keras", layer_index, field, value)
        allowed = ("print",) if needs_print_allowed(source) else ()
        try:
            with keras_graft.allow(*allowed) if allowed else contextlib.nullcontext():
                model = keras.models.load_model(target)
        except (ValueError, TypeError) as error:
            tally["refused"] += 1
            kinds[type(error).__name__] = kinds.get(type(error).__name__, 0) + 1
        except Exception as error:  # Collected and reported: the point of the fuzz.
            problems.append(f"{type(error).__name__} for {field}={value!r:.200}: {str(error)[:300]}")
        else:
            tally["loaded"] += 1
            for problem in loaded_problems(model, allowed):
                problems.append(f"{problem} from {field}={value!r:.200}")
            if allowed:
                run_on_zeros(model)
        problems.extend(fuzzing.side_effects(scratch, state, f"{field}={value!r:.200}"))

    fuzzing.run_cases(
        case,
        examples=examples,
        seed=seed,
        home=workdir / ".hypothesis",
        source=st.sampled_from(sources),
        layer_index=st.integers(0, 3),
        mutation=mutations(names),
    )
    return {**tally, "refusals": kinds, "problems": problems}


def main(argv=None) -> int:
    parser = fuzzing.argument_parser(__doc__.splitlines()[0], 300, "forged files")
    arguments = parser.parse_args(argv)
    result = run(arguments.examples, arguments.seed)
    print(json.dumps(result, indent=1))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
