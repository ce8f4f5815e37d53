"""Shape, dtype and value inference for op layers, by TensorFlow itself.

Each op is traced once, into one shared scratch `tf.Graph`, on symbolic stand-ins
for its Keras tensor inputs. TensorFlow's own shape functions then give the
output's exact shape and dtype: `top_k` indices are int32, `tf.signal.stft`
frames are counted, string ops have string outputs.

Because every traced op's outputs stay in the same graph and are remembered on
their Keras tensors, TensorFlow also sees *where values come from*. Its
constant folding of shape arithmetic then works across ops, as Keras 2's did:
with a batch of 2, `tf.ones(tf.shape(x))` is `(2, 10)` and
`tf.range(tf.shape(x)[0] * 3)` is `(6,)`. Small integer tensors produced by
Keras' own ops (`x[0]`, `a * 3`) are rebuilt in the graph for the same reason.

Tracing adds only the op's own nodes to the graph, so building a model with N
wrapped ops costs O(N), not O(N^2). The graph is replaced by a fresh one past
`MAX_GRAPH_VERSION` nodes; Keras tensors from before then get new stand-ins.

Most models repeat their ops (N identical blocks): `SignatureCache` keeps what
a trace found per op, arguments and input signature, for the traces whose
result depends on nothing else, and answers repeats without touching the graph.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable

import keras
import numpy as np
import tensorflow as tf
from keras import tree

from keras_graft import _compat
from keras_graft.core import safety, static_values
from keras_graft.errors import OpTraceError, TracingBudgetError, UnstorableArgumentError

MAX_GRAPH_VERSION = 200_000

# An input of an op from a model file keeps its producing ops (for constant
# folding) only when every tensor it depends on has at most this many
# elements (`_cheap_to_compute`); otherwise it gets a fresh stand-in.
MAX_UNTRUSTED_VALUE_ELEMENTS = 4096

# Shape-like values (small integer vectors) are worth rebuilding from their
# producing ops; anything else only needs its shape and dtype.
_MAX_VALUE_ELEMENTS = 64

_SYMBOLIC_ATTR = "_graft_symbolic_value"

_graph: tf.Graph | None = None


def scratch_graph() -> tf.Graph:
    """The shared graph ops are traced into."""
    global _graph
    if _graph is None or _graph.version > MAX_GRAPH_VERSION:
        _graph = tf.Graph()
    return _graph


def symbolic_value(tensor: _compat.KerasTensor, graph: tf.Graph, untrusted: bool = False):
    """The graph tensor standing for a Keras tensor in `graph`.

    With `untrusted`, ops rebuilt to find it get untrusted stand-ins.
    """
    cached = getattr(tensor, _SYMBOLIC_ATTR, None)
    if cached is not None and cached[0] is graph:
        return cached[1]
    # Keras marks results of its ops on non-Keras operands sparse
    # (`keras_tensor * tf.constant(2.0)`); rebuilding shows what they are.
    worth_rebuilding = _is_shape_like(tensor) or tensor.sparse
    value = _rebuild(tensor, graph, untrusted) if worth_rebuilding else None
    if value is None:
        value = _placeholder(tensor, graph)
        _remember(tensor, graph, value)
    return value


def _remember(tensor: _compat.KerasTensor, graph: tf.Graph, value) -> None:
    setattr(tensor, _SYMBOLIC_ATTR, (graph, value))


def _is_shape_like(tensor: _compat.KerasTensor) -> bool:
    dtype = tf.as_dtype(tensor.dtype)
    shape = tensor.shape
    return (
        (dtype.is_integer or dtype == tf.bool)
        and len(shape) <= 1
        and all(d is not None for d in shape)
        and int(np.prod(shape)) <= _MAX_VALUE_ELEMENTS
        and not tensor.ragged
    )


def _rebuild(tensor: _compat.KerasTensor, graph: tf.Graph, untrusted: bool = False):
    """Re-runs the pure op that produced `tensor` in `graph`, or returns None.

    With `untrusted`, or for an op from a model file, its inputs get the
    stand-ins an untrusted op gets (`_stand_in`).
    """
    operation, node = _compat.producing_operation(tensor)
    if operation is None:
        return None
    # Op layers and Keras' own ops (not layers: those may own weights) are pure.
    call_in_graph = getattr(operation, "call_in_graph", None)
    if call_in_graph is None and isinstance(operation, keras.layers.Layer):
        return None
    untrusted = untrusted or getattr(operation, "untrusted", False)
    inputs = {id(t): _stand_in(t, graph, untrusted) for t in _compat.node_inputs(node)}
    args, kwargs = _compat.fill_in_call(node, inputs)
    try:
        with graph.as_default():
            if call_in_graph is not None:
                outputs = tree.flatten(call_in_graph(*args, **kwargs))
            else:
                args, kwargs = in_graph((args, kwargs))
                outputs = tree.flatten(operation.call(*args, **kwargs))
    except Exception:  # A Keras op that cannot run in a v1 graph: fall back to a stand-in.
        return None
    if len(outputs) != len(node.outputs):
        return None
    for keras_tensor, value in zip(node.outputs, outputs):
        _remember(keras_tensor, graph, value)
    return getattr(tensor, _SYMBOLIC_ATTR)[1]


def in_graph(structure):
    """`structure` with its eager tensors made constants of the current graph.

    A v1 graph cannot capture eager tensors, and as constants TensorFlow's
    shape inference sees their values.
    """

    def convert(value):
        if isinstance(value, tf.Tensor) and hasattr(value, "numpy"):
            return tf.constant(value.numpy(), dtype=value.dtype)
        return value

    return tree.map_structure(convert, structure)


def _placeholder(tensor: _compat.KerasTensor, graph: tf.Graph):
    dtype = tf.as_dtype(tensor.dtype)
    with graph.as_default():
        if tensor.ragged:
            ragged_rank = tensor.ragged_rank or max(len(tensor.shape) - 1, 1)
            return tf.compat.v1.ragged.placeholder(dtype, ragged_rank, tensor.shape[ragged_rank + 1 :])
        # Elsewhere than on TensorFlow no Keras op rebuilds here to show that a
        # result Keras marked sparse is dense (`x * 4.0`), and a really sparse
        # input is refused for the backend after the trace (`check_portable`).
        if tensor.sparse and len(tensor.shape) > 0 and keras.backend.backend() == "tensorflow":
            return tf.compat.v1.sparse_placeholder(dtype, tensor.shape)
        return tf.compat.v1.placeholder(dtype, tensor.shape)


def trace(
    function: Callable,
    inputs,
    *,
    display_name: str,
    audit: bool,
    untrusted: bool = False,
    layer_name: str | None = None,
    stored_ranks: list[int] | None = None,
):
    """Runs `function(inputs)` on graph stand-ins of the Keras tensors `inputs`.

    Returns the output structure with Keras tensors in place of graph tensors,
    and the ranks of the flat outputs when the graph could not tell some of
    them (None otherwise): the layer saves those, since only running the op
    found them.

    With `audit`, refuses graphs that hold unsafe op types
    (`keras_graft.core.safety`). With `untrusted` (an op from a model file), runs
    nothing: large inputs get fresh stand-ins, so TensorFlow's constant
    folding cannot compute large values from the file's constants, and
    outputs of unknown rank take the `stored_ranks` of the file or are
    refused; they are never probed.
    """
    graph = scratch_graph()
    flat = tree.flatten(inputs)
    where = _where(display_name, layer_name)
    _check_keras_tensors(flat, where)
    with safety.trace_budget(where) if untrusted else contextlib.nullcontext():
        symbolic = [_stand_in(t, graph, untrusted) for t in flat]
        outputs, first_mark = _call_on(function, inputs, symbolic, graph, display_name, flat, audit)
    if audit:
        created = _compat.ops_created_between(graph, first_mark, _compat.op_id_mark(graph))
        safety.audit_graph_ops(display_name, graph, created)
    flat_outputs = tree.flatten(outputs)
    if untrusted:
        safety.check_output_count(where, len(flat_outputs))
    ranks = None
    if any(_unknown_rank(v) for v in flat_outputs):
        if not untrusted:
            _probe_ranks(function, inputs, flat, flat_outputs)
        elif stored_ranks is not None and len(stored_ranks) == len(flat_outputs):
            for value, rank in zip(flat_outputs, stored_ranks):
                if _unknown_rank(value):
                    value.set_shape([None] * rank)
        else:
            raise OpTraceError(_unknown_rank_message(where, loading=True))
        ranks = [_rank(v) for v in flat_outputs]
    keras_outputs = tree.map_structure(lambda v: _to_keras_tensor(v, graph, where), outputs)
    return keras_outputs, ranks


def _check_keras_tensors(flat: list, where: str) -> None:
    """Refuses inputs that are not Keras tensors (`Op(tf.math.add)([x, None])`)."""
    for value in flat:
        if not isinstance(value, _compat.KerasTensor):
            raise OpTraceError(
                f"{where} was called on {value!r:.60} ({type(value).__name__}), not on Keras "
                "tensors. Call it on the Keras tensors it computes on (from `keras.Input` "
                "or other layers)."
            )


def _call_on(
    function: Callable, inputs, symbolic: list, graph: tf.Graph, display_name: str, flat: list, audit: bool
):
    """`function` on the graph stand-ins `symbolic` of `inputs`, and the op
    mark before it (when `audit`); TensorFlow's errors explained."""
    first_mark = _compat.op_id_mark(graph) if audit else None

    def refuse_variables(next_creator, **kwargs):
        raise UnstorableArgumentError(
            f"{display_name} creates a variable ({kwargs.get('name') or 'unnamed'}). "
            "An op layer cannot own variables: they would be created anew on "
            "every call and never saved. Create it with `ctx.weight(...)` or "
            "`ctx.state(...)` in a `@keras_graft.layer` instead."
        )

    with graph.as_default(), tf.variable_creator_scope(refuse_variables):
        try:
            outputs = function(tree.pack_sequence_as(inputs, symbolic))
        except (UnstorableArgumentError, safety.UnsafeOpError, TracingBudgetError):
            raise
        except Exception as error:  # Whatever TF raised on these arguments.
            if isinstance(error, RuntimeError) and "capture an EagerTensor" in str(error):
                raise UnstorableArgumentError(
                    f"{display_name} reads a tf.Variable or eager tensor that no "
                    "layer tracks, so it would be neither trained nor saved with "
                    "the model. Create it with `ctx.weight(...)` in a "
                    "`@keras_graft.layer`, or pass it as a constant argument."
                ) from error
            raise OpTraceError(
                f"TensorFlow could not build {display_name} on Keras tensors {_describe(flat)}: {error}"
            ) from error
    return outputs, first_mark


