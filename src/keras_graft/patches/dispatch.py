"""Auto-wrapping: TensorFlow ops called on Keras tensors become `TFOp` layers.

TensorFlow calls every registered `GlobalOpDispatcher` when a dispatch-enabled
op (nearly all of `tf.*`) fails on its arguments, which is what a Keras 3
`KerasTensor` makes it do. The dispatcher below answers such calls with a
`TFOp` layer node; on real tensors ops never fail, so it never runs and costs
nothing.

Some Keras 3 behaviours stand in the way and are adjusted here, on
`KerasTensor` itself, only where Keras would fail anyway (Python's operators
are `keras_graft.patches.operators`):
- iterating a `KerasTensor` raises `NotImplementedError`. In user code, a
  tensor with a known first dimension iterates as in Keras 2: `q, k, v =
  tf.transpose(qkv, [2, 0, 1, 3])` is one `tf.unstack` layer along axis 0.
  Otherwise (an unknown first dimension, or TF ops such as `tf.ones(shape)`
  probing a shape argument) the error is a `TypeError` too, so TF's probes
  move on and dispatch.
- some TF ops read `x.get_shape()` before converting `x` (`tf.image.sobel_edges`);
  Keras 2 tensors had that method, Keras 3 ones get it back.
- converting a Keras tensor to a TF tensor still fails (with `ValueError`, which
  is what makes TF dispatch), but the message now says what to do when the
  function does not dispatch: wrap it with `keras_graft.Op`.
- a keyword the op does not take raises `UnexpectedKeywordError`, naming the
  op and the closest parameter, instead of TF's bare `TypeError` (which TF's
  dispatch raises before any dispatcher runs: `_compat.explain_refused_calls`).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

import tensorflow as tf

from keras_graft import _compat
from keras_graft.core.arguments import check_keywords, holds_keras_tensor
from keras_graft.core.op_layer import TFOp
from keras_graft.errors import NoDispatchError, SymbolicIterationError, UnexpectedKeywordError


class KerasTensorDispatcher(_compat.GlobalOpDispatcher):
    """Turns TF op calls on Keras tensors into `TFOp` layer nodes.

    Only calls made from outside TensorFlow are wrapped. When a public op
    calls another one internally (`tf.strings.split` calls
    `tf.convert_to_tensor`, `tf.image.sobel_edges` calls `tf.shape`), the
    inner call is declined, fails, and the outer op is wrapped whole: one
    layer under the name the user wrote.
    """

    def handle(self, op, args, kwargs):
        if holds_keras_tensor((args, kwargs)) and not _called_from_tensorflow():
            return TFOp.wrap(op, args, kwargs)
        return self.NOT_SUPPORTED


def _explain_refused_call(api, args, kwargs) -> UnexpectedKeywordError | None:
    """For a call on Keras tensors that TF's dispatch refused: the error naming
    the op and the closest parameter to an unknown keyword, if that was why."""
    if not holds_keras_tensor((args, kwargs)):
        return None
    try:
        check_keywords(api, kwargs)
    except UnexpectedKeywordError as error:
        return error
    return None


def _called_from_tensorflow() -> bool:
    """Whether the op being dispatched was called by TensorFlow's own code."""
    return _compat.called_from_tensorflow(sys._getframe(2))


def _iter(tensor):
    """Keras 2's iteration: one `tf.unstack` layer along a first dimension of known size."""
    rows = tensor.shape[0] if tensor.shape else None
    if rows is None or _called_from_library():
        shape = tuple(tensor.shape)
        raise SymbolicIterationError(
            f"Cannot iterate over a symbolic KerasTensor of shape {shape}: its first "
            "dimension is unknown, so the number of items is too. Use "
            "`tf.unstack(x, num=..., axis=...)` along a dimension of known size."
            if shape
            else "Cannot iterate over a symbolic KerasTensor of shape (): it is a scalar."
        )
    return iter(TFOp.wrap(tf.unstack, (tensor,), {"num": rows, "axis": 0}))


