"""Whether TensorFlow's XLA compiles a function: the test that sends an op down
the JAX bridge's XLA path, and `inspect`'s `xla` check. Needs no JAX."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf


def xla_compile_error(function: Callable, specs) -> str | None:
    """Why TensorFlow's XLA does not compile `function` for these (static)
    specs, or None when it does. Needs no JAX.

    >>> xla_compile_error(lambda x: tf.math.sin(x), [tf.TensorSpec((2,))]) is None
    True
    """
    try:
        compiled = tf.function(function, jit_compile=True, autograph=False)
        compiled.experimental_get_compiler_ir(*specs)(stage="hlo")
    except Exception as error:  # Any failure to compile means: not on the XLA path.
        return str(error) or type(error).__name__
    return None