class SignatureCache:
    """What tracing an op found, per op, arguments and input signature.

    An entry is kept only when the trace could not have seen more than the
    inputs' shapes and dtypes, and its outputs carry nothing more either:

    - every input is dense and TensorFlow can know nothing of its value, not
      even part of it (`static_values.is_opaque`): it stands in the graph as
      a placeholder, or is computed from placeholders' values with no known
      part (`tf.stack([n[0], 4])` has one: the trace may read the 4);
    - every output is dense, has an unknown dimension, and is opaque too.

    Then the same op on the same signature always gives the same outputs, and
    a repeat is answered with fresh Keras tensors, without tracing, auditing
    or probing again. Repeats' outputs get their graph stand-ins only when a
    later op needs them (`symbolic_value`), as Keras layers' outputs do.
    Everything that changes the answer is part of the key: the function
    object, its stored arguments and the functions among them, the structure
    of its inputs, whether it is audited or untrusted, its stored ranks, the
    backend and Keras' default float type. Keys are bounded in size, and the
    cache in entries.
    """

    def __init__(self, capacity: int = 1024):
        self.capacity = capacity  # 0 keeps nothing: every op is traced
        self._entries: dict = {}

    def key(self, function: Callable, arguments_key: Hashable, inputs, **flags) -> tuple | None:
        """The key for this trace, or None if its result may depend on more
        than the input signature, or it would be large."""
        flat = tree.flatten(inputs)
        if arguments_key is None or len(flat) > _MAX_KEYED_INPUTS:
            return None
        signature = []
        for tensor in flat:
            if (
                not isinstance(tensor, _compat.KerasTensor)
                or tensor.sparse
                or tensor.ragged
                or not _carries_no_value(tensor)
            ):
                return None
            signature.append((tuple(tensor.shape), tensor.dtype))
        structure = repr(tree.map_structure(lambda _: 0, inputs))  # [0, 0] vs {'a': 0, 'b': 0}
        key = (function, arguments_key, structure, tuple(signature), tuple(sorted(flags.items())))
        try:
            hash(key)
        except TypeError:  # e.g. an unhashable callable object
            return None
        return key

    def get(self, key):
        """Fresh Keras tensors and ranks for `key`, or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        specs, ranks = entry
        outputs = tree.map_structure(
            lambda spec: _compat.KerasTensor(shape=tuple(spec.shape), dtype=spec.dtype.name), specs
        )
        return outputs, None if ranks is None else list(ranks)

    def put(self, key, outputs, ranks) -> None:
        """Keeps what a trace found, if its outputs carry only their signature."""
        for tensor in tree.flatten(outputs):
            value = getattr(tensor, _SYMBOLIC_ATTR, (None, None))[1]
            if (
                not isinstance(value, tf.Tensor)
                or None not in tuple(tensor.shape)
                or not static_values.is_opaque(value)
            ):
                return
        if self.capacity <= 0:
            return
        if len(self._entries) >= self.capacity:
            self._entries.pop(next(iter(self._entries)))
        specs = tree.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), outputs)
        self._entries[key] = (specs, None if ranks is None else list(ranks))

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


signatures = SignatureCache()

# Ops with more inputs than this are traced each time (their keys would be large).
_MAX_KEYED_INPUTS = 64


def _carries_no_value(tensor: _compat.KerasTensor) -> bool:
    """Whether tracing would see `tensor` as a value TensorFlow can know
    nothing of (`static_values.is_opaque`): a placeholder, or computed from
    placeholders' values with no known part."""
    cached = getattr(tensor, _SYMBOLIC_ATTR, None)
    if cached is not None and cached[0] is _graph:
        return isinstance(cached[1], tf.Tensor) and static_values.is_opaque(cached[1])
    return not _is_shape_like(tensor)  # it will get a placeholder


