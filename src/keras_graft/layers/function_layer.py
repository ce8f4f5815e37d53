"""`FunctionLayer`: the Keras layer behind every `@keras_graft.layer` class.

It binds the hyperparameters (`__init__`, `get_config`/`from_config`), builds
by tracing the function once on the input specs (`build`), and calls it: in
TensorFlow directly, or through the backend's bridge on JAX and torch
(`keras_graft.layers.bridged`). Everything it keeps beside Keras' own
attributes lives in one `FunctionLayerState`.

>>> import tensorflow as tf, keras_graft
>>> @keras_graft.layer(package="docs")
... def shift(ctx, x, by=1.0):
...     return x + by
>>> layer = shift(by=2.0)
>>> isinstance(layer, FunctionLayer), layer.hyperparameters
(True, {'by': 2.0})
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from keras_graft import _compat, backends
from keras_graft._compat import AutocastScope, get_keras_mask
from keras_graft.core import safety
from keras_graft.errors import UnexpectedKeywordError, did_you_mean
from keras_graft.layers import bridged
from keras_graft.layers.context import LayerContext
from keras_graft.layers.hyperparameters import check_given, validate_stored
from keras_graft.layers.signature import (
    LAYER_ARGUMENTS,
    LEGACY_ARGUMENTS,
    LayerSignature,
)
from keras_graft.layers.state import BuildingScope, is_creating_variable
from keras_graft.layers.variables import LayerVariables

__all__ = ["FunctionLayer", "FunctionLayerState"]


@dataclasses.dataclass
class FunctionLayerState:
    """What a `FunctionLayer` keeps beside Keras' attributes (kept out of Keras'
    tracking: its variables are tracked where `ctx.weight`/`ctx.state` made them)."""

    hyperparameters: dict
    variables: LayerVariables
    # (input specs, mask specs) of the call about to build the layer: Keras
    # builds from shapes only, the trace needs the dtypes and masks too.
    pending_specs: tuple | None = None
    specs: list | None = None  # the input specs the layer was built on
    mask_specs: list | None = None
    # The build trace's output specs, for the building call's output spec.
    build_outputs: object = None
    bridge_caches: dict = dataclasses.field(default_factory=dict)  # per `training`


class FunctionLayer(keras.layers.Layer):
    """Base class of the layers `@keras_graft.layer` makes; not used directly.

    `named_variables` maps the names given to `ctx.weight` / `ctx.state` to
    the variables; `function` is the decorated function.
    """

    _graft_function = None
    _graft_signature: LayerSignature = None
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
        layer_kwargs = {k: kwargs.pop(k) for k in LAYER_ARGUMENTS + LEGACY_ARGUMENTS if k in kwargs}
        unknown = [k for k in kwargs if k not in signature.names]
        if unknown:
            valid = (
                ", ".join(
                    f"{p.name}={p.default!r}" if p.default is not p.empty else p.name
                    for p in signature.hyperparameters
                )
                or "(none)"
            )
            raise UnexpectedKeywordError(
                f"{fname}() got an unexpected hyperparameter {unknown[0]!r}."
                f"{did_you_mean(unknown[0], signature.names)} "
                f"Its hyperparameters are: {valid}; and the Keras layer "
                f"arguments {', '.join(LAYER_ARGUMENTS)}."
            )
        try:
            bound = cls._graft_hyperparameter_signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(
                f"{fname}(): {error}. Its hyperparameters are: {', '.join(signature.names) or '(none)'}."
            ) from None
        bound.apply_defaults()
        hyperparameters = {k: check_given(fname, k, v) for k, v in bound.arguments.items()}
        super().__init__(**layer_kwargs)
        if cls._graft_supports_masking:
            self.supports_masking = True
        variables = LayerVariables(track_state=self._graft_track_state)
        object.__setattr__(self, "_graft", FunctionLayerState(hyperparameters, variables))

    # -- public --------------------------------------------------------------
    @property
    def hyperparameters(self) -> dict:
        """The hyperparameters this layer passes to its function."""
        return dict(self._graft.hyperparameters)

    @property
    def named_variables(self) -> dict:
        """`{name: variable}` for each `ctx.weight` and `ctx.state`."""
        return self._graft.variables.variables()

    # -- config ----------------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        for name, value in self._graft.hyperparameters.items():
            config[name] = keras.saving.serialize_keras_object(value)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        signature = cls._graft_signature
        for parameter in signature.hyperparameters:
            if parameter.name in config:
                config[parameter.name] = validate_stored(
                    signature.function_name,
                    parameter.name,
                    parameter.default,
                    config[parameter.name],
                )
        return super().from_config(config)

    def get_build_config(self):
        config = super().get_build_config()
        state = self._graft
        if config is not None and state.specs is not None:
            config["input_dtypes"] = [_dtype_structure(s) for s in state.specs]
            config["input_masks"] = [None if m is None else m.shape.as_list() for m in state.mask_specs]
        return config

    def build_from_config(self, config):
        if config and "input_dtypes" in config:
            if "input_shape" in config:
                shapes = [config["input_shape"]]
            else:
                shapes = [config["shapes_dict"][f"{n}_shape"] for n in self._graft_signature.inputs]
            specs = [_spec_structure(shape, dtype) for shape, dtype in zip(shapes, config["input_dtypes"])]
            masks = [
                None if m is None else tf.TensorSpec(m, tf.bool)
                for m in config.get("input_masks") or [None] * len(specs)
            ]
            self._graft.pending_specs = (specs, masks)
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
            self._graft.pending_specs = self._graft_specs_of_call(args, kwargs)
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
                return tf.TensorSpec(tf.TensorShape(x.shape), self._graft_input_dtype(x.dtype))

            inputs = [tf.nest.map_structure(spec, v) for v in values]
            masks = []
            for value, mask_name in zip(values, self._graft_mask_names()):
                mask = bound.arguments.get(mask_name)
                if mask is None and not tf.nest.is_nested(value):
                    mask = get_keras_mask(value)
                masks.append(
                    tf.TensorSpec(tf.TensorShape(mask.shape), tf.bool)
                    if mask is not None and not tf.nest.is_nested(mask)
                    else None
                )
            return inputs, masks
        except Exception:  # Keras reports bad call arguments itself
            return None

    def _graft_build(self, shapes):
        state = self._graft
        names = self._graft_signature.inputs
        pending, state.pending_specs = state.pending_specs, None
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
        state.specs, state.mask_specs = specs, masks
        state.variables.built_on = f" (on inputs of shape {_format_shapes(specs)})"
        self._graft_trace(specs, masks)

    def _graft_trace(self, specs, masks):
        """Run the function once on symbolic inputs, creating its variables.

        The trace runs in a scratch graph that is thrown away (as Keras does
        to infer output shapes); ctx.weight / ctx.state lift the creation of
        their variables out of it, into the context the layer lives in.
        """
        function = type(self)._graft_function
        state = self._graft
        names = self._graft_signature.inputs

        def refuse(next_creator, **kwargs):
            if is_creating_variable():
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

        mixed = (
            self.autocast
            and self.compute_dtype != self.variable_dtype
            and (keras.backend.is_float_dtype(self.compute_dtype))
        )
        autocast = AutocastScope(self.compute_dtype) if mixed else AutocastScope(None)
        graph = _compat.function_graph(f"keras_graft_build_{self.name}")
        with graph.as_default(), autocast, BuildingScope(), tf.variable_creator_scope(refuse):
            inputs = tf.nest.map_structure(placeholder, specs)
            input_masks = [None if m is None else placeholder(m) for m in masks]
            ctx = LayerContext(
                self, state.variables, training=False, masks=dict(zip(names, input_masks)), building=True
            )
            outputs = self._graft_cast_outputs(function(ctx, *inputs, **state.hyperparameters))
        bridged.refuse_distributed_state(self, state)
        # The call that built the layer asks Keras for its output spec next,
        # which would trace the function again on the same inputs; unless the
        # function tells building from calling.
        state.build_outputs = None if ctx.building_was_read else _dense_output_specs(outputs)

    def _graft_track_state(self, index, variable):
        # Assigning a variable to an attribute is how Keras layers track it
        # (ctx.weight's come from add_weight, tracked already).
        setattr(self, f"_graft_state_{index}", variable)

    # -- call ------------------------------------------------------------------
    def _graft_call(self, inputs, training, masks):
        masks = dict(zip(self._graft_signature.inputs, masks))
        if training is None:
            training = False
        if backends.backend() != "tensorflow":
            return bridged.call(self, self._graft, type(self)._graft_function, inputs, bool(training), masks)
        ctx = LayerContext(self, self._graft.variables, training=training, masks=masks)
        outputs = type(self)._graft_function(ctx, *inputs, **self._graft.hyperparameters)
        return self._graft_cast_outputs(outputs)

    def compute_output_spec(self, *args, **kwargs):
        if backends.backend() == "tensorflow":
            traced = self._graft_outputs_of_build(args, kwargs)
            if traced is not None:
                return traced
            return super().compute_output_spec(*args, **kwargs)
        inputs = args[: len(self._graft_signature.inputs)]
        return bridged.output_spec(self, self._graft, type(self)._graft_function, inputs)

    def _graft_outputs_of_build(self, args, kwargs):
        """Fresh Keras tensors for the outputs the build trace found, when
        this is the building call itself: the same inputs and masks, not
        training. None otherwise (once used, or another call)."""
        state = self._graft
        outputs, state.build_outputs = state.build_outputs, None
        if outputs is None or state.specs is None:
            return None
        try:
            bound = _compat.call_signature(self).bind(*args, **kwargs)
        except TypeError:
            return None
        arguments = bound.arguments
        if arguments.get("training"):
            return None
        names = self._graft_signature.inputs
        built_on = [tf.nest.flatten(spec) for spec in state.specs]
        called_on = [tf.nest.flatten(arguments.get(name)) for name in names]
        masks = [arguments.get(name) for name in self._graft_mask_names()]
        if not (all(map(_same_specs, built_on, called_on)) and all(map(_same_mask, state.mask_specs, masks))):
            return None
        return tf.nest.map_structure(
            lambda spec: _compat.KerasTensor(shape=tuple(spec.shape), dtype=spec.dtype.name), outputs
        )

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
    return ", ".join(str(_shape_structure(s)) for s in specs)


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
