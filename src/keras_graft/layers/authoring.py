"""Keras layers, losses and metrics written as plain functions of TF ops.

`@keras_graft.layer` turns `f(ctx, inputs, **hyperparameters)` into a
registered `keras.layers.Layer` class. The function asks `ctx` for its weights
and state where it uses them; they are created once, when the layer is built:

```python
import keras
import tensorflow as tf
import keras_graft

@keras_graft.layer
def custom_matmul(ctx, x, units=3):
    kernel = ctx.weight("kernel", (x.shape[-1], units),
                        initializer="glorot_uniform")
    return tf.matmul(x, kernel)

inputs = keras.Input((5,))
model = keras.Model(inputs, keras.layers.Dense(1)(custom_matmul(units=3)(inputs)))
model.save("model.keras")
keras.saving.load_model("model.keras")   # safe mode, no custom_objects
```

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

import difflib
import functools
import inspect
import os
import sys
import types

import keras
import tensorflow as tf

from keras_graft import _compat, backends
from keras_graft.core import safety
from keras_graft._compat import AutocastScope, get_keras_mask
from keras_graft.layers.context import BridgedState, LayerContext, _BuildingScope, _creating_variable
from keras_graft.errors import DistributedStateError
from keras_graft.layers.hyperparameters import validate_stored

__all__ = ["FunctionLayer", "layer", "loss", "metric"]

#: Keyword arguments of `keras.layers.Layer` a generated layer accepts too.
LAYER_ARGUMENTS = ("name", "dtype", "trainable", "autocast", "activity_regularizer")

# Accepted and passed on to Keras, which warns that `Input(shape)` is preferred.
_LEGACY_ARGUMENTS = ("input_shape", "input_dim")

_RESERVED = frozenset(LAYER_ARGUMENTS + _LEGACY_ARGUMENTS) | {"training", "mask", "self"}


# ---------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------
# @layer
# ---------------------------------------------------------------------------
class _Signature:
    """A layer function's signature, split into inputs and hyperparameters."""

    def __init__(self, function):
        name = getattr(function, "__name__", repr(function))
        if isinstance(function, type) or not callable(function):
            raise TypeError(f"@keras_graft.layer decorates a function, got {function!r}.")
        if name == "<lambda>":
            raise TypeError(
                "@keras_graft.layer needs a named function defined with `def`: "
                "a lambda has no name to register and save the layer under."
            )
        params = list(inspect.signature(function).parameters.values())
        usage = (
            f"A layer function looks like `def {name}(ctx, x, units=3): ...`: "
            "the context, then the tensor inputs (no defaults), then the "
            "hyperparameters (with defaults, or keyword-only)."
        )
        positional = (inspect.Parameter.POSITIONAL_ONLY,
                      inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if not params or params[0].kind not in positional:
            raise TypeError(f"{name}: the first parameter must be the context `ctx`. {usage}")
        self.inputs: list[str] = []
        self.hyperparameters: list[inspect.Parameter] = []
        for param in params[1:]:
            if param.kind in (inspect.Parameter.VAR_POSITIONAL,
                              inspect.Parameter.VAR_KEYWORD):
                raise TypeError(
                    f"{name}: *{param.name} / **{param.name} are not supported: "
                    "every hyperparameter must be named so that get_config() "
                    f"can save it. {usage}"
                )
            if param.name in _RESERVED:
                hint = {"training": "read ctx.training", "mask": "read ctx.mask"}.get(
                    param.name, "it is a Keras layer argument")
                raise TypeError(
                    f"{name}: parameter {param.name!r} is reserved ({hint}); "
                    "rename it."
                )
            if param.kind in positional and param.default is param.empty:
                self.inputs.append(param.name)
            else:
                if param.kind is inspect.Parameter.POSITIONAL_ONLY:
                    raise TypeError(
                        f"{name}: hyperparameter {param.name!r} is positional-only; "
                        "hyperparameters are passed by name."
                    )
                self.hyperparameters.append(param)
        if not self.inputs:
            raise TypeError(f"{name}: no tensor input after `ctx`. {usage}")
        if len(self.inputs) > 1:
            for input_name in self.inputs:
                if f"{input_name}_mask" in self.names + self.inputs:
                    raise TypeError(
                        f"{name}: parameter {input_name}_mask is reserved (the "
                        f"mask of input {input_name!r} is "
                        f"ctx.masks[{input_name!r}]); rename it."
                    )
        self.function_name = name

    @property
    def names(self):
        return [p.name for p in self.hyperparameters]

    def construction(self) -> inspect.Signature:
        """The generated class's constructor signature (for help() and IDEs)."""
        params = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            if p.kind is inspect.Parameter.KEYWORD_ONLY
            else p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD)
            for p in self.hyperparameters
        ]
        layer_args = [
            inspect.Parameter(arg, inspect.Parameter.KEYWORD_ONLY, default=default)
            for arg, default in (("name", None), ("dtype", None), ("trainable", True),
                                 ("autocast", True), ("activity_regularizer", None))
            if arg not in self.names
        ]
        return inspect.Signature(params + layer_args)

    def methods(self) -> dict:
        """`call` and `build` with the parameter names Keras matches on.

        Keras reads them from the signatures: `call(self, x, training=None,
        mask=None)` and `build(self, input_shape)` for one input;
        `call(self, x, y, training=None, x_mask=None, y_mask=None)` and
        `build(self, x_shape, y_shape)` for several. The names are the
        function's own parameter names (identifiers, checked by Python).
        """
        inputs = self.inputs
        if len(inputs) == 1:
            masks = ["mask"]
            shapes = ["input_shape"]
        else:
            masks = [f"{n}_mask" for n in inputs]
            shapes = [f"{n}_shape" for n in inputs]
        call_params = ", ".join(
            inputs + ["training=None"] + [f"{m}=None" for m in masks])
        source = (
            f"def call(self, {call_params}):\n"
            f"    return self._graft_call(({', '.join(inputs)},), training,"
            f" ({', '.join(masks)},))\n"
            f"def build(self, {', '.join(shapes)}):\n"
            f"    return self._graft_build(({', '.join(shapes)},))\n"
        )
        namespace = {}
        exec(compile(source, f"<keras_graft.layer {self.function_name}>", "exec"),
             namespace)
        return {"call": namespace["call"], "build": namespace["build"]}


