"""One function per deployment check of an op layer, each found by trying.

A `Probe` is an op layer (`TFOp`, `Op`, `@keras_graft.layer`) as a
TensorFlow function of its flat input tensors, traced on concrete input specs
(unknown dimensions set to `UNKNOWN_DIMENSION`). Each check takes a probe
and returns a `Verdict`: a status word and a short reason.

The XLA and TFLite checks compile and convert in the check process of the
probe's `session` (`sandbox`), never in this one: a check that goes over its
budget there is "not checked (budget)", which passes no `--require`.

>>> import keras, tensorflow as tf, keras_graft
>>> x = keras.Input((4,))
>>> layer = keras.Model(x, tf.clip_by_value(x, -1.0, 1.0)).layers[-1]
>>> p = probe(layer)
>>> xla(p).status, tflite(p).status, gradient(p).status, jax(p).status
('yes', 'builtin', 'yes', 'xla')
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

import keras
import tensorflow as tf
from keras import tree

from keras_graft import _compat, backends
from keras_graft.backends.xla import xla_result_differs
from keras_graft.core import safety
from keras_graft.core.op_layer import TFOp
from keras_graft.errors import (
    BudgetExceededError,
    CheckProcessError,
    OpTraceError,
    UncheckableLayerError,
)
from keras_graft.inspection import sandbox
from keras_graft.layers.function_layer import FunctionLayer
from keras_graft.patches.printing import Print

UNKNOWN_DIMENSION = 2

# Graph plumbing, not worth reporting as the ops a layer lowers to.
PLUMBING_OP_TYPES = frozenset({"Placeholder", "Identity", "NoOp", "Const", "ReadVariableOp"})

# The statuses of a check that was not made: it went over its budget in the
# check process, or the layer could not be sent there.
BUDGET = "not checked (budget)"
NOT_CHECKED = "not checked"


@dataclass(frozen=True)
class Verdict:
    """A check's outcome: a status word (per check, see `inspection.STATUSES`)
    and why, in a few words."""

    status: str
    detail: str = ""


@dataclass
class Probe:
    """An op layer as a TF function of flat tensors, on concrete specs."""

    layer: keras.layers.Layer
    inputs: list  # flat Keras tensors of the layer's first call
    outputs: list
    function: Callable  # flat tf.Tensors -> flat tf.Tensors
    specs: tuple  # tf.TensorSpec per input, no unknown dimensions
    dense: bool  # no ragged or sparse tensors among inputs and outputs
    key: tuple  # what the checks' outcome depends on (cache key)
    session: sandbox.Session  # where the XLA and TFLite checks run, and their budget

    @functools.cached_property
    def concrete(self):
        """The function traced on `specs` (a concrete `tf.function`)."""
        return tf.function(self.function, autograph=False).get_concrete_function(*self.specs)

    @functools.cached_property
    def task(self) -> sandbox.Task:
        """`concrete` as the check process reads it."""
        return sandbox.Task.of(self.concrete)


def is_op_layer(layer) -> bool:
    """Whether `layer` runs TF ops keras-graft wraps: `TFOp`, `Op`,
    `@keras_graft.layer`, `tf.print`."""
    return isinstance(layer, (TFOp, FunctionLayer, Print))


def op_name(layer) -> str:
    """The stored name of the layer's op (`tf.math.top_k`) or layer (`pkg>name`)."""
    if isinstance(layer, TFOp):
        return layer.op_name
    if isinstance(layer, Print):
        return "tf.print"
    return keras.saving.get_registered_name(type(layer))


def probe(layer, session: sandbox.Session | None = None) -> Probe:
    """The probe of `layer`'s first call in its model; its XLA and TFLite
    checks run in `session` (default: a new one, with `sandbox.CHECK_BUDGET`)."""
    nodes = _compat.layer_nodes(layer)
    if not nodes:
        raise ValueError(f"{layer.name} was never called on inputs; build the model first.")
    node = nodes[0]
    inputs = _compat.node_inputs(node)
    outputs = _compat.node_outputs(node)

    call = _call_on_tensorflow_tensors(layer)

    def function(*tensors):
        args, kwargs = _compat.fill_in_call(node, {id(k): t for k, t in zip(inputs, tensors)})
        return tree.flatten(call(*args, **kwargs))

    specs = tuple(
        tf.TensorSpec([UNKNOWN_DIMENSION if d is None else d for d in t.shape], t.dtype) for t in inputs
    )
    dense = not any(getattr(t, "ragged", False) or getattr(t, "sparse", False) for t in inputs + outputs)
    config = {k: v for k, v in layer.get_config().items() if k not in ("name", "trainable")}
    key = (
        op_name(layer),
        json.dumps(config, sort_keys=True, default=repr),
        tuple((tuple(s.shape), s.dtype.name) for s in specs),
    )
    return Probe(layer, inputs, outputs, function, specs, dense, key, session or sandbox.Session())


