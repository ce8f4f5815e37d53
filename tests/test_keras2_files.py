"""tf_keras `.keras` files and Keras 2 SavedModel directories as trainable Keras 3 models."""

import io
import shutil
import sys
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from keras2_models import KERAS_ZIP_MODELS, SAVED_MODELS, read_arrays
from keras_graft.keras2 import files
from keras_graft_tools import cli

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


# -- Files of the Keras 2 releases people used (tests/keras2_corpus) ---------------

CORPUS = Path(__file__).resolve().parent / "keras2_corpus" / "files"
sys.path.insert(0, str(CORPUS.parent))  # corpus_objects: the corpus's user code


def with_weights_edited(source: Path, target: Path, edit) -> Path:
    """A copy of the Keras 2 `.keras` zip `source` whose `model.weights.h5` went through `edit`."""
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    weights = io.BytesIO(members["model.weights.h5"])
    with h5py.File(weights, "r+") as file:
        edit(file)
    members["model.weights.h5"] = weights.getvalue()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return target


def corpus_predictions(name: str) -> tuple:
    stored = np.load(CORPUS / f"{name}.npz")
    return stored["input_0"], stored["output_0"]


def test_kind_is_read_from_the_content_not_the_suffix(tmp_path):
    # keras 2.12 wrote `model.save("m.keras")` as HDF5.
    assert files.kind(CORPUS / "keras2.12/unet.keras") == files.H5
    renamed = tmp_path / "zip_named.h5"
    shutil.copy(CORPUS / "keras2.15/unet.keras", renamed)
    assert files.kind(renamed) == files.TF_KERAS_ZIP
    assert files.kind(tmp_path / "missing.h5") is None
    inputs, expected = corpus_predictions("keras2.15/unet")
    np.testing.assert_allclose(files.load_model(renamed)(inputs), expected, atol=1e-4)


@pytest.mark.parametrize(
    "path", ["keras2.12/unet.keras", "keras2.15/unet.keras", "keras2.15/compiled_custom_loss_savedmodel"]
)
def test_keras_load_model_loads_every_keras2_format_after_import_keras_graft(path):
    import corpus_objects  # noqa: F401  (the custom loss of the compiled model)

    model = keras.models.load_model(CORPUS / path)
    inputs, expected = corpus_predictions(path.removesuffix(".keras").removesuffix("_savedmodel"))
    np.testing.assert_allclose(model(inputs), expected, atol=1e-4)
    assert keras.saving.load_model is keras.models.load_model
    assert model.compiled == path.endswith("savedmodel")


def test_keras2_13_weights_with_doubled_counters_load_into_the_right_layers(tmp_path):
    # keras 2.13 named its three Dense layers' groups dense, dense_2, dense_4.
    path = CORPUS / "keras2.13/sequential.keras"
    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5"))) as stored:
        groups = sorted(g for g in stored["_layer_checkpoint_dependencies"] if g.startswith("dense"))
        kernels = [np.asarray(stored[f"_layer_checkpoint_dependencies/{g}/vars/0"]) for g in groups]
    assert groups == ["dense", "dense_2", "dense_4"]
    model = files.load_model(path)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    for layer, kernel in zip(dense, kernels, strict=True):
        np.testing.assert_array_equal(layer.kernel, kernel)
    # Keras 3's own loader matches groups by name, and refuses the file.
    rebuilt = keras.models.clone_model(model)
    with zipfile.ZipFile(path) as archive:
        archive.extract("model.weights.h5", tmp_path)
    with pytest.raises(ValueError, match="could not be loaded"):
        rebuilt.load_weights(tmp_path / "model.weights.h5")


