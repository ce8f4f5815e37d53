"""Keras 2 op layers (`TFOpLambda`, `SlicingOpLambda`) as keras-graft `TFOp` layers.

Keras 2 turned every TF op called on Keras tensors into a `TFOpLambda` layer
(`SlicingOpLambda` for `x[...]`) and stored it by the op's public name:

    {"class_name": "TFOpLambda", "name": "tf.math.multiply",
     "config": {"function": "math.multiply", ...},
     "inbound_nodes": [["dense", 0, 0, {"y": 2.0}]]}

The node's input structure is the op's first argument; its call kwargs hold
the other arguments, with Keras tensors as references `[layer, node, tensor]`
and, in slicing layers, slices as `{"start", "stop", "step"}` dicts.

`translate_functional` rewrites each such layer of a functional model config
into a `TFOp` config, through keras-graft's own checks: the op name goes
through `keras_graft.core.op_names.resolve` (the allow-list), the constants through
`ArgumentTemplate.capture` (the argument rules), and the graph audit runs when
Keras builds the layer. A Keras 2 op layer called more than once becomes one
layer per call. TF 1 names Keras 2 recorded (`compat.v1.floor_div` for
`x // 2`) load as their TF 2 op (`tf1_names`), and constants Keras 2 wrote as
long nested lists as arrays (`constants`).

Keras 2 dropped, when it saved, every argument passed through an op's
`*args` (`tf.einsum("bij,bkj->bik", a, b)` is stored as only the equation).
Such a layer is refused with `LossyKeras2FileError`, which names it and says
that the file's weights still load into the model rebuilt from code
(`keras_graft.keras2.files.load_weights`).

>>> config = {"layers": [
...     {"class_name": "InputLayer", "name": "x", "inbound_nodes": [],
...      "config": {"name": "x", "batch_input_shape": [None, 3]}},
...     {"class_name": "TFOpLambda", "name": "tf.math.multiply", "inbound_nodes":
...      [["x", 0, 0, {"y": 2.0}]], "config": {"function": "math.multiply"}}],
...     "input_layers": [["x", 0, 0]], "output_layers": [["tf.math.multiply", 0, 0]]}
>>> op = translate_functional(config)["layers"][1]
>>> op["class_name"], op["config"]["op"], op["inbound_nodes"]
('keras_graft>TFOp', 'tf.math.multiply', [[['x', 0, 0, {}]]])
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from keras_graft import _compat
from keras_graft.core import op_names
from keras_graft.core.arguments import ArgumentTemplate
from keras_graft.errors import (
    LossyKeras2FileError,
    UnsafeOpError,
    UntranslatableConfigError,
    malformed,
)
from keras_graft.keras2 import constants, layer_configs, references, report, tf1_names

KERAS2_OP_LAYERS = ("TFOpLambda", "SlicingOpLambda")

# Keras 2's marker for a constant inside an op's first argument:
# `["_CONSTANT_VALUE", -1, value, kwargs]`.
CONSTANT_VALUE = "_CONSTANT_VALUE"

_SLICE_KEYS = {"start", "stop", "step"}

LOAD_WEIGHTS = "keras_graft.keras2.files.load_weights"

# The keys of an op layer's config keras-graft reads; the others (`dtype`,
# and any a file adds) are dropped, so they may hold plain data only.
_READ_KEYS = ("name", "function", "trainable")


def translate_functional(config: dict) -> dict:
    """A functional model config with its Keras 2 op layers made `TFOp` layers.

    Refuses (`keras_graft.UnsafeOpError`) an op outside the allow-list, before
    anything is resolved or built.
    """
    layers = config["layers"]
    if not any(layer.get("class_name") in KERAS2_OP_LAYERS for layer in layers):
        return config
    layer_names = {layer["name"] for layer in layers}
    outputs_read = _outputs_read(config, layer_names)
    taken = set(layer_names)
    renamed: dict[tuple[str, int], str] = {}
    translated = []
    for layer in layers:
        if layer.get("class_name") not in KERAS2_OP_LAYERS:
            translated.append(layer)
            continue
        for index, node in enumerate(layer["inbound_nodes"]):
            name = layer["name"]
            if index:
                name = references.unused_name(f"{name}_call{index}", taken)
                renamed[(layer["name"], index)] = name
            read = outputs_read.get((layer["name"], index), 0)
            translated.append(_op_layer(layer, node, name, layer_names, read))
    if not renamed:
        return {**config, "layers": translated}

    def new_place(layer, node):
        return (renamed[(layer, node)], 0) if (layer, node) in renamed else None

    return {
        **config,
        "layers": [
            {**layer, "inbound_nodes": references.rename(layer["inbound_nodes"], layer_names, new_place)}
            for layer in translated
        ],
        "output_layers": references.rename(config["output_layers"], layer_names, new_place),
    }


def _outputs_read(config: dict, layer_names) -> dict[tuple[str, int], int]:
    """{(layer, node): the highest output index the model reads from that call}."""
    read: dict[tuple[str, int], int] = {}

    def visit(value):
        if references.is_reference(value, layer_names):
            key = (value[0], value[1])
            read[key] = max(read.get(key, 0), value[2])
            value = value[3:]
        if isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)

    visit([layer.get("inbound_nodes", []) for layer in config["layers"]])
    visit(config["output_layers"])
    return read


class _Call:
    """One call of a Keras 2 op layer, read back into Python arguments.

    Each distinct tensor reference becomes one stand-in Keras tensor, so that
    `ArgumentTemplate.capture` sees the arguments exactly as if the op had
    been called on Keras tensors in code.
    """

    def __init__(self, layer_names, slicing: bool):
        self.layer_names = layer_names
        self.slicing = slicing
        self.entries: list = []  # the first argument's references, each with the call kwargs
        self.reference_of: dict[int, list] = {}
        self._stand_ins: dict[tuple, Any] = {}

    def first_argument(self, data: Any) -> Any:
        if isinstance(data, list) and data and data[0] == CONSTANT_VALUE:
            self.entries.append(data)
            return constants.as_keras2_input(self.value(data[2]))
        if references.is_reference(data, self.layer_names):
            self.entries.append(data)
            return self._stand_in(data)
        if isinstance(data, list):
            return [self.first_argument(item) for item in data]
        if isinstance(data, dict):
            return {key: self.first_argument(item) for key, item in data.items()}
        return self.value(data)

    def value(self, data: Any) -> Any:
        if references.is_reference(data, self.layer_names):
            return self._stand_in(data)
        if isinstance(data, list):
            array = constants.as_array(data)
            if array is not None:
                return array
            return [self.value(item) for item in data]
        if isinstance(data, tuple):
            return tuple(self.value(item) for item in data)
        if isinstance(data, dict):
            if self.slicing and set(data) == _SLICE_KEYS:
                return slice(*(self.value(data[key]) for key in ("start", "stop", "step")))
            return {key: self.value(item) for key, item in data.items()}
        return data

    def _stand_in(self, reference: list):
        key = tuple(reference[:3])
        if key not in self._stand_ins:
            tensor = _compat.KerasTensor(shape=())
            self._stand_ins[key] = tensor
            self.reference_of[id(tensor)] = list(key)
        return self._stand_ins[key]


def _op_layer(layer: dict, node: Any, name: str, layer_names, outputs_read: int) -> dict:
    keras2_class = layer["class_name"]
    keras2_name = layer["config"].get("function")
    if not isinstance(keras2_name, str):
        raise malformed(
            f"Keras 2 op layer {name!r} names no op (its `function` is {keras2_name!r})", writer="Keras 2"
        )
    # The name is checked before anything of the call is read.
    stored_name = op_names.TF_PREFIX + tf1_names.tf2_name(keras2_name)
    function = _resolve(stored_name, name, keras2_class)
    for key, value in layer["config"].items():
        if key not in _READ_KEYS and not _dtype_policy(value):
            layer_configs.refuse_hidden_object(layer.get("name"), keras2_class, key, value)
    call = _Call(layer_names, slicing=keras2_class == "SlicingOpLambda")
    first = call.first_argument(node)
    # Keras 2 dropped `name` when it called the op; so does keras-graft.
    kwargs = {
        key: call.value(value)
        for key, value in references.call_kwargs(call.entries, name).items()
        if key != "name"
    }
    kwargs = _with_dtypes(tf1_names.keras2_function(keras2_name), kwargs)
    where = f"Layer `{name}` (Keras 2 `{keras2_class}` of `tf.{keras2_name}`)"
    try:
        args, kwargs = tf1_names.tf2_arguments(keras2_name, first, kwargs)
    except UntranslatableConfigError as error:
        raise UntranslatableConfigError(f"{where}: {error}") from None
    _check_recorded_call(where, function, args, kwargs, bool(call.reference_of), outputs_read)
    template, tensors = ArgumentTemplate.capture(args, kwargs, where=stored_name, function=function)
    renamed = f" (Keras 2 named it `tf.{keras2_name}`)" if stored_name != f"tf.{keras2_name}" else ""
    report.note(name, keras2_class, f"TFOp `{stored_name}`{renamed}")
    return {
        "class_name": "keras_graft>TFOp",
        "name": name,
        "config": {
            "name": name,
            "trainable": layer["config"].get("trainable", True),
            "op": stored_name,
            "arguments": template.get_config(),
        },
        "inbound_nodes": [[[*call.reference_of[id(t)], {}] for t in tensors]],
    }


def _dtype_policy(value: Any) -> bool:
    """Whether `value` is Keras 2's config of a dtype policy (`mixed_float16`)."""
    return (
        isinstance(value, dict)
        and value.get("class_name") == "Policy"
        and value.get("module") in (None, "keras.mixed_precision")
        and value.get("registered_name") is None
        and set(value) <= {"class_name", "config", "module", "registered_name"}
        and isinstance(value.get("config"), dict)
        and set(value["config"]) == {"name"}
        and isinstance(value["config"]["name"], str)
    )


