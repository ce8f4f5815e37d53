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

from typing import Callable


class KerasGraftError(Exception):
    """The base of every error keras-graft raises: `except KerasGraftError` catches them all."""


# -- Building and loading op layers ---------------------------------------------


class UnsafeOpError(KerasGraftError, ValueError):
    """A model names, or an op builds, something that could touch the system.

    Wrong: `keras.Model(paths, keras_graft.Op(tf.io.read_file)(paths))` (reads files).
    Right, if you trust it: build and load inside `with keras_graft.allow("io.read_file"):`.
    """


class OpTraceError(KerasGraftError, ValueError):
    """TensorFlow could not build the op on the given Keras tensors.

    Wrong: `tf.reshape(x, [-1, n])` where `n` is a tensor of unknown length.
    Right: give the op arguments TensorFlow can build a graph for (the message
    quotes TensorFlow's own reason).
    """


class UnstorableArgumentError(KerasGraftError, TypeError):
    """An op argument that a model file cannot hold.

    Wrong: `tf.map_fn(lambda t: t * 2, x)` (a lambda has no name a file could store).
    Right: `tf.map_fn(my_op, x)` with `my_op` decorated `@keras_graft.op`.
    """


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


# -- Files and commands ----------------------------------------------------------


class ModelFileError(KerasGraftError, ValueError):
    """`keras-graft inspect`: the file does not exist or does not load in safe mode (and why)."""


class Keras2FileError(KerasGraftError, ValueError):
    """A Keras 2 file that cannot become a Keras 3 model, and why.

    For example a Keras 2 SavedModel of a subclassed model, which keeps no config.
    """


class UntranslatableConfigError(KerasGraftError, ValueError):
    """A Keras 2 layer config value that has no Keras 3 equivalent.

    For example `BatchNormalization(virtual_batch_size=8)` (ghost batch normalization).
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