def _rename(old: str, new: str):
    def edit(file):
        file.move(f"_layer_checkpoint_dependencies/{old}", f"_layer_checkpoint_dependencies/{new}")

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda file: file.__delitem__("_layer_checkpoint_dependencies/dense_4"),
            r"3 layer\(s\) of class `Dense`, the weights file 2 group\(s\) `dense\*`",
        ),
        (
            lambda file: file.copy(
                "_layer_checkpoint_dependencies/dense", "_layer_checkpoint_dependencies/dense_6"
            ),
            r"3 layer\(s\) of class `Dense`, the weights file 4 group\(s\)",
        ),
        (
            _rename("flatten", "dropout_1"),
            r"1 layer\(s\) of class `(Flatten|Dropout)`, the weights file [02] group",
        ),
        (_rename("reshape", "mystery"), r"`mystery` belongs to no layer"),
        (
            lambda file: (_rename("dense_2", "dense_9")(file), _rename("dense_4", "dense_2")(file)),
            r"layer `dense_1`: variable `vars/0` has shape \(16, 3\) in the file, \(16, 8\)",
        ),
        (
            lambda file: file.__delitem__("_layer_checkpoint_dependencies/batch_normalization/vars/3"),
            r"layer `batch_normalization`: the file stores the variables \['vars/0', 'vars/1', 'vars/2'\]",
        ),
    ],
)
def test_weights_that_do_not_match_the_structure_are_refused_naming_the_layer(tmp_path, edit, message):
    forged = with_weights_edited(CORPUS / "keras2.13/sequential.keras", tmp_path / "forged.keras", edit)
    with pytest.raises(files.Keras2FileError, match=message):
        files.load_model(forged)


def test_group_names_that_fit_two_classes_are_refused():
    from keras_graft.keras2 import zip_weights

    assert zip_weights.group_key("dense_12", {"dense", "conv2d"}) == ("dense", 12)
    assert zip_weights.group_key("lambda_1", {"dense"}) is None
    with pytest.raises(files.Keras2FileError, match="several classes"):
        zip_weights.group_key("block_1", {"block", "block_1"})


class UnregisteredScaledDense(keras.layers.Layer):
    """The corpus's `keras_graft_corpus>ScaledDense`, defined here and registered nowhere."""

    def __init__(self, units, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.units, self.scale = units, scale

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(int(input_shape[-1]), self.units))
        self.bias = self.add_weight(name="bias", shape=(self.units,))

    def call(self, inputs):
        return keras.ops.matmul(inputs, self.kernel) * self.scale + self.bias


def unregistered_scaled_mse(y_true, y_pred):
    return 2.0 * keras.ops.mean(keras.ops.square(y_pred - y_true), axis=-1)


CORPUS_15 = Path(__file__).resolve().parent / "keras2_corpus" / "files" / "keras2.15"


@pytest.mark.parametrize("file_name", ["custom_layer.h5", "custom_layer.keras"])
def test_custom_objects_give_the_class_of_a_registered_name(file_name, monkeypatch):
    # As in a process that has not imported `corpus_objects` (Keras prefers a registered class).
    monkeypatch.delitem(keras.saving.get_custom_objects(), "keras_graft_corpus>ScaledDense", raising=False)
    model = files.load_model(
        CORPUS_15 / file_name, custom_objects={"keras_graft_corpus>ScaledDense": UnregisteredScaledDense}
    )
    assert sum(isinstance(layer, UnregisteredScaledDense) for layer in model.layers) == 2
    stored = np.load(CORPUS_15 / "custom_layer.npz")
    np.testing.assert_allclose(model(stored["input_0"]), stored["output_0"], atol=1e-5)


@pytest.mark.parametrize(
    "file_name", ["compiled_custom_loss.h5", "compiled_custom_loss.keras", "compiled_custom_loss_savedmodel"]
)
def test_custom_objects_give_a_compiled_files_loss_by_its_name(file_name, monkeypatch):
    monkeypatch.delitem(keras.saving.get_custom_objects(), "keras_graft_corpus>scaled_mse", raising=False)
    model = files.load_model(CORPUS_15 / file_name, custom_objects={"scaled_mse": unregistered_scaled_mse})
    assert model.compiled and model.loss is unregistered_scaled_mse
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
