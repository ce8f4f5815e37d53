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

A `Print` layer takes only `tf.print`'s formatting options (`FORMATTING_OPTIONS`:
`summarize`, `sep`, `end`) and always writes to standard error: `output_stream`
(`"file:///path"` appends to any file) is refused where the layer is built,
and in a model file, even one the user allowed to print.

>>> import keras, tensorflow as tf, keras_graft
>>> x = keras.Input((3,))
>>> type(keras.Model(x, tf.print("x:", x)).layers[-1]).__name__
'Print'
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import tree

from keras_graft import _compat
from keras_graft.core import safety
from keras_graft.core.arguments import ArgumentTemplate
from keras_graft.errors import UnsafeOpError, UnstorableArgumentError, malformed
from keras_graft.patches.dispatch import route_keras_tensors

ALLOW_NAME = "print"

# `tf.print`'s keyword arguments that only format what it prints, and the
# values each takes. Of its others, `output_stream` chooses where the process
# writes (any file, with "file://...") and `name` names the graph op.
FORMATTING_OPTIONS = {
    "summarize": "an int (-1 prints every element) or None",
    "sep": "a string",
    "end": "a string",
}


def _is_of_kind(name: str, value) -> bool:
    """Whether `value` (in stored form: a tensor is a tagged dict) is what option `name` takes."""
    if name == "summarize":
        return value is None or (isinstance(value, int) and not isinstance(value, bool))
    return isinstance(value, str)


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
        _check_options(arguments, kwargs.get("name"))
        self.arguments = arguments
        if kwargs.get("name") is None:
            kwargs["name"] = _compat.unique_layer_name("tf.print")
        kwargs["autocast"] = False
        super().__init__(**kwargs)
        _compat.skip_input_conversion(self)
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

    def __call__(self, *args, **kwargs):
        safety.check_called_on_keras_tensors(self.name, args, kwargs)
        return super().__call__(*args, **kwargs)

    def call(self, inputs):
        args, kwargs = self.arguments.fill(inputs)
        first = tree.flatten(inputs)[0]
        with tf.control_dependencies([tf.print(*args, **kwargs)]):
            return tf.identity(first)

    def compute_output_spec(self, inputs):
        first = tree.flatten(inputs)[0]
        if not isinstance(first, _compat.KerasTensor):
            raise TypeError(
                f"The Print layer {self.name!r:.80} was called on {first!r:.60}, not on a "
                'Keras tensor. Print Keras tensors: `x = tf.print("x:", x)`.'
            )
        return keras.KerasTensor(first.shape, dtype=first.dtype)

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        config["arguments"] = self.arguments.get_config()
        return config


def _check_options(arguments: ArgumentTemplate, layer_name) -> None:
    """Refuses keyword arguments of the print call other than formatting options
    of their kind: where the layer is built, or loaded from a model file."""
    from_file = _compat.deserializing_untrusted()
    for name, value in arguments.get_config()["kwargs"].items():
        if name not in FORMATTING_OPTIONS:
            options = f"takes only the formatting options {', '.join(FORMATTING_OPTIONS)}; got {name!r:.40}"
            if from_file:
                raise UnsafeOpError(
                    f"Refusing the Print layer {layer_name!r:.80} of a model file: it {options}. "
                    "A Print layer always writes to standard error; a model file cannot "
                    "choose where the process writes."
                )
            raise UnstorableArgumentError(
                f"tf.print on Keras tensors {options}. A model's print layer always "
                "writes to standard error: a model file must not choose where the "
                "process writes. Drop the argument (to keep the output, redirect "
                "standard error, e.g. `python train.py 2> log.txt`), or call tf.print "
                "outside the model, on the tensors it returns."
            )
        if not _is_of_kind(name, value):
            problem = f"takes {FORMATTING_OPTIONS[name]} as {name}; got {value!r:.40}"
            if from_file:
                raise malformed(f"The Print layer {layer_name!r:.80} {problem}")
            raise UnstorableArgumentError(
                f"tf.print on Keras tensors {problem}. Pass {FORMATTING_OPTIONS[name]}."
            )


def _print_layer(original, args, kwargs):
    kwargs = dict(kwargs)
    name = kwargs.pop("name", None)  # The op's name: the layer's.
    template, tensors = ArgumentTemplate.capture(args, kwargs, where="tf.print")
    layer_name = _compat.unique_layer_name(name) if isinstance(name, str) else None
    return Print(template, name=layer_name)(tensors[0] if len(tensors) == 1 else tensors)


def install() -> None:
    """Makes `tf.print` on Keras tensors a `Print` layer (idempotent)."""
    route_keras_tensors(tf, "print", _print_layer)
