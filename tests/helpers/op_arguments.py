"""Ways to call an allowed TF op on float tensors: the training sweep's argument recipes.

A recipe is a tuple of positional arguments, each a tensor kind (a
`tf.TensorSpec`, or `SPARSE`) or a constant. `gradient_sweep` calls every
allowed op on the float recipes as Keras tensors that come out of `Dense`
layers (the training sweep); the audit and Keras 2 sweeps call every op on
the wider `op_calls.CANDIDATES`.

>>> [i for i, recipe in enumerate(RECIPES) if is_float_recipe(recipe)]
[0, 4, 5, 7, 8, 9, 10]
"""

from __future__ import annotations

import tensorflow as tf

FLOATS = tf.TensorSpec((4, 4, 3), tf.float32)
STRINGS = tf.TensorSpec((4,), tf.string)
INTS = tf.TensorSpec((4,), tf.int32)
BYTES = tf.TensorSpec((4, 4, 3), tf.uint8)
# A sparse float tensor of this dense shape.
SPARSE = ("sparse", (4, 3))
# Batches of square matrices (`linalg.det`, `matmul`), images and filters
# (`nn.conv2d(images, filters, 1, "SAME")`, `nn.max_pool2d(images, 2, 2, "SAME")`).
SQUARES = tf.TensorSpec((3, 4, 4), tf.float32)
IMAGES = tf.TensorSpec((2, 6, 6, 3), tf.float32)
FILTERS = tf.TensorSpec((3, 3, 3, 2), tf.float32)

# In the order ops are tried on them: later recipes reach only the ops the
# earlier ones do not build.
RECIPES = (
    (FLOATS,),
    (STRINGS,),
    (SPARSE,),
    (INTS,),
    (FLOATS, FLOATS),
    (FLOATS, 2),
    (BYTES,),
    (SQUARES,),
    (SQUARES, SQUARES),
    (IMAGES, 2, 2, "SAME"),
    (IMAGES, FILTERS, 1, "SAME"),
)


def is_tensor_kind(argument) -> bool:
    return isinstance(argument, tf.TensorSpec) or argument == SPARSE


def is_float_kind(argument) -> bool:
    return isinstance(argument, tf.TensorSpec) and argument.dtype == tf.float32


def is_float_recipe(recipe) -> bool:
    """Whether `recipe` has tensors, all of them dense float tensors."""
    kinds = [argument for argument in recipe if is_tensor_kind(argument)]
    return bool(kinds) and all(map(is_float_kind, kinds))
