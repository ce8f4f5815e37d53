"""Every TensorFlow and Keras internal keras-graft relies on, in one place,
and every difference between the versions it supports (README, "Tested with").

These names are not public API and move between releases. Keeping them here
means a version bump breaks one small, tested module (`tests/test_compat.py`)
instead of the whole package.
"""

from __future__ import annotations

import functools
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
    "GlobalOpDispatcher",
    "KerasTensor",
    "call_signature",
    "called_function_names",
    "canonical_tf_name",
    "deserializing_untrusted",
    "get_keras_mask",
    "in_keras_safe_mode",
    "keras2_metadata_nodes",
    "layer_edges",
    "legacy_model_from_config",
    "op_id_mark",
    "op_types_called",
    "ops_created_between",
    "producing_operation",
    "pure_callback_sequential",
    "registered_gradient",
    "saveable_without_attributes",
    "saved_model_children",
    "stop_unresolvable_functional_nodes",
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


def pure_callback_sequential(callback, result_shapes, *args):
    """`jax.pure_callback(callback, result_shapes, *args)`, which `jax.vmap`
    maps over by calling `callback` once per element.

    jax 0.4.35 and later ask for that with `vmap_method="sequential"` (and
    refuse to map a callback without it); jax 0.4.34, the newest jax that
    TensorFlow 2.16's ml_dtypes pin allows, has no `vmap_method` and maps
    sequentially by default.
    """
    import jax

    if "vmap_method" in _parameters(jax.pure_callback):
        return jax.pure_callback(callback, result_shapes, *args, vmap_method="sequential")
    return jax.pure_callback(callback, result_shapes, *args)


@functools.cache
def _parameters(function) -> frozenset[str]:
    return frozenset(inspect.signature(function).parameters)


def stop_unresolvable_functional_nodes() -> None:
    """Makes Keras' functional-model loader refuse a node graph it cannot resolve.

    `functional_from_config` re-queues every node whose inbound layer has no
    node yet, and before Keras 3.15 repeats its rounds forever when one never
    will (a layer that is its own input, a node index past a layer's nodes):
    a forged file hangs `load_model`. Keras 3.15 raises when a round makes no
    progress. The loop sits inside one function, so here the attempts at
    `deserialize_node` (looked up on the module at call time, once per
    attempted node) are counted since the model last gained a node: a round
    attempts each layer at most once, so more than two rounds' worth of
    attempts without a new node contain a whole round without progress. Idempotent.
    """
    from keras.src.models import functional

    if getattr(functional.functional_from_config, "graft_bounded", False):
        return
    original_from_config = functional.functional_from_config
    original_deserialize_node = functional.deserialize_node
    loading: list[dict] = []  # one frame per functional config being loaded (nested models)

    @functools.wraps(original_from_config)
    def functional_from_config(cls, config, custom_objects=None):
        layers = config.get("layers") if isinstance(config, dict) else None
        loading.append({"nodes": -1, "attempts": 0, "limit": 2 * len(layers or ()) + 2})
        try:
            return original_from_config(cls, config, custom_objects=custom_objects)
        finally:
            loading.pop()

    @functools.wraps(original_deserialize_node)
    def deserialize_node(node_data, created_layers):
        if loading:
            frame = loading[-1]
            nodes = sum(len(layer._inbound_nodes) for layer in created_layers.values())
            if nodes != frame["nodes"]:
                frame["nodes"], frame["attempts"] = nodes, 0
            frame["attempts"] += 1
            if frame["attempts"] > frame["limit"]:
                raise ValueError(
                    "Invalid Functional model configuration: the graph of the Functional "
                    "model has loops, or nodes that refer to nodes no layer has. The file "
                    "was edited by hand or is corrupted: re-save the model from its code."
                )
        return original_deserialize_node(node_data, created_layers)

    functional_from_config.graft_bounded = True
    functional.functional_from_config = functional_from_config
    functional.deserialize_node = deserialize_node
