"""What TensorFlow can know of a graph tensor's value while it builds a graph.

Shape inference reads more than shapes: `tf.reshape(y, tf.stack([n, 4]))`
has shape `(None, 4)` because TensorFlow evaluates the parts of `[n, 4]` it
can. Two evaluators do that while a graph is built, and both follow only a
few op types through partial values:

- Python's `tensor_util.constant_value` (partial through `Pack`, `Unpack`,
  `Split`, `Identity`, `StopGradient`) and `constant_value_as_shape`
  (`Cast`, `Shape`, `Pack`, `Concat`, `ConcatV2`, `StridedSlice`);
- the C++ shape refiner's `ConstantPartialShape` (`Cast`, `Shape`, `ShapeN`,
  `Pack`, `Concat`, `ConcatV2`, `StridedSlice`, `VariableShape`).

Every other op is evaluated whole or not at all, and never through a
placeholder (a stand-in has no value). So a tensor is *opaque*, TensorFlow
can know nothing of its value, when it is a placeholder, comes from an
op of those few kinds all of whose element sources are opaque, or comes
from any other op with an opaque input. `is_opaque` decides that
conservatively: it also treats as element copies ops TensorFlow does not
read through today (`Reshape`, `Tile`, `Select`...), and never calls opaque
an op whose output holds values of no input (`Pad`, `ZerosLike`, `Range`...),
reads only shapes (`Shape`, `Size`...), or calls a function.

>>> import tensorflow as tf
>>> graph = tf.Graph()
>>> with graph.as_default():
...     n = tf.compat.v1.placeholder(tf.int32, [2])
...     known_part = tf.stack([n[0], 4])
...     computed = n * 4
>>> is_opaque(known_part), is_opaque(computed)
(False, True)
"""

from __future__ import annotations

import tensorflow as tf

from keras_graft import _compat

# Ops whose output elements are copies of elements of some inputs (the
# sources: a slice of the inputs): opaque only when every source is. Covers
# every op TensorFlow's evaluators read through partially, and more.
_ELEMENT_SOURCES = {
    "Pack": slice(None),
    "IdentityN": slice(None),
    "Concat": slice(1, None),
    "ConcatV2": slice(None, -1),
    "Split": slice(1, 2),
    "Fill": slice(1, 2),
    "Select": slice(1, 3),
    "SelectV2": slice(1, 3),
    **dict.fromkeys(
        (
            "Cast",
            "Identity",
            "StopGradient",
            "CheckNumerics",
            "CheckNumericsV2",
            "DebugIdentityV2",
            "EnsureShape",
            "StridedSlice",
            "Slice",
            "Unpack",
            "SplitV",
            "Reshape",
            "Squeeze",
            "ExpandDims",
            "Transpose",
            "Reverse",
            "ReverseV2",
            "Tile",
            "BroadcastTo",
            "Gather",
            "GatherV2",
            "GatherNd",
        ),
        slice(0, 1),
    ),
}

# Ops that are never opaque: the output holds values of no input, or of
# shapes only, or is known without inputs.
_NEVER_OPAQUE = frozenset(
    {
        "Const",
        "Shape",
        "ShapeN",
        "Size",
        "Rank",
        "VariableShape",
        "BroadcastArgs",
        "ZerosLike",
        "OnesLike",
        "Range",
        "Empty",
        "Pad",
        "PadV2",
        "MirrorPad",
        "PlaceholderWithDefault",
        "OneHot",
        "MatrixDiag",
        "MatrixDiagV2",
        "MatrixDiagV3",
        "MatrixSetDiag",
        "MatrixSetDiagV2",
        "MatrixSetDiagV3",
        "MatrixBandPart",
        "ScatterNd",
        "TensorScatterUpdate",
        "DynamicStitch",
        "ParallelDynamicStitch",
    }
)

# How many ops not seen before `is_opaque` looks at before giving up.
_MAX_NEW_OPS = 256

# Verdicts by op name, for one graph at a time: (graph, {name: bool}).
_verdicts: tuple = (None, {})


def is_opaque(value: tf.Tensor) -> bool:
    """Whether TensorFlow can know nothing of `value`'s value while it builds
    the graph (see the module docstring); False when unsure."""
    global _verdicts
    if _verdicts[0] is not value.graph:
        _verdicts = (value.graph, {})
    verdicts = _verdicts[1]
    pending, budget = [value.op], _MAX_NEW_OPS
    while pending:  # Depth first: an op is decided once its inputs are.
        operation = pending[-1]
        if operation.name in verdicts:
            pending.pop()
            continue
        deciding = _deciding_inputs(operation)
        undecided = [t.op for t in deciding if t.op.name not in verdicts]
        if undecided:
            budget -= len(undecided)
            if budget < 0:
                return False
            pending.extend(undecided)
            continue
        verdicts[operation.name] = _decide(operation, [verdicts[t.op.name] for t in deciding])
        pending.pop()
    return verdicts[value.op.name]


def _is_stand_in(operation: tf.Operation) -> bool:
    # In a function body a placeholder may stand for a captured outer value,
    # which `constant_value_as_shape` reads.
    return operation.type == "Placeholder" and not operation.graph.building_function


def _deciding_inputs(operation: tf.Operation) -> list:
    """The inputs whose opacity decides `operation`'s (none for ops decided alone)."""
    if operation.type == "Placeholder" or _never_opaque(operation):
        return []
    sources = _ELEMENT_SOURCES.get(operation.type, slice(None))
    return list(operation.inputs)[sources]


def _never_opaque(operation: tf.Operation) -> bool:
    return operation.type in _NEVER_OPAQUE or bool(_compat.called_function_names(operation.node_def))


def _decide(operation: tf.Operation, inputs_opaque: list[bool]) -> bool:
    if operation.type == "Placeholder":
        return _is_stand_in(operation)
    if _never_opaque(operation) or not inputs_opaque:
        return False
    if operation.type in _ELEMENT_SOURCES:
        return all(inputs_opaque)
    return any(inputs_opaque)
