"""Running TensorFlow functions on PyTorch tensors, with autograd.

Tensors cross by DLPack, without copies, except where TensorFlow would crash
the process on a borrowed buffer: a view that is not contiguous or not
64-byte aligned is copied first, and dtypes DLPack does not carry (bool) go
through NumPy. The forward pass records a `tf.GradientTape` only when an
input needs a gradient; the backward pass replays it once (double backward
is refused with a clear error). The bridge is excluded from `torch.compile`, which would otherwise
recompile on every call.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf
import torch
import torch.utils.dlpack

# TensorFlow kernels read buffers with 64-byte aligned loads.
_ALIGNMENT = 64


def to_tf(tensor: torch.Tensor) -> tf.Tensor:
    tensor = tensor.detach()
    if tensor.dtype == torch.bool:
        return tf.constant(tensor.cpu().numpy())
    if not tensor.is_contiguous() or tensor.data_ptr() % _ALIGNMENT:
        tensor = tensor.clone(memory_format=torch.contiguous_format)
    return tf.experimental.dlpack.from_dlpack(torch.utils.dlpack.to_dlpack(tensor))


def to_torch(tensor: tf.Tensor) -> torch.Tensor:
    if tensor.dtype == tf.bool:
        return torch.from_numpy(np.array(tensor.numpy()))
    return torch.utils.dlpack.from_dlpack(tf.experimental.dlpack.to_dlpack(tensor))


class _TFFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, function, name, *tensors):
        ctx.name = name
        inputs = [to_tf(t) for t in tensors]
        wanted = [i for i, needs in enumerate(ctx.needs_input_grad[2:]) if needs]
        if wanted:
            with tf.GradientTape() as tape:
                for i in wanted:
                    tape.watch(inputs[i])
                outputs = function(*inputs)
            ctx.tape, ctx.inputs, ctx.outputs, ctx.wanted = tape, inputs, outputs, wanted
        else:
            outputs = function(*inputs)
        results = tuple(to_torch(o) for o in outputs)
        ctx.mark_non_differentiable(*(r for r in results if not r.is_floating_point()))
        return results

    @staticmethod
    def backward(ctx, *grad_outputs):
        if torch.is_grad_enabled():  # backward(create_graph=True): a gradient of gradients
            raise RuntimeError(
                f"{ctx.name}: gradients of gradients (double backward, "
                "`create_graph=True`) do not go through TensorFlow ops on the torch "
                "backend. Compute them on the tensorflow backend, or use keras.ops "
                "equivalents for this part of the model."
            )
        if not getattr(ctx, "wanted", None):
            return (None,) * len(ctx.needs_input_grad)
        tape = ctx.tape
        if tape is None:
            raise RuntimeError(
                f"{ctx.name}: a second backward pass through TensorFlow ops "
                "(`retain_graph=True`) is not supported on the torch backend; run "
                "the forward pass again."
            )
        ctx.tape = None  # A GradientTape gives gradients once.
        pairs = [(o, g) for o, g in zip(ctx.outputs, grad_outputs) if o.dtype.is_floating]
        grads = tape.gradient(
            [o for o, _ in pairs],
            [ctx.inputs[i] for i in ctx.wanted],
            output_gradients=[to_tf(g.contiguous()) for _, g in pairs],
        )
        by_input = dict(zip(ctx.wanted, grads))
        return (None, None, *(
            None if by_input.get(i) is None else to_torch(by_input[i])
            for i in range(len(ctx.inputs))
        ))


@torch._dynamo.disable
def call(function: Callable, flat_inputs: list, *, name: str) -> list:
    """`function(*flat_inputs)` (a TF function of flat tensors) on torch tensors."""
    return list(_TFFunction.apply(function, name, *flat_inputs))