# Libraries that iterate a tensor only to probe it (TF's shape arguments) or
# expect Keras' refusal.
_PROBING_LIBRARIES = ("tensorflow.", "keras.")


def _called_from_library() -> bool:
    """Whether the code iterating a Keras tensor is TensorFlow's or Keras' own."""
    module = sys._getframe(2).f_globals.get("__name__", "")
    return module.startswith(_PROBING_LIBRARIES)


def _tf_tensor(tensor, dtype=None, name=None):
    called = _called_tf_code()
    raise NoDispatchError(lambda: _no_dispatch_message(called))


def _no_dispatch_message(called) -> str:
    """Why a Keras tensor cannot go into the TF function running `called`, and the fix.

    Finding the function's public name is slow (it searches TensorFlow's
    exported symbols), so `NoDispatchError` calls this only when read.
    """
    public = _public_name(*called) if called else None
    name = f"tf.{public}" if public else "this TensorFlow function"
    example = f"tf.{public}" if public else "tf.signal.rfft"
    return (
        f"A KerasTensor cannot be used as input to {name}: it does not support "
        "TensorFlow's op dispatch, through which keras-graft wraps TF ops "
        f"automatically. Wrap it explicitly, e.g. `keras_graft.Op({example})(x)`, "
        "or call it inside a function decorated with `@keras_graft.op`."
    )


def _called_tf_code():
    """(code, values of its free variables) of the TF function the user's
    code called, or None.

    The outermost TensorFlow frame below the user's code (past TF's
    dispatch and tracing wrappers) runs that function.
    """
    called = _compat.called_tensorflow_frame(sys._getframe(2))
    if called is None:
        return None
    code = called.f_code
    return code, [called.f_locals.get(name) for name in code.co_freevars]


def _public_name(code, free_values) -> str | None:
    """The public TF name of the function running `code`; a closure shared
    by several functions (`rfft`, `rfft2d`) is told apart by its captured values.

    Searched among TensorFlow's exported symbols and the functions they wrap,
    not among the garbage collector's referrers of `code`, which miss every
    object of a process that called `gc.freeze()` (a server before it forks)."""
    for symbol in _compat.tf_api_symbols():
        function = symbol
        while function is not None and getattr(function, "__code__", None) is not code:
            function = getattr(function, "__wrapped__", None)
        if function is None:
            continue
        cells = [cell.cell_contents for cell in function.__closure__ or ()]
        if cells and cells != free_values:
            continue
        public = _compat.canonical_tf_name(symbol)
        if public:
            return public
    return None


def route_keras_tensors(module, name: str, handle: Callable) -> None:
    """Makes `module.name(...)` call `handle(original, args, kwargs)` on Keras tensors.

    For the few TF functions that do not support TF's op dispatch
    (`tf.map_fn`) or do not fail on Keras tensors (`tf.print`). Calls without
    Keras tensors, and calls from TensorFlow's own code, go to the original.
    Idempotent.
    """
    original = getattr(module, name)
    if hasattr(original, "graft_original"):
        return

    @functools.wraps(original)
    def routed(*args, **kwargs):
        if holds_keras_tensor((args, kwargs)) and not _called_from_tensorflow():
            return handle(original, args, kwargs)
        return original(*args, **kwargs)

    routed.graft_original = original
    setattr(module, name, routed)


def _get_shape(tensor) -> tf.TensorShape:
    """The static shape as a `tf.TensorShape`, as Keras 2 tensors had it."""
    return tf.TensorShape(tensor.shape)


_dispatcher = KerasTensorDispatcher()


def install() -> None:
    """Turns auto-wrapping on (done by `import keras_graft`; idempotent)."""
    if _compat.KerasTensor.__tf_tensor__ is not _tf_tensor:
        _dispatcher.register()
        _compat.explain_refused_calls(_explain_refused_call)
        _compat.KerasTensor.__iter__ = _iter
        _compat.KerasTensor.__tf_tensor__ = _tf_tensor
        if not hasattr(_compat.KerasTensor, "get_shape"):
            _compat.KerasTensor.get_shape = _get_shape
