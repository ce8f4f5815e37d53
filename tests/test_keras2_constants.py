"""Constants Keras 2 wrote as nested JSON lists load as the arrays they were.

The YAMNet-style front end (`keras2_models.audio_features`) passes a 257x64
mel matrix and two 512x257 DFT matrices to `tf.matmul`; tf_keras stores each
as nested lists of floats, more items than keras-graft's bound on one op's
lists allows. They load as float32 arrays and the model computes what
tf_keras computed.
"""

import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras2_models import read_arrays
from keras_graft.core.arguments import MAX_RANK, MAX_STORED_ELEMENTS, MAX_STORED_ITEMS
from keras_graft.errors import UntranslatableConfigError
from keras_graft.keras2 import constants


def test_the_audio_front_end_loads_and_computes_what_keras2_computed(keras2_files, tmp_path):
    path = keras2_files / "audio_features.h5"
    model = keras.models.load_model(path, compile=False)
    (waveform,), expected = read_arrays(path)
    for got, want in zip(model.predict(waveform, batch_size=len(waveform), verbose=0), expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4)
    model.save(tmp_path / "converted.keras")
    with zipfile.ZipFile(tmp_path / "converted.keras") as archive:
        layers = json.loads(archive.read("config.json"))["config"]["layers"]
    matmuls = [
        l["config"]["arguments"]["kwargs"]["b"] for l in layers if l["config"].get("op") == "tf.linalg.matmul"
    ]
    shapes = sorted(tuple(b["shape"]) for b in matmuls if isinstance(b, dict))
    assert shapes == [(257, 64), (257, 64), (512, 257), (512, 257)]
    assert {b["dtype"] for b in matmuls} == {"float32"}
    reloaded = keras.models.load_model(tmp_path / "converted.keras")  # safe mode
    for got, want in zip(reloaded.predict(waveform, batch_size=len(waveform), verbose=0), expected):
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_the_mel_matrix_alone_is_more_list_items_than_one_op_may_hold():
    assert 257 * 64 + 257 > MAX_STORED_ITEMS


@pytest.mark.parametrize(
    "data, dtype, shape",
    [
        ([[0.5] * 64] * 257, "float32", (257, 64)),
        ([[1, 2.5]] * 200, "float32", (200, 2)),
        ([list(range(300))], "int32", (1, 300)),
        ([2**40] * 300, "int64", (300,)),
        ([[True, False]] * 200, "bool", (200, 2)),
    ],
)
def test_long_rectangular_lists_of_numbers_are_arrays_of_tfs_dtype(data, dtype, shape):
    array = constants.as_array(data)
    assert array.dtype == dtype and array.shape == shape
    assert tf.constant(data).dtype.name == dtype  # what TensorFlow makes of the list


@pytest.mark.parametrize(
    "data",
    [
        [0, 2, 1],  # a `perm`, `axis` or `strides` list
        [[0, 0], [1, 1]],  # `paddings`
        [1.0] * MAX_RANK,  # no longer than the longest per-dimension list
        [[1.0] * 300, [1.0] * 299],  # not rectangular
        [[1.0] * 300, 2.0],
        [True, 1] * 200,  # TensorFlow refuses mixed booleans and numbers
        ["a"] * 300,
        [2**70] * 300,  # out of int64's range, as TensorFlow says
        [],
    ],
)
def test_short_ragged_or_mixed_lists_stay_lists(data):
    assert constants.as_array(data) is None


def test_a_constant_past_the_value_bound_is_refused_before_it_is_built():
    rows = 4097
    data = [[0.0] * rows] * rows  # one row object repeated: cheap to build, 16.8M values
    assert rows * rows > MAX_STORED_ELEMENTS
    with pytest.raises(UntranslatableConfigError, match=f"more than {MAX_STORED_ELEMENTS} values"):
        constants.as_array(data)


def test_a_list_short_enough_for_an_axis_stays_one_tensorflow_accepts():
    # Generated op wrappers take list attributes only as Python lists.
    x = tf.zeros((2, 1, 3))
    assert tf.squeeze(x, axis=[1]).shape == (2, 3)
    with pytest.raises(TypeError, match="Expected list for 'axis'"):
        tf.squeeze(x, axis=np.array([1], np.int32))


def test_numbers_in_a_first_argument_are_tensors_as_keras2_made_them():
    assert constants.as_keras2_input(2.0).dtype == tf.float32
    assert constants.as_keras2_input(3).dtype == tf.int32
    assert constants.as_keras2_input(True).dtype == tf.bool
    assert constants.as_keras2_input([[1, 2], [3, 4]]).shape == (2, 2)
    assert constants.as_keras2_input("bij,bkj->bik") == "bij,bkj->bik"
