"""One source of truth per Keras 2 file: what keras-graft audits is what Keras 2 rebuilds.

A Keras 2 file can hold the same model twice, and different readers read
different copies. keras-graft reads one and audits it; tf_keras (Keras 2
itself, which `keras-graft convert --trust-file-code` runs to check the
conversion) may read the other. A forged file makes the copies differ, so
that the audit sees a harmless model while Keras 2 builds another. Where
two copies exist, they must agree; otherwise the file is refused, naming the
layer (`MalformedModelFileError`).

- **SavedModel** (`verified_saved_model_root`): keras-graft rebuilds the model
  from the root model's config in `keras_metadata.pb`. tf_keras rebuilds each
  layer from its own node there (found through the object graph of
  `saved_model.pb`: a model's `layer-0`, `layer-1`... children), each nested
  model's connections from its own node, and the root from node 0. Every one
  of those nodes must say what the root config says. Nodes also number the
  objects layers share (`shared_object_id`): tf_keras builds the first
  config of a number and reuses it, so all configs of one number must agree.
- **tf_keras `.keras`** (`check_object_configs`): tf_keras finds a class by
  `registered_name` first, then by `module` (importing any module the file
  names), where keras-graft reads a layer by its class name. So
  `registered_name` must be the class name (or absent) and `module` Keras'
  own. (In `.h5` files and SavedModel metadata tf_keras finds classes by
  class name among its own built-ins, as keras-graft finds layers.)
- **Keys keras-graft drops** (`layer_configs`), and **call arguments**
  repeated in each input of a Keras 2 node (`references.call_kwargs`), are
  checked where they are read.

>>> check_object_configs({"class_name": "Dense", "config": {}, "module": "keras.layers"})
>>> check_object_configs({"class_name": "Dense", "config": {}, "module": "os"})
Traceback (most recent call last):
...
keras_graft.errors.MalformedModelFileError: The object config of class 'Dense' names module 'os', which Keras 2 would import to find it (keras-graft only reads Keras' own modules): the model file was not written by Keras 2 or was edited by hand.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from keras_graft import _compat
from keras_graft.errors import malformed

MODEL_CLASSES = ("Functional", "Model", "Sequential")
METRIC_IDENTIFIER = "_tf_keras_metric"
# What tf_keras reads from a layer's own node over its config.
_NODE_OVERRIDES = ("trainable", "dtype")
_LAYER_CHILD = re.compile(r"layer-(\d+)$")


# Packages whose modules Keras 3 imports when a config names them.
KERAS_IMPORTED_PACKAGES = ("keras_hub", "keras_cv", "keras_nlp")


def _refused(problem: str):
    return malformed(problem, writer="Keras 2")


def check_object_configs(value: Any) -> None:
    """Refuses an object config (`{"class_name", "config"}`, anywhere in
    `value`) that Keras 2 and keras-graft would look up differently."""
    if isinstance(value, list):
        for item in value:
            check_object_configs(item)
        return
    if not isinstance(value, dict):
        return
    if "class_name" in value and "config" in value:
        class_name, module = value["class_name"], value.get("module")
        registered = value.get("registered_name")
        # A registered class, as `register_keras_serializable` names it: both
        # look it up by its registered name (keras-graft never imports its
        # module), except in the packages Keras 3 imports whatever is registered.
        user_registered = (
            isinstance(registered, str)
            and registered.endswith(f">{class_name}")
            and str(module).split(".")[0] not in KERAS_IMPORTED_PACKAGES
        )
        # A function: `{"module": "builtins", "class_name": "function", "config": its name}`.
        function = class_name == "function" and registered in ("function", value["config"])
        if registered not in (None, class_name) and not (user_registered or function):
            raise _refused(
                f"The object config of class {class_name!r} is registered as {registered!r}: "
                "Keras 2 would look up one and keras-graft the other"
            )
        keras_module = isinstance(module, str) and module.split(".")[0] in ("keras", "tf_keras")
        if module is not None and not (
            keras_module or user_registered or (function and module == "builtins")
        ):
            raise _refused(
                f"The object config of class {class_name!r} names module {module!r}, which Keras 2 "
                "would import to find it (keras-graft only reads Keras' own modules)"
            )
    for item in value.values():
        check_object_configs(item)


def verified_saved_model_root(path: Path) -> dict:
    """The root model's metadata of the Keras 2 SavedModel at `path`, once every
    layer tf_keras would rebuild from its own node agrees with it."""
    nodes = _compat.keras2_metadata_nodes((path / "keras_metadata.pb").read_bytes())
    by_id: dict = {}
    for node in nodes:
        if node["node_id"] in by_id:
            raise _refused(f"{path}/keras_metadata.pb describes object {node['node_id']} twice")
        by_id[node["node_id"]] = node
    root = by_id.get(0)
    if root is None or root["node_path"] != "root":
        raise _refused(f"{path}/keras_metadata.pb has no root model (node 0)")
    children = _compat.saved_model_children((path / "saved_model.pb").read_bytes())
    if (
        not isinstance(root["metadata"].get("config"), dict)
        or root["metadata"].get("class_name") not in MODEL_CLASSES
    ):
        return root["metadata"]  # a subclassed model: files refuses it
    shared: dict = {}
    agreed = _agreeing_layers(root["metadata"], by_id, children, shared)
    parents: dict = {}
    for parent, named in enumerate(children):
        for _, child in named:
            parents.setdefault(child, set()).add(parent)
    order = {node["node_id"]: index for index, node in enumerate(nodes)}
    for node in nodes:
        node_id = node["node_id"]
        if node_id in agreed or node_id == 0:
            continue
        if node["identifier"] == METRIC_IDENTIFIER:
            check_object_configs(node["metadata"])
            continue
        # A layer's own sublayers (an RNN's cell) are rebuilt from its config,
        # when tf_keras reaches the layer first.
        if any(
            parent in agreed
            and by_id[parent]["metadata"].get("class_name") not in MODEL_CLASSES
            and order[parent] < order[node_id]
            for parent in parents.get(node_id, ())
        ):
            agreed.add(node_id)
            continue
        raise _refused(
            f"Keras 2 SavedModel layer {node['metadata'].get('name')!r} ({node['node_path']}) is "
            "not part of the model config that keras-graft reads, but tf_keras would rebuild it "
            "from its own metadata"
        )
    return root["metadata"]


def _agreeing_layers(root: dict, by_id: dict, children: list, shared: dict) -> set:
    """The ids of the layer nodes of every model (the root, nested models),
    each checked against keras-graft's config of that model (`shared`: the
    config seen for each `shared_object_id`)."""
    agreed = {0}
    pending = [(0, root)]
    while pending:
        model_id, model = pending.pop()
        expected = list(model["config"].get("layers") or [])
        if (
            model.get("class_name") == "Sequential"
            and expected
            and expected[0].get("class_name") == "InputLayer"
        ):
            expected = expected[1:]  # a Sequential model does not track its input layer
        layer_ids = _tf_keras_layer_ids(children[model_id] if model_id < len(children) else [])
        name = model["config"].get("name")
        if len(layer_ids) != len(expected):
            raise _refused(
                f"Keras 2 SavedModel model {name!r}: tf_keras would rebuild {len(layer_ids)} layers "
                f"from saved_model.pb, keras-graft {len(expected)} from the model config"
            )
        for layer_id, entry in zip(layer_ids, expected):
            node = by_id.get(layer_id)
            problem = "has no metadata" if node is None else _disagreement(node["metadata"], entry, shared)
            layer = (entry.get("config") or {}).get("name")
            if problem:
                raise _refused(
                    f"Keras 2 SavedModel layer {layer!r} of model {name!r} {problem}, "
                    "so tf_keras would rebuild another layer than keras-graft reads"
                )
            agreed.add(layer_id)
            if entry.get("class_name") in MODEL_CLASSES:
                pending.append((layer_id, entry))
    return agreed


def _tf_keras_layer_ids(children: list) -> list[int]:
    """A model's layers as tf_keras finds them: children `layer-0`, `layer-1`...
    up to the first gap."""
    numbered = {}
    for local_name, node_id in children:
        found = _LAYER_CHILD.match(local_name)
        if found:
            numbered[int(found.group(1))] = node_id
    ids = []
    while len(ids) in numbered:
        ids.append(numbered[len(ids)])
    return ids


def _unshared(value: Any, shared: dict) -> Any:
    """`value` without `shared_object_id`s, once each id's configs agree."""
    if isinstance(value, list):
        return [_unshared(item, shared) for item in value]
    if not isinstance(value, dict):
        return value
    plain = {key: _unshared(item, shared) for key, item in value.items() if key != "shared_object_id"}
    if "shared_object_id" in value:
        first = shared.setdefault(repr(value["shared_object_id"]), plain)
        if first != plain:
            raise _refused(
                f"Two objects of a Keras 2 SavedModel share number {value['shared_object_id']!r} with "
                "different configs: tf_keras would build the first for both"
            )
    return plain


def _disagreement(metadata: dict, entry: dict, shared: dict) -> str | None:
    """How a layer's own node differs from its entry in the model config, or None."""
    config = entry.get("config")
    if metadata.get("class_name") != entry.get("class_name"):
        return (
            f"is a {metadata.get('class_name')} in its own metadata but a "
            f"{entry.get('class_name')} in the model config"
        )
    if _unshared(metadata.get("config"), shared) != _unshared(config, shared):
        return "is configured differently in its own metadata than in the model config"
    if not isinstance(config, dict) or metadata.get("name") != config.get("name"):
        return f"is named {metadata.get('name')!r} in its own metadata"
    for key in _NODE_OVERRIDES:
        if key in metadata and key in config and metadata[key] != config[key]:
            return f"has `{key}={metadata[key]!r}` in its own metadata, `{config[key]!r}` in the model config"
    return None