def _rank(value) -> int | None:
    return value.shape.rank if isinstance(value, (tf.Tensor, tf.RaggedTensor, tf.SparseTensor)) else None


def _stand_in(tensor: _compat.KerasTensor, graph: tf.Graph, untrusted: bool):
    """The graph tensor an op is traced on for the Keras tensor `tensor`.

    An untrusted op keeps the producing ops of an input (constant folding of
    shape arithmetic needs them) only when computing it is cheap: every tensor
    it depends on is a few numbers (`_cheap_to_compute`). Anything else gets a
    fresh stand-in, or TensorFlow's constant folding could run a large or slow
    computation on the file's constants while the op is traced.
    """
    if not untrusted:
        return symbolic_value(tensor, graph)
    if _is_small(tensor) or tensor.sparse:  # sparse: maybe a dense result Keras marked sparse
        value = symbolic_value(tensor, graph, untrusted=True)
        if _cheap_to_compute(value, graph):
            return value
        if isinstance(value, tf.Tensor):  # dense after all: a dense stand-in
            with graph.as_default():
                return tf.compat.v1.placeholder(value.dtype, value.shape)
    return _placeholder(tensor, graph)


def _is_small(tensor) -> bool:
    """A few numbers: strings are out, since one string can hold gigabytes."""
    shape = tensor.shape
    if getattr(shape, "rank", 0) is None or any(d is None for d in shape):
        return False
    dtype = tf.as_dtype(tensor.dtype)
    return (
        (dtype.is_integer or dtype.is_floating or dtype.is_complex or dtype == tf.bool)
        and not getattr(tensor, "ragged", False)
        and int(np.prod(list(shape))) <= MAX_UNTRUSTED_VALUE_ELEMENTS
    )


