"""The Keras 2 op-layer sweep: allowed ops built by tf_keras, saved as `.h5`, loaded by Keras 3.

For every op on keras-graft's allow-list (one name per function: Keras 2
records the canonical one), a child process with `TF_USE_LEGACY_KERAS=1`
calls the op on tf_keras Keras tensors with the first call of
`op_calls.CANDIDATES` it accepts, then with the other argument shapes that
call's signature allows: the arguments after the first by keyword, every
argument by keyword, a NumPy constant in place of a tensor (last, or first),
tensors through `*args` and in lists where the call has them. Each call is a
model saved to `.h5` with its inputs and tf_keras's outputs; tf_keras also
reloads its own file. Here, Keras 3 (after `import keras_graft`) loads each
file in safe mode and runs it, eagerly and with `predict_on_batch`.

Each case is classified from what Keras 2 did:

- `faithful`: Keras 2 stored every argument of the call. Keras 3 must load
  it and match (atol 1e-4; for ops that draw random numbers, shapes and
  dtypes only), also where Keras 2 cannot reload its own file (`tf.size`);
- `Keras 2 cannot reload`: Keras 2 stored every argument, but fails to
  reload its own file or computes something else from it (it wrote a 0-d
  NumPy constant as a Python number, which `tf.math.scalar_mul` cannot take).
  Keras 3 must match, or refuse naming the op; never load it wrong;
- `lossy`: Keras 2 dropped part of the call when it saved (the operands of
  `tf.einsum`, passed through `*inputs`; the `other` of `x == y`).
  Keras 3 must refuse it with `LossyKeras2FileError`, naming the layer and
  the op, saying that Keras 2 dropped the operands and that the weights load
  into the model rebuilt from code (`keras_graft.keras2.files.load_weights`);
- `not recordable`: Keras 2 could not record the op as an op layer (it has
  no op dispatch, or no call of it could be saved). Nothing to load.

The CI test (`test_keras2_op_sweep.py`) runs `CI_SAMPLE`. The whole sweep:

    python tests/helpers/keras2_op_sweep.py --all          # every allowed op (about 25 minutes on 2 cores)
    python tests/helpers/keras2_op_sweep.py einsum concat  # some ops

prints one line per case that does not behave as required, a count per
class, and writes the per-case results to `--json PATH` when given.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from op_calls import (
    BOOLS,
    CANDIDATES,
    FLOATS,
    INTS,
    MATRICES,
    Tensor,
    materialize,
    sample,
    specs,
)

ATOL = 1e-4
FAITHFUL, LOSSY, NOT_RECORDABLE = "faithful", "lossy", "not recordable"
UNRELOADABLE = "Keras 2 cannot reload"
CLASSES = (FAITHFUL, UNRELOADABLE, LOSSY, NOT_RECORDABLE)
KERAS2_OP_LAYERS = ("TFOpLambda", "SlicingOpLambda")

# Both sides run each model eagerly and with `predict_on_batch` (a
# `tf.function`), and each is compared with the same way on the other side:
# TensorFlow itself computes some ops differently in a graph (float
# `tf.truncatediv` by 1 differs by up to 0.9).
EAGER, PREDICT = "eager", "predict_on_batch"
RUNS = {EAGER: lambda model, x: model(x), PREDICT: lambda model, x: _predicted(model, x)}
# An op draws random numbers when one of these many more calls differs.
RANDOM_TRIES = 4

# A fixed sample for CI: every kind of signature, both lossy ops, TF 1 names
# Keras 2 recorded (floordiv, shape, gather, boolean_mask) and one it recorded
# with no TF 2 twin (atrous_conv2d), a file Keras 2 cannot reload (size),
# slicing, multiple outputs, lists of tensors, strings, images, signals and a
# random op. Every one of them Keras 2 records.
CI_SAMPLE = (
    "einsum",
    "meshgrid",
    "math.floordiv",
    "shape",
    "gather",
    "boolean_mask",
    "concat",
    "stack",
    "math.add_n",
    "unstack",
    "split",
    "math.top_k",
    "where",
    "clip_by_value",
    "math.reduce_mean",
    "linalg.matmul",
    "transpose",
    "size",
    "squeeze",
    "signal.stft",
    "image.resize",
    "strings.length",
    "one_hot",
    "random.uniform",
    "nn.conv2d",
    "nn.atrous_conv2d",
)


# Faithful calls that keras-graft refuses to load (by op, or op and form), and
# the words of its reason. TensorFlow cannot tell the rank of the output from
# the graph, and keras-graft runs no op of a file to find out
# (`keras_graft.core.inference`): built in Keras 3, the model stores the rank, and
# `load_weights` gives it the file's weights. The assertions (and
# `sufficient_statistics` without `shift`) return None among their outputs,
# which no layer can output.
# `tf.__operators__.eq` traced in a graph compares its operands' identity.
# Keras 2 recorded `tf.nn.atrous_conv2d` as the TF 1 `compat.v1.nn.convolution`
# it computes the dilations for, which no TF 2 op hands its call to unchanged.
REFUSED_FAITHFUL = {
    "nn.atrous_conv2d": "no TF 2 op to load it as",
    ("operator.getitem", "tensor_step"): "cannot tell the rank",
    "io.parse_tensor": "cannot tell the rank",
    "debugging.assert_integer": "returned None",
    "debugging.assert_type": "returned None",
    "nn.sufficient_statistics": "returned None",
    ("__operators__.eq", "keywords"): "returned False",
    ("__operators__.ne", "keywords"): "returned True",
}


@dataclass(frozen=True, eq=False)
class Constant(Tensor):
    """A NumPy constant in place of one of a call's tensors (`sample`d with `seed`)."""

    seed: int = 0

    def __repr__(self):
        return f"np{super().__repr__()}"


