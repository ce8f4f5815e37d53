"""One function per deployment check of an op layer, each found by trying.

A `Probe` is an op layer (`TFOp`, `Op`, `@keras_graft.layer`) as a
TensorFlow function of its flat input tensors, traced on concrete input specs
(unknown dimensions set to `UNKNOWN_DIMENSION`). Each check takes a probe
and returns a `Verdict`: a status word and a short reason.

>>> import keras, tensorflow as tf, keras_graft
>>> x = keras.Input((4,))
>>> layer = tf.clip_by_value(x, -1.0, 1.0)._keras_history.operation
>>> p = probe(layer)
>>> xla(p).status, tflite(p).status, gradient(p).status, jax(p).status
('yes', 'builtin', 'yes', 'xla')
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
from dataclasses import dataclass
from typing import Callable

import keras
import tensorflow as tf
from keras import tree

from keras_graft import _compat, backends, safety
from keras_graft.authoring import FunctionLayer
from keras_graft.errors import OpTraceError
from keras_graft.op_layer import TFOp
from keras_graft.printing import Print

UNKNOWN_DIMENSION = 2

# Graph plumbing, not worth reporting as the ops a layer lowers to.
PLUMBING_OP_TYPES = frozenset({"Placeholder", "Identity", "NoOp", "Const", "ReadVariableOp"})


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

    @functools.cached_property
    def concrete(self):
        """The function traced on `specs` (a concrete `tf.function`)."""
        return tf.function(self.function, autograph=False).get_concrete_function(*self.specs)


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


def probe(layer) -> Probe:
    """The probe of `layer`'s first call in its model."""
    if not layer._inbound_nodes:
        raise ValueError(f"{layer.name} was never called on inputs; build the model first.")
    node = layer._inbound_nodes[0]
    arguments = node.arguments
    inputs = list(arguments.keras_tensors)
    outputs = tree.flatten(node.output_tensors)

    def function(*tensors):
        args, kwargs = arguments.fill_in({id(k): t for k, t in zip(inputs, tensors)})
        return tree.flatten(layer(*args, **kwargs))

    specs = tuple(
        tf.TensorSpec([UNKNOWN_DIMENSION if d is None else d for d in t.shape], t.dtype)
        for t in inputs
    )
    dense = not any(
        getattr(t, "ragged", False) or getattr(t, "sparse", False) for t in inputs + outputs
    )
    config = {k: v for k, v in layer.get_config().items() if k not in ("name", "trainable")}
    key = (op_name(layer), json.dumps(config, sort_keys=True, default=repr),
           tuple((tuple(s.shape), s.dtype.name) for s in specs))
    return Probe(layer, inputs, outputs, function, specs, dense, key)


# Outcomes of the slow checks, per (check, probe key): the same op on the
# same signature is compiled and converted once per process.
_cache: dict = {}


def _cached(check: Callable[[Probe], Verdict]) -> Callable[[Probe], Verdict]:
    @functools.wraps(check)
    def cached(p: Probe) -> Verdict:
        key = (check.__name__, p.key)
        if key not in _cache:
            _cache[key] = check(p)
        return _cache[key]

    return cached


def graph_op_types(p: Probe) -> list[str]:
    """The TF graph op types the layer lowers to, through called functions too."""
    graph = p.concrete.graph
    types_, _ = _compat.op_types_called(graph, graph.get_operations())
    return sorted(types_ - PLUMBING_OP_TYPES)


_NOT_DENSE = Verdict("no", "ragged or sparse tensors: not checked")


@_cached
def xla(p: Probe) -> Verdict:
    """'yes' when `tf.function(jit_compile=True)` compiles the layer to HLO."""
    if not p.dense:
        return _NOT_DENSE
    error = backends.xla_compile_error(p.function, p.specs)
    if error is None:
        return Verdict("yes")
    missing = sorted(set(re.findall(r"(\w+) \(No registered '", error)) - {"_Arg", "_Retval"})
    if any(t.dtype == "string" for t in p.inputs + p.outputs) and not missing:
        return Verdict("no", "string tensors: XLA has none")
    if missing:
        return Verdict("no", f"no XLA kernel for {', '.join(missing)}")
    return Verdict("no", _first_line(error))


@_cached
def tflite(p: Probe) -> Verdict:
    """'builtin' when the layer converts to TFLite with builtin ops only,
    'select' when it needs Select TF ops, 'no' when it does not convert."""
    if not p.dense:
        return _NOT_DENSE
    builtin = tf.lite.OpsSet.TFLITE_BUILTINS
    error = _tflite_error(p, [builtin])
    if error is None:
        return Verdict("builtin")
    if _tflite_error(p, [builtin, tf.lite.OpsSet.SELECT_TF_OPS]) is None:
        select = re.search(r"TF Select ops: ([^\n]+)", error)
        return Verdict("select", f"needs Select TF ops: {select.group(1) if select else 'some'}")
    return Verdict("no", _converter_message(error))


def _tflite_error(p: Probe, ops_sets) -> str | None:
    converter = tf.lite.TFLiteConverter.from_concrete_functions([p.concrete], p.layer)
    converter.target_spec.supported_ops = ops_sets
    try:
        with quiet_stderr():
            converter.convert()
    except Exception as error:  # Any failure means: does not convert this way.
        return str(error) or type(error).__name__
    return None


def _converter_message(error: str) -> str:
    """The converter's own error line, without MLIR locations."""
    for line in error.splitlines():
        if "error:" in line:
            return line.split("error:", 1)[1].strip()
    return _first_line(error)


@contextlib.contextmanager
def quiet_stderr():
    """Silences file descriptor 2, where TFLite's converter prints MLIR diagnostics."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


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
    'callback' when it runs in eager TF through `jax.pure_callback`, 'no' when
    the JAX backend refuses it (and why)."""
    problem = _portability_problem(p, "jax")
    if problem:
        return Verdict("no", problem)
    compiled = xla(p)
    if compiled.status == "yes":
        return Verdict("xla")
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
    node = p.layer._inbound_nodes[0]
    try:
        clone = keras.saving.deserialize_keras_object(config, safe_mode=True)
        clone(*node.arguments.args, **node.arguments.kwargs)
    except Exception as error:  # The reason it would not load.
        return error
    return None


def _first_line(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
