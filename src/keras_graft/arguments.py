"""Argument templates: an op call's arguments with the Keras tensors taken out.

Keras 3 layers take only tensors as call arguments, so an op layer keeps every
other argument itself and stores it in its config. `ArgumentTemplate.capture`
splits `tf.clip_by_value(x, -1.0, 1.0)` into the tensors `[x]` and a template
`(<tensor 0>, -1.0, 1.0)`; `fill` puts real tensors back in at call time.

The stored form is plain JSON data, tagged with `"__graft__"` where JSON has
no native form. It describes constants, and functions only by the name an op
layer could have (`tf.math.sin`, `my_project>row_fn`), resolved on load
through `keras_graft.registry.resolve` and so through the same allow-list:
there is no tag for code, so a forged file cannot smuggle any in.

Stored values:
    None, bool, int, float (inf and nan too), str, bytes, slice, Ellipsis,
    lists, tuples, dicts, `tf.DType`, `tf.TensorShape`, NumPy arrays and
    scalars, and eager (constant) tensors, with their dtype and shape; and
    public TF ops and `@keras_graft.op` functions (for `tf.map_fn(fn, x)`).
"""

from __future__ import annotations

import base64
import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import tensorflow as tf
from keras import tree

from keras_graft import registry
from keras_graft._compat import KerasTensor

TAG = "__graft__"


@dataclass(frozen=True)
class TensorSlot:
    """Stands for the `index`-th Keras tensor input of an op layer."""

    index: int


class WholeInputs:
    """Stands for the whole `inputs` structure an `Op` layer is called on."""

    def __repr__(self):
        return "<inputs>"


WHOLE_INPUTS = WholeInputs()


class UnstorableArgumentError(TypeError):
    """An op argument that a model file cannot hold."""


def _encode_array(kind: str, array: np.ndarray) -> dict:
    dtype = tf.as_dtype(array.dtype) if array.dtype.kind not in "OSU" else tf.string
    if dtype == tf.string:
        values = np.vectorize(_bytes_to_text, otypes=[object])(array).tolist()
    else:
        values = array.tolist()
    return {
        TAG: kind,
        "dtype": dtype.name,
        "shape": list(array.shape),
        "values": values,
    }


def _bytes_to_text(value) -> str:
    raw = value if isinstance(value, bytes) else str(value).encode()
    return base64.b64encode(raw).decode("ascii")


def _decode_array(config: dict) -> np.ndarray:
    dtype = tf.as_dtype(config["dtype"])
    shape = tuple(config["shape"])
    if dtype == tf.string:
        values = np.array(config["values"], dtype=object)
        decode = np.vectorize(base64.b64decode, otypes=[object])
        return (decode(values) if values.size else values).reshape(shape)
    return np.array(config["values"], dtype=dtype.as_numpy_dtype).reshape(shape)