SCALAR_INT = Tensor((), "int32")
ROW_MASK = Tensor((4,), "bool")


def _operator_cases() -> list[tuple[str, str, tuple]]:
    """(operator, form, call) for Python's operators on Keras tensors, as Keras 2 recorded them."""
    cases = []
    for name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow"):
        cases += [
            (name, "tensors", (FLOATS, FLOATS)),
            (name, "constant", (FLOATS, 2.0)),
            (name, "reflected", (2.0, FLOATS)),
        ]
    cases += [
        ("matmul", "tensors", (MATRICES, MATRICES)),
        ("matmul", "constant", (MATRICES, Constant((4, 4), seed=1))),
    ]
    for name in ("lt", "le", "gt", "ge", "eq", "ne"):
        cases += [(name, "tensors", (FLOATS, FLOATS)), (name, "constant", (FLOATS, 0.5))]
    for name in ("and_", "or_", "xor"):
        cases += [(name, "bools", (BOOLS, BOOLS)), (name, "ints", (INTS, INTS))]
    cases += [
        ("neg", "floats", (FLOATS,)),
        ("abs", "floats", (FLOATS,)),
        ("invert", "bools", (BOOLS,)),
        ("invert", "ints", (INTS,)),
    ]
    everything = slice(None)
    keys = {
        "int": 1,
        "negative_int": -1,
        "slice": slice(1, 3),
        "slice_negative": slice(-3, -1),
        "reversed": slice(None, None, -1),
        "step": slice(None, None, 2),
        "second_axis": (everything, slice(1, None)),
        "newaxis": (everything, None),
        "ellipsis_int": (Ellipsis, 0),
        "ellipsis_newaxis": (Ellipsis, None),
        "mixed": (slice(1, None), Ellipsis, slice(None, None, -2)),
        "all_forms": (everything, None, 1, slice(0, 2)),
        "tensor_index": SCALAR_INT,
        "tensor_start": (everything, slice(SCALAR_INT, None)),
        "tensor_stop": (everything, slice(None, SCALAR_INT)),
        "tensor_step": slice(None, None, SCALAR_INT),
        "tensors_and_forms": (slice(SCALAR_INT, None), Ellipsis, None, SCALAR_INT),
        "bool_mask": ROW_MASK,
    }
    cases += [("getitem", label, (FLOATS, key)) for label, key in keys.items()]
    cases.append(("unpacked", "known_first_dimension", (MATRICES,)))
    return cases


OPERATOR_CASES = _operator_cases()


def unpacked(tensor):
    """`a, b, c = tensor`: Keras 2 iterated a tensor of known first dimension."""
    first, second, third = tensor
    return [first, second, third]


def _function(name: str):
    """The function a case calls: a Python operator, `unpacked`, or a TF op by its name."""
    import operator

    if name.startswith("operator."):
        return getattr(operator, name[len("operator.") :])
    if name == "unpacked":
        return unpacked
    function = sys.modules["tensorflow"]
    for part in name.split("."):
        function = getattr(function, part)
    return function


