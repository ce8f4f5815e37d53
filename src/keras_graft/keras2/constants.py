"""Keras 2's constant op arguments, which it wrote as nested JSON lists, read back as arrays.

Keras 2 saved a NumPy array or constant tensor passed to an op on Keras
tensors as `array.tolist()`, with no dtype or shape: the official YAMNet
feature code's `tf.matmul(spectrogram, mel_matrix)` stores its 257x64 mel
matrix as 257 lists of 64 floats. keras-graft bounds the list, tuple and dict
items of one op's arguments (`arguments.MAX_STORED_ITEMS`), so such a list is
read back as the array it was, before that bound applies, with the dtype
TensorFlow gives the same Python list (`tf.constant(data)`): floats float32,
integers int32 (int64 past its range), booleans bool. The bound on an array's
values (`arguments.MAX_STORED_ELEMENTS`, 16M) holds.

In a layer's first argument, numbers and lists of them are constant tensors
(`as_keras2_input`): Keras 2's layers converted them before calling the op.
Elsewhere, only lists longer than any per-dimension argument are arrays: with more values
than TensorFlow's maximum rank, a list cannot be an `axis`, `perm`, `strides`
or `ksize` list, which some ops require to be a Python list
(`tf.squeeze(x, axis=[1])`). Shorter ones stay lists, as TensorFlow reads
them.

>>> as_array([[0.5, 1.0]] * 200).dtype, as_array([[0.5, 1.0]] * 200).shape
(dtype('float32'), (200, 2))
>>> as_array([0, 2, 1]) is None   # a `perm`, say: stays a list
True
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_graft.core.arguments import MAX_RANK, MAX_STORED_ELEMENTS
from keras_graft.errors import UntranslatableConfigError

_INT32 = np.iinfo(np.int32)
_INT64 = np.iinfo(np.int64)


def as_array(data, longer_than: int = MAX_RANK) -> np.ndarray | None:
    """The array Keras 2 wrote as the nested list `data`, or None when `data` is
    not a rectangular list of more than `longer_than` numbers."""
    if not isinstance(data, list) or not data:
        return None
    shape, level = [], [data]
    while isinstance(level[0], list):
        length = len(level[0])
        if not length or len(shape) == MAX_RANK:
            return None
        if not all(isinstance(item, list) and len(item) == length for item in level):
            return None
        if len(level) * length > MAX_STORED_ELEMENTS:
            raise UntranslatableConfigError(
                f"A constant op argument in this Keras 2 file holds more than "
                f"{MAX_STORED_ELEMENTS} values; keras-graft loads constants of at most "
                "that many. Keep such a constant in a layer's weights instead."
            )
        shape.append(length)
        level = [value for item in level for value in item]
    if len(level) <= longer_than:
        return None
    dtype = _dtype(level)
    return None if dtype is None else np.array(level, dtype=dtype).reshape(shape)


def as_keras2_input(value):
    """A constant first argument of an op layer, as Keras 2 gave it to the op.

    Keras 2's layers converted the numbers and arrays in their first argument
    to tensors before calling the op (`tf.__operators__.add(2.0, y=x)` for
    `2.0 + x` needs a tensor `x`), so a stored number or numeric list there is
    a constant tensor, of the dtype TensorFlow infers.
    """
    if isinstance(value, (bool, int, float)):
        dtype = _dtype([value])
        return value if dtype is None else tf.constant(np.array(value, dtype=dtype))
    array = value if isinstance(value, np.ndarray) else as_array(value, longer_than=0)
    return value if array is None else tf.constant(array)


def _dtype(values: list):
    """The dtype TensorFlow gives a flat Python list of these values, or None."""
    kinds = {type(value) for value in values}
    if kinds == {bool}:
        return np.bool_
    if not kinds <= {int, float}:
        return None
    if float in kinds:
        return np.float32
    low, high = min(values), max(values)
    if _INT32.min <= low and high <= _INT32.max:
        return np.int32
    if _INT64.min <= low and high <= _INT64.max:
        return np.int64
    return None