def _check_hyperparameter(layer_name, name, value):
    """Normalize a hyperparameter value; refuse what cannot be saved safely."""
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
        return type(value)(_check_hyperparameter(layer_name, name, v) for v in value)
    if isinstance(value, dict):
        return {k: _check_hyperparameter(layer_name, name, v) for k, v in value.items()}
    return value


def _is_shape(value) -> bool:
    return isinstance(value, (tuple, list, tf.TensorShape)) and all(
        d is None or isinstance(d, int) for d in value
    )


def _spec_structure(shape, dtype):
    """TensorSpecs mirroring an input: `dtype` is a string or a structure."""
    if isinstance(dtype, str):
        return tf.TensorSpec(tf.TensorShape(shape), tf.as_dtype(dtype))
    if isinstance(dtype, dict):
        return {k: _spec_structure(shape[k], d) for k, d in dtype.items()}
    return [_spec_structure(s, d) for s, d in zip(shape, dtype)]


def _dtype_structure(spec):
    if isinstance(spec, tf.TensorSpec):
        return spec.dtype.name
    if isinstance(spec, dict):
        return {k: _dtype_structure(v) for k, v in spec.items()}
    return [_dtype_structure(v) for v in spec]


def _shape_structure(spec):
    if isinstance(spec, tf.TensorSpec):
        return tuple(spec.shape.as_list())
    if isinstance(spec, dict):
        return {k: _shape_structure(v) for k, v in spec.items()}
    return [_shape_structure(v) for v in spec]


def _format_shapes(specs) -> str:
    shapes = [_shape_structure(s) for s in specs]
    return ", ".join(map(str, shapes))


