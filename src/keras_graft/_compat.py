"""Every TensorFlow and Keras internal keras-graft relies on, in one place.

These names are not public API and move between releases. Keeping them here
means a version bump breaks one small, tested module (`tests/test_compat.py`)
instead of the whole package.
"""

from __future__ import annotations

import inspect

import tensorflow as tf
from keras.src.backend import AutocastScope, get_keras_mask
from keras.src.backend.common import global_state
from keras.src.backend.common.keras_tensor import KerasTensor
from keras.src.legacy.saving import json_utils as legacy_json_utils
from keras.src.legacy.saving import saving_options as legacy_saving_options
from keras.src.legacy.saving import saving_utils as legacy_saving_utils
from keras.src.saving import serialization_lib
from keras.src.utils import naming
from tensorflow.python.util import tf_export

__all__ = [
    "AutocastScope",
    "call_signature",
    "get_keras_mask",
    "GlobalOpDispatcher",
    "KerasTensor",
    "canonical_tf_name",
    "called_function_names",
    "op_types_called",
    "op_id_mark",
    "ops_created_between",
    "in_keras_safe_mode",
    "deserializing_untrusted",
    "keras2_metadata_nodes",
    "legacy_model_from_config",
    "layer_edges",
    "producing_operation",
    "saveable_without_attributes",
    "registered_gradient",
    "saved_model_children",
    "tf_symbol",
    "translate_legacy_configs",
    "unique_layer_name",
]

GlobalOpDispatcher = tf.__internal__.dispatch.GlobalOpDispatcher


def canonical_tf_name(function) -> str | None:
    """The canonical public name of a TF API symbol (`"math.top_k"`), or None."""
    return tf_export.get_canonical_name_for_symbol(
        function, add_prefix_to_v1_names=True
    )


def tf_symbol(name: str):
    """The TF API symbol exported under `name` (`"math.top_k"`), or None."""
    return tf_export.get_symbol_from_name(name)


def unique_layer_name(base: str) -> str:
    """`base`, then `base_1`, `base_2`... reset by `keras.backend.clear_session()`."""
    return naming.uniquify(base)


def in_keras_safe_mode() -> bool:
    """Whether Keras deserializes in safe mode.

    Keras holds False only inside `load_model(..., safe_mode=False)` or after
    `keras.config.enable_unsafe_deserialization()`; unset means safe.
    """
    return serialization_lib.in_safe_mode() is not False


def deserializing_untrusted() -> bool:
    """Whether Keras is deserializing in an explicit safe-mode scope.

    `load_model` and `deserialize_keras_object` enter one (True, by
    default); building, cloning or `from_config` called in user code do not.
    """
    return serialization_lib.in_safe_mode() is True


def layer_edges(model) -> list[list[str]]:
    """[source layer name, target layer name] for each connection in `model`."""
    edges = []
    for layer in model.layers:
        for node in layer._inbound_nodes:
            for parent in node.parent_nodes:
                edge = [parent.operation.name, layer.name]
                if edge not in edges:
                    edges.append(edge)
    return edges


class _EveryName(frozenset):
    """A set that holds every attribute name."""

    def __contains__(self, name) -> bool:
        return True


_EVERY_NAME = _EveryName()
_WITHOUT_ATTRIBUTES = "KerasGraftSaveableWithoutAttributes"


def saveable_without_attributes() -> str:
    """The `_obj_type` of a layer whose attributes hold no Keras saveables.

    Saving and loading walk every attribute of every layer looking for nested
    layers, optimizers... and skip the names a reference object of the same
    `_obj_type` has. Keras 3 caches that skip set under one key and reads it
    under another (`saving_attr_skipset_` / `saving_attr_skiplist_`), so it
    builds a reference `Layer()` for every layer it visits. For this type the
    skip set holds every name: nothing is built and nothing is walked. It is
    registered under both keys on each call, since `clear_session()` clears
    them.
    """
    for key in ("saving_attr_skiplist_", "saving_attr_skipset_"):
        global_state.set_global_attribute(key + _WITHOUT_ATTRIBUTES, _EVERY_NAME)
    return _WITHOUT_ATTRIBUTES


