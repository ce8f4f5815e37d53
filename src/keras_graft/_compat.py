"""Every TensorFlow and Keras internal keras-graft relies on, in one place,
and every difference between the versions it supports (README, "Tested with").

These names are not public API and move between releases. Keeping them here
means a version bump breaks one small, tested module (`tests/test_compat.py`)
instead of the whole package.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import threading
from collections.abc import Callable

import tensorflow as tf
from keras.src.backend import AutocastScope, get_keras_mask
from keras.src.backend.common import global_state
from keras.src.backend.common.keras_tensor import KerasTensor
from keras.src.legacy.saving import json_utils as legacy_json_utils
from keras.src.legacy.saving import legacy_h5_format
from keras.src.legacy.saving import saving_options as legacy_saving_options
from keras.src.legacy.saving import saving_utils as legacy_saving_utils
from keras.src.saving import saving_api, serialization_lib
from keras.src.utils import naming
from tensorflow.python.eager import context, record
from tensorflow.python.util import tf_decorator, tf_export

__all__ = [
    "AutocastScope",
    "call_concrete_flat",
    "call_signature",
    "called_from_tensorflow",
    "called_function_names",
    "called_tensorflow_frame",
    "canonical_tf_name",
    "decode_legacy_json",
    "deserializing_untrusted",
    "fill_in_call",
    "explain_refused_calls",
    "function_graph",
    "get_keras_mask",
    "GlobalOpDispatcher",
    "has_op_dispatch",
    "in_keras_safe_mode",
    "is_composite_tensor",
    "keras2_metadata_nodes",
    "keras3_only_optimizer_variables",
    "keras_load_model",
    "KerasTensor",
    "layer_edges",
    "layer_nodes",
    "legacy_model_from_config",
    "load_legacy_h5_weights",
    "node_call_arguments",
    "node_inputs",
    "node_outputs",
    "model_operations",
    "op_id_mark",
    "op_types_called",
    "ops_created_between",
    "producing_operation",
    "pure_callback_sequential",
    "registered_gradient",
    "route_load_model",
    "saveable_without_attributes",
    "saved_model_children",
    "skip_input_conversion",
    "stop_unresolvable_functional_nodes",
    "tf1_names",
    "tf_api_symbols",
    "tf_symbol",
    "translate_legacy_configs",
    "unique_layer_name",
    "watching_op_creation",
]

GlobalOpDispatcher = tf.__internal__.dispatch.GlobalOpDispatcher


def canonical_tf_name(function) -> str | None:
    """The canonical public name of a TF API symbol (`"math.top_k"`), or None."""
    return tf_export.get_canonical_name_for_symbol(function, add_prefix_to_v1_names=True)


def tf_symbol(name: str):
    """The TF API symbol exported under `name` (`"math.top_k"`), or None."""
    return tf_export.get_symbol_from_name(name)


def tf_api_symbols() -> list:
    """Every symbol of TensorFlow's API (`compat.v1` included), once each:
    the registry `tf_export` fills as TensorFlow is imported."""
    return list({id(symbol): symbol for symbol in tf_export._NAME_TO_SYMBOL_MAPPING.values()}.values())


def explain_refused_calls(explain: Callable) -> None:
    """Lets `explain(api, args, kwargs)` replace the bare `TypeError` TensorFlow
    raises when a public API's dispatch refuses the arguments of a call.

    An API with op dispatch checks a call's arguments against its parameters
    before anything else runs, op dispatchers included, and raises TF's
    `TypeError: Got an unexpected keyword argument 'frame_lenght'`, naming
    neither the op nor the fix. `explain` returns the error to raise instead,
    or None for TF's own. The check is made by each API's type-based
    dispatcher, held in the closure of its `op_dispatch_handler`: it is
    replaced by one that delegates to it (`tf.experimental.dispatch_for_api`
    registers on the same one). Generated op wrappers (`tf.math.acosh`) have a
    Python signature instead, whose error names the function. Idempotent.
    """
    from tensorflow.python.util import dispatch

    for api in list(dispatch._TYPE_BASED_DISPATCH_SIGNATURES):
        cell = _dispatcher_cell(api)
        if cell is None or isinstance(cell.cell_contents, _ExplainingDispatcher):
            continue
        if cell.cell_contents is getattr(api, dispatch.TYPE_BASED_DISPATCH_ATTR, None):
            cell.cell_contents = _ExplainingDispatcher(cell.cell_contents, api, explain)


class _ExplainingDispatcher:
    """A type-based dispatcher whose refusals `explain` may put in better words."""

    __slots__ = ("_api", "_dispatcher", "_explain")

    def __init__(self, dispatcher, api, explain: Callable):
        self._dispatcher, self._api, self._explain = dispatcher, api, explain

    def Dispatch(self, args, kwargs):  # noqa: N802 (TensorFlow's name)
        try:
            return self._dispatcher.Dispatch(args, kwargs)
        except TypeError:
            better = self._explain(self._api, args, kwargs)
            if better is None:
                raise
            raise better from None


def _dispatcher_cell(function, depth: int = 0):
    """The closure cell holding the type-based dispatcher of the public API
    `function`, found through the decorators around its `op_dispatch_handler`."""
    code = getattr(function, "__code__", None)
    if code is None or depth > 3:
        return None
    if code.co_name == "op_dispatch_handler" and "api_dispatcher" in code.co_freevars:
        return function.__closure__[code.co_freevars.index("api_dispatcher")]
    for cell in function.__closure__ or ():
        try:
            inner = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        found = _dispatcher_cell(inner, depth + 1) if callable(inner) else None
        if found is not None:
            return found
    return None


def tf1_names(function) -> list[str]:
    """The names TensorFlow exports `function` under in its TF 1 API (`tf.compat.v1.<name>`).

    `tf.math.floordiv` is also `tf.compat.v1.floordiv` and `tf.compat.v1.math.floordiv`.
    """
    return list(tf_export.get_v1_names(tf_decorator.unwrap(function)[1]))


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


def model_operations(model) -> list:
    """Every operation of a functional or Sequential model, inputs included, in
    order: its layers, and Keras' own ops, which are operations, not layers
    (`x + y` of two Keras tensors is a `keras.ops` `Add`; `model.layers`
    leaves them out). A subclassed model's layers."""
    return list(getattr(_functional(model), "operations", None) or model.layers)


