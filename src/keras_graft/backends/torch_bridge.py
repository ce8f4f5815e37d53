"""Running TensorFlow functions on PyTorch tensors, with autograd.

Tensors cross by DLPack, without copies, except where TensorFlow would crash
the process on a borrowed buffer: a view that is not contiguous or not
64-byte aligned is copied first, and dtypes DLPack does not carry (bool) go
through NumPy. Complex tensors cross like float ones, gradients included:
torch's convention for complex gradients is TensorFlow's.

The forward pass runs the function in eager TensorFlow. Its backward pass is
TensorFlow's gradient (`Traced.vjp`) as one TF graph function per input
signature, run on the saved inputs: no tape is recorded or replayed, and a
second backward pass (`retain_graph=True`) works as in torch. Consecutive op
layers (one's output reaching the next unchanged) share one backward
pass: one TF function for the chain's gradient, run from the chain's inputs,
whose intermediates stay inside it (`_Node`); one crossing into TF per
chain instead of one per op layer. A function with
random ops draws anew when run again, so there the forward pass records a
`tf.GradientTape` and the backward pass reads it. An op TensorFlow
has no gradient for raises `BridgeGradientError`, naming the layer, at the
first backward pass; double backward is refused the same way. The bridge is
excluded from `torch.compile`, which would otherwise recompile on every call.

Why a TF gradient call costs 3-7x more inside a training step than called
in a loop (2-core CPU; about 70 us alone, 200-500 us as the step's first TF
call after torch's backward kernels, up to 5 ms with torch's default threads
on a busy machine):

- TF's function runtime hands a function's kernels to its inter-op thread
  pool and waits to be woken. In a loop those threads are still spinning;
  between torch's kernels they have gone to sleep, so a call pays two
  wake-ups. The gradient functions run on the calling thread instead, as
  one eager `PartitionedCall` op (`_compat.call_concrete_flat`): 19-42%
  less per call in the step, in four paired runs (measured with TF's
  single-threaded executor, which does the same for functions without
  control flow).
- torch's OpenMP workers spin after each parallel region (unless
  `OMP_WAIT_POLICY=PASSIVE`), holding a core that the TF call after torch's
  kernels then waits for; this is the milliseconds. It is a setting of the
  user's, which moves `keras.ops`' own times as much (README).
- What remains is the call running cold: repeated at once, the same call
  takes about half its time in the step. TF's runtime code and data, which
  torch's and Keras' work between the calls evict; fewer TF calls (forward
  fusion of a chain, not done) is what would cut it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import torch
import torch.utils.dlpack

from keras_graft import _compat
from keras_graft.backends.tracing import Traced, dense_gradients, no_gradient_error
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


def specs(flat_inputs) -> tuple:
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
        # Fused backward passes of chains that end here (`_Node`), by chain.
        self.fused_vjps = {}

    def __call__(self, flat: list) -> list:
        if torch.compiler.is_compiling():
            return _outside_dynamo(self, flat)
        return _cross(self, flat)

    def gradients(self, wanted: tuple, inputs: list, cotangents: list) -> list:
        """The gradients of the inputs `wanted`, from TF's graph of the gradient."""
        vjp = self._vjps.get(wanted)
        if vjp is None:
            vjp = self._vjps[wanted] = _concrete_vjp(
                self.name, self.traced.vjp(list(wanted)), self.traced.vjp_specs()
            )
        return _call_vjp(vjp, [*inputs, *cotangents])


def _concrete_vjp(name: str, vjp, specs):
    try:
        return tf.function(vjp, autograph=False).get_concrete_function(*specs)
    except LookupError as error:  # TF registers no gradient for an op on the path.
        raise no_gradient_error(name, "torch", error) from error


def _call_vjp(concrete, tensors: list) -> list:
    # On the calling thread: a backward pass runs between torch's kernels,
    # when TF's inter-op threads have gone to sleep.
    return _compat.call_concrete_flat(concrete, tensors, on_calling_thread=True)


# The most op layers one fused backward pass spans (its key and program grow
# with the chain, and each call walks them).
_MAX_CHAIN = 16