# --------------------------------------------------------------------------
# The Keras 2 side (the child process: tf_keras, never Keras 3)
# --------------------------------------------------------------------------


def call_forms(function, call: tuple):
    """(label, args, kwargs) for each way of writing `call` the op's signature allows."""
    forms = [("positional", call, {})]
    try:
        signature = inspect.signature(function)
        bound = signature.bind(*call)
    except (TypeError, ValueError):
        return forms
    parameters = signature.parameters
    by_name = [
        (name, value)
        for name, value in bound.arguments.items()
        if parameters[name].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ]
    if len(call) > 1 and len(by_name) == len(call):
        keywords = dict(by_name[1:])
        if "name" in parameters:
            keywords["name"] = "swept"
        forms.append(("keywords", call[:1], keywords))
        forms.append(("all keywords", (), dict(by_name)))
    tensors = specs(call)
    if len(tensors) > 1:
        for label, position in (("constant", len(tensors) - 1), ("constant first", 0)):
            forms.append((label, _with_constant(call, position), {}))
    return forms


def _with_constant(call, position: int):
    """`call` with its `position`-th tensor (in `specs` order) a NumPy constant."""
    seen = []

    def replace(spec):
        seen.append(spec)
        if len(seen) - 1 != position:
            return spec
        return Constant(spec.shape, spec.dtype, spec.sparse, seed=position)

    return materialize(call, replace)


def _describe(args, kwargs) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"({', '.join(parts)})"


def _keras2_case(keras, tf, function, args, kwargs):
    """Builds one call as a tf_keras model: (model, inputs' sample values, op layers)."""
    inputs, values = [], []

    def make(value):
        if isinstance(value, Constant):
            return sample(value, value.seed)
        data = sample(value, len(values))
        if not value.shape:
            # A scalar: the first item of a (1,) input. Keras 2 writes a scalar
            # input's shape as None, which Keras 3's InputLayer cannot read.
            tensor = keras.Input(batch_shape=(1,), dtype=value.dtype)
            inputs.append(tensor)
            values.append(data.reshape(1))
            return tensor[0]
        tensor = keras.Input(batch_shape=value.shape, dtype=value.dtype, sparse=value.sparse)
        inputs.append(tensor)
        values.append(tf.sparse.from_dense(data) if value.sparse else data)
        return tensor

    result = function(*materialize(args, make), **materialize(kwargs, make))
    outputs = [t for t in tf.nest.flatten(result) if keras.backend.is_keras_tensor(t)]
    if not outputs:
        raise TypeError("the op returned no Keras tensor")
    model = keras.Model(inputs, outputs)
    return model, values


def _predicted(model, values) -> list:
    """`model.predict_on_batch`, with 0-d outputs of the model's dtype (tf_keras
    returns them as Python numbers)."""
    import tensorflow as tf

    outputs = tf.nest.flatten(model.predict_on_batch(values))
    return [
        np.asarray(value, dtype=tf.as_dtype(tensor.dtype).as_numpy_dtype) if np.ndim(value) == 0 else value
        for value, tensor in zip(outputs, tf.nest.flatten(model.outputs))
    ]


def _fed(values: list):
    """A model's inputs as `model(...)` takes them: one tensor alone, several in a list."""
    return values[0] if len(values) == 1 else values


def _as_arrays(tf, outputs) -> list:
    arrays = []
    for output in outputs:
        if isinstance(output, tf.RaggedTensor):
            arrays += [output.flat_values.numpy(), output.row_splits.numpy()]
        elif isinstance(output, tf.SparseTensor):
            arrays.append(tf.sparse.to_dense(output).numpy())
        else:
            arrays.append(np.asarray(output))
    return [_storable(a) for a in arrays]


def _storable(array: np.ndarray) -> np.ndarray:
    """Strings as bytes arrays, which `np.load` reads without pickling."""
    return array.astype("S") if array.dtype.kind in "OU" else array


def _same(left: list, right: list) -> bool:
    return len(left) == len(right) and all(_close(a, b) for a, b in zip(left, right))