class _Encoder:
    """Turns one call's arguments into stored form, collecting Keras tensors."""

    def __init__(self, where: str):
        self.where = where
        self.tensors: list[KerasTensor] = []
        self._slot_of: dict[int, int] = {}

    def encode(self, value: Any, path: str) -> Any:
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {TAG: "float", "value": repr(value)}
        if isinstance(value, KerasTensor):
            return {TAG: "input", "index": self._slot(value)}
        if value is WHOLE_INPUTS:
            return {TAG: "inputs"}
        if isinstance(value, list):
            return [self.encode(item, f"{path}[{i}]") for i, item in enumerate(value)]
        if isinstance(value, tuple) and not hasattr(value, "_fields"):
            items = [self.encode(item, f"{path}[{i}]") for i, item in enumerate(value)]
            return {TAG: "tuple", "items": items}
        if isinstance(value, dict):
            items = [
                [self.encode(key, f"{path} key {key!r}"), self.encode(item, f"{path}[{key!r}]")]
                for key, item in value.items()
            ]
            return {TAG: "dict", "items": items}
        if isinstance(value, slice):
            return {
                TAG: "slice",
                "start": self.encode(value.start, f"{path}.start"),
                "stop": self.encode(value.stop, f"{path}.stop"),
                "step": self.encode(value.step, f"{path}.step"),
            }
        if value is Ellipsis:
            return {TAG: "ellipsis"}
        if isinstance(value, bytes):
            return {TAG: "bytes", "base64": _bytes_to_text(value)}
        if isinstance(value, tf.DType):
            return {TAG: "dtype", "name": value.name}
        if isinstance(value, tf.TensorShape):
            dims = None if value.rank is None else value.as_list()
            return {TAG: "shape", "dims": dims}
        if isinstance(value, (np.ndarray, np.generic)):
            return _encode_array("array", np.asarray(value))
        if callable(value) and not isinstance(value, type) and registry.name_of(value):
            return {TAG: "function", "name": registry.name_of(value)}
        if isinstance(value, (tf.Variable, tf.__internal__.CompositeTensor)) or _is_keras_variable(value):
            raise self._refuse(value, path)
        if tf.is_tensor(value):
            if hasattr(value, "numpy") and tf.executing_eagerly():
                return _encode_array("tensor", value.numpy())
            raise self._refuse(value, path)
        raise self._refuse(value, path)

    def _slot(self, tensor: KerasTensor) -> int:
        key = id(tensor)
        if key not in self._slot_of:
            self._slot_of[key] = len(self.tensors)
            self.tensors.append(tensor)
        return self._slot_of[key]

    def _refuse(self, value: Any, path: str) -> UnstorableArgumentError:
        if isinstance(value, tf.Variable) or _is_keras_variable(value):
            return UnstorableArgumentError(
                f"{self.where} reads the variable {getattr(value, 'name', value)!r} "
                f"(argument {path}), but no layer tracks it: it would be neither "
                "trained nor saved with the model. Create the variable in a layer "
                "instead, e.g. with `@keras_graft.layer` and `ctx.weight(...)`."
            )
        if callable(value) and not tf.is_tensor(value):
            name = getattr(value, "__qualname__", type(value).__name__)
            return UnstorableArgumentError(
                f"{self.where} got the Python function {name} as argument {path}. "
                "A model file can name a function, never store its code: pass a "
                "public TensorFlow op (e.g. `tf.math.sin`) or a function decorated "
                "with `@keras_graft.op`, e.g.\n"
                "    @keras_graft.op(package=\"my_project\")\n"
                "    def row_fn(row):\n"
                "        return ...\n"
                f"and pass `row_fn` as {path}."
            )
        if tf.is_tensor(value):
            return UnstorableArgumentError(
                f"{self.where} got a symbolic TensorFlow tensor {value!r} as argument "
                f"{path}. Only Keras tensors (from `keras.Input` or layers) and "
                "constants can be arguments of an op in a Keras model: pass the "
                "value through `keras.Input` or compute it from one."
            )
        return UnstorableArgumentError(
            f"{self.where} cannot store argument {path} of type "
            f"{type(value).__module__}.{type(value).__qualname__} ({value!r:.80}) "
            "in a model file. Arguments must be Keras tensors or constants "
            "(None, numbers, strings, slices, lists/tuples/dicts of these, "
            "tf.DType, tf.TensorShape, NumPy arrays, constant tensors). "
            "Compute such values inside a function registered with "
            "`@keras_graft.op` and call that instead."
        )


def _positional_names(function, count: int) -> list[str]:
    """Parameter names for `count` positional arguments, `#i` where unknown."""
    names = []
    try:
        parameters = inspect.signature(function).parameters.values() if function else ()
    except (TypeError, ValueError):
        parameters = ()
    for parameter in parameters:
        if parameter.kind is parameter.VAR_POSITIONAL:
            break
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            names.append(repr(parameter.name))
    return (names + [f"#{i}" for i in range(len(names), count)])[:count]


def _is_keras_variable(value: Any) -> bool:
    import keras

    return isinstance(value, keras.Variable)


def _decode(config: Any) -> Any:
    if config is None or isinstance(config, (bool, int, float, str)):
        return config
    if isinstance(config, list):
        return [_decode(item) for item in config]
    if not isinstance(config, dict) or TAG not in config:
        raise ValueError(
            f"Unrecognized stored op argument {config!r:.120}: the model file "
            "was not written by keras-graft or was edited by hand."
        )
    kind = config[TAG]
    if kind == "input":
        return TensorSlot(int(config["index"]))
    if kind == "inputs":
        return WHOLE_INPUTS
    if kind == "tuple":
        return tuple(_decode(item) for item in config["items"])
    if kind == "dict":
        return {_decode(key): _decode(item) for key, item in config["items"]}
    if kind == "slice":
        return slice(_decode(config["start"]), _decode(config["stop"]), _decode(config["step"]))
    if kind == "ellipsis":
        return Ellipsis
    if kind == "float":
        return float(config["value"])
    if kind == "bytes":
        return base64.b64decode(config["base64"])
    if kind == "dtype":
        return tf.as_dtype(config["name"])
    if kind == "shape":
        return tf.TensorShape(config["dims"])
    if kind == "array":
        array = _decode_array(config)
        return array[()] if array.ndim == 0 else array
    if kind == "tensor":
        return tf.constant(_decode_array(config), dtype=config["dtype"])
    if kind == "function":
        return registry.resolve(config["name"])
    raise ValueError(
        f"Unknown stored op argument kind {kind!r}: the model file was written "
        "by a newer keras-graft, or edited by hand."
    )


