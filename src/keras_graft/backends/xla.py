"""Whether TensorFlow's XLA compiles a function, and computes what TensorFlow
computes: the tests that send an op down the JAX bridge's XLA path, and
`inspect`'s `xla` check. Needs no JAX."""

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


# Op types whose XLA kernel computes another, equally valid, result than
# TensorFlow's own kernel: eigenvectors and singular vectors are unique only up
# to sign (and order within repeated values), and XLA's Jacobi and QR-based
# algorithms choose differently from LAPACK's. On the XLA path a model with
# them would predict and train otherwise on JAX than on TensorFlow
# (`tests/test_backends.py` shows both).
XLA_RESULT_DIFFERS = {
    "SelfAdjointEigV2": "XLA's eigenvectors differ from TensorFlow's kernel's in sign",
    "Svd": "XLA's singular vectors differ from TensorFlow's kernel's in sign",
}


def xla_result_differs(op_types) -> str | None:
    """Why XLA would compute other values than TensorFlow for a function of
    these op types (see `XLA_RESULT_DIFFERS`), or None.

    >>> xla_result_differs({"Svd", "MatMul"})
    "XLA's singular vectors differ from TensorFlow's kernel's in sign (Svd)"
    >>> xla_result_differs({"MatMul"}) is None
    True
    """
    differing = sorted(set(op_types) & XLA_RESULT_DIFFERS.keys())
    if not differing:
        return None
    return "; ".join(f"{XLA_RESULT_DIFFERS[t]} ({t})" for t in differing)