class _Node:
    """One call of an op layer with gradients, and the chain of op layers
    before it whose outputs reach it only through op layers: their backward
    passes are one TF function (`_chain_vjp`), in which the chain's
    intermediates stay.

    `steps` are the chain's calls in order, this one last, each as
    (node, compiled, refs): a ref is `("leaf", i)`, the chain's `i`th input
    (a torch tensor from outside the chain), or `(j, k)`, output `k` of step
    `j`. The last step's node is None: a node holding itself would be a
    reference cycle, which (with the TF outputs it holds) only Python's
    cyclic garbage collector frees, not its last tensor going. An op layer's
    output carries its node (`_LINK`) while it is unchanged (its `_version`);
    random ops are never fused (their backward pass reads the forward pass's
    own tape)."""

    __slots__ = ("compiled", "leaves", "steps", "key", "tf_inputs", "tf_outputs", "saved", "__weakref__")

    @classmethod
    def of(cls, compiled: _Compiled, flat: list) -> _Node:
        node = cls()
        node.compiled = compiled
        leaves, leaf_index, steps, step_index, refs, tf_inputs = [], {}, [], {}, [], []

        def leaf(tensor):
            if id(tensor) not in leaf_index:
                leaf_index[id(tensor)] = len(leaves)
                leaves.append(tensor)
            return ("leaf", leaf_index[id(tensor)])

        def add(upstream: _Node) -> int:
            """`upstream`'s steps into this chain (once each); the index of its own."""
            if id(upstream) in step_index:
                return step_index[id(upstream)]
            mapped = {}
            for j, (step_node, step_compiled, step_refs) in enumerate(upstream.steps):
                step_node = upstream if step_node is None else step_node
                if id(step_node) in step_index:
                    mapped[j] = step_index[id(step_node)]
                    continue
                new_refs = tuple(
                    leaf(upstream.leaves[r[1]]) if r[0] == "leaf" else (mapped[r[0]], r[1]) for r in step_refs
                )
                mapped[j] = step_index[id(step_node)] = len(steps)
                steps.append((step_node, step_compiled, new_refs))
            return mapped[len(upstream.steps) - 1]

        fuse = not compiled.traced.random
        for tensor in flat:
            link = getattr(tensor, _LINK, None) if fuse else None
            if (
                link is not None
                and link[2] == tensor._version
                and len(steps) + len(link[0].steps) < _MAX_CHAIN
            ):
                upstream, output, _ = link
                refs.append((add(upstream), output))
                tf_inputs.append(upstream.tf_outputs[output])
            else:
                refs.append(leaf(tensor))
                tf_inputs.append(to_tf(tensor))
        steps.append((None, compiled, tuple(refs)))
        node.leaves, node.steps, node.tf_inputs = leaves, steps, tf_inputs
        node.key = tuple((id(c), r) for _, c, r in steps)
        return node

    def gradients(self, wanted: tuple, cotangents: list) -> list:
        compiled = self.compiled
        inputs = [to_tf(t) for t in self.saved]
        if len(self.steps) == 1:
            return compiled.gradients(wanted, inputs, cotangents)
        key = (self.key, wanted)
        entry = compiled.fused_vjps.get(key)
        if entry is None:
            vjp_specs = [
                *specs(self.saved),
                *(compiled.traced.output_specs[i] for i in compiled.outputs_wanted),
            ]
            try:
                vjp = _concrete_vjp(compiled.name, self._chain_vjp(wanted), vjp_specs)
            except BridgeGradientError:
                for _, step, _ in self.steps:  # The layer without a gradient raises, by name.
                    traced = step.traced
                    _concrete_vjp(step.name, traced.vjp(traced.differentiable_inputs()), traced.vjp_specs())
                raise
            # The steps' compiled forms, whose ids are in the key, live as long as it.
            entry = compiled.fused_vjps[key] = (vjp, [c for _, c, _ in self.steps])
        return _call_vjp(entry[0], [*inputs, *cotangents])

    def _chain_vjp(self, wanted: tuple):
        steps = [(c, r) for _, c, r in self.steps]
        count, outputs_wanted = len(self.leaves), self.compiled.outputs_wanted

        def vjp(*tensors):
            leaves, cotangents = list(tensors[:count]), tensors[count:]
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                for i in wanted:
                    tape.watch(leaves[i])
                values = []
                for compiled, refs in steps:
                    args = [leaves[r[1]] if r[0] == "leaf" else values[r[0]][r[1]] for r in refs]
                    values.append(compiled.traced.function(*args))
            return dense_gradients(
                tape, [values[-1][i] for i in outputs_wanted], [leaves[i] for i in wanted], cotangents
            )

        return vjp


