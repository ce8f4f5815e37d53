"""Example 1 of the seed article: clip values to [-1, 1] before a Dense layer.

The article wraps `tf.clip_by_value` in `keras.layers.Lambda`. Under Keras 3
that model cannot be built from a bare TF op at all ("A KerasTensor cannot be
used as input to a TensorFlow function"), and the Lambda workaround saves a
model that `keras.models.load_model` refuses in its default safe mode, because
a Lambda is stored as Python bytecode.

With keras-graft the TF op is simply called on the Keras tensor. It becomes a
`TFOp` layer that stores the op by name (`tf.clip_by_value`) and its bounds
as data, so the model saves to `.keras` and loads back in safe mode.

Run it with `python examples/clip_values.py`, or all examples with
`keras-graft demo`.
"""

import sys

import keras
import numpy as np
import tensorflow as tf

import keras_graft_tools.demo


def build_model() -> keras.Model:
    """Input((10,)) -> tf.clip_by_value(x, -1, 1) -> Dense(1), uncompiled."""
    inputs = keras.Input((10,))
    clipped = tf.clip_by_value(inputs, -1.0, 1.0)
    outputs = keras.layers.Dense(1)(clipped)
    return keras.Model(inputs, outputs, name="clip_values")


def synthetic_data(samples: int = 256, seed: int = 0):
    """Features (samples, 10) and a target that depends on their clipped values."""
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=2.0, size=(samples, 10)).astype("float32")
    y = np.clip(x, -1.0, 1.0).mean(axis=1, keepdims=True)
    return x, y


def main() -> None:
    """Trains, saves, reloads in safe mode and compares (see `keras_graft_tools.demo`)."""
    keras_graft_tools.demo.run_checked(sys.modules[__name__])


if __name__ == "__main__":
    main()