# `_cheap_to_compute`'s verdicts by op name, for one graph at a time.
_verdicts: tuple = (None, {})

# Ops whose value constant folding never computes from inputs; the walk stops there.
_STAND_IN_OPS = frozenset({"Placeholder", "PlaceholderWithDefault"})


def _cheap_to_compute(value, graph: tf.Graph) -> bool:
    """Whether every tensor `value` depends on in `graph` is small (`_is_small`)
    and made without calling functions: then constant folding it is cheap."""
    if not isinstance(value, tf.Tensor):
        return False
    global _verdicts
    if _verdicts[0] is not graph:
        _verdicts = (graph, {})
    verdicts = _verdicts[1]
    pending, visited = [value.op], []
    while pending:
        operation = pending.pop()
        verdict = verdicts.get(operation.name)
        if verdict is not None:
            if not verdict:
                verdicts[value.op.name] = False
                return False
            continue
        if operation.type not in _STAND_IN_OPS:
            cheap = not _compat.called_function_names(operation.node_def) and all(
                _is_small(t) for t in operation.outputs
            )
            if not cheap:
                verdicts[operation.name] = verdicts[value.op.name] = False
                return False
            pending.extend(t.op for t in operation.inputs)
        visited.append(operation.name)
    verdicts.update(dict.fromkeys(visited, True))
    return True


