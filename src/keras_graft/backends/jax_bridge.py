"""Running TensorFlow functions on JAX arrays, inside `jax.jit` and `jax.grad`.

Per input signature, TensorFlow is asked whether XLA compiles the function:

- if it does, `jax2tf.call_tf` inlines the function's XLA computation into
  the JAX program: no TensorFlow runs at run time, and JAX differentiates
  through TensorFlow's own gradient;
- if not (`ResizeBicubic`, `HistogramFixedWidth`...), the function runs in
  eager TensorFlow through `jax.pure_callback`, and a second callback under a
  `tf.GradientTape` gives the vector-Jacobian product.

Forward-mode differentiation (`jax.jvp`), `jax.vmap` and higher-order
gradients of the callback path are not supported and say so.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf
from jax.experimental import jax2tf

from keras_graft import _compat
from keras_graft.backends import xla_compile_error
from keras_graft.errors import OpTraceError


def call(function: Callable, flat_inputs: list, *, cache: dict, name: str) -> list:
    """`function(*flat_inputs)` (a TF function of flat tensors) on JAX arrays."""
    specs = tuple(
        tf.TensorSpec(tuple(x.shape), tf.as_dtype(jnp.dtype(x.dtype).name)) for x in flat_inputs
    )
    runner = cache.get(specs)
    if runner is None:
        if xla_compiles(function, specs):
            runner = jax2tf.call_tf(function, has_side_effects=False)
        else:
            runner = _callback(function, specs, name)
        cache[specs] = runner
    return list(runner(*flat_inputs))


def xla_compiles(function: Callable, specs) -> bool:
    """Whether TensorFlow's XLA compiles `function` for these (static) specs."""
    return xla_compile_error(function, specs) is None


def _callback(function: Callable, specs, name: str) -> Callable:
    concrete = tf.function(function, autograph=False).get_concrete_function(*specs)
    outputs = tf.nest.flatten(concrete.structured_outputs)
    for output in outputs:
        if not output.shape.is_fully_defined():
            raise OpTraceError(
                f"{name} cannot run on the jax backend: its output shape "
                f"{output.shape} depends on the input values."
            )
    result_shapes = [jax.ShapeDtypeStruct(tuple(o.shape), o.dtype.as_numpy_dtype) for o in outputs]
    differentiable_out = [i for i, o in enumerate(outputs) if o.dtype.is_floating or o.dtype.is_complex]

    def forward(*arrays):
        results = function(*(tf.constant(a) for a in arrays))
        return [np.asarray(r) for r in results]

    def gradients(arrays, cotangents, wanted):
        inputs = [tf.constant(a) for a in arrays]
        with tf.GradientTape() as tape:
            for i in wanted:
                tape.watch(inputs[i])
            results = function(*inputs)
        grads = tape.gradient(
            [results[i] for i in differentiable_out],
            [inputs[i] for i in wanted],
            output_gradients=[tf.constant(c) for c in cotangents],
        )
        return [
            np.zeros(arrays[i].shape, arrays[i].dtype) if g is None else np.asarray(g)
            for i, g in zip(wanted, grads)
        ]

    @jax.custom_vjp
    def run(*xs):
        return _compat.pure_callback_sequential(forward, result_shapes, *xs)

    def run_forward(*xs):
        return run(*xs), xs

    def run_backward(xs, cotangents):
        wanted = [i for i, x in enumerate(xs) if jnp.issubdtype(x.dtype, jnp.inexact)]
        float_cotangents = [cotangents[i] for i in differentiable_out]
        count = len(xs)
        grads = _compat.pure_callback_sequential(
            lambda *arrays: gradients(arrays[:count], arrays[count:], wanted),
            [jax.ShapeDtypeStruct(xs[i].shape, xs[i].dtype) for i in wanted],
            *xs,
            *float_cotangents,
        )
        by_input = dict(zip(wanted, grads))
        return tuple(
            by_input[i] if i in by_input else np.zeros(x.shape, jax.dtypes.float0)
            for i, x in enumerate(xs)
        )

    run.defvjp(run_forward, run_backward)
    return run