def _functional(model):
    """The functional graph of `model`: a Sequential model's is built inside it."""
    return getattr(model, "_functional", None) or model


def layer_edges(model) -> list[list[str]]:
    """[source name, target name] for each connection in `model`, between its
    operations (`model_operations`); calls of a layer in another model are left out."""
    by_depth = getattr(_functional(model), "_nodes_by_depth", None)
    own_nodes = None if by_depth is None else {id(node) for nodes in by_depth.values() for node in nodes}
    edges = []
    for operation in model_operations(model):
        for node in operation._inbound_nodes:
            if own_nodes is not None and id(node) not in own_nodes:
                continue
            for parent in node.parent_nodes:
                edge = [parent.operation.name, operation.name]
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
    return operation, layer_nodes(operation)[node_index]


def layer_nodes(layer) -> list:
    """The nodes of `layer`: one per call on symbolic inputs, in call order."""
    return list(layer._inbound_nodes)


def node_inputs(node) -> list[KerasTensor]:
    """The Keras tensors among a node's call arguments, in the order of the call."""
    return list(node.arguments.keras_tensors)


def node_call_arguments(node) -> tuple[tuple, dict]:
    """The (args, kwargs) the node's layer was called with, Keras tensors included."""
    return node.arguments.args, node.arguments.kwargs