# The attribute of an op layer's torch output that names the call it came
# from: (node, output index, the tensor's `_version` then).
_LINK = "_keras_graft_link"


def compile(traced: Traced, name: str) -> _Compiled:
    return _Compiled(traced, name)


class _Crossing(torch.autograd.Function):
    @staticmethod
    def forward(ctx, node, *leaves):
        compiled = node.compiled
        ctx.node = node
        ctx.wanted = tuple(i for i, needs in enumerate(ctx.needs_input_grad[1:]) if needs)
        inputs = node.tf_inputs
        ctx.tape = None
        if ctx.wanted and compiled.traced.random:  # one step: random ops are not fused
            ctx.tape = tf.GradientTape(persistent=True, watch_accessed_variables=False)
            with ctx.tape:
                for i in ctx.wanted:
                    ctx.tape.watch(inputs[i])
                outputs = compiled.traced.function(*inputs)
            ctx.tf_inputs, ctx.tf_outputs = inputs, outputs
        else:
            outputs = compiled.traced.function(*inputs)
        node.tf_inputs = None  # the backward pass starts from the leaves
        if ctx.wanted:
            # Saved by torch, which then refuses the backward pass of an input
            # changed in place since.
            ctx.save_for_backward(*leaves)
        results = tuple(to_torch(o) for o in outputs)
        ctx.mark_non_differentiable(*(r for r in results if not _differentiable(r.dtype)))
        if not compiled.traced.random:
            node.tf_outputs = outputs
            for i, result in enumerate(results):
                if _differentiable(result.dtype):  # what a gradient flows through
                    setattr(result, _LINK, (node, i, result._version))
        return results

    @staticmethod
    def backward(ctx, *grad_outputs):
        node = ctx.node
        compiled = node.compiled
        if torch.is_grad_enabled():  # backward(create_graph=True): a gradient of gradients
            raise BridgeGradientError(
                f"{compiled.name}: gradients of gradients (double backward, "
                "`create_graph=True`) do not go through TensorFlow ops on the torch "
                "backend. Compute them on the tensorflow backend, or use keras.ops "
                "equivalents for this part of the model."
            )
        tensors = ctx.saved_tensors
        if not ctx.wanted or not compiled.outputs_wanted:
            return (None,) * (1 + len(node.leaves))
        cotangents = [to_tf(grad_outputs[i].contiguous()) for i in compiled.outputs_wanted]
        if ctx.tape is None:
            node.saved = tensors
            try:
                grads = node.gradients(ctx.wanted, cotangents)
            finally:
                node.saved = None
        else:
            try:
                grads = dense_gradients(
                    ctx.tape,
                    [ctx.tf_outputs[i] for i in compiled.outputs_wanted],
                    [ctx.tf_inputs[i] for i in ctx.wanted],
                    cotangents,
                )
            except LookupError as error:  # TF registers no gradient for an op on the path.
                raise no_gradient_error(compiled.name, "torch", error) from error
        by_input = dict(zip(ctx.wanted, grads))
        return (None, *(to_torch(by_input[i]) if i in by_input else None for i in range(len(tensors))))


def _differentiable(dtype: torch.dtype) -> bool:
    return dtype.is_floating_point or dtype.is_complex


def _cross(compiled: _Compiled, flat: list) -> list:
    """`compiled` on torch tensors: through an autograd node where a gradient is asked for."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in flat):
        node = _Node.of(compiled, flat)
        return list(_Crossing.apply(node, *node.leaves))
    return [to_torch(o) for o in compiled.traced.function(*(to_tf(t) for t in flat))]


# The crossing, which `torch.compile` leaves out of its graphs (instead of
# recompiling on every call). Only while dynamo traces: the wrapper costs each call.
_outside_dynamo = torch.compiler.disable(_cross)
