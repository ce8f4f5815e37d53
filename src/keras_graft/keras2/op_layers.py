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
through `keras_graft.registry.resolve` (the allow-list), the constants through
`ArgumentTemplate.capture` (the argument rules), and the graph audit runs when
Keras builds the layer. A Keras 2 op layer called more than once becomes one
layer per call.

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

from typing import Any

from keras_graft import _compat, registry
from keras_graft.arguments import ArgumentTemplate
from keras_graft.errors import malformed
from keras_graft.keras2 import layer_configs, references, report

KERAS2_OP_LAYERS = ("TFOpLambda", "SlicingOpLambda")

# Keras 2's marker for a constant inside an op's first argument:
# `["_CONSTANT_VALUE", -1, value, kwargs]`.
CONSTANT_VALUE = "_CONSTANT_VALUE"

_SLICE_KEYS = {"start", "stop", "step"}

# The keys of an op layer's config keras-graft reads; the others (`dtype`,
# and any a file adds) are dropped, so they may hold plain data only.
_READ_KEYS = ("name", "function", "trainable")

# TF 2 functions that Keras 2 recorded under the TF 1 name they call
# (`tf.shape(x)` became a `compat.v1.shape` layer). Each TF 2 function passes
# its arguments on to the TF 1 one under the same names, so the TF 2 name,
# checked against the allow-list like any other, means the same.
TF1_NAMES_OF_TF2_OPS = {
    f"compat.v1.{name}": name
    for name in ("shape", "size", "gather", "squeeze", "transpose", "boolean_mask", "pad", "norm")
}


def translate_functional(config: dict) -> dict:
    """A functional model config with its Keras 2 op layers made `TFOp` layers.

    Refuses (`keras_graft.UnsafeOpError`) an op outside the allow-list, before
    anything is resolved or built.
    """
    layers = config["layers"]
    if not any(layer.get("class_name") in KERAS2_OP_LAYERS for layer in layers):
        return config
    layer_names = {layer["name"] for layer in layers}
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
            translated.append(_op_layer(layer, node, name, layer_names))
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
            return self.value(data[2])
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


def _op_layer(layer: dict, node: Any, name: str, layer_names) -> dict:
    keras2_class = layer["class_name"]
    keras2_name = layer["config"].get("function")
    if not isinstance(keras2_name, str):
        raise malformed(f"Keras 2 op layer {name!r} names no op (its `function` is {keras2_name!r})",
                        writer="Keras 2")
    stored_name = registry.TF_PREFIX + TF1_NAMES_OF_TF2_OPS.get(keras2_name, keras2_name)
    function = registry.resolve(stored_name)
    for key, value in layer["config"].items():
        if key not in _READ_KEYS and not _dtype_policy(value):
            layer_configs.refuse_hidden_object(layer.get("name"), keras2_class, key, value)
    call = _Call(layer_names, slicing=keras2_class == "SlicingOpLambda")
    first = call.first_argument(node)
    # Keras 2 dropped `name` when it called the op; so does keras-graft.
    kwargs = {key: call.value(value)
              for key, value in references.call_kwargs(call.entries, name).items() if key != "name"}
    template, tensors = ArgumentTemplate.capture(
        (first,), kwargs, where=stored_name, function=function
    )
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
    return (isinstance(value, dict) and value.get("class_name") == "Policy"
            and value.get("module") in (None, "keras.mixed_precision")
            and value.get("registered_name") is None
            and set(value) <= {"class_name", "config", "module", "registered_name"}
            and isinstance(value.get("config"), dict) and set(value["config"]) == {"name"}
            and isinstance(value["config"]["name"], str))