class FunctionLayer(keras.layers.Layer):
    """Base class of the layers `@keras_graft.layer` makes; not used directly.

    `named_variables` maps the names given to `ctx.weight` / `ctx.state` to
    the variables; `function` is the decorated function.
    """

    _graft_function = None
    _graft_signature: _Signature = None
    _graft_supports_masking = False

    def __init__(self, *args, **kwargs):
        cls = type(self)
        signature = cls._graft_signature
        if signature is None:
            raise TypeError(
                "FunctionLayer is the base of the classes @keras_graft.layer "
                "makes; decorate a function instead of instantiating it."
            )
        fname = signature.function_name
        layer_kwargs = {k: kwargs.pop(k) for k in LAYER_ARGUMENTS + _LEGACY_ARGUMENTS
                        if k in kwargs}
        unknown = [k for k in kwargs if k not in signature.names]
        if unknown:
            valid = ", ".join(
                f"{p.name}={p.default!r}" if p.default is not p.empty else p.name
                for p in signature.hyperparameters
            ) or "(none)"
            close = difflib.get_close_matches(unknown[0], signature.names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise TypeError(
                f"{fname}() got an unexpected hyperparameter {unknown[0]!r}.{hint} "
                f"Its hyperparameters are: {valid}; and the Keras layer "
                f"arguments {', '.join(LAYER_ARGUMENTS)}."
            )
        try:
            bound = cls._graft_hyperparameter_signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(
                f"{fname}(): {error}. Its hyperparameters are: "
                f"{', '.join(signature.names) or '(none)'}."
            ) from None
        bound.apply_defaults()
        hyperparameters = {
            k: _check_hyperparameter(fname, k, v) for k, v in bound.arguments.items()
        }
        super().__init__(**layer_kwargs)
        if cls._graft_supports_masking:
            self.supports_masking = True
        # Plain attributes, kept out of Keras's tracking: the registry holds
        # variables that ctx.weight/ctx.state already tracked.
        object.__setattr__(self, "_graft_hyperparameters", hyperparameters)
        object.__setattr__(self, "_graft_registry", {})
        object.__setattr__(self, "_graft_pending_specs", None)
        object.__setattr__(self, "_graft_specs", None)
        object.__setattr__(self, "_graft_mask_specs", None)
        object.__setattr__(self, "_graft_bridge_caches", {})
        object.__setattr__(self, "_graft_build_outputs", None)

    # -- public --------------------------------------------------------------
    @property
    def hyperparameters(self) -> dict:
        """The hyperparameters this layer passes to its function."""
        return dict(self._graft_hyperparameters)

    @property
    def named_variables(self) -> dict:
        """`{name: variable}` for each `ctx.weight` and `ctx.state`."""
        return {name: var for name, (_, var) in self._graft_registry.items()}

    # -- config ----------------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        for name, value in self._graft_hyperparameters.items():
            config[name] = keras.saving.serialize_keras_object(value)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        signature = cls._graft_signature
        for parameter in signature.hyperparameters:
            if parameter.name in config:
                config[parameter.name] = validate_stored(
                    signature.function_name, parameter.name, parameter.default,
                    config[parameter.name],
                )
        return super().from_config(config)

    def get_build_config(self):
        config = super().get_build_config()
        if config is not None and self._graft_specs is not None:
            config["input_dtypes"] = [_dtype_structure(s) for s in self._graft_specs]
            config["input_masks"] = [
                None if m is None else m.shape.as_list() for m in self._graft_mask_specs
            ]
        return config

    def build_from_config(self, config):
        if config and "input_dtypes" in config:
            if "input_shape" in config:
                shapes = [config["input_shape"]]
            else:
                shapes = [config["shapes_dict"][f"{n}_shape"]
                          for n in self._graft_signature.inputs]
            specs = [_spec_structure(shape, dtype)
                     for shape, dtype in zip(shapes, config["input_dtypes"])]
            masks = [None if m is None else tf.TensorSpec(m, tf.bool)
                     for m in config.get("input_masks") or [None] * len(specs)]
            object.__setattr__(self, "_graft_pending_specs", (specs, masks))
        super().build_from_config(config)

    # -- build -----------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        safety.check_called_on_keras_tensors(self.name, args, kwargs)
        for name, value in zip(self._graft_signature.inputs, args):
            leaves = tf.nest.flatten(value)
            if not leaves or not all(hasattr(leaf, "shape") and hasattr(leaf, "dtype") for leaf in leaves):
                raise TypeError(
                    f"{self.name}: input {name!r} is {value!r:.60}; "
                    f"{self._graft_signature.function_name} is called on tensors "
                    "(or nested structures of them)."
                )
        if not self.built:
            # Keras builds from shapes only; record the dtypes (and masks)
            # too, so that the build trace sees the inputs the call will see.
            object.__setattr__(self, "_graft_pending_specs",
                               self._graft_specs_of_call(args, kwargs))
        return super().__call__(*args, **kwargs)

    def _graft_input_dtype(self, dtype) -> str:
        dtype = keras.backend.standardize_dtype(dtype)
        if self.autocast and keras.backend.is_float_dtype(dtype):
            return self.input_dtype
        return dtype

    def _graft_mask_names(self):
        names = self._graft_signature.inputs
        return ["mask"] if len(names) == 1 else [f"{n}_mask" for n in names]

    def _graft_specs_of_call(self, args, kwargs):
        """(input specs, mask specs) of a call's arguments, or None."""
        try:
            bound = _compat.call_signature(self).bind_partial(*args, **kwargs)
            values = [bound.arguments[n] for n in self._graft_signature.inputs]

            def spec(x):
                if not hasattr(x, "dtype"):
                    x = tf.convert_to_tensor(x)
                return tf.TensorSpec(tf.TensorShape(x.shape),
                                     self._graft_input_dtype(x.dtype))

            inputs = [tf.nest.map_structure(spec, v) for v in values]
            masks = []
            for value, mask_name in zip(values, self._graft_mask_names()):
                mask = bound.arguments.get(mask_name)
                if mask is None and not tf.nest.is_nested(value):
                    mask = get_keras_mask(value)
                masks.append(
                    tf.TensorSpec(tf.TensorShape(mask.shape), tf.bool)
                    if mask is not None and not tf.nest.is_nested(mask) else None
                )
            return inputs, masks
        except Exception:  # Keras reports bad call arguments itself
            return None

    def _graft_build(self, shapes):
        names = self._graft_signature.inputs
        pending = self._graft_pending_specs
        object.__setattr__(self, "_graft_pending_specs", None)
        if pending is not None and len(pending[0]) == len(names):
            specs, masks = pending
        else:
            default = self._graft_input_dtype("float32")

            def from_shape(shape):
                if shape is None:
                    raise ValueError(f"{self.name}: cannot build without input shapes.")
                if _is_shape(shape):
                    return tf.TensorSpec(tf.TensorShape(shape), default)
                if isinstance(shape, dict):
                    return {k: from_shape(v) for k, v in shape.items()}
                return [from_shape(s) for s in shape]

            specs = [from_shape(shape) for shape in shapes]
            masks = [None] * len(names)
        object.__setattr__(self, "_graft_specs", specs)
        object.__setattr__(self, "_graft_mask_specs", masks)
        self._graft_trace(specs, masks)

    def _graft_trace(self, specs, masks):
        """Run the function once on symbolic inputs, creating its variables.

        The trace runs in a scratch graph that is thrown away (as Keras does
        to infer output shapes); ctx.weight / ctx.state lift the creation of
        their variables out of it, into the context the layer lives in.
        """
        function = type(self)._graft_function
        hyperparameters = self._graft_hyperparameters
        names = self._graft_signature.inputs

        def refuse(next_creator, **kwargs):
            if _creating_variable():
                return next_creator(**kwargs)
            raise ValueError(
                f"{self.name}: the layer function created a variable "
                f"({kwargs.get('name') or 'unnamed'}) other than with ctx.weight "
                "or ctx.state, e.g. by building a Keras layer inside it. Such a "
                "variable would be created again on every call and never "
                "saved. Declare it with ctx.weight(...) / ctx.state(...), or "
                "compose Keras layers in a model or a Layer subclass."
            )

        def placeholder(spec):
            return tf.compat.v1.placeholder(spec.dtype, spec.shape)

        mixed = self.autocast and self.compute_dtype != self.variable_dtype and (
            keras.backend.is_float_dtype(self.compute_dtype))
        autocast = AutocastScope(self.compute_dtype) if mixed else AutocastScope(None)
        graph = tf.__internal__.FuncGraph(f"keras_graft_build_{self.name}")
        with graph.as_default(), autocast, _BuildingScope(), \
                tf.variable_creator_scope(refuse):
            inputs = tf.nest.map_structure(placeholder, specs)
            input_masks = [None if m is None else placeholder(m) for m in masks]
            ctx = LayerContext(self, training=False,
                               masks=dict(zip(names, input_masks)), building=True)
            outputs = self._graft_cast_outputs(function(ctx, *inputs, **hyperparameters))
        self._graft_refuse_distributed_state()
        # The call that built the layer asks Keras for its output spec next,
        # which would trace the function again on the same inputs; unless the
        # function tells building from calling.
        object.__setattr__(self, "_graft_build_outputs",
                           None if ctx.building_was_read else _dense_output_specs(outputs))

    def _graft_built_on(self) -> str:
        if self._graft_specs is None:
            return ""
        return f" (on inputs of shape {_format_shapes(self._graft_specs)})"

    def _graft_track_state(self, variable):
        # Assigning a Variable to an attribute is how Keras layers track it.
        setattr(self, f"_graft_state_{len(self._graft_registry)}", variable)

    # -- call ------------------------------------------------------------------
    def _graft_call(self, inputs, training, masks):
        masks = dict(zip(self._graft_signature.inputs, masks))
        if training is None:
            training = False
        if backends.backend() != "tensorflow":
            return self._graft_call_bridged(inputs, bool(training), masks)
        ctx = LayerContext(self, training=training, masks=masks)
        outputs = type(self)._graft_function(ctx, *inputs, **self._graft_hyperparameters)
        return self._graft_cast_outputs(outputs)

    def compute_output_spec(self, *args, **kwargs):
        if backends.backend() == "tensorflow":
            traced = self._graft_outputs_of_build(args, kwargs)
            if traced is not None:
                return traced
            return super().compute_output_spec(*args, **kwargs)
        # Other backends would trace `call` with their own symbolic arrays,
        # which TF ops do not take: trace the function in TensorFlow instead.
        inputs = args[: len(self._graft_signature.inputs)]
        graph = tf.Graph()
        with graph.as_default():
            def placeholder(tensor):
                return tf.compat.v1.placeholder(tf.as_dtype(tensor.dtype), tensor.shape)

            stand_ins = {}
            for name, (spec, _) in self._graft_registry.items():
                value = tf.compat.v1.placeholder(tf.as_dtype(spec["dtype"]), spec["shape"])
                stand_ins[name] = BridgedState(value) if spec["kind"] == "state" else value
            ctx = LayerContext(self, training=False, stand_ins=stand_ins)
            outputs = type(self)._graft_function(
                ctx, *tf.nest.map_structure(placeholder, inputs), **self._graft_hyperparameters
            )
        return tf.nest.map_structure(
            lambda value: _compat.KerasTensor(shape=tuple(value.shape), dtype=value.dtype.name),
            outputs,
        )

    def _graft_outputs_of_build(self, args, kwargs):
        """Fresh Keras tensors for the outputs the build trace found, when
        this is the building call itself: the same inputs and masks, not
        training. None otherwise (once used, or another call)."""
        outputs = self._graft_build_outputs
        object.__setattr__(self, "_graft_build_outputs", None)
        if outputs is None or self._graft_specs is None:
            return None
        try:
            bound = _compat.call_signature(self).bind(*args, **kwargs)
        except TypeError:
            return None
        arguments = bound.arguments
        if arguments.get("training"):
            return None
        names = self._graft_signature.inputs
        built_on = [tf.nest.flatten(spec) for spec in self._graft_specs]
        called_on = [tf.nest.flatten(arguments.get(name)) for name in names]
        masks = [arguments.get(name) for name in self._graft_mask_names()]
        if not (
            all(map(_same_specs, built_on, called_on))
            and all(map(_same_mask, self._graft_mask_specs, masks))
        ):
            return None
        return tf.nest.map_structure(
            lambda spec: _compat.KerasTensor(shape=tuple(spec.shape), dtype=spec.dtype.name), outputs
        )

    def _graft_refuse_distributed_state(self):
        """ctx.state under a Keras distribution (JAX, torch): refused, where
        the layer is built (or called, when the distribution came later)."""
        if (
            backends.backend() != "tensorflow"
            and keras.distribution.distribution() is not None
            and any(spec["kind"] == "state" for spec, _ in self._graft_registry.values())
        ):
            raise DistributedStateError(
                f"{self.name}: ctx.state updates combine across replicas only "
                "under tf.distribute (the tensorflow backend); a Keras "
                f"distribution on {backends.backend()} would apply them once for the "
                "whole global batch. Train this model on the tensorflow backend, or "
                "without a distribution."
            )

    def _graft_call_bridged(self, inputs, training, masks):
        """The call on the JAX or torch backend: the function runs in
        TensorFlow on the variables' values, and state comes back as values."""
        self._graft_refuse_distributed_state()
        names = list(self._graft_registry)
        variables = [self._graft_registry[n][1] for n in names]
        is_state = [self._graft_registry[n][0]["kind"] == "state" for n in names]
        present_masks = {k: m for k, m in masks.items() if m is not None}
        function = type(self)._graft_function

        def in_tensorflow(packed):
            inputs_tf, masks_tf, values = packed
            stand_ins = {
                n: BridgedState(v) if state else v
                for n, v, state in zip(names, values, is_state)
            }
            ctx = LayerContext(self, training=training, masks=masks_tf, stand_ins=stand_ins)
            outputs = function(ctx, *inputs_tf, **self._graft_hyperparameters)
            new_state = [stand_ins[n].value for n, state in zip(names, is_state) if state]
            return outputs, new_state, list(ctx._losses)

        cache = self._graft_bridge_caches.setdefault(training, {})
        values = [backends.snapshot(v.value) if state else v.value
                  for v, state in zip(variables, is_state)]
        outputs, new_state, losses = backends.run(
            in_tensorflow, (list(inputs), present_masks, values), cache=cache, name=self.name,
        )
        for variable, value in zip(
            (v for v, state in zip(variables, is_state) if state), new_state
        ):
            # The plain Keras assignment: StateVariable's own combines replicas in TF.
            keras.Variable.assign(variable, value)
        for loss in losses:
            self.add_loss(loss)
        return outputs

    def _graft_cast_outputs(self, outputs):
        compute = tf.as_dtype(self.compute_dtype)

        def cast(value):
            if isinstance(value, keras.Variable):
                value = tf.convert_to_tensor(value)
            if (
                self.autocast
                and compute.is_floating
                and isinstance(value, (tf.Tensor, tf.SparseTensor, tf.RaggedTensor))
                and value.dtype.is_floating
                and value.dtype != compute
            ):
                value = tf.cast(value, compute)
            return value

        return tf.nest.map_structure(cast, outputs)


def _dense_output_specs(outputs):
    """The structure of `outputs` with a `tf.TensorSpec` for each tensor, or
    None unless every leaf is a dense tensor."""
    leaves = tf.nest.flatten(outputs)
    if not leaves or not all(isinstance(leaf, tf.Tensor) for leaf in leaves):
        return None
    return tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), outputs)