def _call_on_tensorflow_tensors(layer) -> Callable:
    """What the checks call `layer` through, on TensorFlow tensors: on the JAX
    and torch backends, Keras' layer call takes only that backend's tensors
    (every check of every layer would be "not checked"), so an op layer is
    called as its op."""
    current = backends.backend()
    if current == "tensorflow":
        return layer
    if isinstance(layer, TFOp):
        return layer.call_in_tf
    if isinstance(layer, Print):
        return layer.call

    def refuse(*_, **__):
        # Its weights are the backend's arrays. (The verdict keeps 160 characters.)
        raise OpTraceError(
            f"inspect checks a @keras_graft.layer on the tensorflow backend only, not {current}: "
            "run it with KERAS_BACKEND=tensorflow"
        )

    return refuse


# Outcomes of the slow checks, per (check, probe key): the same op on the
# same signature is compiled and converted once per process. A check not
# made is tried again (in another session, its budget may be larger).
_cache: dict = {}


def _cached(check: Callable[[Probe], Verdict]) -> Callable[[Probe], Verdict]:
    @functools.wraps(check)
    def cached(p: Probe) -> Verdict:
        key = (check.__name__, p.key)
        if key in _cache:
            return _cache[key]
        verdict = check(p)
        if verdict.status not in (BUDGET, NOT_CHECKED):
            _cache[key] = verdict
        return verdict

    return cached


def _in_check_process(check: Callable[[Probe], Verdict]) -> Callable[[Probe], Verdict]:
    """`check`, whose calls of `_error_in_check_process` may find that the
    check cannot be made: then a "not checked" verdict, saying why."""

    @functools.wraps(check)
    def checked(p: Probe) -> Verdict:
        try:
            return check(p)
        except BudgetExceededError as error:
            return Verdict(
                BUDGET,
                f"the check process {error}; raise the budget with "
                "--check-memory MB / --check-seconds S (Python: budget=)",
            )
        except (CheckProcessError, UncheckableLayerError) as error:
            return Verdict(NOT_CHECKED, _first_line(str(error)))

    return checked


def _error_in_check_process(p: Probe, check: str, ops_sets=()) -> str | None:
    """TensorFlow's reason why `check` fails for the probe, or None: found in
    the check process (raises what `sandbox.Session.run` raises)."""
    return p.session.run(p.task.asking(check, [ops.name for ops in ops_sets]))


def trace_problem(p: Probe) -> str | None:
    """Why the layer cannot be traced on the probe's specs, or None.

    Unknown dimensions all set to `UNKNOWN_DIMENSION` may not fit how a
    layer's inputs relate (one input's unknown dimension is another's 8).
    """
    if not p.dense:
        return None
    try:
        p.concrete
    except Exception as error:  # The reason it does not trace.
        return _first_line(f"{type(error).__name__}: {_without_keras_preamble(str(error))}")
    return None


def _without_keras_preamble(message: str) -> str:
    """Keras's error around a layer's: its first line and its bold face taken out."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in message.splitlines() if line.strip()]
    return "\n".join(line for line in lines if not line.startswith("Exception encountered")) or message


def graph_op_types(p: Probe) -> list[str]:
    """The TF graph op types the layer lowers to, through called functions too."""
    graph = p.concrete.graph
    types_, _ = _compat.op_types_called(graph, graph.get_operations())
    return sorted(types_ - PLUMBING_OP_TYPES)


_NOT_DENSE = Verdict("no", "ragged or sparse tensors: not checked")


@_cached
@_in_check_process
def xla(p: Probe) -> Verdict:
    """'yes' when `tf.function(jit_compile=True)` compiles the layer to HLO."""
    if not p.dense:
        return _NOT_DENSE
    error = _error_in_check_process(p, "xla")
    if error is None:
        return Verdict("yes")
    missing = sorted(set(re.findall(r"(\w+) \(No registered '", error)) - {"_Arg", "_Retval"})
    if any(t.dtype == "string" for t in p.inputs + p.outputs) and not missing:
        return Verdict("no", "string tensors: XLA has none")
    if missing:
        return Verdict("no", f"no XLA kernel for {', '.join(missing)}")
    return Verdict("no", _first_line(error))


@_cached
@_in_check_process
def tflite(p: Probe) -> Verdict:
    """'builtin' when the layer converts to TFLite with builtin ops only,
    'select' when it needs Select TF ops, 'no' when it does not convert."""
    if not p.dense:
        return _NOT_DENSE
    builtin = tf.lite.OpsSet.TFLITE_BUILTINS
    error = _error_in_check_process(p, "tflite", [builtin])
    if error is None:
        return Verdict("builtin")
    if _error_in_check_process(p, "tflite", [builtin, tf.lite.OpsSet.SELECT_TF_OPS]) is None:
        select = re.search(r"TF Select ops: ([^\n]+)", error)
        return Verdict("select", f"needs Select TF ops: {select.group(1) if select else 'some'}")
    return Verdict("no", _converter_message(error))


def _converter_message(error: str) -> str:
    """The converter's own error line, without MLIR locations."""
    for line in error.splitlines():
        if "error:" in line:
            return line.split("error:", 1)[1].strip()
    return _first_line(error)


