"""Argument templates: an op call's arguments with the Keras tensors taken out.

Keras 3 layers take only tensors as call arguments, so an op layer keeps every
other argument itself and stores it in its config. `ArgumentTemplate.capture`
splits `tf.clip_by_value(x, -1.0, 1.0)` into the tensors `[x]` and a template
`(<tensor 0>, -1.0, 1.0)`; `fill` puts real tensors back in at call time.

The stored form is plain JSON data, tagged with `"__graft__"` where JSON has
no native form. It describes constants, and functions only by the name an op
layer could have (`tf.math.sin`, `my_project>row_fn`), resolved on load
through `keras_graft.core.op_names.resolve` and so through the same allow-list:
there is no tag for code, so a forged file cannot smuggle any in.

Stored values:
    None, bool, int, float (inf and nan too), str, bytes, slice, Ellipsis,
    lists, tuples, dicts, `tf.DType`, `tf.TensorShape`, NumPy arrays and
    scalars, and eager (constant) tensors, with their dtype and shape; and
    public TF ops and `@keras_graft.op` functions (for `tf.map_fn(fn, x)`).
"""

from __future__ import annotations

import base64
import binascii
import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf
from keras import tree

from keras_graft import _compat
from keras_graft._compat import KerasTensor
from keras_graft.core import op_names, safety
from keras_graft.errors import UnexpectedKeywordError, UnstorableArgumentError, did_you_mean, malformed

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


# Dtypes a stored constant may have: values, never handles (`resource`,
# `variant`) that only TensorFlow itself can make.
_VALUE_DTYPES = frozenset(
    tf.as_dtype(name).name
    for name in (
        "bool",
        "string",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "bfloat16",
        "float32",
        "float64",
        "complex64",
        "complex128",
        "qint8",
        "quint8",
        "qint16",
        "quint16",
        "qint32",
    )
)

# Deeper nesting than this in a stored argument is refused, not recursed into.
MAX_NESTING = 64

# TensorFlow's limit on the rank of a tensor.
MAX_RANK = safety.MAX_RANK

# The most values a stored constant may hold (64 MB of float32).
MAX_STORED_ELEMENTS = 1 << 24

# The most list, tuple and dict items one op's stored arguments may hold:
# some ops' Python code does work per item while it is traced (`polyval`).
MAX_STORED_ITEMS = 4096


def _value_dtype(name) -> tf.DType:
    if not isinstance(name, str) or name not in _VALUE_DTYPES:
        raise ValueError(
            f"A stored op argument has dtype {name!r:.40}; constants may only have "
            f"the value dtypes {', '.join(sorted(_VALUE_DTYPES))}."
        )
    return tf.as_dtype(name)


def _is_shape(dims, *, allow_unknown: bool) -> bool:
    """Whether `dims` is a list of at most `MAX_RANK` sizes (None where allowed)."""
    return (
        isinstance(dims, list)
        and len(dims) <= MAX_RANK
        and all((d is None and allow_unknown) or (type(d) is int and d >= 0) for d in dims)
    )


