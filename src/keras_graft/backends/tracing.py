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
        # Stateful ops other than checks and printing: random ops, which draw
        # anew when run again, so their gradient must come from this very run.
        self.random = any(
            op.op_def.is_stateful and op.type not in _DETERMINISTIC_STATEFUL_OPS
            for op in self.concrete.graph.get_operations()
        )

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
            gradients = tape.gradient(
                [outputs[i] for i in outputs_wanted],
                [inputs[i] for i in wanted],
                output_gradients=list(cotangents),
                unconnected_gradients=tf.UnconnectedGradients.ZERO,
            )
            return [
                tf.reshape(tf.convert_to_tensor(g), tf.shape(inputs[i])) for g, i in zip(gradients, wanted)
            ]

        return vjp

    def vjp_specs(self) -> list:
        return [*self.specs, *(self.output_specs[i] for i in self.differentiable_outputs())]


_DETERMINISTIC_STATEFUL_OPS = frozenset({"Assert", "Print", "PrintV2"})


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