def _close(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind in "fc":
        return bool(np.allclose(a, b, atol=ATOL, rtol=0, equal_nan=True))
    return bool(np.array_equal(a, b))


def _dropped_tensors(model) -> int:
    """How many distinct tensors passed to an op layer its stored node does not name."""
    config = model.get_config()
    stored = {}
    for layer in config["layers"]:
        names = set()
        _references(layer["inbound_nodes"], names)
        stored[layer["name"]] = names
    dropped = 0
    for layer in model.layers:
        if type(layer).__name__ not in KERAS2_OP_LAYERS:
            continue
        for node in layer._inbound_nodes:
            passed = {
                (t._keras_history.layer.name, t._keras_history.tensor_index)
                for t in _flat_keras_tensors((node.call_args, node.call_kwargs))
            }
            dropped += len(passed - stored[layer.name])
    return dropped


def _dropped_arguments(model) -> list[str]:
    """The parameters an op layer's call passed that its stored node does not hold
    (`name` aside, which Keras 2 drops on purpose)."""
    config = {layer["name"]: layer for layer in model.get_config()["layers"]}
    dropped = []
    for layer in model.layers:
        if type(layer).__name__ not in KERAS2_OP_LAYERS:
            continue
        try:
            signature = inspect.signature(layer.function)
        except (TypeError, ValueError):
            continue
        for index, node in enumerate(layer._inbound_nodes):
            try:
                passed = signature.bind(*node.call_args, **node.call_kwargs).arguments
            except TypeError:
                continue
            stored = set(_stored_kwargs(config[layer.name]["inbound_nodes"][index]))
            first = next(iter(passed), None)
            dropped += [f"{layer.name}: {p}" for p in passed if p not in stored and p not in (first, "name")]
    return dropped


def _stored_kwargs(node) -> dict:
    """The call kwargs a Keras 2 node stores (in each entry of its first argument)."""
    if isinstance(node, list) and len(node) == 4 and isinstance(node[0], str) and isinstance(node[3], dict):
        return node[3]
    for item in node if isinstance(node, (list, tuple)) else ():
        found = _stored_kwargs(item)
        if found:
            return found
    return {}


def _flat_keras_tensors(value):
    import tensorflow as tf

    return [t for t in tf.nest.flatten(value) if hasattr(t, "_keras_history")]


def _references(value, found: set) -> None:
    if (
        isinstance(value, list)
        and len(value) >= 3
        and isinstance(value[0], str)
        and value[0] != "_CONSTANT_VALUE"
    ):
        found.add((value[0], value[2]))
    if isinstance(value, (list, tuple)):
        for item in value:
            _references(item, found)
    elif isinstance(value, dict):
        for item in value.values():
            _references(item, found)


def _error(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0][:200] if lines else ''}"


def _keras2_op(keras, tf, name: str, directory: Path, only=None) -> list[dict]:
    """Every case of one op: the first candidate call Keras 2 records, in each form
    (those labelled in `only`, when given)."""
    function = _function(name)
    base, first_error = None, None
    for call in CANDIDATES:
        keras.backend.clear_session()
        try:
            model, values = _keras2_case(keras, tf, function, call, {})
            model.to_json()
        except Exception as error:  # Not a call this op takes (or records); try the next.
            first_error = first_error or _error(error)
            continue
        base = base or call
        try:
            model(_fed(values))
        except Exception:  # Records, but not for these values: look for a call that runs.
            continue
        base = call
        break
    if base is None:
        return [{"op": name, "form": "-", "call": "-", "keras2": "unrecorded", "why": first_error}]
    forms = call_forms(function, base)
    if only is None or {"list of tensors", "*args"} & set(only):
        forms += [(label, call, {}) for label, call in _other_structures(keras, tf, function, base)]
    forms = [form for form in forms if only is None or form[0] in only]
    return [
        _keras2_form(keras, tf, name, function, label, args, kwargs, directory)
        for label, args, kwargs in forms
    ]


def _other_structures(keras, tf, function, base: tuple):
    """Candidate calls other than `base` that pass tensors in a list, or several
    through `*args`, when the op records them."""
    takes_varargs = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in _parameters(function))
    for call in CANDIDATES:
        in_list = any(isinstance(a, list) and specs(a) for a in call)
        label = "list of tensors" if in_list else "*args" if takes_varargs and len(specs(call)) > 1 else None
        if call is base or label is None:
            continue
        keras.backend.clear_session()
        try:
            _keras2_case(keras, tf, function, call, {})[0].to_json()
        except Exception:  # Not a structure this op takes.
            continue
        yield label, call
        return


