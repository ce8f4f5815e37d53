"""Keras 2 layer names that Keras 3 refuses, renamed.

Keras 2 allowed `/` in layer names (`tf_keras.applications` use names such as
`Conv/BatchNorm`); Keras 3 refuses them. Each `/` becomes `_`, and every
reference to the layer follows. `.h5` weights are matched by position, not
by name, so they still load.

>>> config = {"layers": [{"class_name": "ReLU", "name": "a/b", "config": {"name": "a/b"},
...                       "inbound_nodes": []}],
...           "input_layers": [["a/b", 0, 0]], "output_layers": [["a/b", 0, 0]]}
>>> translate_functional(config)["output_layers"]
[['a_b', 0, 0]]
"""

from __future__ import annotations

from keras_graft.keras2 import references, report

FORBIDDEN = "/"


def legal_name(name: str) -> str:
    return name.replace(FORBIDDEN, "_")


def _note(new: str, layer: dict, old: str) -> None:
    report.note(new, layer.get("class_name", "?"), f"renamed from `{old}` (Keras 3 refuses `/` in names)")


def _functional_new_names(layer_names) -> dict[str, str]:
    taken = {name for name in layer_names if FORBIDDEN not in name}
    return {
        name: references.unused_name(legal_name(name), taken)
        for name in sorted(layer_names)
        if FORBIDDEN in name
    }


def new_names(model_config: dict) -> dict[str, str]:
    """{old name: new name} for each layer of a Keras 2 model config that is renamed."""
    layers = model_config["config"]["layers"]
    if model_config.get("class_name") == "Sequential":
        return {
            layer["config"]["name"]: legal_name(layer["config"]["name"])
            for layer in layers
            if FORBIDDEN in layer["config"].get("name", "")
        }
    return _functional_new_names({layer["name"] for layer in layers})


def translate_functional(config: dict) -> dict:
    """A functional model config with its layers' names made legal in Keras 3."""
    layer_names = {layer["name"] for layer in config["layers"]}
    if not any(FORBIDDEN in name for name in layer_names):
        return config
    new_name = _functional_new_names(layer_names)

    def new_place(layer, node):
        return (new_name[layer], node) if layer in new_name else None

    layers = []
    for layer in config["layers"]:
        name = new_name.get(layer["name"], layer["name"])
        if name != layer["name"]:
            _note(name, layer, layer["name"])
        layers.append(
            {
                **layer,
                "name": name,
                "config": {**layer["config"], "name": name},
                "inbound_nodes": references.rename(layer["inbound_nodes"], layer_names, new_place),
            }
        )
    return {
        **config,
        "layers": layers,
        "input_layers": references.rename(config["input_layers"], layer_names, new_place),
        "output_layers": references.rename(config["output_layers"], layer_names, new_place),
    }


def translate_layer(config: dict) -> dict:
    """A layer config (e.g. one in a Sequential model) with a legal name."""
    name = config["config"].get("name")
    if not isinstance(name, str) or FORBIDDEN not in name:
        return config
    _note(legal_name(name), config, name)
    return {**config, "config": {**config["config"], "name": legal_name(name)}}
