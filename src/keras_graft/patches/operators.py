"""Python operators on keras-graft op outputs mean TensorFlow's operators, as in Keras 2.

In Keras 2, `x + y` on Keras tensors was TensorFlow's `+`, one more op layer.
In Keras 3 it is `keras.ops.add`, whose TensorFlow backend (3.15) takes a
`tf.nn.bias_add` shortcut when the second operand squeezes to one dimension
equal to the first operand's dimension 1 or last: with 8 features and a
batch of 8, `x + tf.reduce_mean(x, axis=-1, keepdims=True)` adds the `(8, 1)`
means along the last axis, silently wrong by about 1.5, in `predict` and in
eager calls alike.

So when an operand is the output of a keras-graft op layer (a TF op called
on Keras tensors), or an index holds a Keras tensor (`x[:, :n]` with a
symbolic `n`, which Keras' own indexing refuses), the operator is TensorFlow's: `+` is `tf.__operators__.add`,
`x[...]` `tf.__operators__.getitem`, `//` `tf.math.floordiv`, `&` on booleans
`tf.math.logical_and` and on integers `tf.bitwise.bitwise_and`, the names
Keras 2 stored for them (`OPERATORS`), each an op layer saved by name. Its
result is an op layer's output again, so a chain of operators stays
TensorFlow's. A model without keras-graft op layers keeps Keras' operators,
and Keras' own bug: `keras.ops.add` and `keras.layers.Add` are unchanged.

`==` is not among them: Keras tensors compare by identity in Keras' own code.

>>> import keras, tensorflow as tf, keras_graft
>>> x = keras.Input((8,))
>>> centered = x - tf.reduce_mean(x, axis=-1, keepdims=True)
>>> keras.Model(x, centered).layers[-1].op_name
'tf.math.subtract'
"""

from __future__ import annotations

import tensorflow as tf

from keras_graft import _compat
from keras_graft.core.op_layer import TFOp
from keras_graft.patches.dispatch import holds_keras_tensor

# Python's binary operators: the TF op for (bool operands, other operands).
# A reflected operator (`__radd__`) calls the op with the operands swapped.
OPERATORS = {
    "add": (tf.__operators__.add, tf.__operators__.add),
    "sub": (tf.math.subtract, tf.math.subtract),
    "mul": (tf.math.multiply, tf.math.multiply),
    "truediv": (tf.math.truediv, tf.math.truediv),
    "floordiv": (tf.math.floordiv, tf.math.floordiv),
    "mod": (tf.math.floormod, tf.math.floormod),
    "pow": (tf.math.pow, tf.math.pow),
    "matmul": (tf.linalg.matmul, tf.linalg.matmul),
    "and": (tf.math.logical_and, tf.bitwise.bitwise_and),
    "or": (tf.math.logical_or, tf.bitwise.bitwise_or),
    "xor": (tf.math.logical_xor, tf.bitwise.bitwise_xor),
}
REFLECTED = ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor")
COMPARISONS = {
    "lt": tf.math.less,
    "le": tf.math.less_equal,
    "gt": tf.math.greater,
    "ge": tf.math.greater_equal,
    "ne": tf.math.not_equal,
}
UNARY = {
    "neg": (tf.math.negative, tf.math.negative),
    "abs": (tf.math.abs, tf.math.abs),
    "invert": (tf.math.logical_not, tf.bitwise.invert),
}


def from_op_layer(value) -> bool:
    """Whether `value` is a Keras tensor a keras-graft op layer produced."""
    if not isinstance(value, _compat.KerasTensor):
        return False
    operation, _ = _compat.producing_operation(value)
    return isinstance(operation, TFOp)


def _op(ops: tuple, operand):
    on_bools, otherwise = ops
    return on_bools if operand.dtype == "bool" else otherwise


def _binary(keras_method, ops: tuple, reflected: bool):
    def method(self, other):
        if not (from_op_layer(self) or from_op_layer(other)):
            return keras_method(self, other)
        if not reflected:
            return TFOp.wrap(_op(ops, self), (self, other), {})
        # As TensorFlow's reflected operators do: the constant becomes a
        # tensor of the tensor's dtype (`tf.__operators__.add` needs one first).
        if not isinstance(other, _compat.KerasTensor):
            other = tf.convert_to_tensor(other, dtype=self.dtype)
        return TFOp.wrap(_op(ops, self), (other, self), {})

    return method


def _unary(keras_method, ops: tuple):
    def method(self):
        if not from_op_layer(self):
            return keras_method(self)
        return TFOp.wrap(_op(ops, self), (self,), {})

    return method


def _getitem(keras_method):
    # Keras' own indexing also fails on Keras tensors inside the index
    # (`x[:, :n]` with a symbolic `n`).
    def method(self, key):
        if not (from_op_layer(self) or holds_keras_tensor(key)):
            return keras_method(self, key)
        return TFOp.wrap(tf.__operators__.getitem, (self, key), {})

    return method


def install() -> None:
    """Gives Keras tensors TF's operators where an operand is an op layer's output (idempotent)."""
    cls = _compat.KerasTensor
    if getattr(cls.__add__, "graft_operator", False):
        return
    methods = {}
    for name, ops in OPERATORS.items():
        methods[f"__{name}__"] = _binary(getattr(cls, f"__{name}__"), ops, reflected=False)
        if name in REFLECTED:
            methods[f"__r{name}__"] = _binary(getattr(cls, f"__r{name}__"), ops, reflected=True)
    for name, op in COMPARISONS.items():
        methods[f"__{name}__"] = _binary(getattr(cls, f"__{name}__"), (op, op), reflected=False)
    for name, ops in UNARY.items():
        methods[f"__{name}__"] = _unary(getattr(cls, f"__{name}__"), ops)
    methods["__getitem__"] = _getitem(cls.__getitem__)
    for name, method in methods.items():
        method.graft_operator = True
        setattr(cls, name, method)
