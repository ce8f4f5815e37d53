"""The global patches `import keras_graft` installs, one module each.

- `dispatch`: TensorFlow's op dispatch turns TF calls on Keras tensors into op layers;
- `operators`: Python operators on op-layer outputs are TensorFlow's, as in Keras 2;
- `lambda_warning`: a `keras.layers.Lambda` built in code warns that it will not load;
- `composite_methods`: ragged and sparse Keras tensors get their TF methods;
- `higher_order`: `tf.map_fn`, `tf.vectorized_map` and `tf.scan` on Keras tensors;
- `printing`: `tf.print` on Keras tensors is a layer.

Each has an idempotent `install()`; nothing is patched on import.
"""

from keras_graft.patches import (
    composite_methods,
    dispatch,
    higher_order,
    lambda_warning,
    operators,
    printing,
)


def install() -> None:
    """Installs every patch (idempotent), in the order they build on each other."""
    dispatch.install()
    operators.install()
    lambda_warning.install()
    composite_methods.install()
    higher_order.install()
    printing.install()
