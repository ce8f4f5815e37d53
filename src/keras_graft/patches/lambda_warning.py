"""A `keras.layers.Lambda` built while keras-graft is imported warns that it will not load.

Keras stores a `Lambda`'s function as Python bytecode (a lambda) or as a bare
function name it cannot find again (a named function), so the saved model
does not load in safe mode, nor often at all. With keras-graft the TF ops
the function calls work on Keras tensors directly, and load in safe mode; a
function of your own becomes one layer, stored by name, with
`@keras_graft.op`. The warning (`LambdaLayerWarning`) says so where the
`Lambda` is called on Keras tensors (where the model is built), with the
direct form of its own function when Python has its source:

    keras.layers.Lambda(lambda t: tf.clip_by_value(t, -1.0, 1.0))(x)
    # LambdaLayerWarning: ... write `tf.clip_by_value(t, -1.0, 1.0)` directly,
    # with `t` the Keras tensor the Lambda is called on ...

Loading a file does not warn: safe mode refuses the `Lambda` anyway, and
`safe_mode=False` is the user's own call.

>>> direct_form(lambda t: tf.clip_by_value(t, -1.0, 1.0))
'write `tf.clip_by_value(t, -1.0, 1.0)` directly, with `t` the Keras tensor the Lambda is called on'
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
import warnings

import keras

from keras_graft import _compat
from keras_graft.errors import LambdaLayerWarning
from keras_graft.patches import dispatch


def direct_form(function) -> str:
    """How to write what `function` does without a `Lambda`."""
    name = getattr(function, "__name__", None)
    if name and name != "<lambda>":
        qualified = getattr(function, "__qualname__", name)
        return (
            f"call `{qualified}(x)` on the Keras tensor directly (its TF ops work on Keras "
            f"tensors), or decorate `{qualified}` with `@keras_graft.op` to make it one "
            "layer, stored by name"
        )
    source = _lambda_source(getattr(function, "__code__", None))
    if source is None:
        return (
            "call the TF ops the lambda calls directly on the Keras tensor, or put them in a "
            "function decorated with `@keras_graft.op`"
        )
    parameters, body = source
    return f"write `{body}` directly, with `{parameters}` the Keras tensor the Lambda is called on"


@functools.lru_cache(maxsize=256)
def _lambda_source(code) -> tuple[str, str] | None:
    """(parameters, body) of the lambda whose code is `code`, from its source file."""
    if code is None:
        return None
    try:
        lines, _ = inspect.getsourcelines(code)
    except (OSError, TypeError):
        return None
    source = textwrap.dedent("".join(lines)).strip()
    tree = _parsed(source)
    if tree is None:
        return None
    parameters = list(code.co_varnames[: code.co_argcount])
    matches = {
        (", ".join(parameters), ast.get_source_segment(source, node.body))
        for node in ast.walk(tree)
        if isinstance(node, ast.Lambda) and [a.arg for a in node.args.args] == parameters
    }
    return matches.pop() if len(matches) == 1 else None


def _parsed(source: str):
    """The source lines holding a lambda, parsed; they may be part of a longer statement."""
    for candidate in (source, f"(\n{source}\n)", source.rstrip(",") + ")", "(" + source):
        try:
            return ast.parse(candidate)
        except SyntaxError:
            continue
    return None


def _warn(function) -> None:
    warnings.warn(
        "This `keras.layers.Lambda` stores its function as Python code, so a model that "
        "holds it will not load in safe mode (`keras.models.load_model` refuses it, and "
        "a lambda's bytecode rarely survives another Python version). With keras-graft "
        f"you need no Lambda: {direct_form(function)}. Such models load in safe mode.",
        LambdaLayerWarning,
        stacklevel=3,
    )


def install() -> None:
    """Makes `keras.layers.Lambda` warn where it is called on Keras tensors (idempotent)."""
    original = keras.layers.Lambda.__call__
    if hasattr(original, "graft_original"):
        return

    @functools.wraps(original)
    def __call__(self, *args, **kwargs):
        # Not while `load_model` rebuilds a model: Keras' safe-mode flag is unset
        # only while user code builds one.
        building = _compat.in_keras_safe_mode() and not _compat.deserializing_untrusted()
        if building and dispatch.holds_keras_tensor((args, kwargs)):
            _warn(self.function)
        return original(self, *args, **kwargs)

    __call__.graft_original = original
    keras.layers.Lambda.__call__ = __call__
