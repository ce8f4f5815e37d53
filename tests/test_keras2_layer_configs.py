"""The Keras 2 -> 3 config-difference table (`keras_graft.keras2.layer_configs`).

`keras2_models.LAYERS` has a tf_keras model of each built-in layer with
non-default arguments; every one must load in Keras 3 and predict what
tf_keras predicted, or be refused with a message that says why. Each row of
the table has its own test, on the Keras 2 files that need it.
"""

import keras
import numpy as np
import pytest

from keras2_models import LAYERS, read_arrays
from keras_graft.keras2 import layer_configs, report
from keras_graft.keras2.layer_configs import TABLE, UntranslatableConfigError

# Layers whose Keras 3 output dtype differs, with the same values.
OUTPUT_DTYPES = {"Discretization": ("int64", "int32")}

# Keras 2 files Keras 3 cannot load, and why.
REFUSED_FILES = {
    "BatchNormalizationGhost": (UntranslatableConfigError, "virtual_batch_size=2"),
    # Python bytecode: refused by keras-graft's hook, before Keras deserializes it.
    "Lambda": (
        ValueError,
        "Layer `lambda` is a Keras 2 `Lambda`: its function is Python bytecode stored in the file",
    ),
}

# Each row (by its first key) -> the Keras 2 files that need it.
ROW_CASES = {
    "groups": [
        "DepthwiseConv1D",
        "DepthwiseConv2D",
        "Conv1DTranspose",
        "Conv2DTranspose",
        "Conv3DTranspose",
        "SeparableConv1D",
        "SeparableConv2D",
    ],
    "kernel_initializer": ["SeparableConv1D", "SeparableConv2D"],
    "time_major": ["LSTM", "GRU", "SimpleRNN", "ConvLSTM1D", "Bidirectional"],
    "virtual_batch_size": [],  # only refusals: see REFUSED_FILES and ROW_REFUSALS
    "query_shape": ["MultiHeadAttention"],
    "softmax_robust_masking": ["MultiHeadAttention"],
    "rng_type": ["RandomFlip", "RandomRotation"],
    "score_mode": ["Attention"],
    "trainable": ["Discretization", "SpatialDropout1D"],
    "noise_shape": ["SpatialDropout1D"],
    "dtype": ["Discretization"],
    "activation": ["ConvLSTM1D"],
    "axis": ["LayerNormalization"],
}

# Each refusing row -> a Keras 2 layer config it must refuse.
ROW_REFUSALS = {
    "groups": ("DepthwiseConv2D", {"name": "dw", "groups": 2}),
    "time_major": ("LSTM", {"name": "lstm", "units": 2, "time_major": True}),
    "virtual_batch_size": ("BatchNormalization", {"name": "bn", "virtual_batch_size": 4}),
    "softmax_robust_masking": ("MultiHeadAttention", {"name": "mha", "softmax_robust_masking": True}),
    "noise_shape": ("SpatialDropout1D", {"name": "sd", "rate": 0.1, "noise_shape": [None, 1, 4]}),
    "dtype": ("Discretization", {"name": "d", "dtype": "float32"}),
}


def label(row):
    return row.keys[0]


def load_and_compare(path, name):
    model = keras.models.load_model(path, compile=False)
    inputs, (expected,) = read_arrays(path)
    actual = model.predict(inputs[0], verbose=0)
    assert (str(expected.dtype), str(actual.dtype)) in {(str(expected.dtype),) * 2, OUTPUT_DTYPES.get(name)}
    np.testing.assert_allclose(actual, expected, atol=1e-4)
    return model


def test_every_row_has_its_test():
    assert sorted(label(row) for row in TABLE) == sorted(ROW_CASES)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_keras2_layer_loads_and_predicts_the_same_or_is_refused(keras2_files, name):
    path = keras2_files / "layers" / f"{name}.h5"
    if name in REFUSED_FILES:
        error, message = REFUSED_FILES[name]
        with pytest.raises(error, match=message):
            keras.models.load_model(path, compile=False)
        return
    load_and_compare(path, name)


@pytest.mark.parametrize("row", TABLE, ids=label)
def test_row_translates_what_keras2_files_hold(keras2_files, row):
    for name in ROW_CASES[label(row)]:
        path = keras2_files / "layers" / f"{name}.h5"
        with report.recording() as notes:
            load_and_compare(path, name)
        assert any(key in note.change for note in notes for key in row.keys), (name, notes)


@pytest.mark.parametrize("row_label", sorted(ROW_REFUSALS))
def test_row_refuses_values_without_a_keras3_meaning(row_label):
    class_name, config = ROW_REFUSALS[row_label]
    with pytest.raises(UntranslatableConfigError, match=f"{class_name}.*`{row_label}="):
        layer_configs.translate({"class_name": class_name, "config": config})


def test_thresholded_relu_becomes_relu_with_its_threshold(keras2_files):
    model = load_and_compare(keras2_files / "layers" / "ThresholdedReLU.h5", "ThresholdedReLU")
    relu = model.layers[-1]
    assert isinstance(relu, keras.layers.ReLU) and relu.threshold == 0.5


def test_wrapped_layers_are_translated_too():
    config = {
        "class_name": "Bidirectional",
        "config": {"layer": {"class_name": "LSTM", "config": {"units": 2, "time_major": False}}},
    }
    translated, _ = layer_configs.translate(config)
    assert "time_major" not in translated["config"]["layer"]["config"]


def test_converted_models_save_and_reload_in_safe_mode(keras2_files, tmp_path):
    path = keras2_files / "layers" / "ConvLSTM1D.h5"
    model = keras.models.load_model(path, compile=False)
    model.save(tmp_path / "converted.keras")
    reloaded = keras.models.load_model(tmp_path / "converted.keras")
    inputs, (expected,) = read_arrays(path)
    np.testing.assert_allclose(reloaded.predict(inputs[0], verbose=0), expected, atol=1e-4)
