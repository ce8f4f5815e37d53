"""`tf.print` on Keras tensors: a layer that prints each time the model runs.

Called on Keras tensors, `tf.print(...)` becomes a `Print` layer, which
prints its arguments (to standard error, as `tf.print` does) whenever the
model runs and returns its first tensor unchanged. Use that result, e.g.
`x = tf.print("x:", x)`: Keras keeps only the layers between a model's
inputs and outputs, so a print whose result goes nowhere is not in the model.

Printing writes to the process's output, so a model *file* holding a `Print`
layer is refused when loaded in safe mode (`keras_graft.UnsafeOpError`),
unless the user allows it with `keras_graft.allow("print")` or loads with
`safe_mode=False`. Built in code, it is always allowed.

>>> import keras, tensorflow as tf, keras_graft
>>> x = keras.Input((3,))
>>> type(tf.print("x:", x)._keras_history.operation).__name__
'Print'
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import tree

from keras_graft import _compat, safety
from keras_graft.arguments import ArgumentTemplate
from keras_graft.dispatch import route_keras_tensors
from keras_graft.errors import UnstorableArgumentError

ALLOW_NAME = "print"
STORED_OPTIONS = ("summarize", "sep", "end")


@keras.saving.register_keras_serializable(package="keras_graft")
class Print(keras.layers.Layer):
    """Prints `tf.print(*args, **options)` when the model runs; returns the first tensor.

    Args:
        arguments: The print call's arguments (an `ArgumentTemplate` or its config).
        **kwargs: Base layer arguments (`name`, ...).
    """

    def __init__(self, arguments, **kwargs):
        if isinstance(arguments, dict):
            arguments = ArgumentTemplate(arguments)
        self.arguments = arguments
        kwargs.setdefault("name", _compat.unique_layer_name("tf.print"))
        kwargs["autocast"] = False
        super().__init__(**kwargs)
        self._convert_input_args = False
        self.built = True

    @classmethod
    def from_config(cls, config):
        if safety.enforced() and not safety.is_user_allowed(ALLOW_NAME):
            raise safety.UnsafeOpError(
                f"Refusing the Print layer {config.get('name')!r}: it prints to the "
                "process's standard error each time the model runs. If you trust this "
                f"model, allow it with `keras_graft.allow({ALLOW_NAME!r})`, or load with "
                "`keras.models.load_model(path, safe_mode=False)`."
            )
        config = dict(config)
        return cls(config.pop("arguments"), **config)

    def call(self, inputs):
        args, kwargs = self.arguments.fill(inputs)
        first = tree.flatten(inputs)[0]
        with tf.control_dependencies([tf.print(*args, **kwargs)]):
            return tf.identity(first)

    def compute_output_spec(self, inputs):
        first = tree.flatten(inputs)[0]
        return keras.KerasTensor(first.shape, dtype=first.dtype)

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        config["arguments"] = self.arguments.get_config()
        return config


def _print_layer(original, args, kwargs):
    kwargs = dict(kwargs)
    kwargs.pop("name", None)
    unknown = set(kwargs) - set(STORED_OPTIONS)
    if unknown:
        raise UnstorableArgumentError(
            f"tf.print on Keras tensors takes only {', '.join(STORED_OPTIONS)} as options; "
            f"got {', '.join(sorted(unknown))}. A model always prints to standard error."
        )
    template, tensors = ArgumentTemplate.capture(args, kwargs, where="tf.print")
    return Print(template)(tensors[0] if len(tensors) == 1 else tensors)


def install() -> None:
    """Makes `tf.print` on Keras tensors a `Print` layer (idempotent)."""
    route_keras_tensors(tf, "print", _print_layer)