def _with_dtypes(function, kwargs: dict) -> dict:
    """`kwargs` with the dtype names Keras 2 wrote for `tf.DType` arguments made
    dtypes again: `tf.compat.v1.size` takes no name for its `out_type` (so Keras 2
    cannot reload its own `tf.size` files). A dtype parameter is one whose default
    is a dtype, or named as TensorFlow names them (`dtype`, `out_type`,
    `output_type`, `index_dtype`, `out_idx`)."""
    signature = _signature(function) if function is not None else None
    restored = {}
    for key, value in kwargs.items():
        parameter = signature.parameters.get(key) if signature else None
        if isinstance(value, str) and (
            _DTYPE_PARAMETER.search(key) or isinstance(getattr(parameter, "default", None), tf.DType)
        ):
            value = _dtype_named(value) or value
        restored[key] = value
    return restored


_DTYPE_PARAMETER = re.compile(r"^(dtype|out_idx)$|_(dtype|type)$")


def _dtype_named(name: str) -> tf.DType | None:
    try:
        dtype = tf.as_dtype(name)
    except TypeError:
        return None
    return dtype if dtype.is_numpy_compatible else None


def _resolve(stored_name: str, layer_name: str, keras2_class: str) -> Callable:
    try:
        return op_names.resolve(stored_name)
    except UnsafeOpError as error:
        if not stored_name.startswith(op_names.TF_PREFIX + tf1_names.TF1_PREFIX):
            raise
        raise UnsafeOpError(
            f"Layer `{layer_name}` (Keras 2 `{keras2_class}`): {error} Keras 2 recorded this "
            "TF 1 name, and no allowed TF 2 op hands its arguments to it and returns its "
            "result, so keras-graft has no TF 2 op to load it as. Or rebuild the model from "
            f"its code in Keras 3 and load the file's weights with `{LOAD_WEIGHTS}(model, path)`."
        ) from None


