"""What a model file may give a `@keras_graft.layer` hyperparameter.

A layer's hyperparameters come back from the file on load and are handed to
the user's function, so a file may only give each one a value *of the kind
its default has*:

| default | a file may give |
|---|---|
| `True` / `False` | a bool |
| a number | an int or a float |
| a string | a string |
| a list, tuple or dict | a list (tuple) or dict of plain data |
| `None`, or no default | plain data, or a Keras initializer, regularizer or constraint |
| a Keras object | `None`, a Keras identifier string, or a Keras object of the same family |
| a function (`keras.activations.relu`) | `None`, a string, a Keras activation, or a registered function |

Plain data is None, bools, numbers, strings, and lists and dicts of them.
Anything else is refused with the hyperparameter named:

>>> validate_stored("scale", "factor", 2.0, 3)
3
>>> validate_stored("scale", "factor", 2.0, {"class_name": "Dense", "config": {}})
Traceback (most recent call last):
...
TypeError: scale: the model file gives hyperparameter 'factor' (default 2.0) a Keras object Dense; it takes a number...
"""

from __future__ import annotations

import inspect
import types
from typing import Any

import keras

# Keras object families: a stored object must belong to its default's family.
_FAMILIES = (
    keras.initializers.Initializer,
    keras.regularizers.Regularizer,
    keras.constraints.Constraint,
    keras.layers.Layer,
    keras.losses.Loss,
    keras.metrics.Metric,
    keras.optimizers.Optimizer,
)
# What a hyperparameter without a telling default (None) may hold besides data.
_VALUE_FAMILIES = _FAMILIES[:3]

_MISSING = inspect.Parameter.empty


def validate_stored(layer_name: str, name: str, default: Any, stored: Any) -> Any:
    """The value a file's `stored` config gives hyperparameter `name`, or TypeError."""
    if isinstance(default, bool):
        if isinstance(stored, bool):
            return stored
        raise _refusal(layer_name, name, default, stored, "a bool")
    if isinstance(default, (int, float)):
        if isinstance(stored, (int, float)) and not isinstance(stored, bool):
            return stored
        raise _refusal(layer_name, name, default, stored, "a number")
    if isinstance(default, str):
        if isinstance(stored, str):
            return stored
        raise _refusal(layer_name, name, default, stored, "a string")
    if isinstance(default, (list, tuple, dict)):
        if isinstance(stored, (list, dict)) and _is_plain(stored):
            return tuple(stored) if isinstance(default, tuple) else stored
        raise _refusal(layer_name, name, default, stored, f"a {type(default).__name__} of plain data")
    if default is None or default is _MISSING:
        if _is_plain(stored):
            return stored
        families = _VALUE_FAMILIES
        wanted = "plain data, or a Keras initializer, regularizer or constraint"
    else:
        if stored is None or isinstance(stored, str):  # Keras identifiers ("relu")
            return stored
        if inspect.isfunction(default) or inspect.isbuiltin(default):
            families = None
            wanted = "a string, a Keras activation or a registered function"
        else:
            families = tuple(f for f in _FAMILIES if isinstance(default, f)) or (type(default),)
            wanted = f"a Keras {families[0].__name__.lower()}, its name, or None"
    if not _is_serialized_object(stored):
        raise _refusal(layer_name, name, default, stored, wanted)
    value = keras.saving.deserialize_keras_object(stored)
    if families is None:
        if _is_activation_or_registered(value):
            return value
    elif isinstance(value, families):
        return value
    raise _refusal(layer_name, name, default, stored, wanted)


def _is_activation_or_registered(value: Any) -> bool:
    """A Keras activation or a function the user registered; not any Keras
    API function (`keras.config.set_epsilon` changes the process)."""
    if not (inspect.isfunction(value) or inspect.isbuiltin(value)):
        return False
    name = getattr(value, "__name__", "")
    return getattr(keras.activations, name, None) is value or (">" in keras.saving.get_registered_name(value))


def _is_plain(value: Any, depth: int = 0) -> bool:
    if depth > 32:
        return False
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return not _is_serialized_object(value) and all(
            isinstance(key, str) and _is_plain(item, depth + 1) for key, item in value.items()
        )
    return False


def _is_serialized_object(value: Any) -> bool:
    return isinstance(value, dict) and "class_name" in value and "config" in value


def _describe(stored: Any) -> str:
    if _is_serialized_object(stored):
        return f"a Keras object {stored.get('class_name')!s:.60}"
    return f"{stored!r:.60} ({type(stored).__name__})"


def _refusal(layer_name, name, default, stored, wanted) -> TypeError:
    shown = "no default" if default is _MISSING else f"default {default!r:.40}"
    return TypeError(
        f"{layer_name}: the model file gives hyperparameter {name!r} ({shown}) "
        f"{_describe(stored)}; it takes {wanted}. The file was edited, or "
        "written by a different version of the layer."
    )


def check_given(layer_name: str, name: str, value: Any) -> Any:
    """A hyperparameter value given in code, normalized (NumPy scalars become
    Python numbers); refuses what a saved model could not restore safely.

    >>> check_given("scale", "factor", [1, 2])
    [1, 2]
    """
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return value.item()
    if isinstance(value, types.LambdaType) and value.__name__ == "<lambda>":
        raise TypeError(
            f"{layer_name}: hyperparameter {name!r} is a lambda, which a saved "
            "model can only restore by running its bytecode (refused in safe "
            "mode). Pass a named function registered with "
            "keras.saving.register_keras_serializable (or @keras_graft.loss / "
            "@keras_graft.metric), or a string."
        )
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(check_given(layer_name, name, v) for v in value)
    if isinstance(value, dict):
        return {k: check_given(layer_name, name, v) for k, v in value.items()}
    return value