def gradient(p: Probe) -> Verdict:
    """'yes' when every op on a float path from the inputs or weights has a
    registered gradient; 'no' naming those that do not (an op of float inputs
    with no gradient, `HistogramFixedWidth`, counts even when its outputs are
    integers; one that only formats strings does not); 'n/a' when no float
    path reaches an output (an int-valued op such as `argmax`).

    Ops inside called functions (loops, conditionals) are covered by the
    gradient TensorFlow registers for the calling op.
    """
    graph = p.concrete.graph
    differentiable = {t.ref() for t in graph.inputs[: len(p.specs)] if _carries_gradient(t)}
    missing = set()
    for operation in graph.get_operations():
        if operation.type == "ReadVariableOp":  # a weight: gradients flow to it
            differentiable.update(o.ref() for o in operation.outputs if _carries_gradient(o))
            continue
        if not any(t.ref() in differentiable for t in operation.inputs):
            continue
        try:
            registered = _compat.registered_gradient(operation.type)
        except LookupError:
            # Formatting numbers as strings needs no gradient; anything else does.
            if any(o.dtype != tf.string for o in operation.outputs):
                missing.add(operation.type)
            continue
        if registered is not None:
            differentiable.update(o.ref() for o in operation.outputs if _carries_gradient(o))
    if missing:
        return Verdict("no", f"no registered gradient for {', '.join(sorted(missing))}")
    if not any(t.ref() in differentiable and t.dtype != tf.variant for t in graph.outputs):
        return Verdict("n/a", "no float path from the inputs to the outputs")
    return Verdict("yes")


def _carries_gradient(tensor) -> bool:
    """Float and complex tensors, and the variants (tensor lists) loops carry them in."""
    return tensor.dtype.is_floating or tensor.dtype.is_complex or tensor.dtype == tf.variant


def jax(p: Probe) -> Verdict:
    """'xla' when the op compiles into the JAX program (`jax2tf.call_tf`),
    'callback' when it runs in eager TF through `jax.pure_callback` (XLA does
    not compile it, or computes other values than TF), 'no' when
    the JAX backend refuses it (and why)."""
    problem = _portability_problem(p, "jax")
    if problem:
        return Verdict("no", problem)
    compiled = xla(p)
    if compiled.status == "yes":
        differs = xla_result_differs(graph_op_types(p))
        return Verdict("callback", differs) if differs else Verdict("xla")
    if compiled.status in (BUDGET, NOT_CHECKED):
        return Verdict(compiled.status, f"the XLA check: {compiled.detail}")
    return Verdict("callback", compiled.detail)


def torch(p: Probe) -> Verdict:
    """'yes' when the torch backend runs the op (through the DLPack bridge)."""
    problem = _portability_problem(p, "torch")
    return Verdict("no", problem) if problem else Verdict("yes")


def _portability_problem(p: Probe, target: str) -> str | None:
    try:
        backends.check_portable(p.layer.name, p.inputs, p.outputs, target=target)
        backends.check_static_shapes(
            p.layer.name, lambda packed: p.function(*packed), p.inputs, p.outputs, target=target
        )
    except OpTraceError as error:
        # "<layer> cannot run on the jax backend: <problem>. <what to do>"
        return str(error).split(": ", 1)[-1].split(". ", 1)[0]
    return None


def safe(p: Probe) -> Verdict:
    """'yes' when the layer loads from a file in safe mode; 'allow' with the
    `keras_graft.allow(...)` it needs; 'no' with why it does not load."""
    error = _safe_reload_error(p)
    if error is None:
        if isinstance(p.layer, FunctionLayer) or ">" in op_name(p.layer):
            return Verdict("yes", "once its module is imported")
        return Verdict("yes")
    name = op_name(p.layer)
    if isinstance(error, safety.UnsafeOpError) and name.startswith("tf."):
        short = name[3:]
        with safety.allow(short):
            if _safe_reload_error(p) is None:
                return Verdict("allow", f"keras_graft.allow({short!r})")
    return Verdict("no", _first_line(f"{type(error).__name__}: {error}"))


def _safe_reload_error(p: Probe) -> Exception | None:
    """Serializes the layer and rebuilds it as `load_model` would in safe mode."""
    config = keras.saving.serialize_keras_object(p.layer)
    args, kwargs = _compat.node_call_arguments(_compat.layer_nodes(p.layer)[0])
    try:
        clone = keras.saving.deserialize_keras_object(config, safe_mode=True)
        clone(*args, **kwargs)
    except Exception as error:  # The reason it would not load.
        return error
    return None


def _first_line(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
