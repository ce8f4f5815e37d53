"""tf_keras `.keras` files and Keras 2 SavedModel directories as trainable Keras 3 models."""

import keras
import numpy as np
import pytest

from _keras2_models import KERAS_ZIP_MODELS, SAVED_MODELS, read_arrays
from keras_graft import cli
from keras_graft.keras2 import files

CASES = [(name, f"{name}.keras") for name in KERAS_ZIP_MODELS] + [
    (name, f"{name}_savedmodel") for name in SAVED_MODELS
]


@pytest.mark.parametrize("name, file_name", CASES, ids=[c[1] for c in CASES])
def test_keras2_files_of_each_format_load_trainable_and_predict_the_same(keras2_files, name, file_name):
    model = files.load_model(keras2_files / file_name)
    inputs, expected = read_arrays(keras2_files / f"{name}.h5")
    actual = model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0)
    actual = actual if isinstance(actual, (list, tuple)) else [actual]
    for got, want in zip(actual, expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4)
    assert model.trainable_weights, "a Keras 3 model with its weights, not an inference-only TFSMLayer"


def test_the_kind_of_each_file_is_recognized(keras2_files, tmp_path):
    assert files.kind(keras2_files / "nested.keras") == files.TF_KERAS_ZIP
    assert files.kind(keras2_files / "ops_savedmodel") == files.SAVED_MODEL
    assert files.kind(keras2_files / "ops.h5") == files.H5
    keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(tmp_path / "k3.keras")
    assert files.kind(tmp_path / "k3.keras") is None  # Keras 3's own: keras.models.load_model


def test_subclassed_savedmodels_are_refused_saying_why(keras2_files):
    with pytest.raises(files.Keras2FileError, match="subclassed Keras 2 model.*no config"):
        files.load_model(keras2_files / "subclassed_savedmodel")


def test_savedmodels_without_keras_metadata_are_refused_saying_why(tmp_path):
    import tensorflow as tf

    tf.saved_model.save(tf.Module(), str(tmp_path / "plain"))
    with pytest.raises(files.Keras2FileError, match="without Keras metadata.*TFSMLayer"):
        files.load_model(tmp_path / "plain")


@pytest.mark.parametrize("file_name", ["transformer.keras", "ops_savedmodel"])
def test_convert_reads_tf_keras_zips_and_savedmodels(keras2_files, tmp_path, capsys, file_name):
    assert cli.main(["convert", str(keras2_files / file_name), str(tmp_path / "new.keras")]) == 0
    assert "Check passed" in capsys.readouterr().out
