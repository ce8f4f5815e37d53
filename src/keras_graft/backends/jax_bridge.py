"""Running TensorFlow functions on JAX arrays, inside `jax.jit` and `jax.grad`.

Per input signature, TensorFlow is asked whether XLA compiles the function:

- if it does, `jax2tf.call_tf` inlines the function's XLA computation into
  the JAX program: no TensorFlow runs at run time;
- if not (`ResizeBicubic`, `HistogramFixedWidth`...), or if XLA's kernel
  computes other values than TensorFlow's (`tf.linalg.svd`'s signs,
  `xla.XLA_RESULT_DIFFERS`), the function runs in TensorFlow through
  `jax.pure_callback`.

Either way the backward pass is TensorFlow's own gradient (`Traced.vjp`,
inlined where XLA compiles it, called back otherwise) under one `jax.custom_vjp`. Both calls
are free of side effects, so a jitted training step keeps JAX's fast
dispatch (`call_tf`'s own gradient is not: it would cost each step a
dispatch in Python). Complex cotangents are conjugated on the way in and
out: JAX's convention is the conjugate of TensorFlow's. An op TensorFlow has
no gradient for, and random ops (whose gradient would come from other draws
than the forward pass used), raise `BridgeGradientError`, naming the layer,
where the training step is traced.

Forward-mode differentiation (`jax.jvp`), `jax.vmap` of inlined ops and
higher-order gradients of the callback path are not supported and say so.

What a callback crossing costs, and why (measured on a 2-core CPU, jax 0.10,
TF 2.21): eager TensorFlow runs a `tf.function` call on its inter-op thread
pool and blocks the caller until a pool thread has run it (only single eager
ops run on the calling thread), so every call paid a wake-up of another
thread, and after it the pool's threads spin looking for more work on the
cores JAX wants back (inside the callback the calling thread was preempted
about once per call). That was most of an empty function's call: 70-80 µs of
wall time for 20 µs of the calling thread's CPU, ~100 µs inside a callback.
`TF_NUM_INTEROP_THREADS=1` halves it; running the function as one eager
`PartitionedCall` op, which TF executes on the calling thread
(`_compat.call_concrete_flat(..., on_calling_thread=True)`), takes it to
~15 µs, with no user setting. The rest of a crossing is `jax.pure_callback`'s
own (~60 µs with a callback that does nothing: it `device_put`s each argument
and checks each result) and the TF call being colder in the caches between
JAX's work than in a loop of its own: 13 µs in a tight loop, 25 µs between
two JAX calls, ~30 µs inside the callback. That, and not a different state
of TensorFlow inside the callback (it runs on the thread that called the
jitted function), is why the call measured slower inside than outside.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf
from jax.experimental import jax2tf

from keras_graft import _compat
from keras_graft.backends.tracing import Traced, no_gradient_error, random_op_error
from keras_graft.backends.xla import xla_compile_error, xla_result_differs
from keras_graft.errors import OpTraceError


def specs(flat_inputs: list) -> tuple:
    """The input signature of JAX arrays (or tracers), as `tf.TensorSpec`s."""
    return tuple(tf.TensorSpec(tuple(x.shape), tf.as_dtype(jnp.dtype(x.dtype).name)) for x in flat_inputs)


# JAX calls the bridge while it traces, not per step: the specs are the key.
signature = specs


def xla_compiles(function: Callable, specs) -> bool:
    """Whether TensorFlow's XLA compiles `function` for these (static) specs."""
    return xla_compile_error(function, specs) is None


def compile(traced: Traced, name: str) -> Callable:
    """`traced` as a function of flat JAX arrays, with TensorFlow's gradient."""
    for output in traced.output_specs:
        if not output.shape.is_fully_defined():
            raise OpTraceError(
                f"{name} cannot run on the jax backend: its output shape "
                f"{output.shape} depends on the input values."
            )
    wanted_in, wanted_out = traced.differentiable_inputs(), traced.differentiable_outputs()
    vjp = traced.vjp(wanted_in)
    inline = xla_result_differs(traced.op_types) is None and xla_compiles(traced.function, traced.specs)
    if inline:
        forward = jax2tf.call_tf(traced.function, has_side_effects=False)
    else:
        forward = _callback(lambda: traced.concrete, traced.output_specs)

    @functools.cache
    def backward():
        """TF's gradient, inlined where XLA compiles it too (not
        `tf.linalg.expm`'s, a loop over a list of unknown size), called back
        otherwise; chosen at the first backward pass, since most models
        loaded for inference never take one."""
        if inline and xla_compiles(vjp, traced.vjp_specs()):
            return jax2tf.call_tf(vjp, has_side_effects=False)
        return _callback(_traced(vjp, traced.vjp_specs()), [traced.specs[i] for i in wanted_in])

    @jax.custom_vjp
    def run(*xs):
        return forward(*xs)

    def run_forward(*xs):
        return run(*xs), xs

    def run_backward(xs, cotangents):
        grads = []
        if wanted_in and wanted_out and traced.random:
            raise random_op_error(name, "jax")
        if wanted_in and wanted_out:
            try:
                grads = backward()(*xs, *(_conj(cotangents[i]) for i in wanted_out))
            except LookupError as error:  # TF registers no gradient for an op on the path.
                raise no_gradient_error(name, "jax", error) from error
        by_input = dict(zip(wanted_in, (_conj(g) for g in grads)))
        return tuple(by_input[i] if i in by_input else _zero_cotangent(x) for i, x in enumerate(xs))

    run.defvjp(run_forward, run_backward)

    def compiled(flat):
        return list(run(*flat))

    compiled.structure = traced.structure
    return compiled


def _traced(function: Callable, specs) -> Callable:
    """The concrete `tf.function(function)` on `specs`, traced at the first
    call of the returned function: a backward pass is traced when (and only
    if) a gradient is asked for."""

    @functools.cache
    def concrete():
        return tf.function(function, autograph=False).get_concrete_function(*specs)

    return concrete


def _callback(concrete: Callable, output_specs) -> Callable:
    """The TF function `concrete()` as a JAX function, through `jax.pure_callback`."""
    result_shapes = [jax.ShapeDtypeStruct(tuple(s.shape), s.dtype.as_numpy_dtype) for s in output_specs]

    def in_tensorflow(*arrays):
        # The flat call of a concrete function of flat tensors: no binding of
        # arguments, no retracing, no hand-over to TF's inter-op pool (see the
        # module's docstring); the arrays cross by DLPack where they can.
        results = _compat.call_concrete_flat(concrete(), [_to_tf(a) for a in arrays], on_calling_thread=True)
        return [np.asarray(r) for r in results]

    def run(*xs):
        concrete()  # Traced while JAX traces: a missing gradient raises here.
        return _compat.pure_callback_sequential(in_tensorflow, result_shapes, *xs)

    return run


# TensorFlow kernels read buffers with 64-byte aligned loads.
_ALIGNMENT = 64


def _to_tf(array) -> tf.Tensor:
    """A callback's argument as a TF tensor: a JAX array (newer JAX) without a
    copy, by DLPack, where it is aligned and of a dtype DLPack carries; else
    (bools, a NumPy array from older JAX) copied."""
    if (
        isinstance(array, jax.Array)
        and array.dtype != np.bool_
        and array.unsafe_buffer_pointer() % _ALIGNMENT == 0
    ):
        return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    return tf.constant(np.asarray(array))


def _conj(value):
    return jnp.conj(value) if jnp.iscomplexobj(value) else value


def _zero_cotangent(x):
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.zeros(x.shape, x.dtype)
    return np.zeros(x.shape, jax.dtypes.float0)
