"""Keras 2 layer calls (inbound nodes) and model ends in the form Keras 3 reads.

Three differences:

- Keras 2 counted the calls of a nested model from 1 (its node 0 linked its
  own inputs to its outputs); Keras 3 counts them from 0. In inbound nodes
  every reference to such a model is shifted down by one. In
  `input_layers`/`output_layers` Keras 3 subtracts one itself, but only for
  its functional models: a reference to a Sequential model that counted
  from one (one built on an `Input`) is shifted here.
- Keras 2 stored a single input or output as a list of one, and still
  returned a tensor, not a list; Keras 3 would return a list of one, which a
  nested model then passes on to the next layer. A list of one is unwrapped.
- Keras 2 stored `mha(query, value=v)` as the node `[["query", 0, 0, {"value":
["v", 0, 0]}]]`: the first argument's tensors, each with the call kwargs, and
kwargs tensors as references. Keras 3's legacy loader passes those kwargs on
as they are, so the layer receives a list instead of a tensor. Such nodes are
rewritten into Keras 3's own node form (`{"args": ..., "kwargs": ...}` with
`__keras_tensor__` references), which Keras 3 resolves itself.

>>> sequential = {"class_name": "Sequential", "name": "squash", "inbound_nodes": [[["x", 0, 0, {}]]],
...               "config": {"layers": [{"class_name": "InputLayer", "config": {}}]}}
>>> config = {"layers": [{"class_name": "InputLayer", "name": "x", "inbound_nodes": []}, sequential],
...           "input_layers": [["x", 0, 0]], "output_layers": [["squash", 1, 0]]}
>>> translate_functional(config)["output_layers"]
['squash', 0, 0]
>>> node = [["q", 0, 0, {"value": ["v", 0, 0]}]]
>>> translate_node(node, {"q", "v"})["kwargs"]["value"]["config"]["keras_history"]
['v', 0, 0]
"""

from __future__ import annotations

from typing import Any

from keras_graft.keras2 import references


def translate_functional(config: dict) -> dict:
    """A functional model config whose nodes Keras 3 can call."""
    layer_names = {layer["name"] for layer in config["layers"]}
    nested = {layer["name"] for layer in config["layers"] if _counts_from_one(layer)}
    nested_sequential = {
        layer["name"]
        for layer in config["layers"]
        if layer["name"] in nested and layer.get("class_name") == "Sequential"
    }

    def new_place(layer, node):
        return (layer, node - 1) if layer in nested and node > 0 else None

    def new_end_place(layer, node):
        return (layer, node - 1) if layer in nested_sequential and node > 0 else None

    def ends(key):
        return _unwrapped(references.rename(config[key], layer_names, new_end_place), layer_names)

    layers = []
    for layer in config["layers"]:
        nodes = references.rename(layer.get("inbound_nodes", []), layer_names, new_place)
        if any(_has_tensor_kwargs(node, layer_names) for node in nodes):
            nodes = [translate_node(node, layer_names, layer["name"]) for node in nodes]
        layers.append({**layer, "inbound_nodes": nodes})
    return {
        **config,
        "layers": layers,
        "input_layers": ends("input_layers"),
        "output_layers": ends("output_layers"),
    }


def _unwrapped(ends: Any, layer_names) -> Any:
    if isinstance(ends, list) and len(ends) == 1 and references.is_reference(ends[0], layer_names):
        return ends[0]
    return ends


def _counts_from_one(layer: dict) -> bool:
    """Whether Keras 2 numbered this nested model's calls from 1.

    Functional models, and Sequential ones built on an input, had a node of
    their own before their first call.
    """
    class_name = layer.get("class_name")
    if class_name in ("Functional", "Model"):
        return True
    inner_layers = layer.get("config", {}).get("layers") or [{}]
    return class_name == "Sequential" and inner_layers[0].get("class_name") == "InputLayer"


def _entries(node: Any, layer_names) -> list:
    if not isinstance(node, list):
        return []
    return [entry for entry in node if references.is_reference(entry, layer_names)]


def _has_tensor_kwargs(node: Any, layer_names) -> bool:
    return any(
        len(entry) == 4 and _holds_reference(entry[3], layer_names) for entry in _entries(node, layer_names)
    )


def _holds_reference(value: Any, layer_names) -> bool:
    if references.is_reference(value, layer_names):
        return True
    if isinstance(value, (list, tuple)):
        return any(_holds_reference(item, layer_names) for item in value)
    if isinstance(value, dict):
        return any(_holds_reference(item, layer_names) for item in value.values())
    return False


def translate_node(node: list, layer_names, layer: str = "?") -> dict:
    """One Keras 2 node (a list of `[layer, node, tensor, kwargs]`) of `layer` in Keras 3's form."""
    entries = _entries(node, layer_names)
    tensors = [_keras_tensor(entry) for entry in entries]
    kwargs = references.call_kwargs(entries, layer)
    return {
        "args": [tensors[0] if len(tensors) == 1 else tensors],
        "kwargs": _with_keras_tensors(kwargs, layer_names),
    }


def _keras_tensor(reference: list) -> dict:
    # Shape and dtype are placeholders: Keras 3 replaces the tensor with the
    # output of the layer it names.
    return {
        "class_name": "__keras_tensor__",
        "config": {"shape": [], "dtype": "float32", "keras_history": list(reference[:3])},
    }


def _with_keras_tensors(value: Any, layer_names) -> Any:
    if references.is_reference(value, layer_names):
        return _keras_tensor(value)
    if isinstance(value, list):
        return [_with_keras_tensors(item, layer_names) for item in value]
    if isinstance(value, dict):
        return {key: _with_keras_tensors(item, layer_names) for key, item in value.items()}
    return value