def producing_operation(tensor: KerasTensor):
    """The (operation, node) that produced a symbolic tensor, or (None, None)."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None, None
    operation, node_index, _ = history
    return operation, operation._inbound_nodes[node_index]


def op_id_mark(graph: tf.Graph) -> int:
    """Adds a marker op to `graph` and returns its id.

    Op ids only grow, but neither `graph.version` nor the op count tells
    which ids are taken: an op whose creation fails uses up an id without
    being added. Two marks bracket exactly the ops created between them.
    """
    with graph.as_default():
        return tf.no_op(name="keras_graft_mark")._id


def ops_created_between(graph: tf.Graph, first_mark: int, last_mark: int) -> list[tf.Operation]:
    """The operations of `graph` created after `first_mark` and before `last_mark`."""
    nodes = graph._nodes_by_id
    return [nodes[i] for i in range(first_mark + 1, last_mark) if i in nodes]


def called_function_names(node_def) -> list[str]:
    """Names of the functions a node's function-valued attributes name."""
    names = []
    for attribute in node_def.attr.values():
        if attribute.HasField("func"):
            names.append(attribute.func.name)
        if attribute.HasField("list"):
            names += [function.name for function in attribute.list.func]
    return names


def op_types_called(graph: tf.Graph, operations) -> tuple[set[str], set[str]]:
    """Op types of `operations` and of every function they call, transitively.

    Functions are followed through function-valued attributes (`f` of
    `PartitionedCall`, `then_branch` of `If`, ...) into `graph`'s library.
    Returns the op types and the names of called functions the library does
    not define.
    """
    library = graph._functions
    op_types: set[str] = set()
    undefined: set[str] = set()
    seen: set[str] = set()
    pending = [op.node_def for op in operations]
    while pending:
        node = pending.pop()
        op_types.add(node.op)
        for name in called_function_names(node):
                if name in seen:
                    continue
                seen.add(name)
                if name not in library:
                    undefined.add(name)
                else:
                    pending.extend(library[name].cached_definition.node_def)
    return op_types, undefined


def registered_gradient(op_type: str):
    """The gradient function TensorFlow registers for `op_type`.

    None when the op type is registered as not differentiable
    (`tf.no_gradient`, e.g. `Shape`); raises `LookupError` when no gradient
    is registered at all (`HistogramFixedWidth`).
    """
    from tensorflow.python.framework import ops

    return ops._gradient_registry.lookup(op_type)


def call_signature(layer) -> inspect.Signature:
    """The signature Keras matched `layer.call` against (cached by Keras)."""
    return layer._call_signature


def translate_legacy_configs(load) -> None:
    """Makes Keras' legacy loader (`.h5`, Keras 2 configs) go through `load`.

    Keras 3 deserializes every legacy model and layer config, nested ones
    included, through `legacy.saving.saving_utils.model_from_config`; its
    callers look it up on the module at call time. It becomes
    `load(config, custom_objects, keras_load)`, with Keras' own function as
    `keras_load`. Idempotent.
    """
    original = legacy_saving_utils.model_from_config
    if getattr(original, "graft_load", None) is load:
        return

    def model_from_config(config, custom_objects=None):
        return load(config, custom_objects, original)

    model_from_config.graft_load = load
    legacy_saving_utils.model_from_config = model_from_config


def legacy_model_from_config(config: dict, safe_mode: bool):
    """A model from a legacy (Keras 2) config, as Keras' `.h5` loader builds it."""
    with serialization_lib.SafeModeScope(safe_mode), legacy_saving_options.keras_option_scope(
        use_legacy_config=True
    ):
        return legacy_saving_utils.model_from_config(config)


def keras2_metadata_nodes(data: bytes) -> list[dict]:
    """Every node of a Keras 2 SavedModel's `keras_metadata.pb`, in file order:
    `node_id`, `node_path`, `identifier`, and `metadata` (`class_name`,
    `config`...) decoded as Keras' `.h5` loader decodes configs."""
    from tensorflow.python.keras.protobuf import saved_metadata_pb2

    metadata = saved_metadata_pb2.SavedMetadata()
    metadata.ParseFromString(data)
    return [
        {"node_id": node.node_id, "node_path": node.node_path, "identifier": node.identifier,
         "metadata": legacy_json_utils.decode(node.metadata)}
        for node in metadata.nodes
    ]


def saved_model_children(data: bytes) -> list[list[tuple[str, int]]]:
    """For each object of a SavedModel's object graph (`saved_model.pb`, its
    first meta graph), its children as `(local name, node id)`: how tf_keras
    finds a model's layers (`layer-0`, `layer-1`...)."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(data)
    graph = saved_model.meta_graphs[0].object_graph_def if saved_model.meta_graphs else None
    if graph is None:
        return []
    return [[(child.local_name, child.node_id) for child in node.children] for node in graph.nodes]