def _parameters(function):
    try:
        return list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return []


def _keras2_form(keras, tf, name, function, label, args, kwargs, directory) -> dict:
    case = {"op": name, "form": label, "call": _describe(args, kwargs)}
    stem = f"{name}-{label.replace(' ', '_')}"
    keras.backend.clear_session()
    try:
        model, values = _keras2_case(keras, tf, function, args, kwargs)
        path = directory / f"{stem}.h5"
        model.save(path)
    except Exception as error:
        return {**case, "keras2": "unrecorded", "why": _error(error)}
    config = json.loads(model.to_json())["config"]["layers"]
    case.update(
        keras2="saved",
        file=path.name,
        op_layers=[
            [l["class_name"], l["config"]["function"]] for l in config if l["class_name"] in KERAS2_OP_LAYERS
        ],
        other_layers=sorted({l["class_name"] for l in config} - {"InputLayer", *KERAS2_OP_LAYERS}),
        dropped=_dropped_tensors(model),
        dropped_arguments=_dropped_arguments(model),
        sparse_inputs=[isinstance(v, tf.SparseTensor) for v in values],
    )
    dense_values = [tf.sparse.to_dense(v).numpy() if isinstance(v, tf.SparseTensor) else v for v in values]
    arrays = {f"input_{i}": _storable(np.asarray(v)) for i, v in enumerate(dense_values)}
    outputs = {}
    for run, call in RUNS.items():
        try:
            outputs[run] = _as_arrays(tf, tf.nest.flatten(call(model, _fed(values))))
        except Exception as error:  # Keras 2 cannot run it this way (on these values)
            case.setdefault("why", f"{run}: {_error(error)}")
            continue
        arrays.update({f"{run}_{i}": v for i, v in enumerate(outputs[run])})
    case.update(ran=sorted(outputs), random=False)
    for run, first in outputs.items():
        again = [_as_arrays(tf, tf.nest.flatten(RUNS[run](model, _fed(values)))) for _ in range(RANDOM_TRIES)]
        case["random"] = case["random"] or not all(_same(first, other) for other in again)
        case["output_specs"] = [[list(a.shape), a.dtype.name] for a in first]
    np.savez(directory / f"{stem}.npz", **arrays)
    try:
        reloaded = keras.models.load_model(path, compile=False)
        if EAGER in outputs and not case["random"]:
            again = _as_arrays(tf, tf.nest.flatten(reloaded(_fed(values))))
            case["reload"] = "same" if _same(outputs[EAGER], again) else "differs"
        else:
            case["reload"] = "loads"
    except Exception as error:
        case["reload"] = _error(error)
    return case


def _keras2_main(plan: Path, directory: Path) -> None:
    import logging
    import warnings

    import tensorflow as tf
    import tf_keras as keras

    warnings.filterwarnings("ignore")
    tf.get_logger().setLevel(logging.ERROR)
    cases = []
    plan = json.loads(plan.read_text())
    for name in plan["ops"]:
        try:
            cases += _keras2_op(keras, tf, name, directory, plan["forms"])
        except Exception as error:  # The sweep goes on; the case says what happened.
            cases.append({"op": name, "form": "-", "call": "-", "keras2": "unrecorded", "why": _error(error)})
    for name, form, call in OPERATOR_CASES if plan["operators"] else ():
        label = name if name == "unpacked" else f"operator.{name}"
        cases.append(_keras2_form(keras, tf, label, _function(label), form, call, {}, directory))
    (directory / "manifest.json").write_text(json.dumps(cases, indent=1))


# --------------------------------------------------------------------------
# The Keras 3 side
# --------------------------------------------------------------------------


def op_names() -> list[str]:
    """One name per allowed function: the canonical one, as Keras 2 recorded it."""
    from keras_graft import _compat
    from keras_graft.core import safety

    names = {}
    for name, function in sorted(safety.allowed_ops().items()):
        canonical = _compat.canonical_tf_name(function)
        names.setdefault(id(function), canonical if canonical in safety.allowed_ops() else name)
    return sorted(names.values())


