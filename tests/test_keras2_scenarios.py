"""Keras 2's op-layer scenarios, ported to Keras 3 + keras_graft.

Port of `keras/layers/tensorflow_op_layer_test.py` (Keras 2 / tf-keras): the
`AutoLambdaTest` model scenarios, `test_stack_preserves_correct_shape`, the
`test_getitem_*` slicing tests, the numerical-correctness tests, the gradient
tape test, `test_built`, `test_json_serialization` and `InputInEagerTest`.
Unlike the original, every scenario checks real values against NumPy or
TensorFlow computed directly, and also round-trips through
`to_json`/`model_from_json` and `.keras` files in safe mode.

Adaptations to Keras 3:
- `tf.compat.v1.shape` / `tf.compat.v1.size` are not on keras_graft's
  allow-list (the `tf.compat.v1` namespace is refused), so the TF2 names
  `tf.shape` / `tf.size` are used.
- Operators on Keras tensors (`x * 2`, `x / 4.`) are Keras 3 ops, not TF ops;
  where the operator *was* the scenario's only TF op, `tf.multiply` is used so
  the scenario still exercises an op layer.
- A Keras 3 `Input(shape=())` has shape `(None,)`, and Keras 3 checks input
  shapes, so the `tf.stack` scenario feeds a `(4,)` batch instead of `(4, 4)`.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_graft
from keras_graft.core import inference

RNG_SEED = 1234


def _rng():
    return np.random.default_rng(RNG_SEED)


def _dense_np(layer, x):
    """What `layer` (a Dense without activation) computes, in NumPy."""
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    bias = keras.ops.convert_to_numpy(layer.bias)
    x = np.asarray(x, dtype=kernel.dtype)
    return x @ kernel + bias


def _relu(x):
    return np.maximum(x, 0)


def _assert_close(actual, expected, rtol=1e-5):
    """allclose, with the absolute tolerance scaled to the largest value
    (float32 sums of ~50k large terms differ in their last bits)."""
    expected = np.asarray(expected)
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def _op_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras_graft.TFOp)]


# --------------------------------------------------------------------------
# AutoLambdaTest model scenarios. Each returns (model, reference), where
# `reference(np_inputs)` computes the model's output directly in NumPy from
# the current weights of the model's own layers.
# --------------------------------------------------------------------------


def _single_op_at_end():
    inputs = keras.Input(shape=(10,))
    dense = keras.layers.Dense(10)
    outputs = tf.nn.relu(dense(inputs))
    return keras.Model(inputs, outputs), lambda x: _relu(_dense_np(dense, x))


def _single_identity_op_at_end():
    inputs = keras.Input(shape=(10,))
    dense = keras.layers.Dense(10)
    outputs = tf.identity(dense(inputs))
    return keras.Model(inputs, outputs), lambda x: _dense_np(dense, x)


def _multiple_ops_at_end():
    inputs = keras.Input(shape=(10,))
    dense = keras.layers.Dense(10)
    x = tf.nn.relu(dense(inputs))
    outputs = tf.nn.relu(x)
    return keras.Model(inputs, outputs), lambda x: _relu(_dense_np(dense, x))


def _single_op_in_middle():
    inputs = keras.Input(shape=(10,))
    dense1, dense2 = keras.layers.Dense(10), keras.layers.Dense(10)
    x = tf.nn.relu(dense1(inputs))
    outputs = dense2(x)
    return keras.Model(inputs, outputs), lambda x: _dense_np(dense2, _relu(_dense_np(dense1, x)))


def _multiple_ops_in_middle():
    inputs = keras.Input(shape=(10,))
    dense1, dense2 = keras.layers.Dense(10), keras.layers.Dense(10)
    x = tf.nn.relu(dense1(inputs))
    x = tf.nn.relu(x)
    outputs = dense2(x)
    return keras.Model(inputs, outputs), lambda x: _dense_np(dense2, _relu(_dense_np(dense1, x)))


def _shape_op_inference():
    inputs = keras.Input(shape=(10,))
    x = tf.shape(inputs)
    x = tf.ones(x)
    assert tuple(x.shape) == (None, 10)
    dense = keras.layers.Dense(10)
    outputs = dense(x)
    return keras.Model(inputs, outputs), lambda x: _dense_np(dense, np.ones_like(x))


def _shape_op_known_batch_size():
    inputs = keras.Input(batch_size=2, shape=(10,))
    x = tf.shape(inputs)
    x = tf.ones(x)
    assert tuple(x.shape) == (2, 10)
    dense = keras.layers.Dense(10)
    outputs = dense(x)
    return keras.Model(inputs, outputs), lambda x: _dense_np(dense, np.ones_like(x))


def _shape_op_slice_and_range():
    inputs = keras.Input(shape=(10,))
    batch_size = tf.shape(inputs)[0]
    x = tf.range(batch_size * 2)
    assert tuple(x.shape) == (None,)
    x = tf.reshape(x, (batch_size, 2))
    x = tf.cast(x, dtype="float32")
    dense = keras.layers.Dense(10)
    outputs = dense(x)

    def reference(x):
        n = x.shape[0]
        return _dense_np(dense, np.arange(n * 2).reshape(n, 2))

    return keras.Model(inputs, outputs), reference


def _shape_op_slice_and_range_known_dim():
    inputs = keras.Input(batch_size=2, shape=(10,))
    batch_size = tf.shape(inputs)[0]
    x = tf.range(batch_size * 3)
    assert tuple(x.shape) == (6,)
    x = tf.reshape(x, (batch_size, 3))
    assert tuple(x.shape) == (2, 3)
    x = tf.cast(x, dtype="float32")
    dense = keras.layers.Dense(10)
    outputs = dense(x)

    def reference(x):
        return _dense_np(dense, np.arange(6).reshape(2, 3))

    return keras.Model(inputs, outputs), reference


def _int32_manipulation_too_big_for_shape():
    # Functional model building must not choke on int32 tensors far too
    # large to represent shapes.
    inputs = keras.Input(batch_size=2, shape=(10,))
    batch_size = tf.shape(inputs)[0]
    num_features = 3 * 1024 * 16
    x = tf.range(batch_size * num_features, dtype="int32")
    assert tuple(x.shape) == (inputs.shape[0] * num_features,)
    x = tf.reshape(x, (batch_size, num_features))
    x = tf.cast(x, dtype="float32")
    dense = keras.layers.Dense(10)
    outputs = dense(x)

    def reference(x):
        return _dense_np(dense, np.arange(2 * num_features).reshape(2, num_features))

    return keras.Model(inputs, outputs), reference


# Keras 2's `keras_tensor._MAX_TENSOR_RANK`, the size limit of tensors whose
# values Keras 2 tried to infer.
_KERAS2_MAX_TENSOR_RANK = 254


def _int32_manipulation_at_max_shape_dims_limit():
    inputs = keras.Input(batch_size=2, shape=(10,))
    batch_size = tf.shape(inputs)[0]
    num_features = _KERAS2_MAX_TENSOR_RANK // int(inputs.shape[0])
    x = tf.range(batch_size * num_features, dtype="int32")
    assert tuple(x.shape) == (_KERAS2_MAX_TENSOR_RANK,)
    x = tf.reshape(x, (batch_size, num_features))
    assert tuple(x.shape) == (2, num_features)
    x = tf.cast(x, dtype="float32")
    dense = keras.layers.Dense(10)
    outputs = dense(x)

    def reference(x):
        return _dense_np(dense, np.arange(2 * num_features).reshape(2, num_features))

    return keras.Model(inputs, outputs), reference


def _single_standalone_branch():
    inputs = keras.Input(shape=(10,))
    dense = keras.layers.Dense(10)
    outputs = tf.multiply(dense(inputs), 2)
    return keras.Model(inputs, outputs), lambda x: 2 * _dense_np(dense, x)


def _single_op_with_attrs():
    inputs = keras.Input(shape=(10,))
    x = tf.reduce_mean(inputs, axis=1, keepdims=True)
    dense = keras.layers.Dense(10)
    outputs = dense(x)
    return keras.Model(inputs, outputs), lambda x: _dense_np(dense, x.mean(axis=1, keepdims=True))


def _leaky_relu_with_alpha():
    inputs = keras.Input(shape=(10,))
    dense = keras.layers.Dense(10)
    outputs = tf.nn.leaky_relu(dense(inputs), alpha=0.3)

    def reference(x):
        y = _dense_np(dense, x)
        return np.where(y > 0, y, 0.3 * y)

    return keras.Model(inputs, outputs), reference


def _multiple_uses():
    inputs = keras.Input(shape=(10,))
    x = tf.reduce_mean(inputs, axis=1, keepdims=True)
    dense1, dense2 = keras.layers.Dense(10), keras.layers.Dense(10)
    outputs = dense1(x) + dense2(x)

    def reference(x):
        mean = x.mean(axis=1, keepdims=True)
        return _dense_np(dense1, mean) + _dense_np(dense2, mean)

    return keras.Model(inputs, outputs), reference


def _op_with_tensor_list():
    inputs = keras.Input(shape=(10,))
    x = tf.concat([inputs, inputs], axis=1)
    dense = keras.layers.Dense(10)
    outputs = dense(x)
    return keras.Model(inputs, outputs), lambda x: _dense_np(dense, np.concatenate([x, x], axis=1))


def _add_n():
    inputs = keras.Input(shape=(10,))
    outputs = tf.add_n([inputs, inputs, inputs])
    return keras.Model(inputs, outputs), lambda x: 3 * x


def _reuse_op():
    inputs = keras.Input(shape=(10,))
    # This op's output is consumed twice.
    x = tf.nn.relu(inputs)
    dense1, dense2 = keras.layers.Dense(10), keras.layers.Dense(10)
    y = dense1(x)
    x2 = x * 2
    y2 = dense2(x2)
    outputs = y + y2

    def reference(x):
        r = _relu(x)
        return _dense_np(dense1, r) + _dense_np(dense2, 2 * r)

    return keras.Model(inputs, outputs), reference


def _float64_op():
    inputs = keras.Input(shape=(10,))
    dense1 = keras.layers.Dense(10, dtype="float64")
    x = tf.nn.relu(dense1(inputs))
    assert x.dtype == "float64", f"x has dtype: {x.dtype}"
    dense2 = keras.layers.Dense(10)
    outputs = dense2(x)

    def reference(x):
        hidden = _relu(_dense_np(dense1, x.astype("float64")))
        return _dense_np(dense2, hidden.astype("float32"))

    return keras.Model(inputs, outputs), reference


class MyAdd(keras.layers.Layer):
    def call(self, x, y):
        return x + y


def _layer_with_tensor_arg():
    inputs = keras.Input(shape=(10,))
    x = tf.multiply(inputs, 2)
    outputs = MyAdd()(inputs, x)
    return keras.Model(inputs, outputs), lambda x: 3 * x


class LayerWithLayer(keras.layers.Layer):
    def build(self, input_shape):
        self.bias = self.add_weight(name="bias", shape=(), dtype="float32", initializer="ones")
        self.layer = keras.layers.Dense(10)
        self.layer.build(input_shape)

    def call(self, inputs):
        # TF ops on real tensors inside a layer must not become op layers.
        inputs = tf.multiply(inputs, self.bias)
        return self.layer(inputs)


def _inner_layer():
    inputs = keras.Input(shape=(10,))
    inner = LayerWithLayer()
    outputs = inner(inputs)

    def reference(x):
        return _dense_np(inner.layer, x * keras.ops.convert_to_numpy(inner.bias))

    return keras.Model(inputs, outputs), reference


_CUSTOM_OBJECTS = {"LayerWithLayer": LayerWithLayer, "MyAdd": MyAdd}

AUTOLAMBDA_SCENARIOS = [
    _single_op_at_end,
    _single_identity_op_at_end,
    _multiple_ops_at_end,
    _single_op_in_middle,
    _multiple_ops_in_middle,
    _shape_op_inference,
    _shape_op_known_batch_size,
    _shape_op_slice_and_range,
    _shape_op_slice_and_range_known_dim,
    _int32_manipulation_too_big_for_shape,
    _int32_manipulation_at_max_shape_dims_limit,
    _single_standalone_branch,
    _single_op_with_attrs,
    _leaky_relu_with_alpha,
    _multiple_uses,
    _op_with_tensor_list,
    _add_n,
    _reuse_op,
    _float64_op,
    _inner_layer,
    _layer_with_tensor_arg,
]


def _np_inputs(model, rng):
    return rng.normal(size=(2,) + tuple(model.inputs[0].shape[1:])).astype("float32")


@pytest.mark.parametrize("model_fn", AUTOLAMBDA_SCENARIOS, ids=lambda f: f.__name__.lstrip("_"))
def test_autolambda(model_fn):
    rng = _rng()
    model, reference = model_fn()
    x = _np_inputs(model, rng)
    _assert_close(model(x), reference(x))

    model.compile(keras.optimizers.Adam(0.001), "mse")
    y = np.ones((2,) + tuple(model.outputs[0].shape[1:]), "float32")
    model.fit(np.ones_like(x), y, batch_size=2, epochs=1, verbose=0)
    # Calling the model directly after training still matches the reference
    # computed from the trained weights.
    expected = reference(x)
    _assert_close(model(x), expected)
    _assert_close(model.predict(x, batch_size=2, verbose=0), expected)

    new_model = keras.Model.from_config(model.get_config(), custom_objects=_CUSTOM_OBJECTS)
    new_model.set_weights(model.get_weights())
    np.testing.assert_array_equal(new_model(x), model(x))
    new_model.compile(keras.optimizers.Adam(0.001), "mse")
    new_model.fit(np.ones_like(x), y, batch_size=2, epochs=1, verbose=0)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(new_model(x))))
    # Metrics are preserved and in the same order; layer names don't change.
    assert model.metrics_names == new_model.metrics_names
    assert [layer.name for layer in model.layers] == [layer.name for layer in new_model.layers]


def test_autolambda_scenarios_use_op_layers():
    # Every scenario but the one whose TF ops all run inside a layer's call
    # puts at least one TFOp layer in the model.
    for model_fn in AUTOLAMBDA_SCENARIOS:
        keras.backend.clear_session()
        model, _ = model_fn()
        if model_fn is _inner_layer:
            assert _op_layers(model) == []
        else:
            assert _op_layers(model), model_fn.__name__


def test_stack_preserves_correct_shape():
    # stack([x])
    inp = keras.Input(shape=(), dtype="float32")
    out = tf.stack([inp])
    assert tuple(out.shape) == (1, None)
    model = keras.Model(inputs=inp, outputs=out)
    model.compile(keras.optimizers.Adam(0.001), "mse")

    x = tf.range(4, dtype="float32")
    expected = tf.stack([x])
    assert tuple(expected.shape) == (1, 4)
    assert tuple(model(x).shape) == (1, 4)
    np.testing.assert_array_equal(model(x), expected)

    model = keras.Model.from_config(model.get_config())
    assert tuple(model(x).shape) == (1, 4)
    np.testing.assert_array_equal(model(x), expected)

    # stack(x)
    inp = keras.Input(shape=(), dtype="float32")
    out = tf.stack(inp)
    assert tuple(out.shape) == (None,)
    model = keras.Model(inputs=inp, outputs=out)
    model.compile(keras.optimizers.Adam(0.001), "mse")

    expected = tf.stack(x)
    assert tuple(expected.shape) == (4,)
    assert tuple(model(x).shape) == (4,)
    np.testing.assert_array_equal(model(x), expected)

    model = keras.Model.from_config(model.get_config())
    assert tuple(model(x).shape) == (4,)
    np.testing.assert_array_equal(model(x), expected)


def test_stack_of_several_tensors():
    a, b = keras.Input((3,)), keras.Input((3,))
    out = tf.stack([a, b, a], axis=1)
    assert tuple(out.shape) == (None, 3, 3)
    model = keras.Model([a, b], out)
    rng = _rng()
    xa, xb = rng.normal(size=(2, 3)).astype("float32"), rng.normal(size=(2, 3)).astype("float32")
    np.testing.assert_array_equal(model([xa, xb]), np.stack([xa, xb, xa], axis=1))


# --------------------------------------------------------------------------
# getitem with symbolic indices
# --------------------------------------------------------------------------


def _assert_getitem_layers(model):
    names = [layer.name for layer in model.layers]
    assert any(name.startswith("tf.__operators__.getitem") for name in names), names
    assert not any(name.startswith("tf.strided_slice") for name in names), names


def _assert_model_computes(model, args, expected, batch_size):
    np.testing.assert_array_equal(model(args), expected)
    np.testing.assert_array_equal(model.predict(args, batch_size=batch_size, verbose=0), expected)
    # Make sure it can be rebuilt from its config.
    rebuilt = keras.Model.from_config(model.get_config())
    np.testing.assert_array_equal(rebuilt(args), expected)
    np.testing.assert_array_equal(rebuilt.predict(args, batch_size=batch_size, verbose=0), expected)


def _range_rows(batch_size, width=8):
    return np.tile(np.arange(width, dtype="float32"), (batch_size, 1))


def test_getitem_slice_with_step_only():
    inp = keras.Input(shape=(8,))
    slice_step = keras.Input(shape=(), dtype="int32")
    out = inp[..., :: slice_step[0]]
    assert len(out.shape) == 2
    model = keras.Model(inputs=[inp, slice_step], outputs=out)
    model.compile(keras.optimizers.Adam(0.001), "mse")
    batch_size, step = 7, 3
    x = _range_rows(batch_size)
    args = [x, np.full((batch_size,), step, "int32")]
    expected = np.tile(np.arange(8, dtype="float32")[::step], (batch_size, 1))

    _assert_getitem_layers(model)
    _assert_model_computes(model, args, expected, batch_size)


def test_getitem_slice_with_start_only():
    inp = keras.Input(shape=(8,))
    slice_start = keras.Input(shape=(), dtype="int32")
    out = inp[slice_start[0] :]
    model = keras.Model(inputs=[inp, slice_start], outputs=out)
    batch_size, start = 7, 2
    x = _range_rows(batch_size) + np.arange(batch_size, dtype="float32")[:, None]
    args = [x, np.full((batch_size,), start, "int32")]

    _assert_getitem_layers(model)
    _assert_model_computes(model, args, x[start:], batch_size)


def test_getitem_slice_real_tensor():
    x = tf.range(10.0)
    slice_stop = keras.Input(shape=(), dtype="int32")
    out = x[: slice_stop[0]]
    model = keras.Model(inputs=slice_stop, outputs=out)
    model.compile(keras.optimizers.Adam(0.001), "mse")
    batch_size, stop = 7, 6
    args = np.full((batch_size,), stop, "int32")
    expected = np.arange(10.0, dtype="float32")[:stop]

    assert any(layer.name.startswith("tf.__operators__.getitem") for layer in model.layers)
    np.testing.assert_array_equal(model(args), expected)
    rebuilt = keras.Model.from_config(model.get_config())
    np.testing.assert_array_equal(rebuilt(args), expected)


def test_getitem_index_real_tensor():
    x = tf.range(10.0)
    slice_stop = keras.Input(shape=(), dtype="int32")
    out = x[slice_stop[0]]
    model = keras.Model(inputs=slice_stop, outputs=out)
    model.compile(keras.optimizers.Adam(0.001), "mse")
    batch_size, index = 7, 6
    args = np.full((batch_size,), index, "int32")

    assert any(layer.name.startswith("tf.__operators__.getitem") for layer in model.layers)
    np.testing.assert_array_equal(model(args), np.float32(index))
    rebuilt = keras.Model.from_config(model.get_config())
    np.testing.assert_array_equal(rebuilt(args), np.float32(index))


def test_getitem_slice_with_stop_only():
    inp = keras.Input(shape=(8,))
    slice_stop = keras.Input(shape=(), dtype="int32")
    out = inp[: slice_stop[0]]
    model = keras.Model(inputs=[inp, slice_stop], outputs=out)
    model.compile(keras.optimizers.Adam(0.001), "mse")
    batch_size, stop = 7, 6
    x = _range_rows(batch_size) + np.arange(batch_size, dtype="float32")[:, None]
    args = [x, np.full((batch_size,), stop, "int32")]

    _assert_getitem_layers(model)
    _assert_model_computes(model, args, x[:stop], batch_size)


def test_getitem_slice_with_stop_and_ellipsis_only():
    inp = keras.Input(shape=(8,))
    slice_stop = keras.Input(shape=(), dtype="int32")
    out = inp[..., : slice_stop[0]]
    model = keras.Model(inputs=[inp, slice_stop], outputs=out)
    model.compile(keras.optimizers.Adam(0.001), "mse")
    batch_size, stop = 7, 6
    x = _range_rows(batch_size)
    args = [x, np.full((batch_size,), stop, "int32")]

    _assert_getitem_layers(model)
    _assert_model_computes(model, args, x[..., :stop], batch_size)


def test_getitem_slice_batch_axis_then_stop():
    inp = keras.Input(shape=(8,))
    slice_stop = keras.Input(shape=(), dtype="int32")
    out = inp[:, : slice_stop[0]]
    model = keras.Model(inputs=[inp, slice_stop], outputs=out)
    batch_size, stop = 5, 3
    x = _rng().normal(size=(batch_size, 8)).astype("float32")
    args = [x, np.full((batch_size,), stop, "int32")]

    _assert_getitem_layers(model)
    _assert_model_computes(model, args, x[:, :stop], batch_size)


def test_getitem_complex_slicing():
    inp = keras.Input(shape=(4, 3, 8))
    first_dim = keras.Input(shape=(), dtype="int32")
    slice_start = keras.Input(shape=(), dtype="int32")
    slice_stop = keras.Input(shape=(), dtype="int32")
    slice_stride = keras.Input(shape=(), dtype="int32")

    out = inp[..., first_dim[0], slice_start[0] : slice_stop[0] : slice_stride[0]]
    assert len(out.shape) == 3
    model = keras.Model(inputs=[inp, first_dim, slice_start, slice_stop, slice_stride], outputs=out)
    model.compile(keras.optimizers.Adam(0.001), "mse")
    batch_size, start, stop, step = 7, 1, 6, 2
    x = np.broadcast_to(np.arange(8, dtype="float32"), (batch_size, 4, 3, 8)).copy()
    x += np.arange(3, dtype="float32")[:, None] * 100  # tell the middle rows apart
    args = [
        x,
        np.full((batch_size,), 1, "int32"),
        np.full((batch_size,), start, "int32"),
        np.full((batch_size,), stop, "int32"),
        np.full((batch_size,), step, "int32"),
    ]
    # Slice the innermost dim, take one index of the second-to-innermost dim.
    expected = x[..., 1, start:stop:step]
    assert expected.shape == (batch_size, 4, 3)

    _assert_getitem_layers(model)
    _assert_model_computes(model, args, expected, batch_size)


# --------------------------------------------------------------------------
# Numerical correctness, gradients, build state
# --------------------------------------------------------------------------


def test_left_hand_numpy_multiplication():
    # Keras 2 wrote `x * inputs` with a NumPy `x`; in Keras 3 NumPy's own
    # operator cannot take a Keras tensor, so the TF op is called directly.
    x = np.asarray([3.0], dtype="float32")
    inputs = keras.Input(shape=(4,))
    outputs = tf.multiply(x, inputs)
    model = keras.Model(inputs, outputs)
    ones = tf.ones((5, 4), dtype="float32")
    np.testing.assert_array_equal(model(ones), 3.0 * ones)


def test_numerical_correctness_simple():
    x = tf.convert_to_tensor([[-1.0, 0.0, -2.0, 1.0]])
    inputs = keras.Input(shape=(4,))
    outputs = tf.nn.relu(inputs)
    model = keras.Model(inputs, outputs)
    np.testing.assert_allclose(model(x), [[0.0, 0.0, 0.0, 1.0]])


def test_numerical_correctness_with_attrs():
    x = tf.convert_to_tensor([[1.5, 1.5], [2.5, 3.5]])
    inputs = keras.Input(shape=(2,))
    outputs = tf.reduce_mean(inputs, axis=1)
    assert tuple(outputs.shape) == (None,)
    model = keras.Model(inputs, outputs)
    np.testing.assert_allclose(model(x), [1.5, 3.0])


def test_numerical_correctness_serialization():
    x = tf.convert_to_tensor([[-1.0, 0.0, -2.0, 1.0]])
    inputs = keras.Input(shape=(4,))
    outputs = tf.nn.relu(inputs)
    model1 = keras.Model(inputs, outputs)
    y1 = model1(x)
    model2 = keras.Model.from_config(model1.get_config())
    y2 = model2(x)
    np.testing.assert_allclose(y1, y2)
    np.testing.assert_allclose(y2, [[0.0, 0.0, 0.0, 1.0]])


def _gradient_in_function(model):
    @tf.function()
    def f(x):
        with tf.GradientTape() as t:
            t.watch(x)
            z = model(x**2)
        return t.gradient(z, x)

    return f


def test_gradient_tape_in_function():
    # Verbatim Keras 2 scenario: the matmul's second operand is a constant
    # TF tensor.
    z = keras.Input((1,))
    x = tf.matmul(z, tf.constant(2.0, shape=(1, 1)))
    x = tf.reduce_mean(x, axis=0, keepdims=True)
    h = tf.nn.relu(x)
    m = keras.Model(z, h)

    f = _gradient_in_function(m)
    np.testing.assert_array_equal(f(tf.constant(10.0, shape=(1, 1))), [[40.0]])
    f = tf.function(f)
    np.testing.assert_array_equal(f(tf.constant(10.0, shape=(1, 1))), [[40.0]])


def test_gradient_tape_in_function_numpy_constant():
    # Same scenario with the constant given as a NumPy array.
    z = keras.Input((1,))
    x = tf.matmul(z, np.full((1, 1), 2.0, "float32"))
    x = tf.reduce_mean(x, axis=0, keepdims=True)
    h = tf.nn.relu(x)
    m = keras.Model(z, h)

    f = _gradient_in_function(m)
    np.testing.assert_array_equal(f(tf.constant(10.0, shape=(1, 1))), [[40.0]])
    f = tf.function(f)
    np.testing.assert_array_equal(f(tf.constant(10.0, shape=(1, 1))), [[40.0]])
    # d/dx relu(mean(2 * x**2)) over a batch of 2: 4 * x / 2 each.
    np.testing.assert_allclose(f(tf.constant([[1.0], [3.0]])), [[2.0], [6.0]])


def test_op_graph_grows_linearly():
    # Keras 2's test_timing_scales_linearly, without timing: building N more
    # (Dense, op) pairs adds a constant number of nodes per op to the graph
    # that op layers are traced in (no O(N^2) re-tracing).
    def nodes_added(size):
        graph = inference.scratch_graph()
        start = graph.version
        x = keras.Input((4,), batch_size=10)
        for _ in range(size):
            x = keras.layers.Dense(4)(x)
            x = tf.nn.relu(x)
        assert inference.scratch_graph() is graph
        return graph.version - start

    small, large = nodes_added(5), nodes_added(50)
    assert small > 0
    assert large <= 10 * small + 10


def test_built():
    inputs = keras.Input(shape=(10,))
    outputs = tf.nn.relu(inputs)
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "mse")
    for layer in model.layers:
        assert layer.built
    # Something that requires layers to be built.
    lines = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    assert "tf.nn.relu" in "\n".join(lines)
    assert model.count_params() == 0


def test_json_serialization():
    inputs = keras.Input(shape=(4,), dtype="uint8")
    outputs = tf.cast(inputs, "float32") / 4.0
    model = keras.models.model_from_json(keras.Model(inputs, outputs).to_json())
    np.testing.assert_array_equal(model(np.array([[0, 64, 128, 192]], np.uint8)), [[0.0, 16.0, 32.0, 48.0]])
    lines = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    assert "tf.cast" in "\n".join(lines)


# --------------------------------------------------------------------------
# Reuse, serialization round trips
# --------------------------------------------------------------------------


def test_reuse_model_with_ops_on_other_inputs():
    inputs = keras.Input((6,))
    dense = keras.layers.Dense(6)
    h = tf.nn.leaky_relu(dense(inputs), alpha=0.1)
    outputs = tf.reduce_sum(tf.square(h), axis=-1, keepdims=True)
    inner = keras.Model(inputs, outputs)

    a, b = keras.Input((6,)), keras.Input((6,))
    outer = keras.Model([a, b], tf.concat([inner(a), inner(b)], axis=-1))

    rng = _rng()
    xa, xb = rng.normal(size=(3, 6)).astype("float32"), rng.normal(size=(3, 6)).astype("float32")

    def reference(x):
        y = _dense_np(dense, x)
        y = np.where(y > 0, y, 0.1 * y)
        return (y**2).sum(axis=-1, keepdims=True)

    expected = np.concatenate([reference(xa), reference(xb)], axis=-1)
    np.testing.assert_allclose(outer([xa, xb]), expected, rtol=1e-5)
    # The inner model is shared: one set of weights.
    assert len(outer.weights) == 2


def test_reuse_op_layer_on_other_inputs():
    inputs = keras.Input((5,))
    out = tf.clip_by_value(inputs, -0.5, 0.5)
    layer = out._keras_history.operation
    assert isinstance(layer, keras_graft.TFOp)

    other = keras.Input((5,))
    model = keras.Model([inputs, other], [out, layer(other)])
    rng = _rng()
    x1, x2 = rng.normal(size=(2, 5)).astype("float32"), rng.normal(size=(2, 5)).astype("float32")
    y1, y2 = model([x1, x2])
    np.testing.assert_array_equal(y1, np.clip(x1, -0.5, 0.5))
    np.testing.assert_array_equal(y2, np.clip(x2, -0.5, 0.5))
    # Called on a real tensor, the layer runs the op.
    np.testing.assert_array_equal(layer(tf.constant(x1)), np.clip(x1, -0.5, 0.5))


def _rich_model():
    """Dense layers mixed with many kinds of wrapped ops and arguments."""
    inputs = keras.Input((8,))
    start = keras.Input((), dtype="int32")
    dense1 = keras.layers.Dense(8)
    h = tf.nn.leaky_relu(dense1(inputs), alpha=0.2)
    h = tf.concat([h, tf.reduce_mean(h, axis=-1, keepdims=True)], axis=-1)
    h = tf.add_n([h, tf.math.sin(h), h])
    h = tf.cast(h, "float64")
    h = tf.cast(h * 0.5, tf.float32)
    h = h[:, start[0] :]
    h = tf.pad(h, [[0, 0], [0, 2]])
    h = tf.ensure_shape(tf.slice(h, [0, 0], [-1, 5]), (None, 5))
    outputs = keras.layers.Dense(3)(h)
    return keras.Model([inputs, start], outputs)


def _rich_inputs():
    rng = _rng()
    return [rng.normal(size=(4, 8)).astype("float32"), np.full((4,), 2, "int32")]


def _rich_reference(model, args):
    x, start = args
    dense1, dense2 = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    h = _dense_np(dense1, x)
    h = np.where(h > 0, h, 0.2 * h)
    h = np.concatenate([h, h.mean(axis=-1, keepdims=True)], axis=-1)
    h = 2 * h + np.sin(h)
    h = (h.astype("float64") * 0.5).astype("float32")
    h = h[:, start[0] :]
    h = np.pad(h, [[0, 0], [0, 2]])[:, :5]
    return _dense_np(dense2, h)


def test_rich_model_values():
    model = _rich_model()
    args = _rich_inputs()
    np.testing.assert_allclose(model(args), _rich_reference(model, args), rtol=1e-5, atol=1e-5)


def test_json_round_trip_identical_predictions():
    model = _rich_model()
    args = _rich_inputs()
    text = model.to_json()
    json.loads(text)  # plain JSON
    restored = keras.models.model_from_json(text)
    restored.set_weights(model.get_weights())
    assert [layer.name for layer in restored.layers] == [layer.name for layer in model.layers]
    assert len(_op_layers(restored)) == len(_op_layers(model)) > 0
    np.testing.assert_array_equal(restored.predict(args, verbose=0), model.predict(args, verbose=0))
    np.testing.assert_array_equal(restored(args), model(args))


def test_keras_file_round_trip_safe_mode(tmp_path):
    model = _rich_model()
    args = _rich_inputs()
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path, safe_mode=True)
    assert [layer.name for layer in restored.layers] == [layer.name for layer in model.layers]
    assert all(type(layer) is keras_graft.TFOp for layer in _op_layers(restored))
    np.testing.assert_array_equal(restored.predict(args, verbose=0), model.predict(args, verbose=0))
    np.testing.assert_array_equal(restored(args), model(args))
    np.testing.assert_allclose(restored(args), _rich_reference(restored, args), rtol=1e-5, atol=1e-5)


def test_keras_file_round_trip_symbolic_getitem(tmp_path):
    inp = keras.Input(shape=(8,))
    step = keras.Input(shape=(), dtype="int32")
    model = keras.Model([inp, step], inp[..., :: step[0]])
    path = tmp_path / "getitem.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    x = _range_rows(3)
    for s in (1, 2, 3):
        np.testing.assert_array_equal(restored([x, np.full((3,), s, "int32")]), x[..., ::s])


# --------------------------------------------------------------------------
# InputInEagerTest: ops on Keras inputs go the symbolic way.
# --------------------------------------------------------------------------


def test_identity():
    x = keras.Input(shape=(1,))
    ident = tf.identity(x)
    assert isinstance(ident, keras.KerasTensor)
    layer = ident._keras_history.operation
    assert isinstance(layer, keras_graft.TFOp)
    assert layer.op_name == "tf.identity"
    np.testing.assert_array_equal(keras.Model(x, ident)(np.array([[2.5]], "float32")), [[2.5]])


def test_size():
    x = keras.Input(shape=(3,))
    assert tuple(x.shape) == (None, 3)
    sz = tf.size(x)
    assert isinstance(sz, keras.KerasTensor)
    assert tuple(sz.shape) == ()
    assert sz.dtype == "int32"
    assert sz._keras_history.operation.op_name == "tf.size"
    np.testing.assert_array_equal(keras.Model(x, sz)(np.zeros((5, 3), "float32")), 15)
