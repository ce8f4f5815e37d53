"""Methods and properties of ragged and sparse Keras tensors.

A ragged Keras tensor (from `tf.strings.split`, ...) gets the methods of
`tf.RaggedTensor` (`ids.to_tensor(...)`, `ids.row_lengths()`, `ids.values`)
and a sparse one those of `tf.SparseTensor`, each call an op layer. TF's
methods are not public TF functions, so each is registered with
`@keras_graft.op` under `keras_graft>RaggedTensor.<name>` /
`keras_graft>SparseTensor.<name>`: a model file names them like any
registered op, which loads in safe mode. `keras_graft.Op(tf.RaggedTensor.to_tensor)`
works too.

`tf.RaggedTensor.to_tensor(ids)` (the method called on the class) stays
unsupported: TF runs it on the Keras tensor directly, without op dispatch.

>>> import keras, tensorflow as tf, keras_graft
>>> ids = tf.strings.split(keras.Input((), dtype="string"), ",")
>>> ids.to_tensor("").shape
(None, None)
"""

from __future__ import annotations

import tensorflow as tf

from keras_graft import _compat
from keras_graft.core import op_names
from keras_graft.core.op_layer import TFOp

RAGGED_PROPERTIES = ("values", "flat_values", "row_splits", "nested_row_splits")
RAGGED_METHODS = (
    "value_rowids",
    "nested_value_rowids",
    "nrows",
    "row_starts",
    "row_limits",
    "row_lengths",
    "nested_row_lengths",
    "bounding_shape",
    "merge_dims",
    "to_tensor",
    "to_sparse",
    "with_values",
    "with_flat_values",
    "with_row_splits_dtype",
)
SPARSE_PROPERTIES = ("indices", "values", "dense_shape")
SPARSE_METHODS = ("with_values",)

_KINDS = (
    ("ragged", tf.RaggedTensor, RAGGED_PROPERTIES, RAGGED_METHODS),
    ("sparse", tf.SparseTensor, SPARSE_PROPERTIES, SPARSE_METHODS),
)


def _function(cls, name: str):
    member = cls.__dict__[name]
    return member.fget if isinstance(member, property) else member


def _registered():
    """{(kind, name): function registered under a keras_graft name}."""
    functions = {}
    for kind, cls, properties, methods in _KINDS:
        for name in properties + methods:
            function = _function(cls, name)
            op_names.register(function, "keras_graft", f"{cls.__name__}.{name}")
            functions[(kind, name)] = function
    return functions


def _member(name: str, functions: dict, is_property: bool):
    def find(tensor):
        kind = "ragged" if tensor.ragged else "sparse" if tensor.sparse else "dense"
        function = functions.get((kind, name))
        if function is None:
            raise AttributeError(
                f"A {kind} KerasTensor has no attribute {name!r} (ragged and sparse "
                "Keras tensors have the methods of tf.RaggedTensor and tf.SparseTensor)."
            )
        return function

    def get(tensor):
        function = find(tensor)  # AttributeError for other kinds: hasattr() is False
        if is_property:
            return TFOp.wrap(function, (tensor,), {})

        def method(*args, **kwargs):
            return TFOp.wrap(function, (tensor, *args), kwargs)

        method.__name__ = name
        return method

    return property(get)


def install() -> None:
    """Gives Keras tensors the ragged and sparse methods they lack (idempotent)."""
    functions = _registered()
    for _kind, _, properties, methods in _KINDS:
        for name in properties + methods:
            if name not in vars(_compat.KerasTensor):
                is_property = name in properties
                setattr(_compat.KerasTensor, name, _member(name, functions, is_property))