def write_keras2_files(
    names, directory: Path, operators: bool = False, forms=None, timeout: int = 3600
) -> list[dict]:
    """Runs the Keras 2 side in a child process (the ops `names` in the `forms` given, or
    all, and `OPERATOR_CASES` when `operators`); returns its cases."""
    directory.mkdir(parents=True, exist_ok=True)
    plan = directory / "plan.json"
    plan.write_text(json.dumps({"ops": list(names), "operators": operators, "forms": forms}))
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    completed = subprocess.run(
        [sys.executable, __file__, "--keras2-child", str(plan), str(directory)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the tf_keras side of the sweep failed:\n{completed.stderr[-4000:]}")
    return json.loads((directory / "manifest.json").read_text())


def classify(case: dict) -> str:
    """What Keras 2 did with the case's call: faithful, lossy or not recordable."""
    if case["keras2"] != "saved" or case["other_layers"] or not case["op_layers"]:
        return NOT_RECORDABLE
    if case["dropped"] or case["dropped_arguments"]:
        return LOSSY
    if case["reload"] not in ("same", "loads"):
        return UNRELOADABLE
    return FAITHFUL


def _inputs(case: dict, arrays) -> list:
    import tensorflow as tf

    values = [arrays[f"input_{i}"] for i in range(len(case["sparse_inputs"]))]
    return [tf.sparse.from_dense(v) if sparse else v for v, sparse in zip(values, case["sparse_inputs"])]


def check(case: dict, directory: Path) -> str | None:
    """Loads one case in Keras 3 and records what it did (`case["keras3"]`); returns
    None when that is what the case's class requires, else the problem."""
    outcome, problem = _load_and_run(case, directory)
    case["keras3"] = outcome
    return problem


def _load_and_run(case: dict, directory: Path) -> tuple[str, str | None]:
    import keras
    import tensorflow as tf

    import keras_graft
    from keras_graft.errors import LossyKeras2FileError

    kind = classify(case)
    if kind == NOT_RECORDABLE:
        return "-", None
    keras.backend.clear_session()
    refused_reason = REFUSED_FAITHFUL.get((case["op"], case["form"])) or REFUSED_FAITHFUL.get(case["op"])
    try:
        model = keras.models.load_model(directory / case["file"], compile=False)
    except LossyKeras2FileError as error:
        if kind != LOSSY:
            return "refused as lossy", f"{kind} file refused as lossy: {error}"
        return "refused as lossy", _lossy_message_problem(str(error), case)
    except Exception as error:
        if refused_reason and refused_reason in str(error) and _names_an_op(str(error), case):
            return f"refused: {refused_reason}", None
        if kind == UNRELOADABLE and _names_an_op(str(error), case):
            return "refused, naming the op", None
        return "fails to load", f"{kind} file fails to load: {_error(error)}"
    if refused_reason:
        return "loads", "loads, though listed in REFUSED_FAITHFUL: take it off the list"
    if kind == LOSSY:
        return "loads", "lossy file loads instead of being refused"
    if not any(isinstance(layer, keras_graft.TFOp) for layer in model.layers):
        return "loads", "no keras-graft op layer in the loaded model"
    arrays = np.load(directory / case["file"].replace(".h5", ".npz"))
    values = _fed(_inputs(case, arrays))
    for run in case["ran"]:
        expected = [arrays[name] for name in sorted(arrays.files, key=_index) if name.startswith(f"{run}_")]
        try:
            got = _as_arrays(tf, tf.nest.flatten(RUNS[run](model, values)))
        except Exception as error:
            if kind == UNRELOADABLE and _names_an_op(str(error), case):
                return f"loads, {run} refused naming the op", None
            return "loads", f"{run} fails: {_error(error)}"
        if case["random"]:
            got_specs = [[list(a.shape), a.dtype.name] for a in got]
            if got_specs != case["output_specs"]:
                return "loads", f"{run}: output specs {got_specs} != Keras 2's {case['output_specs']}"
        elif not _same(got, expected):
            return "loads", f"{run}: outputs differ from Keras 2's: {_difference(got, expected)}"
    if not case["ran"]:
        return "loads (Keras 2 could not run it on the sample values)", None
    return ("loads, shapes and dtypes match (random)" if case["random"] else "loads and matches"), None


def _index(name: str) -> int:
    return int(name.rsplit("_", 1)[1])


def _names_an_op(message: str, case: dict) -> bool:
    """Whether an error names one of the case's ops (as Keras 2 or keras-graft calls it)."""
    from keras_graft.keras2 import tf1_names

    return any(
        f"tf.{name}" in message or f"tf.{tf1_names.tf2_name(name)}" in message
        for _, name in case["op_layers"]
    )


def _difference(got, expected) -> str:
    if len(got) != len(expected):
        return f"{len(got)} outputs, Keras 2 had {len(expected)}"
    for i, (a, b) in enumerate(zip(got, expected)):
        if not _close(a, b):
            a, b = np.asarray(a), np.asarray(b)
            if a.shape != b.shape or a.dtype != b.dtype:
                return f"output {i}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}"
            if a.dtype.kind in "fc":
                return f"output {i}: max error {np.nanmax(np.abs(a - b)):.3g}"
            return f"output {i}: values differ"
    return "?"


def _lossy_message_problem(message: str, case: dict) -> str | None:
    if not _names_an_op(message, case):
        return f"lossy refusal names none of the ops: {message}"
    for needed in ("Layer `", "Keras 2 dropped", "keras_graft.keras2.files.load_weights"):
        if needed not in message:
            return f"lossy refusal does not say {needed!r}: {message}"
    return None


def run(names, directory: Path, operators: bool = False, forms=None) -> list[dict]:
    """The sweep over the ops `names` (and Python's operators): each case with its class
    and problem (None when it behaves as its class requires). Reuses the Keras 2
    files in `directory` when it holds them already."""
    manifest = directory / "manifest.json"
    cases = (
        json.loads(manifest.read_text())
        if manifest.exists()
        else write_keras2_files(names, directory, operators, forms)
    )
    for case in cases:
        case["class"] = classify(case)
        try:
            case["problem"] = check(case, directory)
        except Exception as error:  # A crash of the check is a problem of the case, not the end of the sweep.
            case["problem"] = f"the check crashed: {_error(error)}"
    return cases


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ops", nargs="*", help="op names (canonical, without `tf.`)")
    parser.add_argument("--all", action="store_true", help="every allowed op and Python operator")
    parser.add_argument("--operators", action="store_true", help="Python's operators (with --all too)")
    parser.add_argument("--json", type=Path, help="write every case's result here")
    parser.add_argument("--verbose", action="store_true", help="print every case, not only problems")
    parser.add_argument(
        "--workdir", type=Path, help="keep the Keras 2 files here (and reuse them when there)"
    )
    args = parser.parse_args(argv)
    names = op_names() if args.all else (args.ops or ([] if args.operators else list(CI_SAMPLE)))
    with tempfile.TemporaryDirectory() as scratch:
        cases = run(names, args.workdir or Path(scratch), operators=args.all or args.operators)
    for case in cases:
        if case["problem"] or args.verbose:
            verdict = f"PROBLEM {case['problem']}" if case["problem"] else case["class"]
            print(f"{case['op']} [{case['form']}] {case['call']}: {verdict}")
    summary = summarize(names, cases)
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "cases": cases}, indent=1))
    return 1 if summary["problems"] else 0


