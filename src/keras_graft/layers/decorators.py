"""`@keras_graft.layer`, `@keras_graft.loss`, `@keras_graft.metric`: Keras layers,
losses and metrics written as plain functions of TF ops.

`@keras_graft.layer` turns `f(ctx, inputs, **hyperparameters)` into a
registered `keras.layers.Layer` class. The function asks `ctx` for its weights
and state where it uses them; they are created once, when the layer is built:

>>> import os, tempfile, keras, tensorflow as tf, keras_graft
>>> @keras_graft.layer(package="docs")
... def custom_matmul(ctx, x, units=3):
...     kernel = ctx.weight("kernel", (x.shape[-1], units),
...                         initializer="glorot_uniform")
...     return tf.matmul(x, kernel)
>>> inputs = keras.Input((5,))
>>> model = keras.Model(inputs, keras.layers.Dense(1)(custom_matmul(units=3)(inputs)))
>>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
>>> model.save(path)
>>> keras.saving.load_model(path).layers[1].hyperparameters   # safe mode, no custom_objects
{'units': 3}

The generated class:

- is named after the function and registered with
  `keras.saving.register_keras_serializable` as `"<package>><name>"`
  (package: the defining module's last name, e.g. `"layers"` for
  `my_project.layers`; the script's file name for `__main__`). A saved model
  finds it again by that name once its module is imported; nothing is ever
  loaded from bytecode;
- takes the function's hyperparameters (its parameters with defaults, and its
  keyword-only parameters) at construction, checks them, and returns them
  from `get_config()`; Keras layer arguments (`name`, `dtype`, `trainable`,
  `autocast`, `activity_regularizer`) are accepted too;
- takes the function's tensor parameters (the ones after `ctx` without a
  default) as call arguments: `f(ctx, x, y, units=3)` is called `layer(x, y)`;
- builds by tracing the function once, symbolically, on the input shapes and
  dtypes (also when a saved model is loaded), so all weights and state exist
  before weights are loaded, in functional and Sequential models, eager calls,
  `tf.function` and `jit_compile=True`;
- follows the Keras dtype policy: floating inputs are cast to the compute
  dtype, weights are stored in the variable dtype and read in the compute
  dtype, floating outputs come out in the compute dtype.

`@keras_graft.loss` and `@keras_graft.metric` register functions
`(y_true, y_pred)` made of TF ops, so a compiled model that uses them reloads,
compiled, in safe mode.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys

import keras

from keras_graft import backends
from keras_graft.layers.function_layer import FunctionLayer
from keras_graft.layers.signature import LayerSignature

__all__ = ["layer", "loss", "metric"]


def _default_package(module_name) -> str:
    """The last component of the defining module's name.

    `my_project.layers` -> `"layers"`. A script run directly (`__main__`) uses
    its file name, so `python train.py` and `import train` register the same
    names and files saved by one load in the other.
    """
    if module_name in ("__main__", None):  # None: defined by exec()
        path = getattr(sys.modules.get("__main__"), "__file__", None)
        if path:
            return os.path.splitext(os.path.basename(path))[0]
        return "__main__"
    return module_name.rsplit(".", 1)[-1]


def _definition(obj):
    """Where `obj` (a function or generated layer class) was defined."""
    target = getattr(obj, "_graft_function", None) or obj
    return (getattr(target, "__module__", None), getattr(target, "__qualname__", None))


def _register(obj, package, name, what):
    if package is not None and (not isinstance(package, str) or ">" in package):
        raise ValueError(f"package must be a string without '>', got {package!r}.")
    if name is not None and (not isinstance(name, str) or ">" in name or not name):
        raise ValueError(f"name must be a non-empty string without '>', got {name!r}.")
    package = package or _default_package(obj.__module__)
    name = name or obj.__name__
    registered = f"{package}>{name}"
    previous = keras.saving.get_custom_objects().get(registered)
    # Re-running a definition (a notebook cell, importlib.reload) replaces it;
    # two different definitions under one name would load the wrong code.
    if previous is not None and _definition(previous) != _definition(obj):
        module, qualname = _definition(previous)
        raise ValueError(
            f"Cannot register {what} {registered!r}: that name is already "
            f"registered to {module}.{qualname}. Saved models find objects by "
            f"this name, so it must be unique: pass name=... or package=..., "
            f"e.g. @keras_graft.{what}(package={obj.__module__!r})."
        )
    keras.saving.register_keras_serializable(package=package, name=name)(obj)
    return registered


def _decorator(function, options, make):
    """Support both `@decorator` and `@decorator(**options)`."""
    if function is None:
        return lambda f: make(f, **options)
    if not callable(function):
        raise TypeError(
            f"Expected a function to decorate, got {function!r}. Options are "
            "keyword-only: @keras_graft.layer(package=..., name=...)."
        )
    return make(function, **options)


class _ClassSignature:
    """`__signature__` for the class only: `inspect.signature(cls)` shows the
    hyperparameters, while instances keep their `__call__` signature."""

    def __init__(self, signature):
        self.signature = signature

    def __get__(self, instance, owner=None):
        if instance is not None:
            raise AttributeError("__signature__")
        return self.signature


def _make_layer(function, package=None, name=None, supports_masking=False):
    signature = LayerSignature(function)

    construction = signature.construction()
    hyperparameter_signature = inspect.Signature(
        [p for p in construction.parameters.values() if p.name in signature.names]
    )
    doc = inspect.getdoc(function) or ""
    namespace = {
        "__module__": function.__module__,
        "__qualname__": function.__qualname__,
        "__doc__": (
            f"Keras layer made by @keras_graft.layer from `{signature.function_name}`."
            + (f"\n\n{doc}" if doc else "")
        ),
        "__signature__": _ClassSignature(construction),
        **signature.methods(),
        "function": staticmethod(function),
        "_graft_function": staticmethod(function),
        "_graft_signature": signature,
        "_graft_supports_masking": bool(supports_masking),
        "_graft_hyperparameter_signature": hyperparameter_signature,
    }
    cls = type(function.__name__, (FunctionLayer,), namespace)
    registered = _register(cls, package, name, "layer")
    cls.registered_name = registered
    return cls


def layer(function=None, *, package=None, name=None, supports_masking=False):
    """Make a registered Keras `Layer` class from `f(ctx, inputs, **hyperparameters)`.

    Args:
        function: `def f(ctx, x, [y, ...], hyperparameter=default, ...)`.
            `ctx` is a `keras_graft.LayerContext`; `x`, `y`... (the
            parameters without defaults) are the call's tensor inputs; the
            rest are hyperparameters, saved in `get_config()`.
        package: the registration package; default: the last component of
            the function's module name (the script's name for `__main__`).
        name: the registration name; default: the function's name.
        supports_masking: True to pass the (first) input's mask on to the
            output unchanged, like Keras layers that preserve the time axis.

    Returns:
        The layer class, named after the function. Instantiate it with the
        hyperparameters and call it like any layer.

    Example:

    >>> import tensorflow as tf, keras_graft
    >>> @keras_graft.layer(package="docs")
    ... def custom_matmul(ctx, x, units=3):
    ...     kernel = ctx.weight("kernel", (x.shape[-1], units),
    ...                         initializer="glorot_uniform")
    ...     return tf.matmul(x, kernel)
    >>> custom_matmul(units=3)(tf.ones((2, 5))).shape
    TensorShape([2, 3])
    """
    return _decorator(
        function,
        {"package": package, "name": name, "supports_masking": supports_masking},
        _make_layer,
    )


def _make_objective(function, package=None, name=None, *, kind):
    fname = getattr(function, "__name__", repr(function))
    if isinstance(function, type) or fname == "<lambda>":
        raise TypeError(f"@keras_graft.{kind} decorates a function defined with `def`, got {function!r}.")
    params = list(inspect.signature(function).parameters.values())
    positional = [
        p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    variadic = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
    required = [
        p
        for p in params
        if p.default is p.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if (len(positional) < 2 and not variadic) or len(required) > 2:
        raise TypeError(
            f"@keras_graft.{kind}: {fname} must take (y_true, y_pred) and "
            f"return one value per example (Keras averages them); its signature "
            f"is {fname}{inspect.signature(function)}."
        )
    bridge_cache: dict = {}

    @functools.wraps(function)
    def objective(y_true, y_pred, *args, **kwargs):
        if backends.backend() == "tensorflow":
            return function(y_true, y_pred, *args, **kwargs)
        # On JAX and torch the TF ops run through the backend's bridge, whose
        # compiled forms hold the extra arguments of the call they were made for.
        return backends.run(
            lambda pair: function(*pair, *args, **kwargs),
            [y_true, y_pred],
            cache=bridge_cache if not (args or kwargs) else {},
            name=fname,
        )

    _register(objective, package, name, kind)
    return objective


def loss(function=None, *, package=None, name=None):
    """Register a loss `f(y_true, y_pred)` made of TF ops for safe reloading.

    Returns the registered function (the original behind `__wrapped__`; on
    the JAX and torch backends it runs the TF ops through the backend's
    bridge); pass it to `model.compile(loss=...)`. A model
    compiled with it and saved reloads compiled in safe mode, once the module
    defining it has been imported.

    Example:

    >>> import keras, tensorflow as tf, keras_graft
    >>> @keras_graft.loss(package="docs")
    ... def log_cosh(y_true, y_pred):
    ...     error = y_pred - tf.cast(y_true, y_pred.dtype)
    ...     return tf.reduce_mean(tf.math.log(tf.cosh(error)), axis=-1)
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile("adam", loss=log_cosh)
    >>> keras.saving.get_registered_name(log_cosh)
    'docs>log_cosh'
    """
    return _decorator(
        function, {"package": package, "name": name}, lambda f, **o: _make_objective(f, kind="loss", **o)
    )


def metric(function=None, *, package=None, name=None):
    """Register a metric `f(y_true, y_pred)` made of TF ops for safe reloading.

    Returns the registered function (as `keras_graft.loss` does); pass it to `model.compile(metrics=[...])`,
    where Keras averages it over the examples seen.

    Example:

    >>> import keras, tensorflow as tf, keras_graft
    >>> @keras_graft.metric(package="docs")
    ... def within_10_percent(y_true, y_pred):
    ...     y_true = tf.cast(y_true, y_pred.dtype)
    ...     close = tf.abs(y_pred - y_true) <= 0.1 * tf.abs(y_true)
    ...     return tf.reduce_mean(tf.cast(close, y_pred.dtype), axis=-1)
    >>> float(within_10_percent(tf.constant([[1.0]]), tf.constant([[1.05]]))[0])
    1.0
    """
    return _decorator(
        function, {"package": package, "name": name}, lambda f, **o: _make_objective(f, kind="metric", **o)
    )