def _decode_array(config: dict) -> np.ndarray:
    dtype = _value_dtype(config["dtype"])
    shape = config["shape"]
    if not _is_shape(shape, allow_unknown=False):
        raise ValueError(f"A stored array's shape must be a list of sizes; got {shape!r:.80}.")
    shape = tuple(shape)
    if math.prod(shape) > MAX_STORED_ELEMENTS:
        raise ValueError(
            f"A stored array must list at most {MAX_STORED_ELEMENTS} values; keep "
            "larger constants in a layer's weights (`ctx.weight` in a "
            "`@keras_graft.layer`)."
        )
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
        self.items = 0
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
        if isinstance(value, (list, tuple, dict)):
            self._count_items(value, path)
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
            return _encode_array("array", self._storable(np.asarray(value), path))
        if callable(value) and not isinstance(value, type) and op_names.name_of(value):
            return {TAG: "function", "name": op_names.name_of(value)}
        if isinstance(value, tf.Variable) or _compat.is_composite_tensor(value) or _is_keras_variable(value):
            raise self._refuse(value, path)
        if tf.is_tensor(value):
            if hasattr(value, "numpy") and tf.executing_eagerly():
                return _encode_array("tensor", self._storable(value.numpy(), path))
            raise self._refuse(value, path)
        raise self._refuse(value, path)

    def _count_items(self, value, path: str) -> None:
        self.items += len(value)
        if self.items > MAX_STORED_ITEMS:
            raise UnstorableArgumentError(
                f"{self.where}: the arguments hold more than {MAX_STORED_ITEMS} list, "
                f"tuple and dict items (at argument {path}); a model file stores "
                "larger constants as arrays. Pass a NumPy array instead."
            )

    def _storable(self, array: np.ndarray, path: str) -> np.ndarray:
        if array.size > MAX_STORED_ELEMENTS:
            raise UnstorableArgumentError(
                f"{self.where}: argument {path} is a constant of {array.size} values; "
                f"a model file holds constants of at most {MAX_STORED_ELEMENTS}. Keep "
                "it in a layer's weights instead (`ctx.weight` in a `@keras_graft.layer`)."
            )
        return array

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
            if not _takes_functions(path):
                return UnstorableArgumentError(
                    f"{self.where} got the Python function {name} as argument {path}, "
                    "which takes tensors or constants, not functions. Call the "
                    "function on the tensors first and pass its result, or put the "
                    "whole computation in a function decorated with `@keras_graft.op`."
                )
            return UnstorableArgumentError(
                f"{self.where} got the Python function {name} as argument {path}. "
                "A model file can name a function, never store its code: pass a "
                "public TensorFlow op (e.g. `tf.math.sin`) or a function decorated "
                "with `@keras_graft.op`, e.g.\n"
                '    @keras_graft.op(package="my_project")\n'
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


# Parameter names TensorFlow's higher-order functions give their function
# arguments (`tf.map_fn(fn, ...)`, `tf.cond(pred, true_fn, false_fn)`,
# `tf.while_loop(cond, body, ...)`).
_FUNCTION_PARAMETERS = ("fn", "fns", "f", "func", "function", "body", "cond")


def _takes_functions(path: str) -> bool:
    """Whether the argument at `path` is a function parameter of the op,
    judged by its name (`'fn'`); unnamed positions (`#1`) might be."""
    name = path.split("[", 1)[0].strip("'")
    return name.startswith("#") or name.rsplit("_", 1)[-1] in _FUNCTION_PARAMETERS


def _positional_names(function, count: int) -> list[str]:
    """Parameter names for `count` positional arguments, `#i` where unknown."""
    names = list(_per_function(_parameter_names, function))
    return (names + [f"#{i}" for i in range(len(names), count)])[:count]


def check_keywords(function, keywords, *, layer: str | None = None) -> None:
    """Refuses a keyword argument that `function` does not take, naming the op,
    its parameters and the closest one; and `layer`, the op layer of a model
    file that stores the call. A function with `**kwargs` takes any keyword.

    >>> import tensorflow as tf
    >>> check_keywords(tf.signal.stft, ["frame_lenght", "frame_step"])
    Traceback (most recent call last):
    ...
    keras_graft.errors.UnexpectedKeywordError: tf.signal.stft got an unexpected keyword argument 'frame_lenght'. Did you mean 'frame_length'? Its parameters are: signals, frame_length, frame_step, fft_length, window_fn, pad_end, name.
    """
    function = op_names.unwrap(function)
    parameters = _per_function(_keyword_parameters, function)
    if parameters is None:
        return
    unknown = next((keyword for keyword in keywords if keyword not in parameters[0]), None)
    if unknown is None:
        return
    where = op_names.display_name(function)
    problem = f"an unexpected keyword argument {unknown!r}.{did_you_mean(unknown, parameters[0])}"
    listed = f"Its parameters are: {', '.join(parameters[1]) or '(none)'}."
    if layer is None:
        raise UnexpectedKeywordError(f"{where} got {problem} {listed}")
    raise UnexpectedKeywordError(
        f"The op layer {layer!r} calls {where} with {problem} {listed} The model "
        f"file was edited, or written where {where} takes {unknown!r} (another "
        "version of TensorFlow, or of the op's module)."
    )


def _per_function(cached: Callable, function):
    """`cached(function)`, computed afresh for an unhashable callable (not worth caching)."""
    try:
        return cached(function)
    except TypeError:
        return cached.__wrapped__(function)


def _signature_parameters(function) -> list[inspect.Parameter] | None:
    """`function`'s parameters; None where it has no signature."""
    try:
        return list(inspect.signature(function).parameters.values()) if function else None
    except (TypeError, ValueError):
        return None


@functools.lru_cache(maxsize=1024)
def _keyword_parameters(function) -> tuple[frozenset[str], tuple[str, ...]] | None:
    """(The keywords `function` takes, all its parameter names), or None where
    it takes any keyword (`**kwargs`) or has no signature."""
    parameters = _signature_parameters(function)
    if parameters is None or any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    keywords = frozenset(p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return keywords, tuple(p.name for p in parameters if p.kind is not p.VAR_POSITIONAL)


@functools.lru_cache(maxsize=1024)
def _parameter_names(function) -> tuple[str, ...]:
    """The quoted names of `function`'s positional parameters."""
    parameters = _signature_parameters(function) or ()
    names = []
    for parameter in parameters:
        if parameter.kind is parameter.VAR_POSITIONAL:
            break
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            names.append(repr(parameter.name))
    return tuple(names)


def _is_keras_variable(value: Any) -> bool:
    import keras

    return isinstance(value, keras.Variable)


def _decode(config: Any, depth: int = 0, budget: list | None = None) -> Any:
    """The value a stored argument stands for; ValueError for anything malformed.

    `budget` (a one-item list) counts down the items of lists, tuples and
    dicts that one op's arguments may hold in all (`MAX_STORED_ITEMS`).
    """
    budget = [MAX_STORED_ITEMS] if budget is None else budget
    if depth > MAX_NESTING:
        raise malformed(f"A stored op argument is nested more than {MAX_NESTING} levels deep")
    try:
        return _decode_value(config, depth + 1, budget)
    except (KeyError, IndexError, TypeError, AttributeError, OverflowError, binascii.Error) as error:
        raise malformed(
            f"Malformed stored op argument {config!r:.120} ({type(error).__name__}: {error!s:.80})"
        ) from None


def _spend(budget: list, items) -> None:
    budget[0] -= len(items)
    if budget[0] < 0:
        raise malformed(
            f"The stored op arguments hold more than {MAX_STORED_ITEMS} list, tuple "
            "and dict items; larger constants are stored as arrays"
        )


def _decode_value(config: Any, depth: int, budget: list) -> Any:
    if config is None or isinstance(config, (bool, int, float, str)):
        return config
    if isinstance(config, list):
        _spend(budget, config)
        return [_decode(item, depth, budget) for item in config]
    if not isinstance(config, dict) or TAG not in config:
        raise malformed(f"Unrecognized stored op argument {config!r:.120}")
    kind = config[TAG]
    if kind == "input":
        index = config["index"]
        if type(index) is not int or index < 0:
            raise ValueError(f"A stored input index must be a non-negative int; got {index!r:.40}.")
        return TensorSlot(index)
    if kind == "inputs":
        return WHOLE_INPUTS
    if kind == "tuple":
        _spend(budget, config["items"])
        return tuple(_decode(item, depth, budget) for item in config["items"])
    if kind == "dict":
        _spend(budget, config["items"])
        return {_decode(key, depth, budget): _decode(item, depth, budget) for key, item in config["items"]}
    if kind == "slice":
        return slice(*(_decode(config[part], depth, budget) for part in ("start", "stop", "step")))
    if kind == "ellipsis":
        return Ellipsis
    if kind == "float":
        if config["value"] not in ("inf", "-inf", "nan"):
            raise ValueError(f"A stored special float must be inf, -inf or nan; got {config['value']!r:.40}.")
        return float(config["value"])
    if kind == "bytes":
        return base64.b64decode(config["base64"], validate=True)
    if kind == "dtype":
        return _value_dtype(config["name"])
    if kind == "shape":
        dims = config["dims"]
        if dims is not None and not _is_shape(dims, allow_unknown=True):
            raise ValueError(f"A stored shape must be a list of sizes or None; got {dims!r:.80}.")
        return tf.TensorShape(dims)
    if kind == "array":
        array = _decode_array(config)
        return array[()] if array.ndim == 0 else array
    if kind == "tensor":
        return tf.constant(_decode_array(config))
    if kind == "function":
        return op_names.resolve(config["name"])
    raise malformed(f"Unknown stored op argument kind {kind!r:.40}", newer=True)


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


def nested_values(value: Any):
    """`value` and everything nested in it: list and tuple items, dict values
    and slice bounds (everywhere an op argument can hold a tensor)."""
    yield value
    if isinstance(value, (list, tuple)):
        items = value
    elif isinstance(value, dict):
        items = value.values()
    elif isinstance(value, slice):
        items = (value.start, value.stop, value.step)
    else:
        return
    for item in items:
        yield from nested_values(item)


def contains(value: Any, is_wanted: Callable[[Any], bool]) -> bool:
    """Whether `is_wanted` holds for `value` or anything nested in it."""
    return any(is_wanted(item) for item in nested_values(value))


def holds_keras_tensor(value) -> bool:
    """Whether a Keras tensor sits anywhere in `value` (lists, dicts, slices...)."""
    return contains(value, lambda item: isinstance(item, KerasTensor))


def _is_input_marker(value: Any) -> bool:
    return isinstance(value, TensorSlot) or value is WHOLE_INPUTS


# The largest stored arguments `ArgumentTemplate.key` describes: scalars,
# short strings and a few hundred values, as most op calls have.
MAX_KEY_SIZE = 1024
MAX_KEY_CHARACTERS = 4096


def _within(config: Any, budget: list) -> bool:
    """Whether `config` has at most `budget[0]` leaves (long strings count
    once per 64 characters); stops counting as soon as it has more."""
    if isinstance(config, dict):
        return all(_within(value, budget) for value in config.values())
    if isinstance(config, list):
        return all(_within(item, budget) for item in config)
    budget[0] -= 1 + (len(config) // 64 if isinstance(config, str) else 0)
    return budget[0] >= 0


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
        budget = [MAX_STORED_ITEMS]
        args = _decode(stored_args, budget=budget)
        _spend(budget, stored_kwargs)
        kwargs = {str(name): _decode(value, budget=budget) for name, value in stored_kwargs.items()}
        self._slots = {item.index for item in nested_values((args, kwargs)) if isinstance(item, TensorSlot)}
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
            "kwargs": {name: encoder.encode(value, repr(name)) for name, value in kwargs.items()},
        }
        return cls(config), encoder.tensors

    def fill(self, inputs) -> tuple[list, dict]:
        """The call's arguments with `inputs` put back where the template holds them."""
        flat_inputs = tree.flatten(inputs)
        if self._slots and max(self._slots) >= len(flat_inputs):
            raise malformed(
                f"The stored op arguments use input #{max(self._slots)}, but the "
                f"layer was called on {len(flat_inputs)} tensor(s)"
            )
        args = [_fill(a, inputs, flat_inputs) if holds else a for holds, a in self._args]
        kwargs = {name: _fill(v, inputs, flat_inputs) if holds else v for name, holds, v in self._kwargs}
        return args, kwargs

    def get_config(self) -> dict:
        return {"args": self._config["args"], "kwargs": self._config["kwargs"]}

    @functools.cached_property
    def key(self) -> tuple | None:
        """A hashable form of the stored arguments, equal for equal templates;
        None for large ones (big constant arrays or strings), which are not
        worth keeping a copy of to compare."""
        if not _within(self._config, [MAX_KEY_SIZE]):
            return None
        text = repr(self._config)
        if len(text) > MAX_KEY_CHARACTERS:
            return None
        # Functions are stored by name; a name can be registered again (a
        # notebook cell run twice), so the functions themselves are keyed too.
        return text, self.functions()

    def functions(self) -> tuple:
        """The functions among the stored arguments (`tf.map_fn(fn, ...)`'s `fn`)."""
        return tuple(
            value
            for value in nested_values((self._args, self._kwargs))
            if callable(value) and not isinstance(value, type)
        )

    def __eq__(self, other):
        return isinstance(other, ArgumentTemplate) and other.get_config() == self.get_config()

    __hash__ = None
