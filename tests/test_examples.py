"""The seed article's examples: each runs, and its model reloads in safe mode."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_graft import TFOp
from keras_graft.layers.function_layer import FunctionLayer
from keras_graft_tools import demo


@pytest.mark.parametrize("name", demo.EXAMPLES)
def test_main_trains_saves_reloads_and_compares(name, capsys):
    demo.load_example(name).main()  # exits with status 1 if a check fails
    output = capsys.readouterr().out
    assert "All 1 examples saved, reloaded in safe mode and predicted identically" in output
    assert "FAILED" not in output


@pytest.mark.parametrize(
    "name, features, graft_layer",
    [
        ("clip_values", 10, TFOp),
        ("custom_matmul", 5, FunctionLayer),
        ("sequence_counter", 5, FunctionLayer),
    ],
)
def test_saved_model_reloads_in_safe_mode_with_identical_predictions(name, features, graft_layer, tmp_path):
    module = demo.load_example(name)
    keras.utils.set_random_seed(0)
    model = module.build_model()
    assert model.input_shape == (None, features) and not model.compiled
    assert any(isinstance(layer, graft_layer) for layer in model.layers)
    x, y = module.synthetic_data()
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)

    path = tmp_path / f"{name}.keras"
    model.save(path)
    keras.backend.clear_session()  # nothing registered in this session helps the load
    reloaded = keras.models.load_model(path, safe_mode=True)

    assert [type(layer) for layer in reloaded.layers] == [type(layer) for layer in model.layers]
    for ours, theirs in zip(model.get_weights(), reloaded.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(model.predict(x, verbose=0), reloaded.predict(x, verbose=0))


def test_clip_values_clips_inside_the_model():
    module = demo.load_example("clip_values")
    model = module.build_model()
    clip = model.get_layer("tf.clip_by_value")
    assert isinstance(clip, TFOp) and clip.op_name == "tf.clip_by_value"
    x = np.array([[-5.0, -1.0, -0.5, 0.0, 0.5, 1.0, 5.0, 2.0, -2.0, 0.25]], "float32")
    np.testing.assert_array_equal(model(x), model(np.clip(x, -1.0, 1.0)))


def test_the_articles_lambda_version_does_not_load_in_safe_mode(tmp_path):
    """What examples/clip_values.py replaces: Keras 3 refuses the Lambda on load."""
    inputs = keras.Input((10,))
    clipped = keras.layers.Lambda(lambda x: tf.clip_by_value(x, -1.0, 1.0))(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(clipped))
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ValueError, match="safe_mode"):
        keras.models.load_model(path)


def test_sequence_counter_state_survives_the_round_trip(tmp_path):
    module = demo.load_example("sequence_counter")
    model = module.build_model()
    x, _ = module.synthetic_data(8)
    for _ in range(3):
        model(x)
    assert module.count(model) == 3
    model.save(tmp_path / "counter.keras")
    reloaded = keras.models.load_model(tmp_path / "counter.keras")
    assert module.count(reloaded) == 3
    reloaded(x)
    assert module.count(reloaded) == 4
