"""A TF function as the JAX and torch bridges compile it: traced once per input
signature, with TensorFlow's gradient as another TF function, and the errors
of differentiating what cannot be.

>>> traced = Traced(lambda x: tf.math.top_k(x[0], k=2), [None], (tf.TensorSpec((3,)),))
>>> [s.dtype.name for s in traced.output_specs], traced.random
(['float32', 'int32'], False)
>>> traced.differentiable_inputs(), traced.differentiable_outputs()
([0], [0])
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from keras_graft import _compat
from keras_graft.errors import BridgeGradientError


class Traced:
    """`tf_function` of nested `inputs` as a function of flat tensors, traced
    once on the input signature `specs`: what both bridges compile from."""

    def __init__(self, tf_function: Callable, inputs, specs: tuple):
        structure = {}

        def function(*tensors):
            outputs = tf_function(tf.nest.pack_sequence_as(inputs, list(tensors)))
            structure.setdefault("outputs", outputs)
            return tf.nest.flatten(outputs)

        self.function = function  # flat TF tensors -> flat TF tensors
        self.specs = specs
        self.concrete = tf.function(function, autograph=False).get_concrete_function(*specs)
        self.structure = tf.nest.map_structure(lambda _: None, structure["outputs"])
        self.output_specs = [
            tf.TensorSpec(o.shape, o.dtype) for o in tf.nest.flatten(self.concrete.structured_outputs)
        ]
        self.op_types = called_op_types(self.concrete.graph)
        self.random = draws_random(self.concrete.graph, self.op_types)
        self.in_caller_thread = runs_in_caller_thread(self.op_types)

    def differentiable_inputs(self) -> list[int]:
        return [i for i, s in enumerate(self.specs) if differentiable(s.dtype)]

    def differentiable_outputs(self) -> list[int]:
        return [i for i, s in enumerate(self.output_specs) if differentiable(s.dtype)]

    def vjp(self, wanted: list[int]) -> Callable:
        """A TF function of (inputs..., cotangents of the differentiable
        outputs...) giving the gradients of the inputs `wanted`, zeros where
        an input does not reach the outputs. Each gradient is dense and shaped
        like its input: TF gives `tf.gather`'s as `IndexedSlices`, and
        `tf.nn.isotonic_regression`'s in the shape of its internal reshape,
        which neither bridge can hand over. Running the function again inside
        it costs little: what the gradient does not read is pruned."""
        count, outputs_wanted = len(self.specs), self.differentiable_outputs()

        def vjp(*tensors):
            inputs, cotangents = list(tensors[:count]), tensors[count:]
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                for i in wanted:
                    tape.watch(inputs[i])
                outputs = self.function(*inputs)
            return dense_gradients(
                tape, [outputs[i] for i in outputs_wanted], [inputs[i] for i in wanted], cotangents
            )

        return vjp

    def vjp_specs(self) -> list:
        return [*self.specs, *(self.output_specs[i] for i in self.differentiable_outputs())]


def dense_gradients(tape: tf.GradientTape, outputs: list, inputs: list, cotangents) -> list:
    """TF's gradients of `outputs` (given their `cotangents`) with respect to
    `inputs`, as the bridges hand them back: zeros where an input is not
    connected, and dense tensors of each input's shape (`tf.gather`'s are
    `IndexedSlices`; `tf.nn.isotonic_regression`'s come in another shape)."""
    gradients = tape.gradient(
        outputs,
        inputs,
        output_gradients=list(cotangents),
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    return [tf.reshape(tf.convert_to_tensor(g), tf.shape(x)) for g, x in zip(gradients, inputs)]


def called_op_types(graph: tf.Graph) -> set[str]:
    """The op types of `graph`, and of the functions its ops call (the
    branches of `tf.cond`, loop bodies), transitively."""
    op_types, _ = _compat.op_types_called(graph, graph.get_operations())
    return op_types


def draws_random(graph: tf.Graph, op_types: set[str]) -> bool:
    """Whether ops of `graph` (of types `op_types`, functions included) draw
    random numbers: stateful ops other than checks and printing, which run
    anew draw anew, so that a gradient must come from the very run it is of.

    Control flow and calls are stateful only where a function they run is,
    and those functions' op types are in `op_types` too (`tf.image.rot90`
    branches on `k` and draws nothing). A type TensorFlow cannot describe
    counts as random.

    >>> graph = tf.function(lambda x: tf.image.rot90(x)).get_concrete_function(
    ...     tf.TensorSpec((2, 2, 1))).graph
    >>> draws_random(graph, called_op_types(graph))
    False
    >>> graph = tf.function(lambda x: tf.nn.dropout(x, 0.5)).get_concrete_function(
    ...     tf.TensorSpec((2, 2))).graph
    >>> draws_random(graph, called_op_types(graph))
    True
    """
    return any(
        _compat.op_type_is_stateful(graph, op_type) is not False
        for op_type in op_types - _DETERMINISTIC_STATEFUL_OPS - _STATEFUL_THROUGH_FUNCTIONS
    )


def runs_in_caller_thread(op_types: set[str]) -> bool:
    """Whether a function of ops of `op_types` (functions included) can run
    in the calling thread (`_compat.call_concrete_flat`): TensorFlow's
    single-threaded executor refuses control flow, and a function's
    `tf.cond`, `tf.switch_case` and loops are lowered to it.

    >>> runs_in_caller_thread({"Relu", "ClipByValue"}), runs_in_caller_thread({"Relu", "StatelessWhile"})
    (True, False)
    """
    return not op_types & _CONTROL_FLOW


# Functional control flow (lowered to the dataflow kind when a function runs)
# and the dataflow kind itself.
_CONTROL_FLOW = frozenset(
    {"If", "StatelessIf", "Case", "StatelessCase", "While", "StatelessWhile"}
    | {"Switch", "RefSwitch", "_SwitchN", "Merge", "RefMerge", "Enter", "RefEnter", "Exit", "RefExit"}
    | {"NextIteration", "RefNextIteration", "LoopCond", "ControlTrigger"}
)
_DETERMINISTIC_STATEFUL_OPS = frozenset({"Assert", "Print", "PrintV2"})
_STATEFUL_THROUGH_FUNCTIONS = frozenset({"If", "While", "Case", "StatefulPartitionedCall"})


def random_op_error(name: str, backend_name: str) -> BridgeGradientError:
    """The error for a gradient through random ops, which the bridge would
    compute from other random numbers than the forward pass drew."""
    return BridgeGradientError(
        f"{name}: its TF ops draw random numbers, and on the {backend_name} backend "
        "the gradient would be computed from other draws than the forward pass "
        "used. Use Keras' own randomness here (`keras.layers.Dropout`, "
        "`keras.random`), or TF's stateless random ops with the seed as an input "
        "(`tf.random.stateless_uniform`)."
    )


def differentiable(dtype: tf.DType) -> bool:
    """Float and complex dtypes: what gradients flow through."""
    return dtype.is_floating or dtype.is_complex


def no_gradient_error(name: str, backend_name: str, error: LookupError) -> BridgeGradientError:
    """The error for an op on the path to the loss that TensorFlow has no gradient for."""
    return BridgeGradientError(
        f"{name}: TensorFlow has no gradient for an op in this layer ({error}), so "
        f"the {backend_name} backend cannot train through it. Keep it off the path "
        "from the weights to the loss (`tf.stop_gradient` on its inputs), or use a "
        "differentiable equivalent."
    )