def node_outputs(node) -> list[KerasTensor]:
    """The Keras tensors a node's call returned, flattened."""
    from keras import tree

    return tree.flatten(node.output_tensors)


def fill_in_call(node, values: dict) -> tuple[tuple, dict]:
    """The node's call arguments (args, kwargs) with each Keras tensor replaced
    by `values[id(keras_tensor)]`: the same call on other inputs."""
    return node.arguments.fill_in(values)


def skip_input_conversion(layer) -> None:
    """Makes Keras call `layer` with its inputs as given: no conversion to
    tensors, no cast to the layer's compute dtype (an op decides its own dtypes)."""
    layer._convert_input_args = False


def is_composite_tensor(value) -> bool:
    """Whether `value` is a TF composite tensor (`tf.RaggedTensor`,
    `tf.SparseTensor`, an extension type...)."""
    return isinstance(value, tf.__internal__.CompositeTensor)


def has_op_dispatch(function) -> bool:
    """Whether a TF API function supports TensorFlow's op dispatch (its
    decorator holds fallback dispatchers), as tensor ops do."""
    return hasattr(function, "_tf_fallback_dispatchers")


# Modules between an op's caller and the dispatcher: TF's dispatch and decorators,
# and the generated op wrappers, which dispatch from inside themselves.
_DISPATCH_MACHINERY = (
    "tensorflow.python.util.",
    "tensorflow.python.ops.gen_",
    "tensorflow.python.ops.weak_tensor_ops",
    "tensorflow.python.framework.override_binary_operator",
)
# Wrappers between a public function and its body that are not the function.
_TRACING_WRAPPERS = ("tensorflow.python.profiler.", "tensorflow.python.framework.ops")


def _module_of(frame) -> str:
    return frame.f_globals.get("__name__", "")


def called_from_tensorflow(frame) -> bool:
    """Whether the code running in `frame` (the caller of a dispatched op), or
    past TF's dispatch machinery the first frame outside it, is TensorFlow's own."""
    while frame is not None:
        module = _module_of(frame)
        if not module.startswith(_DISPATCH_MACHINERY):
            return module.startswith("tensorflow.")
        frame = frame.f_back
    return False


def called_tensorflow_frame(frame):
    """The frame of the TF function user code called, walking out from `frame`
    (inside TensorFlow), or None: the outermost TensorFlow frame below the user's
    code, past TF's dispatch and tracing wrappers."""
    called = None
    while frame is not None:
        module = _module_of(frame)
        if not module.startswith("tensorflow."):
            break
        if not module.startswith(_DISPATCH_MACHINERY + _TRACING_WRAPPERS):
            called = frame
        frame = frame.f_back
    return called


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


# The callbacks `watching_op_creation` installed for this thread (and asyncio
# task), or None: the patched op constructor then does nothing more.
_op_creation_watcher: contextvars.ContextVar = contextvars.ContextVar(
    "keras_graft_op_creation_watcher", default=None
)
_op_creation_hook_lock = threading.Lock()


@contextlib.contextmanager
def watching_op_creation(before: Callable[[str, int], None], after: Callable[[tf.Operation], None]):
    """Calls `before(op_type, output_count)` before, and `after(operation)`
    after, each graph op is created in this thread, inside the block; an
    exception `before` raises aborts the creation (TensorFlow builds nothing
    of the op).

    Every graph op TensorFlow's Python API creates, in any graph (function
    and loop bodies too: `FuncGraph` defers to `tf.Graph`), goes through
    `tf.Graph._create_op_internal`, with the op's attributes already known,
    so the number of outputs (`num_split=...`) is known before TensorFlow
    allocates them. The constructor is wrapped once per process; outside
    these blocks the wrapper only reads a context variable.
    """
    _install_op_creation_hook()
    token = _op_creation_watcher.set((before, after))
    try:
        yield
    finally:
        _op_creation_watcher.reset(token)