def _check_recorded_call(
    where: str, function, args: tuple, kwargs: dict, has_tensors: bool, outputs_read: int
):
    """Refuses a stored call that Keras 2 saved incompletely or that `function` cannot take."""
    signature = _signature(function)
    stored = _call_text(function, args, kwargs)
    dropped = _dropped_by_keras2(signature, args, kwargs, has_tensors, outputs_read)
    if dropped:
        raise LossyKeras2FileError(
            f"{where} cannot be rebuilt from this file: Keras 2 dropped {dropped} when it "
            f"saved it. Its stored call is only `{stored}`, so no Keras version can rebuild "
            "the layer from the file (Keras 2 cannot reload it either). What still works: "
            "its weights. Build the model from its code in Keras 3 (after `import "
            "keras_graft`, TF ops work on Keras tensors) and load the file's weights into "
            f"it with `{LOAD_WEIGHTS}(model, path)`."
        )
    if signature is None:
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as error:
        raise UntranslatableConfigError(
            f"{where}: the stored call `{stored}` does not fit the signature of this "
            f"TensorFlow version's op ({error}). The file may come from another TensorFlow "
            "version; rebuild the model from its code and load the file's weights with "
            f"`{LOAD_WEIGHTS}(model, path)`."
        ) from None


def _dropped_by_keras2(
    signature, args: tuple, kwargs: dict, has_tensors: bool, outputs_read: int
) -> str | None:
    """What Keras 2 left out of a stored call, or None when the call is whole.

    Keras 2 stored the first argument and the others under the names of the
    op's parameters: it dropped what went through `*args`, and the argument
    after a first parameter named `self` (`tf.__operators__.eq`'s `other`).
    """
    parameters = list(signature.parameters.values()) if signature else []
    varargs = next((p for p in parameters if p.kind is p.VAR_POSITIONAL), None)
    if not has_tensors:
        return f"the operands passed through `*{varargs.name}`" if varargs else "the tensors it was called on"
    if varargs is not None and parameters[0] is varargs and outputs_read > 0:
        return (
            f"the operands passed through `*{varargs.name}` after the first (the model reads "
            f"output {outputs_read} of the layer, which only a call with more operands makes)"
        )
    try:
        bound = signature.bind_partial(*args, **kwargs) if signature else None
    except TypeError:
        return None  # not a dropped argument: the signature check says what is wrong
    missing = [
        f"`{p.name}`"
        for p in parameters
        if p.default is p.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and bound is not None
        and p.name not in bound.arguments
    ]
    return f"the argument {', '.join(missing)}" if missing else None


def _signature(function) -> inspect.Signature | None:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):  # a builtin without one
        return None


def _call_text(function, args: tuple, kwargs: dict) -> str:
    arguments = [_short(a) for a in args] + [f"{key}={_short(value)}" for key, value in kwargs.items()]
    return f"{op_names.display_name(function)}({', '.join(arguments)})"


def _short(value) -> str:
    if isinstance(value, _compat.KerasTensor):
        return "<tensor>"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
