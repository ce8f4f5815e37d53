"""TFOp and Op layers: names, configs, save/load, Sequential, registered ops."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_graft


@keras_graft.op(package="tests")
def soft_clip(x, limit=1.0):
    return limit * tf.math.tanh(x / limit)


def predictions_match(model, loaded, data):
    for ours, theirs in zip(keras.tree.flatten(model(data)), keras.tree.flatten(loaded(data))):
        np.testing.assert_array_equal(ours, theirs)


def test_plain_tf_ops_on_real_tensors_are_untouched():
    value = tf.constant([[-2.0, 0.5, 3.0]])
    result = tf.clip_by_value(value, -1.0, 1.0)
    assert isinstance(result, tf.Tensor)
    np.testing.assert_array_equal(result, [[-1.0, 0.5, 1.0]])


def test_layer_names_are_readable_unique_and_survive_a_round_trip(tmp_path):
    x = keras.Input((4,))
    y = tf.math.top_k(x, k=2).values
    z = tf.math.top_k(y, k=1).values
    w = tf.math.sin(z, name="my_sine")
    model = keras.Model(x, w)
    names = [layer.name for layer in model.layers[1:]]
    assert names == ["tf.math.top_k", "tf.math.top_k_1", "my_sine"]
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert [layer.name for layer in loaded.layers[1:]] == names
    assert [type(layer) for layer in loaded.layers[1:]] == [keras_graft.TFOp] * 3


def test_config_names_the_op_and_stores_arguments_as_data():
    x = keras.Input((4,))
    y = tf.clip_by_value(x, -1.0, clip_value_max=2.0)
    layer = y._keras_history.operation
    config = layer.get_config()
    assert config["op"] == "tf.clip_by_value"
    assert config["arguments"] == {
        "args": [{"__graft__": "input", "index": 0}, -1.0],
        "kwargs": {"clip_value_max": 2.0},
    }
    json.dumps(config)
    clone = keras_graft.TFOp.from_config(config)
    assert clone.get_config() == config


def test_multiple_keras_tensors_and_nesting_in_a_call():
    a, b = keras.Input((2,)), keras.Input((2,))
    stacked = tf.stack([a, b, a], axis=1)
    concatenated = tf.concat(values=[a, b], axis=-1)
    total = tf.add_n([a, b, a])
    model = keras.Model([a, b], [stacked, concatenated, total])
    av, bv = np.ones((1, 2), "float32"), np.full((1, 2), 2.0, "float32")
    s, c, t = model([av, bv])
    np.testing.assert_array_equal(s, np.stack([av, bv, av], axis=1))
    np.testing.assert_array_equal(c, np.concatenate([av, bv], axis=-1))
    np.testing.assert_array_equal(t, av + bv + av)
    assert stacked._keras_history.operation.get_config()["arguments"]["args"][0] == [
        {"__graft__": "input", "index": 0},
        {"__graft__": "input", "index": 1},
        {"__graft__": "input", "index": 0},
    ]


def test_namedtuple_outputs_keep_their_structure():
    x = keras.Input((5,))
    result = tf.unique_with_counts(tf.reshape(x, [-1]))
    assert type(result).__name__ == "UniqueWithCounts"
    assert result.idx.dtype == "int32"


def test_op_layer_in_sequential_saves_and_loads(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((16000,)),
            keras_graft.Op(tf.signal.stft, frame_length=400, frame_step=160),
            keras_graft.Op(tf.math.abs),
            keras_graft.Op(tf.math.reduce_mean, axis=1),
            keras.layers.Dense(2),
        ]
    )
    assert model.layers[0].output.shape == (None, 98, 257)
    assert model.output_shape == (None, 2)
    data = np.random.default_rng(1).normal(size=(2, 16000)).astype("float32")
    model.save(tmp_path / "s.keras")
    loaded = keras.models.load_model(tmp_path / "s.keras")
    assert type(loaded.layers[0]) is keras_graft.Op
    assert loaded.layers[0].get_config() == model.layers[0].get_config()
    predictions_match(model, loaded, data)


def test_op_layer_refuses_keras_tensors_in_constants():
    x = keras.Input((3,))
    with pytest.raises(TypeError, match="Keras tensors among its constant arguments"):
        keras_graft.Op(tf.math.add, x)


def test_op_layer_refuses_unnamed_functions():
    with pytest.raises(TypeError, match="@keras_graft.op"):
        keras_graft.Op(lambda x: x * 2)


def test_registered_op_is_a_plain_function_on_real_tensors():
    result = soft_clip(tf.constant([10.0]), limit=2.0)
    np.testing.assert_allclose(result, [2.0 * np.tanh(5.0)], rtol=1e-6)


def test_registered_op_wraps_and_saves_by_name(tmp_path):
    x = keras.Input((3,))
    y = soft_clip(x, limit=2.0)
    layer = y._keras_history.operation
    assert layer.get_config()["op"] == "tests>soft_clip"
    assert layer.name == "soft_clip"
    model = keras.Model(x, y)
    model.save(tmp_path / "r.keras")
    loaded = keras.models.load_model(tmp_path / "r.keras")
    predictions_match(model, loaded, np.array([[-9.0, 0.1, 3.0]], "float32"))


def test_registered_op_in_explicit_layer():
    model = keras.Sequential([keras.Input((2,)), keras_graft.Op(soft_clip, limit=0.5)])
    np.testing.assert_allclose(model(np.array([[4.0, -4.0]], "float32")), [[0.5, -0.5]], rtol=1e-3)


def test_registering_a_second_function_under_a_taken_name_fails():
    def soft_clip(x):
        return x

    with pytest.raises(ValueError, match="already registered"):
        keras_graft.op(soft_clip, package="tests")


def test_json_round_trip_gives_the_same_predictions():
    x = keras.Input((6,))
    values, indices = tf.math.top_k(x, k=2)
    y = tf.concat([values, tf.cast(indices, tf.float32)], axis=-1)
    model = keras.Model(x, keras.layers.Dense(3)(y))
    restored = keras.models.model_from_json(model.to_json())
    restored.set_weights(model.get_weights())
    predictions_match(model, restored, np.random.default_rng(2).normal(size=(3, 6)).astype("float32"))


def test_reused_op_output_feeds_two_branches_and_a_second_model():
    x = keras.Input((3,))
    shared = tf.math.square(x)
    model = keras.Model(x, [tf.math.sqrt(shared), tf.math.negative(shared)])
    outer = keras.Input((3,))
    twice = keras.Model(outer, model(tf.math.abs(outer)))
    root, negative = twice(np.array([[-2.0, 0.0, 3.0]], "float32"))
    np.testing.assert_allclose(root, [[2.0, 0.0, 3.0]])
    np.testing.assert_allclose(negative, [[-4.0, 0.0, -9.0]])


def test_model_summary_shows_op_layers(capsys):
    x = keras.Input((4,))
    keras.Model(x, tf.nn.relu(x)).summary()
    assert "tf.nn.relu (TFOp)" in capsys.readouterr().out


def test_eager_calls_run_the_op_as_keras_layer_call_would():
    ragged = tf.ragged.constant([[1.0, -2.0], [3.0]])
    cases = [
        (keras_graft.Op(tf.clip_by_value, -1.0, 1.0), tf.constant([[-2.0, 0.5, 3.0]])),
        (keras_graft.Op(tf.math.top_k, k=2), tf.constant([[3.0, 1.0, 2.0]])),
        (keras_graft.Op(tf.math.abs), ragged),
    ]
    for layer, value in cases:
        direct = layer(value, training=True)
        through_keras = keras.layers.Layer.__call__(layer, value)
        for ours, keras_result in zip(keras.tree.flatten(direct), keras.tree.flatten(through_keras)):
            assert type(ours) is type(keras_result)
            if isinstance(ours, tf.RaggedTensor):
                ours, keras_result = ours.to_tensor(), keras_result.to_tensor()
            np.testing.assert_array_equal(ours, keras_result)
    with pytest.raises(TypeError):
        keras_graft.Op(tf.math.abs)(tf.constant([1.0]), unexpected=1)


def test_saving_walks_no_attribute_of_op_layers(tmp_path, monkeypatch):
    """Keras' save walks each layer's attributes and, for an ordinary layer,
    builds a reference `Layer()` to do so; op layers are skipped whole."""
    x = keras.Input((4,))
    y = keras.layers.Dense(4)(x)
    for _ in range(30):
        y = tf.nn.relu(tf.math.multiply(y, 0.5))
    model = keras.Model(x, y)
    built = []
    original_init = keras.layers.Layer.__init__

    def counting_init(self, *args, **kwargs):
        built.append(type(self).__name__)
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(keras.layers.Layer, "__init__", counting_init)
    model.save(tmp_path / "m.keras")
    assert len(built) < 10, built
    monkeypatch.undo()
    predictions_match(model, keras.models.load_model(tmp_path / "m.keras"), np.ones((2, 4), "float32"))


def test_unknown_keyword_of_an_explicit_op_layer_names_the_op_and_the_closest_parameter():
    with pytest.raises(
        keras_graft.errors.UnexpectedKeywordError,
        match=r"^tf.signal.stft got an unexpected "
        r"keyword argument 'frame_lenght'. Did you mean 'frame_length'\?",
    ):
        keras_graft.Op(tf.signal.stft, frame_lenght=400, frame_step=160)
    with pytest.raises(
        TypeError, match=r"^soft_clip got an unexpected keyword argument 'limt'. Did you mean 'limit'\?"
    ):
        soft_clip(keras.Input((3,)), limt=2.0)


@pytest.mark.parametrize("explicit", [False, True], ids=["TFOp", "Op"])
def test_unknown_keyword_stored_in_an_op_layer_names_the_layer_and_the_closest_parameter(explicit):
    inputs = keras.Input((1000,))
    if explicit:
        model = keras.Sequential(
            [inputs, keras_graft.Op(tf.signal.stft, frame_length=400, frame_step=160, name="spectrum")]
        )
    else:
        model = keras.Model(inputs, tf.signal.stft(inputs, frame_length=400, frame_step=160, name="spectrum"))
    config = json.loads(model.to_json())
    (layer,) = [layer for layer in config["config"]["layers"] if layer["config"]["name"] == "spectrum"]
    stored = layer["config"]["arguments"]["kwargs"]
    stored["frame_lenght"] = stored.pop("frame_length")  # a file edited by hand
    with pytest.raises(TypeError) as raised:
        keras.models.model_from_json(json.dumps(config))
    # Keras' deserialization wraps a layer's TypeError in its own (once per level of nesting).
    error = raised.value
    while error is not None and not isinstance(error, keras_graft.errors.KerasGraftError):
        error = error.__context__
    assert isinstance(error, keras_graft.errors.UnexpectedKeywordError)
    assert str(error).startswith(
        "The op layer 'spectrum' calls tf.signal.stft with an unexpected keyword argument "
        "'frame_lenght'. Did you mean 'frame_length'? Its parameters are: signals, frame_length,"
    )
    assert "The model file was edited" in str(error)
