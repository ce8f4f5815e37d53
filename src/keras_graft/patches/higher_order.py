"""TensorFlow's higher-order functions on Keras tensors: `tf.map_fn`, `tf.vectorized_map`, `tf.scan`.

They take a function argument. An op layer stores it by name, like the op
itself: a public TF op (`tf.math.sin`) or a function decorated with
`@keras_graft.op`, resolved on load through the same allow-list. Any other
function (a lambda) is refused where the op is called, naming the argument
and showing the fix. `tf.scan` supports TF's op dispatch; `tf.map_fn` and
`tf.vectorized_map` do not, so `install()` routes their calls on Keras
tensors to `TFOp` layers.

>>> import keras, tensorflow as tf, keras_graft
>>> @keras_graft.op(package="docs")
... def row_norm(row):
...     return tf.norm(row)
>>> tf.map_fn(row_norm, keras.Input((3,))).shape
(None,)
"""

from __future__ import annotations

import tensorflow as tf

from keras_graft.core.op_layer import TFOp
from keras_graft.patches.dispatch import route_keras_tensors

ROUTED = ("map_fn", "vectorized_map")


def install() -> None:
    """Routes `tf.map_fn` and `tf.vectorized_map` on Keras tensors to op layers (idempotent)."""
    for name in ROUTED:
        route_keras_tensors(tf, name, TFOp.wrap)
