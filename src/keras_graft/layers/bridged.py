"""A `@keras_graft.layer` on the JAX and torch backends.

There the function still runs in TensorFlow, through the backend's bridge
(`keras_graft.backends.run`): on the values of the layer's variables, with
`BridgedState` stand-ins for its state, whose final values come back and are
assigned to the real variables after the call. Output specs are traced in a
TensorFlow graph, since TF ops do not take the backend's symbolic arrays.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_graft import _compat, backends
from keras_graft.errors import DistributedStateError
from keras_graft.layers.context import LayerContext
from keras_graft.layers.state import BridgedState

__all__ = ["call", "output_spec", "refuse_distributed_state"]


def refuse_distributed_state(layer, state) -> None:
    """ctx.state under a Keras distribution (JAX, torch): refused, where the
    layer is built (or called, when the distribution came later)."""
    if (
        backends.backend() != "tensorflow"
        and keras.distribution.distribution() is not None
        and state.variables.has_state()
    ):
        raise DistributedStateError(
            f"{layer.name}: ctx.state updates combine across replicas only "
            "under tf.distribute (the tensorflow backend); a Keras "
            f"distribution on {backends.backend()} would apply them once for the "
            "whole global batch. Train this model on the tensorflow backend, or "
            "without a distribution."
        )


def call(layer, state, function, inputs, training: bool, masks: dict):
    """`layer`'s call on the JAX or torch backend: `function` (the layer's) on
    `inputs`, with `state` the layer's `FunctionLayerState`."""
    refuse_distributed_state(layer, state)
    entries = list(state.variables.items())
    names = [name for name, _ in entries]
    variables = [variable for _, (_, variable) in entries]
    is_state = [spec.kind == "state" for _, (spec, _) in entries]
    present_masks = {k: m for k, m in masks.items() if m is not None}

    def in_tensorflow(packed):
        inputs_tf, masks_tf, values = packed
        stand_ins = {
            n: BridgedState(v) if is_state_variable else v
            for n, v, is_state_variable in zip(names, values, is_state)
        }
        ctx = LayerContext(layer, state.variables, training=training, masks=masks_tf, stand_ins=stand_ins)
        outputs = function(ctx, *inputs_tf, **state.hyperparameters)
        new_state = [stand_ins[n].value for n, is_state_variable in zip(names, is_state) if is_state_variable]
        return outputs, new_state, ctx.losses

    cache = state.bridge_caches.setdefault(training, {})
    values = [
        backends.snapshot(v.value) if is_state_variable else v.value
        for v, is_state_variable in zip(variables, is_state)
    ]
    outputs, new_state, losses = backends.run(
        in_tensorflow,
        (list(inputs), present_masks, values),
        cache=cache,
        name=layer.name,
    )
    for variable, value in zip((v for v, s in zip(variables, is_state) if s), new_state):
        # The plain Keras assignment: StateVariable's own combines replicas in TF.
        keras.Variable.assign(variable, value)
    for loss in losses:
        layer.add_loss(loss)
    return outputs


def output_spec(layer, state, function, inputs):
    """Keras tensors for `layer`'s outputs on `inputs`, traced in TensorFlow."""
    graph = tf.Graph()
    with graph.as_default():

        def placeholder(tensor):
            return tf.compat.v1.placeholder(tf.as_dtype(tensor.dtype), tensor.shape)

        stand_ins = {
            name: BridgedState(spec.placeholder()) if spec.kind == "state" else spec.placeholder()
            for name, (spec, _) in state.variables.items()
        }
        ctx = LayerContext(layer, state.variables, training=False, stand_ins=stand_ins)
        outputs = function(ctx, *tf.nest.map_structure(placeholder, inputs), **state.hyperparameters)
    return tf.nest.map_structure(
        lambda value: _compat.KerasTensor(shape=tuple(value.shape), dtype=value.dtype.name),
        outputs,
    )
