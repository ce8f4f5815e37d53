"""Example 2 of the seed article: a TF op with a trainable weight.

The article gives `tf.matmul` a kernel by subclassing `keras.layers.Layer`:
`__init__` to store `units`, `build` to create the kernel, `call`, and
`get_config`; and the saved model still does not load (`could not be
deserialized properly`) until the class is registered with
`keras.saving.register_keras_serializable`.

With `@keras_graft.layer` it is the function below: the kernel is created
where it is used, once, when the layer is built; `units` is saved in the
layer's config; the class is registered under `custom_matmul>custom_matmul`,
so the model reloads in safe mode with no `custom_objects`.

Run it with `python examples/custom_matmul.py`, or all examples with
`keras-graft demo`.
"""

import sys

import keras
import numpy as np
import tensorflow as tf

import keras_graft
import keras_graft_tools.demo


@keras_graft.layer
def custom_matmul(ctx, x, units=3):
    """`x @ kernel`, with a trainable `(x.shape[-1], units)` kernel."""
    kernel = ctx.weight("kernel", (x.shape[-1], units), initializer="glorot_uniform")
    return tf.matmul(x, kernel)


def build_model() -> keras.Model:
    """Input((5,)) -> custom_matmul(units=3) -> Dense(1), uncompiled."""
    inputs = keras.Input((5,))
    hidden = custom_matmul(units=3)(inputs)
    outputs = keras.layers.Dense(1)(hidden)
    return keras.Model(inputs, outputs, name="custom_matmul")


def synthetic_data(samples=256, seed=0):
    """Features (samples, 5) and a linear target (samples, 1)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, 5)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5], [0.0], [3.0]], "float32")).astype("float32")
    return x, y


def check_reloaded(model: keras.Model, reloaded: keras.Model) -> str:
    """The reloaded layer has the same hyperparameters and kernel."""
    ours, theirs = model.layers[1], reloaded.layers[1]
    assert theirs.hyperparameters == ours.hyperparameters, theirs.hyperparameters
    kernel = theirs.named_variables["kernel"]
    np.testing.assert_array_equal(kernel.numpy(), ours.named_variables["kernel"].numpy())
    return (
        f"{type(theirs).__name__}(units={theirs.hyperparameters['units']}) reloaded "
        f"with its trained {tuple(kernel.shape)} kernel"
    )


def main() -> None:
    """Trains, saves, reloads in safe mode and compares (see `keras_graft_tools.demo`)."""
    keras_graft_tools.demo.run_checked(sys.modules[__name__])


if __name__ == "__main__":
    main()
