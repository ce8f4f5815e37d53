"""`TFOp` and `Op`: layers that call one TensorFlow op (or a registered function).

`TFOp` is what `import keras_graft` inserts when a TF op is called on Keras
tensors; `Op` is the same layer made by hand, e.g. for `keras.Sequential`.
Both store the op by name and its other arguments as data, so models that use
them save to `.keras` and load back in safe mode.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

import keras
import tensorflow as tf
from keras import tree

from keras_graft import _compat, backends
from keras_graft.core import inference, op_names, safety
from keras_graft.core.arguments import WHOLE_INPUTS, ArgumentTemplate, check_keywords, holds_keras_tensor
from keras_graft.errors import malformed


@keras.saving.register_keras_serializable(package="keras_graft")
class TFOp(keras.layers.Layer):
    """Calls a TensorFlow op with Keras tensors and stored constant arguments.

    Created by `import keras_graft` whenever a TF op is called on Keras
    tensors; rarely built by hand (see `keras_graft.Op` for that).

    Example:

    >>> import keras, tensorflow as tf, keras_graft
    >>> x = keras.Input((10,))
    >>> values, indices = tf.math.top_k(x, k=3)
    >>> indices.dtype, indices.shape
    ('int32', (None, 3))
    >>> type(keras.Model(x, values).layers[-1]).__name__
    'TFOp'

    Args:
        function: A public TensorFlow function, or one registered with
            `@keras_graft.op`.
        arguments: The call's arguments, an `ArgumentTemplate` or its config.
        **kwargs: Base layer arguments (`name`, ...).
    """

    def __init__(self, function: Callable, arguments: ArgumentTemplate | dict, **kwargs):
        self.op_name = op_names.require_name(function)
        op_names.check_allowed(self.op_name)
        self.function = op_names.unwrap(function)
        if isinstance(arguments, dict):
            arguments = ArgumentTemplate(arguments)
        self.arguments = arguments
        if "name" not in kwargs or kwargs["name"] is None:
            kwargs["name"] = _compat.unique_layer_name(op_names.display_name(function))
        kwargs["autocast"] = False
        super().__init__(**kwargs)
        # Made from a file being loaded in safe mode: traced, never run, and
        # within a budget (`safety.trace_budget`); `op_names.resolve` gave it
        # (and the functions among its arguments) their argument bounds.
        self.untrusted = _compat.deserializing_untrusted()
        # Output ranks only running the op told (see `inference.trace`).
        self.output_ranks = None
        # The backend bridge's compiled forms, per input signature.
        self._bridge_cache = {}
        # An op decides its own dtypes: no input casting, no mixed precision.
        _compat.skip_input_conversion(self)
        self.built = True

    def __setattr__(self, name, value):
        # An op layer owns no variables, layers or other trackable objects, so
        # Keras' tracking of each attribute (half the cost of constructing
        # one) would find nothing. Only on TensorFlow, whose layer base has no
        # other attribute hooks (torch's `nn.Module` and JAX's NNX do).
        if _ON_TENSORFLOW:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def __call__(self, *args, **kwargs):
        # Eager TF tensors (torch tensors on torch): just the op. Keras' layer
        # call (building, masks, autocasting, name scopes) does nothing for an
        # op layer, at a cost larger than most ops'. Graph tracing (and JAX,
        # whose arrays are traced) keeps Keras' path and its name scopes. A
        # file's node calls a layer on Keras tensors only.
        safety.check_called_on_keras_tensors(self.name, args, kwargs)
        if len(args) == 1 and kwargs.keys() <= {"training"}:
            if _ON_TENSORFLOW and _eager_tensors(args[0]):
                return self.call_in_tf(args[0])
            if _ON_TORCH and _torch_tensors(args[0]):
                return self.call(args[0])
        return super().__call__(*args, **kwargs)

    def _obj_type(self):
        # Keras' saving walks a layer's attributes for nested saveables; an
        # op layer's hold none (`_compat.saveable_without_attributes`).
        return _compat.saveable_without_attributes()

    @classmethod
    def wrap(cls, function: Callable, args, kwargs):
        """Applies `function(*args, **kwargs)` to the Keras tensors among its args.

        Returns Keras tensors in the structure the op returns.
        """
        kwargs = dict(kwargs)
        name = kwargs.pop("name", None)
        # Refuse a disallowed op before looking at its arguments: for
        # `tf.numpy_function(np.sin, ...)` the op is the problem, not `np.sin`.
        op_names.check_allowed(op_names.require_name(function))
        check_keywords(function, kwargs)
        template, tensors = ArgumentTemplate.capture(
            args, kwargs, where=op_names.display_name(function), function=function
        )
        layer_name = _compat.unique_layer_name(name) if isinstance(name, str) else None
        layer = cls(function, template, name=layer_name)
        return layer(tensors[0] if len(tensors) == 1 else tensors)

    def call(self, inputs):
        if backends.backend() != "tensorflow":
            return backends.run(self.call_in_tf, inputs, cache=self._bridge_cache, name=self.name)
        return self.call_in_tf(inputs)

    def call_in_tf(self, inputs):
        """The op on TensorFlow tensors."""
        args, kwargs = self.arguments.fill(inputs)
        return self.function(*args, **kwargs)

    def call_in_graph(self, inputs):
        """`call` inside a v1 graph: constant tensors become graph constants."""
        args, kwargs = inference.in_graph(self.arguments.fill(inputs))
        return self.function(*args, **kwargs)

    def compute_output_spec(self, inputs):
        audit = op_names.needs_audit(self.op_name)
        key = inference.signatures.key(
            self.function,
            self.arguments.key,
            inputs,
            audit=audit,
            untrusted=self.untrusted,
            stored_ranks=None if self.output_ranks is None else tuple(self.output_ranks),
            backend=backends.backend(),
            floatx=keras.config.floatx(),
        )
        cached = inference.signatures.get(key) if key is not None else None
        if cached is not None:
            outputs, ranks = cached
        else:
            outputs, ranks = inference.trace(
                self.call_in_graph,
                inputs,
                display_name=self.op_name,
                audit=audit,
                untrusted=self.untrusted,
                layer_name=self.name,
                stored_ranks=self.output_ranks,
            )
            # A second trace (on JAX), of a file's op too: within the same budget.
            where = f"{self.op_name} (layer {self.name!r})"
            with safety.trace_budget(where) if self.untrusted else contextlib.nullcontext():
                backends.check_static_shapes(self.name, self.call_in_graph, inputs, outputs)
        # Also for cached outputs: it reads a setting no key holds (JAX's 64-bit mode).
        backends.check_portable(self.name, inputs, outputs)
        if cached is None and key is not None:
            inference.signatures.put(key, outputs, ranks)
        if ranks is not None:
            self.output_ranks = ranks
        return outputs

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        config.update({"op": self.op_name, "arguments": self.arguments.get_config()})
        module = op_names.defining_module(self.op_name)
        if module is not None:  # named when a loading process lacks it
            config["op_module"] = module
        if self.output_ranks is not None:
            config["output_ranks"] = self.output_ranks
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        function = op_names.resolve(config.pop("op", None), config.pop("op_module", None))
        config.pop("dtype", None)
        output_ranks = _stored_ranks(config.pop("output_ranks", None))
        arguments = config.pop("arguments", None)
        if not isinstance(arguments, dict):
            raise malformed("An op layer's stored `arguments` must be a dict")
        template = ArgumentTemplate(arguments)
        check_keywords(function, template.get_config()["kwargs"], layer=config.get("name"))
        layer = cls(function, template, **config)
        layer.output_ranks = output_ranks
        return layer


@keras.saving.register_keras_serializable(package="keras_graft")
class Op(TFOp):
    """A layer that calls `function(inputs, *args, **kwargs)`.

    The explicit form of what `import keras_graft` does automatically, handy in
    `keras.Sequential`. `function` is a public TensorFlow function or one
    registered with `@keras_graft.op`; `args` and `kwargs` are constants
    (numbers, strings, lists, dtypes, arrays, constant tensors...).

    Example:

    >>> import keras, tensorflow as tf, keras_graft
    >>> model = keras.Sequential([
    ...     keras.Input((16000,)),
    ...     keras_graft.Op(tf.signal.stft, frame_length=400, frame_step=160),
    ...     keras_graft.Op(tf.math.abs),
    ... ])
    >>> model.output_shape
    (None, 98, 257)

    Args:
        function: The op to call.
        *args: Constant positional arguments after the inputs.
        name: The layer's name (default: the op's name).
        **kwargs: Constant keyword arguments of the op.
    """

    def __init__(self, function: Callable, *args, name: str | None = None, **kwargs):
        where = op_names.display_name(function)
        check_keywords(function, kwargs)
        template, tensors = ArgumentTemplate.capture(
            (WHOLE_INPUTS, *args), kwargs, where=where, function=function
        )
        if tensors:
            raise TypeError(
                f"keras_graft.Op({where}, ...) got Keras tensors among its constant "
                "arguments. Call the op on them directly, "
                f"`{where}(...)`, or pass them as the layer's inputs."
            )
        super().__init__(function, template, name=name)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        function = op_names.resolve(config.pop("op"), config.pop("op_module", None))
        args, kwargs = ArgumentTemplate(config.pop("arguments")).fill(None)
        if not args or args[0] is not None:
            raise malformed("An Op layer's stored arguments must start with its inputs")
        check_keywords(function, kwargs, layer=config.get("name"))
        layer = cls(function, *args[1:], name=config.get("name"), **kwargs)
        layer.output_ranks = _stored_ranks(config.get("output_ranks"))
        return layer


def _eager_tensors(inputs) -> bool:
    return tf.executing_eagerly() and all(
        tf.is_tensor(t) and not isinstance(t, _compat.KerasTensor) for t in tree.flatten(inputs)
    )


def _torch_tensors(inputs) -> bool:
    return all(isinstance(t, torch.Tensor) for t in tf.nest.flatten(inputs))


def _stored_ranks(ranks):
    """Output ranks from a config: a list of small non-negative ints, or None."""
    if ranks is None:
        return None
    if not isinstance(ranks, list) or not all(type(r) is int and 0 <= r <= safety.MAX_RANK for r in ranks):
        raise malformed(
            f"An op layer's stored `output_ranks` must be a list of ranks from 0 "
            f"to {safety.MAX_RANK}; got {ranks!r:.80}"
        )
    return ranks


_ON_TENSORFLOW = keras.backend.backend() == "tensorflow"
_ON_TORCH = keras.backend.backend() == "torch"
if _ON_TORCH:
    import torch


def op(function: Callable | None = None, *, package: str = "Custom", name: str | None = None):
    """Registers a Python function made of TF ops as a serializable op.

    Called on Keras tensors, the function becomes one op layer in the model,
    stored under `"package>name"` (never as bytecode); called on real tensors,
    it is just the function.

    Example:

    >>> import keras, tensorflow as tf, keras_graft
    >>> @keras_graft.op(package="docs")
    ... def soft_clip(x, limit=1.0):
    ...     return limit * tf.math.tanh(x / limit)
    >>> y = soft_clip(keras.Input((4,)), limit=2.0)
    >>> y.shape
    (None, 4)

    The module that defines the function must be imported before a model
    that uses it is loaded.
    """
    if function is None:
        return functools.partial(op, package=package, name=name)
    if not callable(function):
        raise TypeError(f"@keras_graft.op decorates functions; got {function!r}.")
    function = op_names.unwrap(function)
    key = op_names.register(function, package, name)

    @functools.wraps(function)
    def dispatching(*args, **kwargs):
        if holds_keras_tensor((args, kwargs)):
            return TFOp.wrap(function, args, kwargs)
        return function(*args, **kwargs)

    dispatching.graft_name = key
    return dispatching
