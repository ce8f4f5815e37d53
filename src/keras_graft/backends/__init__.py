"""TF ops inside Keras models on the JAX and PyTorch backends.

An op layer's TensorFlow function runs on the backend's own arrays through a
bridge, one module per backend:

- `jax_bridge`: ops that XLA can compile are inlined into the JAX program
  (`jax2tf.call_tf`), so no TensorFlow runs at run time; the others run in
  eager TensorFlow through `jax.pure_callback`, gradients included.
- `torch_bridge`: zero-copy DLPack both ways and a `torch.autograd.Function`
  whose backward pass runs TensorFlow's gradient as a TF graph function.

Both compile from a `tracing.Traced` function and differentiate it with
TensorFlow's own gradient, so a training step equals TensorFlow's (proven op
by op by `tests/helpers/gradient_sweep.py`). What cannot run on a backend is refused
when the model is built or loaded (`check_portable`), never in the middle of
training; a gradient that cannot be given raises at the first training step,
naming the layer (`errors.BridgeGradientError`).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable

import keras
import tensorflow as tf
from keras import tree

from keras_graft import _compat
from keras_graft.backends import tracing
from keras_graft.errors import OpTraceError

_64_BIT = {"int64", "uint64", "float64", "complex128"}


def backend() -> str:
    return keras.backend.backend()


def run(tf_function: Callable, inputs, *, cache: dict, name: str):
    """`tf_function(inputs)` on the current backend's arrays; outputs likewise.

    `cache` (one per layer) keeps the bridge's compiled form per input
    signature.
    """
    flat = tf.nest.flatten(inputs)
    bridge = _bridge(name)
    key = bridge.signature(flat)
    compiled = cache.get(key)
    if compiled is None:
        traced = tracing.Traced(tf_function, inputs, bridge.specs(flat))
        compiled = cache[key] = bridge.compile(traced, name)
    return tf.nest.pack_sequence_as(compiled.structure, compiled(flat))


def snapshot(value):
    """A variable's `value` as it is now, for a function whose gradient may
    read it after the variable is assigned: a copy on torch, which assigns
    variables in place."""
    return value.clone() if backend() == "torch" else value


def _bridge(name: str):
    """The bridge module of the current backend (imported once: per call
    this is on the bridge's hot path)."""
    current = backend()
    bridge = _BRIDGES.get(current)
    if bridge is None:
        if current not in ("jax", "torch"):
            raise NotImplementedError(
                f"{name}: keras-graft runs TF ops on the tensorflow, jax and torch "
                f"backends, not on {current!r}."
            )
        bridge = _BRIDGES[current] = importlib.import_module(f"keras_graft.backends.{current}_bridge")
    return bridge


_BRIDGES: dict = {}


def check_portable(name: str, inputs, outputs, target: str | None = None) -> None:
    """Refuses, at build or load, an op the backend `target` cannot run.

    `inputs` and `outputs` are Keras tensors; `target` defaults to the
    current backend.
    """
    current = target or backend()
    if current == "tensorflow":
        return
    for role, tensors in (("input", inputs), ("output", outputs)):
        for tensor in tree.flatten(tensors):
            problem = None
            if tensor.dtype == "string":
                problem = f"its {role} is a string tensor, which {current} has no arrays for"
            elif getattr(tensor, "ragged", False) or _sparse(tensor):
                kind = "ragged" if tensor.ragged else "sparse"
                problem = f"its {role} is a {kind} tensor, which keras-graft cannot pass to {current}"
            elif current == "jax" and tensor.dtype in _64_BIT and not _jax_x64():
                problem = (
                    f"its {role} is {tensor.dtype}, and JAX without 64-bit mode would "
                    "silently truncate it to 32 bits. Set JAX_ENABLE_X64=1 before "
                    "importing JAX, or cast to a 32-bit dtype inside the op "
                    "(`tf.cast`, or `output_type=tf.int32` for `tf.argmax`)"
                )
            if problem:
                raise OpTraceError(
                    f"{name} cannot run on the {current} backend: {problem}. Run this "
                    "part of the model on the tensorflow backend (e.g. in a "
                    "tf.data preprocessing step), or use a keras.ops equivalent."
                )


def _sparse(tensor) -> bool:
    """Whether a Keras tensor is sparse. Keras marks results of its ops on
    Python numbers sparse (`x * 4.0`): a Keras op's result is sparse only where
    one of its Keras tensor inputs is; inputs and layers say what they make."""
    if not getattr(tensor, "sparse", False):
        return False
    operation, node = _compat.producing_operation(tensor)
    if operation is None or isinstance(operation, keras.layers.Layer):
        return True
    return any(_sparse(t) for t in _compat.node_inputs(node))


def check_static_shapes(name: str, function: Callable, inputs, outputs, target: str | None = None) -> None:
    """On JAX (`target`, default the current backend), refuses an op whose
    output shape depends on input *values*.

    Traces the op again with every unknown input dimension set, in a scratch
    graph: a dimension still unknown then depends on values (`tf.unique`,
    `tf.boolean_mask`), which `jax.jit` cannot compile.
    """
    if (target or backend()) != "jax":
        return
    graph = tf.Graph()
    with graph.as_default():
        placeholders = [
            tf.compat.v1.placeholder(tensor.dtype, [3 if d is None else d for d in tensor.shape])
            for tensor in tree.flatten(inputs)
        ]
        try:
            traced = tree.flatten(function(tree.pack_sequence_as(inputs, placeholders)))
        except Exception:  # The real trace succeeded; this one is only a check.
            return
    for value in traced:
        if isinstance(value, tf.Tensor) and not value.shape.is_fully_defined():
            raise OpTraceError(
                f"{name} cannot run on the jax backend: the shape of its output "
                f"({value.shape}) depends on the input values, and jax.jit needs "
                "static shapes. Give the output a static size (e.g. pad to a "
                "maximum and mask), or run this part on the tensorflow backend."
            )


def _jax_x64() -> bool:
    try:
        import jax
    except ImportError:  # Asked about JAX without it (`keras-graft inspect`).
        return os.environ.get("JAX_ENABLE_X64", "").lower() in ("1", "true")
    return bool(jax.config.jax_enable_x64)
