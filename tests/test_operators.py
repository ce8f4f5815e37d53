"""Python operators on keras-graft op outputs are TensorFlow's, as they were in Keras 2.

Keras 3.15's own `+` on the TensorFlow backend adds a `(n, 1)` operand along
the last axis when the batch size equals the feature size. With an op
layer's output among the operands, `+` is `tf.__operators__.add`: right for
square batches eagerly, in `predict` and after saving and loading.
"""

import operator

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_graft
from keras_graft.patches import operators

FEATURES = 8


def square_batch():
    return np.random.default_rng(0).normal(size=(FEATURES, FEATURES)).astype("float32")


def op_name(tensor):
    operation = tensor._keras_history.operation
    return operation.op_name if isinstance(operation, keras_graft.TFOp) else type(operation).__name__


@pytest.mark.parametrize(
    "build, reference",
    [
        (lambda x: x + tf.reduce_mean(x, axis=-1, keepdims=True), lambda x: x + x.mean(-1, keepdims=True)),
        (lambda x: tf.reduce_mean(x, axis=-1, keepdims=True) + x, lambda x: x.mean(-1, keepdims=True) + x),
        (lambda x: tf.math.reduce_std(x, -1, keepdims=True) + x, lambda x: x.std(-1, keepdims=True) + x),
        (
            lambda x: (x - tf.reduce_mean(x, -1, keepdims=True)) * 2.0 + 1.0,
            lambda x: (x - x.mean(-1, keepdims=True)) * 2.0 + 1.0,
        ),
    ],
)
def test_arithmetic_on_op_outputs_is_right_for_square_batches(tmp_path, build, reference):
    x = keras.Input((FEATURES,))
    model = keras.Model(x, build(x))
    data = square_batch()
    want = reference(data)
    np.testing.assert_allclose(model(data), want, atol=1e-5)
    np.testing.assert_allclose(model.predict(data, verbose=0), want, atol=1e-5)
    model.save(tmp_path / "model.keras")
    reloaded = keras.models.load_model(tmp_path / "model.keras")  # safe mode
    np.testing.assert_allclose(reloaded.predict(data, verbose=0), want, atol=1e-5)


def test_the_operator_is_an_op_layer_and_a_chain_stays_one():
    x = keras.Input((FEATURES,))
    mean = tf.reduce_mean(x, axis=-1, keepdims=True)
    assert op_name(x + mean) == op_name(mean + x) == "tf.__operators__.add"
    assert op_name((x - mean) * 2.0) == "tf.math.multiply"
    assert op_name(2.0**mean) == "tf.math.pow"
    assert op_name(mean[:, 0]) == "tf.__operators__.getitem"
    assert op_name(-mean) == "tf.math.negative"


def test_models_without_op_layers_keep_keras_operators():
    x = keras.Input((FEATURES,))
    assert op_name(x + keras.ops.mean(x, axis=-1, keepdims=True)) == "Add"
    assert op_name(x * 2.0) == "Multiply" and op_name(x[:, 1:]) == "GetItem"
    same = x
    assert (x == same) is True  # Keras compares its tensors by identity


BINARY = ["add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "lt", "le", "gt", "ge", "ne"]


@pytest.mark.parametrize("name", BINARY)
def test_each_binary_operator_computes_what_tensorflow_computes(name):
    function = getattr(operator, name)
    x = keras.Input((3,))
    out = tf.identity(x)
    model = keras.Model(x, [function(out, x), function(x, out), function(out, 2.0), function(2.0, out)])
    data = np.random.default_rng(1).uniform(0.5, 2.0, (2, 3)).astype("float32")
    real = tf.constant(data)
    wants = [function(real, real), function(real, real), function(real, 2.0), function(2.0, real)]
    for got, want in zip(model(data), wants, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
        assert got.dtype == want.dtype


@pytest.mark.parametrize("name", ["and_", "or_", "xor"])
@pytest.mark.parametrize("dtype", ["bool", "int32"])
def test_logical_operators_are_logical_on_booleans_and_bitwise_on_integers(name, dtype):
    function = getattr(operator, name)
    a, b = keras.Input((4,), dtype=dtype), keras.Input((4,), dtype=dtype)
    model = keras.Model([a, b], [function(tf.identity(a), b), ~tf.identity(a)])
    left = np.array([[0, 1, 2, 3]]).astype(dtype)
    right = np.array([[1, 1, 0, 6]]).astype(dtype)
    got = model([left, right])
    np.testing.assert_array_equal(got[0], function(tf.constant(left), tf.constant(right)))
    np.testing.assert_array_equal(got[1], ~tf.constant(left))


def test_matmul_on_op_outputs_is_tfs_matmul():
    a = keras.Input((3, 4))
    product = tf.identity(a) @ tf.transpose(a, [0, 2, 1])
    assert op_name(product) == "tf.linalg.matmul" and product.shape == (None, 3, 3)


def test_the_table_names_tensorflows_operator_functions():
    # What `tf.Tensor`'s own operators call (the ops Keras 2 stored are checked
    # against this table by the Keras 2 sweep, `test_keras2_op_sweep.py`).
    t = tf.constant([[1.0]])
    for name, (on_bools, otherwise) in operators.OPERATORS.items():
        if name in ("and", "or", "xor"):
            continue
        np.testing.assert_array_equal(otherwise(t, t), getattr(tf.Tensor, f"__{name}__")(t, t))


def test_tensorflows_dtype_rules_come_with_its_operators():
    x = keras.Input(batch_size=2, shape=(3,))
    rows = tf.shape(x)[0]
    assert (rows * 3).dtype == "int32" and (rows / 2).dtype == "float64"  # as TF (and Keras 2) made them
    with pytest.raises(keras_graft.OpTraceError, match="tf.math.multiply"):
        rows * 2.5
    assert (tf.cast(rows, tf.float32) * 2.5).dtype == "float32"