def _unknown_rank(value) -> bool:
    return isinstance(value, tf.Tensor) and value.shape.rank is None


def _probe_ranks(function: Callable, inputs, flat: list, flat_outputs: list) -> None:
    """Gives rank-unknown outputs the rank they have on all-ones inputs.

    TensorFlow leaves the rank unknown when it depends on non-constant
    arguments it cannot see through (`x[..., ::step]` with a symbolic `step`),
    though the rank rarely depends on the values. All dimensions stay unknown.
    If the probe fails, the rank stays unknown and `_to_keras_tensor` says so.
    Only for ops built in user code: it runs the op.
    """
    if not tf.executing_eagerly() or any(t.sparse or t.ragged for t in flat):
        return
    probes = [
        tf.ones([1 if d is None else d for d in t.shape], dtype=t.dtype)
        if t.dtype != "string"
        else tf.fill([1 if d is None else d for d in t.shape], "")
        for t in flat
    ]
    try:
        probed = tree.flatten(function(tree.pack_sequence_as(inputs, probes)))
    except Exception:  # The probe is best effort; the rank error explains the rest.
        return
    for value, sample in zip(flat_outputs, probed):
        if _unknown_rank(value) and tf.is_tensor(sample):
            value.set_shape([None] * sample.shape.rank)


def _describe(tensors) -> str:
    return ", ".join(f"{t.dtype}{tuple(t.shape)}" for t in tensors) or "(none)"


def _to_keras_tensor(value, graph: tf.Graph, where: str):
    if isinstance(value, tf.RaggedTensor):
        result = _compat.KerasTensor(
            shape=value.shape,
            dtype=value.dtype.name,
            ragged=True,
            ragged_rank=value.ragged_rank,
            row_splits_dtype=value.row_splits.dtype.name,
        )
    elif isinstance(value, tf.SparseTensor):
        if value.shape.rank is None:
            raise OpTraceError(_unknown_rank_message(where))
        result = _compat.KerasTensor(shape=value.shape, dtype=value.dtype.name, sparse=True)
    elif isinstance(value, tf.Tensor):
        if value.shape.rank is None:
            raise OpTraceError(_unknown_rank_message(where))
        if value.dtype in (tf.resource, tf.variant):
            raise OpTraceError(
                f"{where} returns a {value.dtype.name} tensor, which Keras "
                "models cannot pass between layers. Wrap the code that produces "
                "and consumes it in one `@keras_graft.op` function."
            )
        result = _compat.KerasTensor(shape=value.shape, dtype=value.dtype.name)
    else:
        raise OpTraceError(
            f"{where} returned {value!r:.80} ({type(value).__name__}) where "
            "a Keras model needs tensors. Use the op for its tensor outputs only, "
            "or wrap it in a `@keras_graft.op` function that returns tensors."
        )
    _remember(result, graph, value)
    return result


def _where(display_name: str, layer_name: str | None) -> str:
    """The op, and its layer when the layer has another name, for messages."""
    if layer_name and layer_name != display_name:
        return f"{display_name} (layer {layer_name!r})"
    return display_name


def _unknown_rank_message(where: str, loading: bool = False) -> str:
    if loading:
        return (
            f"TensorFlow cannot tell the rank of the output of {where} from the "
            "graph alone, and keras-graft does not run ops from a model file to "
            "find out. Rebuild the model with the op followed by "
            "`tf.ensure_shape(y, [None, ...])` (a static rank), or load a file you "
            "trust with `keras.models.load_model(path, safe_mode=False)`."
        )
    return (
        f"TensorFlow cannot tell the rank of the output of {where}, and "
        "Keras tensors need one. Make the rank static, e.g. give `tf.reshape` "
        "a shape of known length, or follow the op with `tf.ensure_shape`."
    )
