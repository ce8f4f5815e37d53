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

from keras2_models import read_arrays
from keras_graft.errors import BudgetExceededError
from keras_graft.keras2 import convert, predict
from keras_graft_tools import cli

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


# The check reloads each converted file in safe mode in a fresh process. The
# other Keras 2 models predict as tf_keras did in test_keras2_loading, and
# test_keras2_files converts the transformer from a tf_keras .keras file.
@pytest.mark.parametrize("name", ["ops", "mobilenet_v3"])
def test_a_trusted_file_is_checked_against_keras2_itself(keras2_files, tmp_path, name, capsys):
    target = tmp_path / f"{name}.keras"
    assert cli.main(["convert", str(keras2_files / f"{name}.h5"), str(target), "--trust-file-code"]) == 0
    output = capsys.readouterr().out
    assert "Check passed" in output and "predicts as tf_keras (Keras 2) on the original" in output
    assert "Keras 2 itself was not run" not in output
    assert "TFOp `tf." in output  # the per-layer report
    assert target.stat().st_size > 0


def test_without_trust_keras2_is_not_run_and_the_output_says_so(keras2_files, tmp_path, monkeypatch, capsys):
    readers = []
    original = predict.in_fresh_process
    monkeypatch.setattr(
        predict,
        "in_fresh_process",
        lambda jobs, *args: readers.extend(j.reader for j in jobs) or original(jobs, *args),
    )
    assert cli.main(["convert", str(keras2_files / "nested.h5"), str(tmp_path / "n.keras")]) == 0
    output = " ".join(capsys.readouterr().out.split())
    assert readers == [predict.KERAS3, predict.KERAS3_OF_KERAS2]  # one fresh process, nothing of tf_keras
    assert "predicts as the Keras 3 model keras-graft built from the original file in safe mode" in output
    assert "Keras 2 itself was not run" in output and "--trust-file-code" in output


def test_converted_file_loads_in_safe_mode_in_a_fresh_process(keras2_files, tmp_path):
    source, target = keras2_files / "transformer.h5", tmp_path / "transformer.keras"
    completed = subprocess.run(
        [sys.executable, "-m", "keras_graft_tools", "convert", str(source), str(target), "--no-check"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
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
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert reload.returncode == 0, reload.stderr
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-4)


def stored_predictions(path, jobs, offset=0.0):
    """Stands in for `predict.in_fresh_process`: the predictions stored beside `path`,
    `offset` added to the converted file's."""
    outputs = read_arrays(path)[1]
    return [[o + (offset if job.reader == predict.KERAS3 else 0.0) for o in outputs] for job in jobs]


def test_a_prediction_mismatch_exits_1(keras2_files, tmp_path, monkeypatch, capsys):
    source = keras2_files / "nested.h5"
    monkeypatch.setattr(
        predict, "in_fresh_process", lambda jobs, *args: stored_predictions(source, jobs, offset=1.0)
    )
    assert cli.main(["convert", str(source), str(tmp_path / "n.keras")]) == 1
    assert "Check FAILED" in capsys.readouterr().out


def test_a_trusted_file_that_keras2_cannot_read_is_compared_with_keras3s_reading(
    keras2_files, tmp_path, monkeypatch
):
    def no_tf_keras(jobs, *args):
        if jobs[0].reader == predict.KERAS2:
            raise predict.PredictionError(
                "tf_keras (Keras 2) predicting with nested.h5 failed: No module named 'tf_keras'"
            )
        return stored_predictions(keras2_files / "nested.h5", jobs)

    monkeypatch.setattr(predict, "in_fresh_process", no_tf_keras)
    console = Console(record=True, width=300)
    result = convert.convert(
        keras2_files / "nested.h5", tmp_path / "n.keras", trust_file_code=True, console=console
    )
    assert result.passed and result.reference == convert.KERAS3_REFERENCE and not result.keras2_ran
    output = console.export_text()
    assert "Keras 2 could not predict with the original" in output and "No module named" in output


def test_a_check_over_its_budget_is_not_a_pass(keras2_files, tmp_path, monkeypatch, capsys):
    def over_budget(jobs, *args):
        raise BudgetExceededError("went over its memory budget (1536 MB resident) while ...", reason="memory")

    monkeypatch.setattr(predict, "in_fresh_process", over_budget)
    assert cli.main(["convert", str(keras2_files / "nested.h5"), str(tmp_path / "n.keras")]) == 1
    output = capsys.readouterr().out
    assert "Check not made (budget)" in output and "Check passed" not in output
    assert "--check-memory" in output


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
    the checking processes (tf_keras on the original, Keras 3 on the result) import it too.
    (The module is found on PYTHONPATH, never in the working directory.)"""
    corpus = Path(__file__).resolve().parent / "keras2_corpus"
    source, target = corpus / "files" / "keras2.15" / "custom_layer.h5", tmp_path / "custom_layer.keras"

    def run(*extra):
        return subprocess.run(
            [sys.executable, "-m", "keras_graft_tools", "convert", str(source), str(target), *extra],
            capture_output=True,
            text=True,
            env={**ENV, "PYTHONPATH": str(corpus)},
            cwd=corpus,
            timeout=300,
            check=False,
        )

    without = run("--no-check")
    assert without.returncode == 2 and "ScaledDense" in without.stderr
    assert "Use `--import MODULE` (the module that defines it)" in without.stderr, (
        without.stderr
    )  # .h5 names no module
    assert not target.exists()
    # Trusted, so that tf_keras predicts the original too: both checking processes import it.
    imported = run("--import", "corpus_objects", "--trust-file-code")
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
