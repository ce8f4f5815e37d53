"""Every error keras-graft raises, one class per situation, under `KerasGraftError`.

Each class also derives from the builtin exception it behaves as (`ValueError`,
`TypeError`...), so `except ValueError` keeps working. This module is a leaf: it
imports nothing of keras-graft's (and no TensorFlow), so any module can raise
any of these without importing another module's logic.

>>> import keras_graft
>>> issubclass(keras_graft.UnsafeOpError, keras_graft.errors.KerasGraftError)
True
>>> issubclass(keras_graft.UnsafeOpError, ValueError)
True
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable


class KerasGraftError(Exception):
    """The base of every error keras-graft raises: `except KerasGraftError` catches them all."""


# -- Building and loading op layers ---------------------------------------------


class UnsafeOpError(KerasGraftError, ValueError):
    """A model names, or an op builds, something that could touch the system.

    Wrong: `keras.Model(paths, keras_graft.Op(tf.io.read_file)(paths))` (reads files).
    Right, if you trust it: build and load inside `with keras_graft.allow("io.read_file"):`.
    """


class TracingBudgetError(KerasGraftError, ValueError):
    """Tracing an op from a model file would cost more than a file may make it cost.

    Wrong (in a file): `tf.dynamic_partition(x, p, num_partitions=1_000_000)`
    (a million graph outputs), `tf.einsum(..., optimize="optimal")` (an
    exhaustive path search), or an op layer whose trace builds more than
    `keras_graft.core.safety.MAX_TRACE_OPS` graph ops.
    Right: at most `keras_graft.core.safety.MAX_OP_OUTPUTS` outputs per op; a file
    you trust loads with `keras.models.load_model(path, safe_mode=False)`.
    """


class OpTraceError(KerasGraftError, ValueError):
    """TensorFlow could not build the op on the given Keras tensors.

    Wrong: `tf.reshape(x, [-1, n])` where `n` is a tensor of unknown length.
    Right: give the op arguments TensorFlow can build a graph for (the message
    quotes TensorFlow's own reason).
    """


class BridgeGradientError(KerasGraftError, RuntimeError):
    """A gradient through an op layer that the JAX or torch bridge cannot give.

    Raised at the first training step, naming the layer, where TensorFlow has
    no gradient for an op on the path (`tf.unique`), or for differentiation the
    bridge does not do (torch's double backward).

    Wrong: training through `tf.unique(x).y` on any backend.
    Right: keep ops without a gradient off the path from the weights to the
    loss (e.g. compute them from `keras.ops.stop_gradient(x)`).
    """


class DistributedStateError(KerasGraftError, ValueError):
    """`ctx.state` in a model built or run under a Keras distribution on JAX or torch.

    Its updates combine across replicas as declared (`aggregation="sum"`...)
    only under `tf.distribute`; a Keras distribution would apply them once
    for the whole global batch. Refused where the layer is built.

    Wrong: `keras.distribution.set_distribution(DataParallel(...))`, then a
    model with a `ctx.state` layer, on JAX.
    Right: train that model on the tensorflow backend under a `tf.distribute`
    strategy, or on one device.
    """


class UnstorableArgumentError(KerasGraftError, TypeError):
    """An op argument that a model file cannot hold.

    Wrong: `tf.map_fn(lambda t: t * 2, x)` (a lambda has no name a file could store).
    Right: `tf.map_fn(my_op, x)` with `my_op` decorated `@keras_graft.op`.
    """


class UnexpectedKeywordError(KerasGraftError, TypeError):
    """An op, or a `@keras_graft.layer`, given a keyword argument it does not take.

    Raised where the call is made on Keras tensors, and where a model file's
    op layer stores such an argument (naming the layer). The message names
    the op, its parameters, and the closest one (`did_you_mean`).

    Wrong: `tf.signal.stft(x, frame_lenght=256, frame_step=128)`.
    Right: `tf.signal.stft(x, frame_length=256, frame_step=128)`.
    """


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`" Did you mean 'name'?"` for the candidate closest to `word`, or `""` for none close.

    >>> did_you_mean("frame_lenght", ["signals", "frame_length", "frame_step"])
    " Did you mean 'frame_length'?"
    >>> did_you_mean("colour", ["signals", "frame_length"])
    ''
    """
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


class MalformedModelFileError(KerasGraftError, ValueError):
    """A model file whose keras-graft parts keras-graft did not write (forged or edited).

    Raised with `malformed(...)`, which says so in the same words everywhere.
    """


def malformed(problem: str, *, newer: bool = False, writer: str = "keras-graft") -> MalformedModelFileError:
    """A `MalformedModelFileError` for `problem`, with the common explanation.

    `writer` is who writes such files (`"Keras 2"` for Keras 2 files).

    >>> str(malformed("An op layer's stored `output_ranks` must be a list"))
    "An op layer's stored `output_ranks` must be a list: the model file was not written by keras-graft or was edited by hand."
    """
    cause = (
        f"the model file was written by a newer {writer}, or edited by hand"
        if newer
        else f"the model file was not written by {writer} or was edited by hand"
    )
    return MalformedModelFileError(f"{problem.rstrip('.')}: {cause}.")


# -- Auto-wrapping ---------------------------------------------------------------


class SymbolicIterationError(KerasGraftError, TypeError, NotImplementedError):
    """Iterating over a symbolic Keras tensor whose first dimension is unknown.

    Wrong: `for row in keras.Input((3,)): ...` (the batch size is unknown).
    Right: `tf.unstack(x, num=..., axis=...)` along a dimension of known size.
    """


class NoDispatchError(KerasGraftError, ValueError):
    """A Keras tensor reached a TF function without op dispatch.

    Wrong: `tf.signal.rfft(keras.Input((8,)))`.
    Right: `keras_graft.Op(tf.signal.rfft)(x)`, or call it inside an `@keras_graft.op` function.

    Raised on every conversion attempt, also the many that TF's dispatch then
    handles, so the message (slow to find: it names the function called) is
    made by `describe` only when it is read.
    """

    def __init__(self, describe: Callable[[], str]):
        super().__init__()
        self._describe = describe

    def __str__(self):
        return self._describe()


class LambdaLayerWarning(KerasGraftError, UserWarning):
    """A `keras.layers.Lambda` was built: a model holding it will not load in safe mode.

    Wrong: `keras.layers.Lambda(lambda t: tf.clip_by_value(t, -1.0, 1.0))(x)`.
    Right: `tf.clip_by_value(x, -1.0, 1.0)`, or a function decorated with
    `@keras_graft.op` called on `x`.
    """


# -- Files and commands ----------------------------------------------------------


class UnregisteredNameError(KerasGraftError, ValueError):
    """A model file names a custom object (a `@keras_graft.layer`, `@keras_graft.op`,
    `@keras_graft.loss`/`metric`, a registered Keras class or function) that no
    imported module has registered.

    Wrong: loading a model that uses `parts>custom_matmul` in a fresh process.
    Right: `import my_project.parts` first (`--import my_project.parts` for the
    keras-graft command, or `custom_objects=`). `name` is the registered name,
    `module` the defining module where the file records it (else None).
    """

    def __init__(self, message: str = "", *, name: str = "", module: str | None = None):
        super().__init__(message)
        self.name = name
        self.module = module


class ModelFileError(KerasGraftError, ValueError):
    """`keras-graft inspect`: the file does not exist or does not load in safe mode (and why)."""


class Keras2FileError(KerasGraftError, ValueError):
    """A Keras 2 file that cannot become a Keras 3 model, and why.

    For example a Keras 2 SavedModel of a subclassed model, which keeps no config.
    """


class LossyKeras2FileError(Keras2FileError):
    """A Keras 2 file in which Keras 2 itself dropped part of an op call when it saved.

    For example `tf.einsum("bij,bkj->bik", r, r)`: Keras 2 stores only the
    equation, never the operands passed through `*inputs`, so no Keras version
    can rebuild the layer from the file. Its weights still load into the model
    rebuilt from code: `keras_graft.keras2.files.load_weights(model, "old.h5")`.
    """


class WeightMatchError(KerasGraftError, ValueError):
    """A Keras 2 file's weights do not match the layers of a model unambiguously.

    Raised by `keras_graft.keras2.files.load_weights` when names contradict the
    order of the layers, the file and the model hold different layers with
    weights, or a layer's weight shapes differ, instead of loading weights into
    the wrong layers.
    """


class LambdaLayerError(KerasGraftError, ValueError):
    """A Keras 2 `Lambda` layer: Python bytecode in the file, which loading never runs.

    Wrong: `keras.models.load_model("old.h5")` of a model with a `Lambda`.
    Right, for a file you trust: `keras-graft convert old.h5 new.keras
    --trust-file-code`, which runs each function once, in a separate process,
    and stores the TF ops it calls. Also raised when a trusted Lambda cannot
    be migrated (bytecode of another Python version, a function that does
    not reduce to TF ops), naming the layer and the fix.
    """


class UntranslatableConfigError(KerasGraftError, ValueError):
    """A Keras 2 layer config value that has no Keras 3 equivalent.

    For example `BatchNormalization(virtual_batch_size=8)` (ghost batch normalization).
    """


class UntranslatedCompileWarning(KerasGraftError, UserWarning):
    """A Keras 2 file's training setup (loss, metrics, optimizer, its state) that
    has no Keras 3 translation: the model loads uncompiled, or with a fresh optimizer.

    For example a registered custom loss whose module was not imported: import it
    first (`custom_objects=`, or `--import MODULE` for the keras-graft command).
    """


class HiddenConfigObjectError(KerasGraftError, ValueError):
    """A Keras 2 config key that keras-graft drops as unused holds an object config.

    Keras 2 itself would build that object (tf_keras reads the key), so
    dropping it would hide from the audit what Keras 2 runs. For example a
    `SeparableConv1D` whose unused `kernel_initializer` is a `Functional`
    model. Only plain data (numbers, strings, None, lists of them) or the
    key's default is dropped.
    """


class ConversionError(KerasGraftError, ValueError):
    """`keras-graft convert`: the source file cannot be read or the target cannot be written."""


class PredictionError(KerasGraftError, RuntimeError):
    """A fresh process could not load or run a model file."""


class BudgetExceededError(KerasGraftError, RuntimeError):
    """A child process went over its memory or time budget, and was stopped.

    `keras-graft inspect` reports the check it was running as "not checked
    (budget)", `keras-graft convert` its prediction check; both name the
    option that raises the budget.
    """

    def __init__(self, message: str, *, reason: str):
        super().__init__(message)
        self.reason = reason  # "memory" or "time"


class CheckProcessError(KerasGraftError, RuntimeError):
    """`keras-graft inspect`'s check process (XLA and TFLite checks) could not start, or died.

    The message quotes the last line of its error output.
    """


class UncheckableLayerError(KerasGraftError, ValueError):
    """An op layer that `keras-graft inspect` cannot send to its check process.

    For example a `@keras_graft.layer` whose function captures a TensorFlow
    lookup table: only variables and tensors can be sent. Its XLA and TFLite
    checks are reported as "not checked".
    """


class ExportError(KerasGraftError, ValueError):
    """`keras_graft.export` cannot write the model in the format asked for."""
