"""`keras-graft convert OLD NEW.keras`, end to end on Keras 2 files written by tf_keras."""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import keras as keras_module
import numpy as np
import pytest
from rich.console import Console

from _keras2_models import read_arrays
from keras_graft import cli
from keras_graft.keras2 import convert, predict

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


# The check reloads each converted file in safe mode in a fresh process. The
# other Keras 2 models predict as tf_keras did in test_keras2_loading, and
# test_keras2_files converts the transformer from a tf_keras .keras file.
@pytest.mark.parametrize("name", ["ops", "mobilenet_v3"])
def test_convert_writes_a_keras_file_that_predicts_as_keras2_did(keras2_files, tmp_path, name, capsys):
    target = tmp_path / f"{name}.keras"
    assert cli.main(["convert", str(keras2_files / f"{name}.h5"), str(target)]) == 0
    output = capsys.readouterr().out
    assert "Check passed" in output and "tf_keras (Keras 2)" in output
    assert "TFOp `tf." in output  # the per-layer report
    assert target.stat().st_size > 0


def test_converted_file_loads_in_safe_mode_in_a_fresh_process(keras2_files, tmp_path):
    source, target = keras2_files / "transformer.h5", tmp_path / "transformer.keras"
    completed = subprocess.run(
        [sys.executable, "-m", "keras_graft", "convert", str(source), str(target), "--no-check"],
        capture_output=True, text=True, env=ENV, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert "Prediction check skipped" in completed.stdout
    assert "compat.v1.shape" in completed.stdout  # the report names what changed
    inputs, (expected,) = read_arrays(source)
    script = (
        "import sys, numpy as np, keras, keras_graft\n"
        "model = keras.models.load_model(sys.argv[1], safe_mode=True)\n"
        "np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), verbose=0))\n"
    )
    np.save(tmp_path / "inputs.npy", inputs[0])
    reload = subprocess.run(
        [sys.executable, "-c", script, str(target), str(tmp_path / "inputs.npy"), str(tmp_path / "out.npy")],
        capture_output=True, text=True, env=ENV, timeout=300,
    )
    assert reload.returncode == 0, reload.stderr
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-4)


def stored_predictions(path, offset=0.0):
    """Stands in for `predict.in_fresh_process`: the predictions stored beside `path`."""
    return lambda keras, *args: [o + offset for o in read_arrays(path)[1]]


def test_a_prediction_mismatch_exits_1(keras2_files, tmp_path, monkeypatch, capsys):
    source = keras2_files / "nested.h5"
    keras2, keras3 = stored_predictions(source), stored_predictions(source, offset=1.0)

    def perturbed(keras, *args):
        return (keras3 if keras == predict.KERAS3 else keras2)(keras, *args)

    monkeypatch.setattr(predict, "in_fresh_process", perturbed)
    assert cli.main(["convert", str(source), str(tmp_path / "n.keras")]) == 1
    assert "Check FAILED" in capsys.readouterr().out


def test_without_tf_keras_the_check_compares_with_keras3s_reading(keras2_files, tmp_path, monkeypatch):
    def no_tf_keras(keras, model_path, inputs, workdir, imports=()):
        if keras == predict.KERAS2:
            raise predict.PredictionError("No module named 'tf_keras'")
        model = keras_module.models.load_model(model_path)  # in this process, to save time
        return [model.predict(inputs[0], verbose=0)]

    monkeypatch.setattr(predict, "in_fresh_process", no_tf_keras)
    result = convert.convert(keras2_files / "nested.h5", tmp_path / "n.keras", console=Console(record=True))
    assert result.passed and "pip install tf_keras" in result.reference


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["missing.h5", "out.keras"], "does not exist"),
        (["{models}/ops.h5", "out.h5"], "written as a .keras file"),
        (["{models}/ops.npz", "out.keras"], "could not be loaded"),
    ],
)
def test_usage_errors_and_unloadable_files_exit_2(keras2_files, tmp_path, capsys, arguments, message):
    arguments = [a.format(models=keras2_files) for a in arguments]
    arguments[1] = str(tmp_path / arguments[1])
    try:
        status = cli.main(["convert", *arguments])
    except SystemExit as usage_error:  # a missing file is a usage error, found before TF loads
        status = usage_error.code
    assert status == 2
    assert message in capsys.readouterr().err


def test_a_forged_file_is_refused_with_exit_2(keras2_files, tmp_path, capsys):
    from test_keras2_loading import forge

    forged = tmp_path / "forged.h5"
    forge(keras2_files / "ops.h5", forged, "io.write_file", ["x", 0, 0, {}])
    assert cli.main(["convert", str(forged), str(tmp_path / "out.keras")]) == 2
    assert "Refusing op `tf.io.write_file`" in capsys.readouterr().err
    assert not (tmp_path / "out.keras").exists()


def test_convert_import_converts_a_file_with_a_registered_custom_layer(tmp_path):
    """In a fresh process, as a user runs it: without `--import` it says to add it; with it,
    the checking processes (tf_keras on the original, Keras 3 on the result) import it too."""
    corpus = Path(__file__).resolve().parent / "keras2_corpus"
    source, target = corpus / "files" / "keras2.15" / "custom_layer.h5", tmp_path / "custom_layer.keras"

    def run(*extra):
        return subprocess.run([sys.executable, "-m", "keras_graft", "convert", str(source), str(target), *extra],
                              capture_output=True, text=True, env=ENV, cwd=corpus, timeout=300, check=False)

    without = run("--no-check")
    assert without.returncode == 2 and "ScaledDense" in without.stderr
    assert "Use `--import MODULE` (the module that defines it)" in without.stderr, without.stderr  # .h5 names no module
    assert not target.exists()
    imported = run("--import", "corpus_objects")
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert "Check passed" in imported.stdout and "tf_keras (Keras 2)" in imported.stdout


def test_convert_says_which_part_of_the_training_setup_it_dropped(tmp_path):
    corpus = Path(__file__).resolve().parent / "keras2_corpus"
    source = tmp_path / "compiled.h5"
    source.write_bytes((corpus / "files" / "tf_keras2.21" / "compiled_mse.h5").read_bytes())
    with h5py.File(source, "r+") as file:
        setup = json.loads(file.attrs["training_config"])
        file.attrs["training_config"] = json.dumps({**setup, "loss": "my_project>focal_loss"})
    console = Console(record=True, width=200)
    result = convert.convert(source, tmp_path / "compiled.keras", check=False, console=console)
    (note,) = [n for n in result.notes if n.keras2_class == "training setup"]
    assert "dropped" in note.change and "`my_project>focal_loss`" in note.change
    assert "my_project>focal_loss" in console.export_text()
    assert not keras_module.models.load_model(tmp_path / "compiled.keras").compiled