def _install_op_creation_hook() -> None:
    from tensorflow.python.framework import ops

    with _op_creation_hook_lock:
        original = ops.Graph._create_op_internal
        if getattr(original, "graft_watched", False):
            return

        def _create_op_internal(
            self,
            op_type,
            inputs,
            dtypes=None,
            input_types=None,
            name=None,
            attrs=None,
            op_def=None,
            compute_device=True,
        ):
            watcher = _op_creation_watcher.get()
            if watcher is None:
                return original(
                    self, op_type, inputs, dtypes, input_types, name, attrs, op_def, compute_device
                )
            before, after = watcher
            before(op_type, _output_count(self, op_type, attrs, op_def))
            operation = original(
                self, op_type, inputs, dtypes, input_types, name, attrs, op_def, compute_device
            )
            after(operation)
            return operation

        _create_op_internal.graft_watched = True
        ops.Graph._create_op_internal = _create_op_internal


def _output_count(graph: tf.Graph, op_type: str, attrs, op_def) -> int:
    """How many outputs an op of `op_type` with these attributes will have:
    one per output argument, or the number an attribute gives (`num_split`,
    the length of a type list); an attribute left out counts as its default."""
    op_def = op_def or graph.op_def_for_type(op_type)
    attrs = attrs or {}
    defaults = {attr.name: attr.default_value for attr in op_def.attr}
    count = 0
    for argument in op_def.output_arg:
        if argument.number_attr:
            value = attrs.get(argument.number_attr, defaults.get(argument.number_attr))
            count += value.i if value is not None else 1
        elif argument.type_list_attr:
            value = attrs.get(argument.type_list_attr, defaults.get(argument.type_list_attr))
            count += len(value.list.type) if value is not None else 1
        else:
            count += 1
    return count


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


def op_type_is_stateful(graph: tf.Graph, op_type: str) -> bool | None:
    """Whether TensorFlow registers `op_type` as stateful (its `OpDef`), or
    None for a type it does not know (a function called by name)."""
    try:
        return graph.op_def_for_type(op_type).is_stateful
    except RuntimeError:  # "Op type not registered"
        return None


def registered_gradient(op_type: str):
    """The gradient function TensorFlow registers for `op_type`.

    None when the op type is registered as not differentiable
    (`tf.no_gradient`, e.g. `Shape`); raises `LookupError` when no gradient
    is registered at all (`HistogramFixedWidth`).
    """
    from tensorflow.python.framework import ops

    return ops._gradient_registry.lookup(op_type)


def call_concrete_flat(concrete, tensors: list, *, on_calling_thread: bool = False) -> list:
    """`concrete(*tensors)` for a concrete `tf.function` of flat tensors,
    without the public call's binding of structured arguments (half the cost
    of a small function's call). Captured tensors are appended, and gradient
    tapes do not record the call, as in the public call.

    Eager TensorFlow runs a function call on its inter-op thread pool and
    blocks the caller until the pool is done: a wake-up of another thread per
    call, and the pool's threads spin looking for work after it, on the cores
    the caller wants back. `on_calling_thread` runs the function as one eager
    `PartitionedCall` op instead (`StatefulPartitionedCall` for a stateful
    function, as TensorFlow chooses), which eager TensorFlow executes on the
    calling thread, node after node: independent nodes no longer run side by
    side (a kernel's own intra-op threads still do), and a small function's
    call costs a fifth.
    """
    function = concrete._inference_function
    arguments = [*tensors, *concrete.captured_inputs]
    if not on_calling_thread:
        return function.call_flat(*arguments)
    call = (
        tf.raw_ops.StatefulPartitionedCall
        if function.call_options.is_stateful
        else tf.raw_ops.PartitionedCall
    )
    with record.stop_recording():
        return call(
            args=arguments,
            Tout=[t.dtype for t in concrete.outputs],
            f=function.name.decode(),
            # What the public call passes: the context's config (soft placement),
            # which Grappler optimizes the function with.
            config_proto=context.context().function_call_options.config_proto_serialized,
        )