def summarize(names, cases) -> dict:
    """Counts of ops and cases per class, and what Keras 3 did with them."""
    recorded: dict[str, set] = {}
    for case in cases:
        recorded.setdefault(case["op"], set()).add(case["class"])
    ops = {name: recorded.get(name, {NOT_RECORDABLE}) for name in {*names, *recorded}}
    outcomes: dict[str, int] = {}
    for case in cases:
        if case["class"] != NOT_RECORDABLE:
            key = f"{case['class']}: {case.get('keras3', '?')}"
            outcomes[key] = outcomes.get(key, 0) + 1
    return {
        "ops": len(ops),
        "cases": len(cases),
        "ops_with_a_faithful_case": sum(FAITHFUL in classes for classes in ops.values()),
        "ops_with_a_lossy_case": sorted(name for name, classes in ops.items() if LOSSY in classes),
        "ops_keras2_cannot_reload_only": sorted(
            name for name, classes in ops.items() if classes == {UNRELOADABLE}
        ),
        "ops_not_recordable": sum(classes == {NOT_RECORDABLE} for classes in ops.values()),
        "cases_per_class": {kind: sum(c["class"] == kind for c in cases) for kind in CLASSES},
        "keras3_outcomes": dict(sorted(outcomes.items())),
        "problems": sum(bool(c["problem"]) for c in cases),
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--keras2-child"]:
        _keras2_main(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")  # Keras' retracing notices, one per model
        sys.exit(_main())
