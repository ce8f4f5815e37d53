"""Running TensorFlow functions on PyTorch tensors, with autograd.

Tensors cross by DLPack, without copies, except where TensorFlow would crash
the process on a borrowed buffer: a view that is not contiguous or not
64-byte aligned is copied first, and dtypes DLPack does not carry (bool) go
through NumPy. Complex tensors cross like float ones, gradients included:
torch's convention for complex gradients is TensorFlow's.

The forward pass runs the function in eager TensorFlow. Its backward pass is
TensorFlow's gradient (`Traced.vjp`) as one TF graph function per input
signature, run on the saved inputs: no tape is recorded or replayed, and a
second backward pass (`retain_graph=True`) works as in torch. A function with
random ops draws anew when run again, so there the forward pass records a
`tf.GradientTape` and the backward pass reads it. An op TensorFlow
has no gradient for raises `BridgeGradientError`, naming the layer, at the
first backward pass; double backward is refused the same way. The bridge is
excluded from `torch.compile`, which would otherwise recompile on every call.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import torch
import torch.utils.dlpack

from keras_graft import _compat
from keras_graft.backends.tracing import Traced, no_gradient_error
from keras_graft.errors import BridgeGradientError

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


def signature(flat_inputs: list) -> tuple:
    """What the compiled forms are cached by: each tensor's shape and dtype."""
    return tuple((t.shape, t.dtype) for t in flat_inputs)


def specs(flat_inputs: list) -> tuple:
    """The input signature of torch tensors, as `tf.TensorSpec`s."""
    return tuple(
        tf.TensorSpec(tuple(t.shape), tf.as_dtype(str(t.dtype).removeprefix("torch."))) for t in flat_inputs
    )


class _Compiled:
    """One layer's TF function on one input signature, for torch tensors."""

    def __init__(self, traced: Traced, name: str):
        self.traced, self.name = traced, name
        self.structure = traced.structure
        self.outputs_wanted = traced.differentiable_outputs()
        self._vjps = {}

    def __call__(self, flat: list) -> list:
        if torch.compiler.is_compiling():
            return list(_outside_dynamo(self, *flat))
        if torch.is_grad_enabled() and any(t.requires_grad for t in flat):
            return list(_Crossing.apply(self, *flat))
        # No gradient asked for: no autograd node.
        return [to_torch(o) for o in self.traced.function(*(to_tf(t) for t in flat))]

    def gradients(self, wanted: tuple, inputs: list, cotangents: list) -> list:
        """The gradients of the inputs `wanted`, from TF's graph of the gradient."""
        vjp = self._vjps.get(wanted)
        if vjp is None:
            try:
                concrete = tf.function(self.traced.vjp(list(wanted)), autograph=False)
                vjp = concrete.get_concrete_function(*self.traced.vjp_specs())
            except LookupError as error:  # TF registers no gradient for an op on the path.
                raise no_gradient_error(self.name, "torch", error) from error
            self._vjps[wanted] = vjp
        return _compat.call_concrete_flat(vjp, [*inputs, *cotangents])


def compile(traced: Traced, name: str) -> _Compiled:
    return _Compiled(traced, name)


class _Crossing(torch.autograd.Function):
    @staticmethod
    def forward(ctx, compiled, *tensors):
        ctx.compiled = compiled
        ctx.wanted = tuple(i for i, needs in enumerate(ctx.needs_input_grad[1:]) if needs)
        inputs = [to_tf(t) for t in tensors]
        ctx.tape = None
        if ctx.wanted and compiled.traced.random:
            ctx.tape = tf.GradientTape(persistent=True, watch_accessed_variables=False)
            with ctx.tape:
                for i in ctx.wanted:
                    ctx.tape.watch(inputs[i])
                outputs = compiled.traced.function(*inputs)
            ctx.tf_inputs, ctx.tf_outputs = inputs, outputs
        else:
            outputs = compiled.traced.function(*inputs)
        if ctx.wanted:
            # Saved by torch, which then refuses the backward pass of an input
            # changed in place since.
            ctx.save_for_backward(*tensors)
        results = tuple(to_torch(o) for o in outputs)
        ctx.mark_non_differentiable(*(r for r in results if not _differentiable(r.dtype)))
        return results

    @staticmethod
    def backward(ctx, *grad_outputs):
        compiled = ctx.compiled
        if torch.is_grad_enabled():  # backward(create_graph=True): a gradient of gradients
            raise BridgeGradientError(
                f"{compiled.name}: gradients of gradients (double backward, "
                "`create_graph=True`) do not go through TensorFlow ops on the torch "
                "backend. Compute them on the tensorflow backend, or use keras.ops "
                "equivalents for this part of the model."
            )
        tensors = ctx.saved_tensors
        if not ctx.wanted or not compiled.outputs_wanted:
            return (None,) * (1 + len(tensors))
        cotangents = [to_tf(grad_outputs[i].contiguous()) for i in compiled.outputs_wanted]
        if ctx.tape is None:
            grads = compiled.gradients(ctx.wanted, [to_tf(t) for t in tensors], cotangents)
        else:
            try:
                grads = ctx.tape.gradient(
                    [ctx.tf_outputs[i] for i in compiled.outputs_wanted],
                    [ctx.tf_inputs[i] for i in ctx.wanted],
                    output_gradients=cotangents,
                    unconnected_gradients=tf.UnconnectedGradients.ZERO,
                )
            except LookupError as error:  # TF registers no gradient for an op on the path.
                raise no_gradient_error(compiled.name, "torch", error) from error
        by_input = dict(zip(ctx.wanted, grads))
        return (None, *(to_torch(by_input[i]) if i in by_input else None for i in range(len(tensors))))


def _differentiable(dtype: torch.dtype) -> bool:
    return dtype.is_floating_point or dtype.is_complex


@torch._dynamo.disable
def _outside_dynamo(compiled: _Compiled, *tensors):
    """The crossing, which `torch.compile` leaves out of its graphs (instead
    of recompiling on every call). Only while dynamo traces: the wrapper
    costs each call."""
    return _Crossing.apply(compiled, *tensors)
