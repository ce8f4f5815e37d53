"""The corpus's custom objects: one module that Keras 2 and Keras 3 both import.

Real Keras 2 files often need the user's own code: a registered layer, a
registered loss, a named function inside a `Lambda`. This module is that user
code. The Keras 2 side (`write_corpus.py`, in the old virtual environments)
builds models with it; the Keras 3 side imports it before loading those files,
as a user would (`keras-graft convert --import corpus_objects`, with this
folder on `PYTHONPATH`).

It is written against the API both have: `tf.keras` is Keras 2 in the corpus
environments (`TF_USE_LEGACY_KERAS=1`, or the `keras` 2.x bundled with
TensorFlow up to 2.15) and Keras 3 in the project's. Names are registered
under the package `keras_graft_corpus`, so a file names them
`keras_graft_corpus>ScaledDense` whatever this module is called.
"""

import tensorflow as tf

keras = tf.keras

PACKAGE = "keras_graft_corpus"


@keras.utils.register_keras_serializable(package=PACKAGE)
class ScaledDense(keras.layers.Layer):
    """`inputs @ kernel * scale + bias`: a layer with weights and a hyperparameter."""

    def __init__(self, units, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.scale = scale

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel", shape=(int(input_shape[-1]), self.units), initializer="glorot_uniform"
        )
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="ones")
        super().build(input_shape)

    def call(self, inputs):
        return tf.matmul(inputs, self.kernel) * self.scale + self.bias

    def get_config(self):
        return {**super().get_config(), "units": self.units, "scale": self.scale}


@keras.utils.register_keras_serializable(package=PACKAGE)
def scaled_mse(y_true, y_pred):
    """Twice the mean squared error: a registered loss function."""
    return 2.0 * tf.reduce_mean(tf.square(y_pred - y_true), axis=-1)


def hard_swish(x):
    """A named function for `keras.layers.Lambda`: Keras 2 stores its module and name, no bytecode."""
    return x * tf.nn.relu6(x + 3.0) / 6.0
