"""Training and inference through models built from wrapped TensorFlow ops.

Gradients, `fit`/`evaluate`/`predict`, XLA (`jit_compile=True`),
`tf.function`, integer/string ops in inference paths, mixed precision, and
the refusal of untracked variables.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_graft


def _rng(seed=0):
    return np.random.default_rng(seed)


def _op_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras_graft.TFOp)]


# --------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------


def _ops_model():
    inputs = keras.Input((4,))
    dense = keras.layers.Dense(5, name="dense")
    h = tf.nn.leaky_relu(dense(inputs), alpha=0.2)
    h = tf.concat([tf.math.sin(h), tf.square(h)], axis=-1)
    h = tf.math.l2_normalize(h, axis=-1) * 3.0
    out = keras.layers.Dense(2, name="head")(h)
    out = tf.reduce_logsumexp(tf.stack([out, -out], axis=1), axis=1)
    return keras.Model(inputs, out)


def _direct_math(model, x):
    """What `_ops_model` computes, written directly in TensorFlow."""
    dense, head = model.get_layer("dense"), model.get_layer("head")
    h = tf.matmul(x, dense.kernel) + dense.bias
    h = tf.where(h > 0, h, 0.2 * h)
    h = tf.concat([tf.sin(h), h * h], axis=-1)
    h = 3.0 * h / tf.sqrt(tf.maximum(tf.reduce_sum(h * h, axis=-1, keepdims=True), 1e-12))
    out = tf.matmul(h, head.kernel) + head.bias
    return tf.math.log(tf.exp(out) + tf.exp(-out))


def test_model_uses_op_layers():
    model = _ops_model()
    names = {layer.op_name for layer in _op_layers(model)}
    assert {"tf.nn.leaky_relu", "tf.concat", "tf.math.sin", "tf.math.l2_normalize"} <= names


def test_gradients_match_direct_tf_math():
    model = _ops_model()
    x = tf.constant(_rng().normal(size=(6, 4)).astype("float32"))
    np.testing.assert_allclose(model(x), _direct_math(model, x), rtol=1e-5, atol=1e-5)

    variables = model.trainable_variables
    assert len(variables) == 4
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        loss_model = tf.reduce_sum(model(x) ** 2)
        loss_direct = tf.reduce_sum(_direct_math(model, x) ** 2)
    grads_model = tape.gradient(loss_model, [x] + variables)
    grads_direct = tape.gradient(loss_direct, [x] + variables)
    for g_model, g_direct in zip(grads_model, grads_direct):
        assert g_model is not None
        assert float(tf.reduce_max(tf.abs(g_direct))) > 0
        np.testing.assert_allclose(g_model, g_direct, rtol=1e-4, atol=1e-5)


def test_gradient_of_shape_dependent_ops():
    # tf.shape/tf.ones/tf.range feed values, not gradients; only x's own path
    # carries one.
    inputs = keras.Input((3,))
    n = tf.cast(tf.shape(inputs)[0], "float32")
    weights = tf.cast(tf.range(1, 4), "float32")
    out = tf.reduce_sum(inputs * weights, axis=-1) / n
    model = keras.Model(inputs, out)
    x = tf.constant(_rng().normal(size=(4, 3)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(model(x))
    np.testing.assert_allclose(tape.gradient(y, x), np.tile([1.0, 2.0, 3.0], (4, 1)) / 4, rtol=1e-6)


# --------------------------------------------------------------------------
# fit / evaluate / predict, XLA, tf.function
# --------------------------------------------------------------------------


def _regression_data(n=128, seed=1):
    rng = _rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = (x @ np.array([[1.5], [-2.0], [0.5]]) + 0.3 * x[:, :1] ** 2 - 0.2).astype("float32")
    return x, y


def _regression_model():
    inputs = keras.Input((3,))
    features = tf.concat([inputs, tf.square(inputs)], axis=-1)
    h = tf.nn.tanh(keras.layers.Dense(8, kernel_initializer="glorot_uniform")(features))
    h = tf.concat([h, features], axis=-1)
    out = keras.layers.Dense(1)(h)
    return keras.Model(inputs, tf.identity(out))


def test_fit_evaluate_predict_loss_decreases():
    keras.utils.set_random_seed(0)
    x, y = _regression_data()
    model = _regression_model()
    model.compile(keras.optimizers.Adam(0.05), "mse")
    loss_before = model.evaluate(x, y, batch_size=32, verbose=0)
    history = model.fit(x, y, batch_size=32, epochs=15, verbose=0)
    loss_after = model.evaluate(x, y, batch_size=32, verbose=0)

    assert np.isfinite(loss_before) and np.isfinite(loss_after)
    assert loss_after < 0.25 * loss_before
    assert history.history["loss"][-1] < history.history["loss"][0]
    predictions = model.predict(x, batch_size=32, verbose=0)
    assert predictions.shape == (128, 1)
    np.testing.assert_allclose(predictions, model(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.mean((predictions - y) ** 2), loss_after, rtol=1e-4)


def test_jit_compile_matches_no_jit():
    keras.utils.set_random_seed(0)
    x, y = _regression_data(64)
    plain = _regression_model()
    jitted = _regression_model()
    jitted.set_weights(plain.get_weights())

    plain.compile(keras.optimizers.SGD(0.05), "mse", jit_compile=False)
    jitted.compile(keras.optimizers.SGD(0.05), "mse", jit_compile=True)
    assert jitted.jit_compile

    np.testing.assert_allclose(
        jitted.predict(x, batch_size=16, verbose=0),
        plain.predict(x, batch_size=16, verbose=0),
        rtol=1e-5,
        atol=1e-5,
    )
    h_plain = plain.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    h_jit = jitted.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(h_jit.history["loss"], h_plain.history["loss"], rtol=1e-4)
    for w_jit, w_plain in zip(jitted.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(w_jit, w_plain, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        jitted.predict(x, batch_size=16, verbose=0),
        plain.predict(x, batch_size=16, verbose=0),
        rtol=1e-4,
        atol=1e-5,
    )


def test_jit_compiled_tf_function_over_model():
    model = _ops_model()
    x = tf.constant(_rng().normal(size=(5, 4)).astype("float32"))
    xla_call = tf.function(lambda t: model(t), jit_compile=True)
    np.testing.assert_allclose(xla_call(x), _direct_math(model, x), rtol=1e-5, atol=1e-5)


def test_tf_function_over_model_calls():
    model = _ops_model()
    traces = []

    @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32)])
    def call(t):
        traces.append(1)
        return model(t)

    rng = _rng()
    for batch in (1, 3, 7):
        x = tf.constant(rng.normal(size=(batch, 4)).astype("float32"))
        np.testing.assert_allclose(call(x), _direct_math(model, x), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(call(x), model(x), rtol=1e-6, atol=1e-6)
    assert len(traces) == 1


def test_custom_train_step_in_tf_function():
    keras.utils.set_random_seed(0)
    x, y = _regression_data(64)
    model = _regression_model()
    optimizer = keras.optimizers.SGD(0.05)

    @tf.function
    def train_step(xb, yb):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(xb) - yb))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    losses = [float(train_step(x, y)) for _ in range(30)]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0]


# --------------------------------------------------------------------------
# Integer and string ops in inference paths
# --------------------------------------------------------------------------


def test_top_k_inference_path():
    inputs = keras.Input((6,))
    values, indices = tf.math.top_k(inputs, k=3)
    assert values.dtype == "float32" and indices.dtype == "int32"
    assert tuple(values.shape) == tuple(indices.shape) == (None, 3)
    picked = tf.gather(inputs, indices, batch_dims=1)
    model = keras.Model(inputs, [values, indices, picked])

    x = _rng().permutation(24).reshape(4, 6).astype("float32")
    expected_values, expected_indices = tf.math.top_k(x, k=3)
    for outputs in (model(x), model.predict(x, verbose=0)):
        got_values, got_indices, got_picked = outputs
        np.testing.assert_array_equal(got_values, expected_values)
        np.testing.assert_array_equal(got_indices, expected_indices)
        np.testing.assert_array_equal(got_picked, expected_values)
    assert keras.ops.convert_to_numpy(model(x)[1]).dtype == np.int32


def test_string_ops_inference_path():
    text = keras.Input((), dtype="string")
    cleaned = tf.strings.lower(tf.strings.strip(text))
    length = tf.strings.length(cleaned)
    is_greeting = tf.strings.regex_full_match(cleaned, "hello.*")
    hashed = tf.strings.to_hash_bucket_fast(cleaned, 100)
    assert cleaned.dtype == "string"
    assert length.dtype == "int32" and is_greeting.dtype == "bool"
    assert hashed.dtype == "int64"
    model = keras.Model(text, [cleaned, length, is_greeting, hashed])

    samples = tf.constant(["  Hello World ", "bye", "HELLO"])
    got_cleaned, got_length, got_greeting, got_hashed = model(samples)
    direct = tf.strings.lower(tf.strings.strip(samples))
    np.testing.assert_array_equal(got_cleaned.numpy(), [b"hello world", b"bye", b"hello"])
    np.testing.assert_array_equal(got_length, [11, 3, 5])
    np.testing.assert_array_equal(got_greeting, [True, False, True])
    np.testing.assert_array_equal(got_hashed, tf.strings.to_hash_bucket_fast(direct, 100))


def _parse_csv_model(split_layer_output):
    numbers = tf.strings.to_number(split_layer_output, tf.float32)
    assert numbers.ragged and numbers.dtype == "float32"
    features = tf.stack([tf.math.reduce_sum(numbers, axis=1), tf.math.reduce_max(numbers, axis=1)], axis=1)
    assert tuple(features.shape) == (None, 2)
    dense = keras.layers.Dense(1)
    return dense(features), dense


def _check_csv_model(model, dense, tmp_path):
    samples = tf.constant(["1,2,3", "4,5", "0.5"])
    features = np.array([[6, 3], [9, 5], [0.5, 0.5]], "float32")
    expected = features @ dense.kernel.numpy() + dense.bias.numpy()
    np.testing.assert_allclose(model(samples), expected, rtol=1e-6)
    np.testing.assert_allclose(model.predict(samples, verbose=0), expected, rtol=1e-6)

    path = tmp_path / "strings.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_array_equal(restored(samples), model(samples))


def test_ragged_string_split_with_explicit_op(tmp_path):
    text = keras.Input((), dtype="string")
    parts = keras_graft.Op(tf.strings.split, ",")(text)
    assert parts.ragged and parts.dtype == "string"
    out, dense = _parse_csv_model(parts)
    _check_csv_model(keras.Model(text, out), dense, tmp_path)


def test_ragged_string_split_auto_wrapped(tmp_path):
    # The same model with tf.strings.split called directly, as any
    # dispatch-enabled op should be.
    text = keras.Input((), dtype="string")
    parts = tf.strings.split(text, ",")
    assert parts.ragged and parts.dtype == "string"
    assert parts._keras_history.operation.op_name == "tf.strings.split"
    out, dense = _parse_csv_model(parts)
    _check_csv_model(keras.Model(text, out), dense, tmp_path)


# --------------------------------------------------------------------------
# Mixed precision: op layers keep TensorFlow's dtypes
# --------------------------------------------------------------------------


@pytest.fixture
def mixed_float16():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_mixed_precision_ops_keep_tf_dtypes(mixed_float16):
    inputs = keras.Input((4,))
    assert inputs.dtype == "float32"
    as_float64 = tf.cast(inputs, "float64")
    relu_of_float32 = tf.nn.relu(inputs)
    dense_out = keras.layers.Dense(3)(inputs)
    assert dense_out.dtype == "float16"  # the policy applies to Keras layers
    relu_of_float16 = tf.nn.relu(dense_out)
    squared_float64 = tf.square(as_float64)

    assert as_float64.dtype == "float64"
    assert relu_of_float32.dtype == "float32"
    assert relu_of_float16.dtype == "float16"
    assert squared_float64.dtype == "float64"

    model = keras.Model(inputs, [as_float64, relu_of_float32, relu_of_float16, squared_float64])
    for layer in _op_layers(model):
        assert not layer.autocast

    x = np.array([[-1.5, 0.25, 2.0, 1e-3]], "float32")
    outputs = model(x)
    assert [o.dtype for o in outputs] == [tf.float64, tf.float32, tf.float16, tf.float64]
    np.testing.assert_array_equal(outputs[0], x.astype("float64"))
    np.testing.assert_array_equal(outputs[1], np.maximum(x, 0))
    np.testing.assert_array_equal(outputs[3], x.astype("float64") ** 2)
    predicted = model.predict(x, verbose=0)
    assert [p.dtype for p in predicted] == [np.float64, np.float32, np.float16, np.float64]


def test_mixed_precision_training_through_ops(mixed_float16):
    keras.utils.set_random_seed(0)
    x, y = _regression_data(64)
    inputs = keras.Input((3,))
    h = keras.layers.Dense(8)(tf.concat([inputs, tf.square(inputs)], axis=-1))
    h = tf.nn.tanh(h)
    assert h.dtype == "float16"
    out = keras.layers.Dense(1, dtype="float32")(h)
    model = keras.Model(inputs, out)
    model.compile(keras.optimizers.Adam(0.05), "mse")
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=16, epochs=10, verbose=0)
    after = model.evaluate(x, y, verbose=0)
    assert np.isfinite(after) and after < 0.5 * before


# --------------------------------------------------------------------------
# Untracked variables
# --------------------------------------------------------------------------


def test_untracked_variable_is_refused():
    inputs = keras.Input((3,))
    v = tf.Variable([1.0, 2.0, 3.0])
    with pytest.raises(keras_graft.UnstorableArgumentError) as info:
        tf.multiply(inputs, v)
    message = str(info.value)
    assert "@keras_graft.layer" in message
    assert "ctx.weight" in message


def test_untracked_variable_is_refused_in_any_position():
    inputs = keras.Input((3,))
    v = tf.Variable([[1.0], [2.0], [3.0]])
    with pytest.raises(keras_graft.UnstorableArgumentError) as info:
        tf.matmul(inputs, v)
    assert "@keras_graft.layer" in str(info.value)
    with pytest.raises(keras_graft.UnstorableArgumentError):
        tf.add_n([inputs, tf.Variable(tf.zeros((3,)))])


def test_untracked_keras_variable_is_refused():
    inputs = keras.Input((3,))
    v = keras.Variable(np.ones((3,), "float32"))
    with pytest.raises(keras_graft.UnstorableArgumentError) as info:
        tf.multiply(inputs, v)
    assert "ctx.weight" in str(info.value)


def test_variable_read_inside_op_function_is_refused():
    v = tf.Variable(2.0)

    @keras_graft.op(package="test_training", name="scale_by_global")
    def scale_by_global(x):
        return x * v

    with pytest.raises(keras_graft.UnstorableArgumentError) as info:
        scale_by_global(keras.Input((3,)))
    assert "@keras_graft.layer" in str(info.value)