def function_graph(name: str) -> tf.Graph:
    """A fresh `FuncGraph`: a graph in which `tf.init_scope` lifts variable
    creation out to the eager context, as a `tf.function` trace does."""
    return tf.__internal__.FuncGraph(name)


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


def legacy_model_from_config(config: dict, safe_mode: bool, custom_objects: dict | None = None):
    """A model from a legacy (Keras 2) config, as Keras' `.h5` loader builds it."""
    with (
        serialization_lib.SafeModeScope(safe_mode),
        legacy_saving_options.keras_option_scope(use_legacy_config=True),
    ):
        return legacy_saving_utils.model_from_config(config, custom_objects=custom_objects)


def load_legacy_h5_weights(group, model) -> None:
    """Loads the `model_weights` group of an `.h5` model file into `model`, as
    Keras' `.h5` loader does: layer by layer in order, the layers with weights."""
    legacy_h5_format.load_weights_from_hdf5_group(group, model)


def decode_legacy_json(text):
    """A JSON attribute of a legacy model file (`training_config`), decoded as Keras does."""
    return legacy_json_utils.decode(text.decode("utf-8") if isinstance(text, bytes) else text)


def keras3_only_optimizer_variables(optimizer) -> dict:
    """The variables of a built Keras 3 optimizer that the same Keras 2 optimizer
    kept out of its saved state, by kind.

    - `"u_product"`: Nadam's running product of momentum factors (Keras 2
      held it in an untracked `tf.Variable`, recomputed from the iterations);
    - `"placeholders"`: Adafactor's unused scalar `r` and `c` for each variable
      of rank < 2 (Keras 2's were untracked too; always 0).
    """
    extra = {}
    if getattr(optimizer, "_u_product", None) is not None:
        extra["u_product"] = [optimizer._u_product]
    factored = [*getattr(optimizer, "_r", []), *getattr(optimizer, "_c", [])]
    placeholders = [v for v in factored if v is not None and len(v.shape) == 0]
    if placeholders:
        extra["placeholders"] = placeholders
    return extra


# Keras' own `load_model`, kept before `route_load_model` replaces it.
keras_load_model = saving_api.load_model


def route_load_model(load) -> None:
    """Makes `keras.models.load_model` (and `keras.saving.load_model`) call
    `load(filepath, custom_objects, compile, safe_mode, keras_load)`, with
    Keras' own function as `keras_load`. Idempotent.

    Keras exports one function under several modules; each module that holds
    it gets the new one. Code that imported the function by name earlier
    (`from keras.models import load_model`) keeps Keras' own.
    """
    import functools
    import sys

    import keras

    @functools.wraps(keras_load_model)
    def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
        return load(filepath, custom_objects, compile, safe_mode, keras_load_model)

    load_model.graft_load = load
    modules = [keras.models, keras.saving, saving_api] + [
        module
        for name, module in list(sys.modules.items())
        if name.startswith("keras") and module is not None
    ]
    for module in modules:
        current = getattr(module, "load_model", None)
        if current is keras_load_model or getattr(current, "graft_load", None) is not None:
            module.load_model = load_model


def keras2_metadata_nodes(data: bytes) -> list[dict]:
    """Every node of a Keras 2 SavedModel's `keras_metadata.pb`, in file order:
    `node_id`, `node_path`, `identifier`, and `metadata` (`class_name`,
    `config`...) decoded as Keras' `.h5` loader decodes configs."""
    from tensorflow.python.keras.protobuf import saved_metadata_pb2

    metadata = saved_metadata_pb2.SavedMetadata()
    metadata.ParseFromString(data)
    return [
        {
            "node_id": node.node_id,
            "node_path": node.node_path,
            "identifier": node.identifier,
            "metadata": legacy_json_utils.decode(node.metadata),
        }
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