def _same_specs(specs, tensors) -> bool:
    return len(specs) == len(tensors) and all(
        isinstance(tensor, _compat.KerasTensor)
        and not tensor.sparse
        and not tensor.ragged
        and tuple(tensor.shape) == tuple(spec.shape.as_list())
        and tensor.dtype == spec.dtype.name
        for spec, tensor in zip(specs, tensors)
    )


def _same_mask(spec, mask) -> bool:
    if spec is None or mask is None:
        return spec is None and mask is None
    return isinstance(mask, _compat.KerasTensor) and tuple(mask.shape) == tuple(spec.shape.as_list())


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
    signature = _Signature(function)

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

    ```python
    @keras_graft.layer
    def custom_matmul(ctx, x, units=3):
        kernel = ctx.weight("kernel", (x.shape[-1], units),
                            initializer="glorot_uniform")
        return tf.matmul(x, kernel)

    y = custom_matmul(units=3)(tf.ones((2, 5)))     # shape (2, 3)
    ```
    """
    return _decorator(
        function,
        {"package": package, "name": name, "supports_masking": supports_masking},
        _make_layer,
    )


# ---------------------------------------------------------------------------
# @loss, @metric
# ---------------------------------------------------------------------------
def _make_objective(function, package=None, name=None, *, kind):
    fname = getattr(function, "__name__", repr(function))
    if isinstance(function, type) or fname == "<lambda>":
        raise TypeError(
            f"@keras_graft.{kind} decorates a function defined with `def`, "
            f"got {function!r}."
        )
    params = list(inspect.signature(function).parameters.values())
    positional = [p for p in params if p.kind in (
        inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    variadic = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
    required = [p for p in params if p.default is p.empty and p.kind not in (
        inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
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
            lambda pair: function(*pair, *args, **kwargs), [y_true, y_pred],
            cache=bridge_cache if not (args or kwargs) else {}, name=fname,
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

    ```python
    @keras_graft.loss
    def log_cosh(y_true, y_pred):
        error = y_pred - tf.cast(y_true, y_pred.dtype)
        return tf.reduce_mean(tf.math.log(tf.cosh(error)), axis=-1)

    model.compile("adam", loss=log_cosh)
    ```
    """
    return _decorator(function, {"package": package, "name": name},
                      lambda f, **o: _make_objective(f, kind="loss", **o))


def metric(function=None, *, package=None, name=None):
    """Register a metric `f(y_true, y_pred)` made of TF ops for safe reloading.

    Returns the registered function (as `keras_graft.loss` does); pass it to `model.compile(metrics=[...])`,
    where Keras averages it over the examples seen.

    Example:

    ```python
    @keras_graft.metric
    def within_10_percent(y_true, y_pred):
        y_true = tf.cast(y_true, y_pred.dtype)
        close = tf.abs(y_pred - y_true) <= 0.1 * tf.abs(y_true)
        return tf.reduce_mean(tf.cast(close, y_pred.dtype), axis=-1)
    ```
    """
    return _decorator(function, {"package": package, "name": name},
                      lambda f, **o: _make_objective(f, kind="metric", **o))