def _fill(value: Any, inputs: Any, flat_inputs: list) -> Any:
    if isinstance(value, TensorSlot):
        return flat_inputs[value.index]
    if value is WHOLE_INPUTS:
        return inputs
    if isinstance(value, list):
        return [_fill(item, inputs, flat_inputs) for item in value]
    if isinstance(value, tuple):
        return tuple(_fill(item, inputs, flat_inputs) for item in value)
    if isinstance(value, dict):
        return {key: _fill(item, inputs, flat_inputs) for key, item in value.items()}
    if isinstance(value, slice):
        return slice(
            _fill(value.start, inputs, flat_inputs),
            _fill(value.stop, inputs, flat_inputs),
            _fill(value.step, inputs, flat_inputs),
        )
    return value


def contains(value: Any, is_wanted: Callable[[Any], bool]) -> bool:
    """Whether `is_wanted` holds for `value` or anything nested in it.

    Walks lists, tuples, dict values and slice bounds: everywhere an op
    argument can hold a tensor.
    """
    if is_wanted(value):
        return True
    if isinstance(value, (list, tuple)):
        return any(contains(item, is_wanted) for item in value)
    if isinstance(value, dict):
        return any(contains(item, is_wanted) for item in value.values())
    if isinstance(value, slice):
        return any(contains(part, is_wanted) for part in (value.start, value.stop, value.step))
    return False


def _is_input_marker(value: Any) -> bool:
    return isinstance(value, TensorSlot) or value is WHOLE_INPUTS


class ArgumentTemplate:
    """The positional and keyword arguments of one op call, minus its inputs.

    Example:

    >>> import keras, tensorflow as tf
    >>> x = keras.Input((10,))
    >>> template, tensors = ArgumentTemplate.capture((x, -1.0, 1.0), {}, where="tf.clip_by_value")
    >>> tensors == [x], template.get_config()["args"][1:]
    (True, [-1.0, 1.0])
    """

    def __init__(self, config: dict):
        self._config = {"args": config.get("args", []), "kwargs": config.get("kwargs", {})}
        stored_args, stored_kwargs = self._config["args"], self._config["kwargs"]
        if not isinstance(stored_args, list) or not isinstance(stored_kwargs, dict):
            raise ValueError(
                "Stored op arguments must be a list and a dict of names; got "
                f"{stored_args!r:.80} and {stored_kwargs!r:.80}."
            )
        args = _decode(stored_args)
        kwargs = {str(name): _decode(value) for name, value in stored_kwargs.items()}
        # Arguments that hold no input are the same object on every call.
        self._args = [(contains(a, _is_input_marker), a) for a in args]
        self._kwargs = [(name, contains(v, _is_input_marker), v) for name, v in kwargs.items()]

    @classmethod
    def capture(
        cls, args, kwargs, *, where: str, function=None
    ) -> tuple[ArgumentTemplate, list[KerasTensor]]:
        """Splits a call's arguments into a template and its Keras tensors.

        Raises `UnstorableArgumentError` naming the first argument that no
        model file could hold (by its parameter name when `function` is
        given), so the problem shows where the op is called.
        """
        encoder = _Encoder(where)
        names = _positional_names(function, len(args))
        config = {
            "args": [encoder.encode(a, names[i]) for i, a in enumerate(args)],
            "kwargs": {
                name: encoder.encode(value, repr(name)) for name, value in kwargs.items()
            },
        }
        return cls(config), encoder.tensors

    def fill(self, inputs) -> tuple[list, dict]:
        """The call's arguments with `inputs` put back where the template holds them."""
        flat_inputs = tree.flatten(inputs)
        args = [_fill(a, inputs, flat_inputs) if holds else a for holds, a in self._args]
        kwargs = {
            name: _fill(v, inputs, flat_inputs) if holds else v
            for name, holds, v in self._kwargs
        }
        return args, kwargs

    def get_config(self) -> dict:
        return {"args": self._config["args"], "kwargs": self._config["kwargs"]}

    def __eq__(self, other):
        return isinstance(other, ArgumentTemplate) and other.get_config() == self.get_config()

    __hash__ = None
