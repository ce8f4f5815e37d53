"""Compiled Keras 2 files come back compiled: every tf_keras loss, metric and optimizer.

`keras2_training.py` writes, with tf_keras in a child process, models compiled
with each loss (by every name and as objects), many metrics, and each
optimizer, trained one step, as `.h5` and `.keras`, with what Keras 2 computed:
`evaluate()` and, for optimizers, the predictions after one more step. Loaded
in Keras 3 they must give the same numbers.

The suite runs every loss and metric, and a sample of the optimizers (each
kind of state: interleaved slots, per-slot groups, state Keras 2 did not
save, a schedule, a legacy optimizer); `python tests/test_keras2_training.py
--all` runs every optimizer in both formats.
"""

from __future__ import annotations

import json
import os
import warnings

import keras
import numpy as np
import pytest

import keras2_training as training
import sweeps
from keras_graft.errors import UntranslatedCompileWarning
from keras_graft.keras2 import compile_configs, files

ATOL = 1e-4
OPTIMIZER_FILES = [
    training.file_name("optimizer", kwargs.get("name", name)) for name, kwargs in training.OPTIMIZERS
]
LEGACY = [name for name in OPTIMIZER_FILES if "legacy" in name]
# Keras 2's Nadam multiplied its running momentum product once per variable
# per step (its `_u_product_counter` is a Python int read while tracing); Keras
# 3's multiplies once per step. The file does not hold the product; it is
# recomputed as Keras 3 computes it, so the next step follows Keras 3's Nadam.
KERAS2_NADAM = "optimizer_Nadam"


@pytest.fixture(scope="session")
def training_files(tmp_path_factory):
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    return training.generate(root / "keras2_training")


def loaded(directory, name: str, suffix: str):
    record = json.loads((directory / f"{name}.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntranslatedCompileWarning)
        model = files.load_model(directory / f"{name}{suffix}")
    return model, record, training.data(record["kinds"])


def assert_evaluates_as_keras2(model, record, x, targets):
    assert model.compiled
    evaluation = model.evaluate(x, targets, batch_size=training.BATCH, verbose=0, return_dict=True)
    for name, expected in record["evaluate"].items():
        assert name in evaluation, f"{name!r} missing from Keras 3's evaluate(): {sorted(evaluation)}"
        assert evaluation[name] == pytest.approx(expected, abs=ATOL, rel=1e-5), name


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
@pytest.mark.parametrize("name", ["losses_by_name", "loss_objects", "metrics"])
def test_losses_and_metrics_evaluate_as_in_keras2(training_files, name, suffix):
    model, record, (x, targets) = loaded(training_files, name, suffix)
    assert_evaluates_as_keras2(model, record, x, targets)


# Keras 2's legacy optimizers (`tf.keras.optimizers.legacy`, and every optimizer
# before TensorFlow 2.11) kept `.h5` state slot by slot (every variable's `m`,
# then every `v`), a layout Keras 3's optimizers do not have, and kept none in
# `.keras` files. With one slot per variable (SGD's momentum) the layouts agree.
STATE_CASES = [
    (name, suffix)
    for name in OPTIMIZER_FILES
    for suffix in (".h5", ".keras")
    if name not in LEGACY or (suffix == ".h5" and "SGD" in name)
]
IN_CI = {
    ("optimizer_Adam", ".h5"),
    ("optimizer_Adam", ".keras"),
    ("optimizer_RMSprop", ".h5"),
    ("optimizer_Adafactor", ".h5"),
    ("optimizer_Nadam", ".keras"),
    ("optimizer_scheduled", ".h5"),
    ("optimizer_legacy_SGD", ".h5"),
}


@pytest.mark.parametrize("name, suffix", sweeps.sample(STATE_CASES, IN_CI.__contains__))
def test_optimizers_keep_their_config_and_state_and_train_on_as_in_keras2(training_files, name, suffix):
    model, record, (x, targets) = loaded(training_files, name, suffix)
    assert int(model.optimizer.iterations) == record["iterations"]
    if record["learning_rate"] is not None:
        assert float(model.optimizer.learning_rate) == pytest.approx(record["learning_rate"], rel=1e-6)
    assert_evaluates_as_keras2(model, record, x, targets)
    if name == KERAS2_NADAM:
        return
    model.fit(x, targets, batch_size=training.BATCH, epochs=1, shuffle=False, verbose=0)
    trained = model.predict(x, verbose=0)
    trained = trained if isinstance(trained, list) else [trained]
    for got, want in zip(trained, record["trained_outputs"], strict=True):
        np.testing.assert_allclose(got, np.asarray(want), atol=ATOL)


def test_legacy_optimizer_state_in_another_layout_is_not_guessed_but_said(training_files):
    with pytest.warns(UntranslatedCompileWarning, match="optimizer state was not restored"):
        model = files.load_model(training_files / "optimizer_legacy_Adam.h5")
    assert model.compiled and int(model.optimizer.iterations) == 0


@pytest.mark.parametrize("name", LEGACY)
def test_legacy_optimizers_in_keras_files_come_back_with_their_config(training_files, name):
    model, record, (x, targets) = loaded(training_files, name, ".keras")
    assert int(model.optimizer.iterations) == 0  # Keras 2 wrote no state
    assert float(model.optimizer.learning_rate) == pytest.approx(record["learning_rate"], rel=1e-6)
    assert_evaluates_as_keras2(model, record, x, targets)


def keras3_values(kind: str, name: str, y_true, y_pred) -> np.ndarray:
    """What the Keras 3 translation of the Keras 2 loss or metric `name` computes."""
    setup = {"loss": name} if kind == "loss" else {"metrics": [name]}
    arguments, problems = compile_configs.compile_arguments(setup)
    assert not problems, problems
    translated = arguments["loss"] if kind == "loss" else arguments["metrics"][0]
    if isinstance(translated, str):
        translated = (keras.losses.get if kind == "loss" else keras.metrics.get)(translated)
    if isinstance(translated, keras.metrics.Metric):
        translated.update_state(y_true, y_pred)
        return np.asarray(translated.result())
    return np.asarray(translated(y_true, y_pred))


def test_every_keras2_loss_and_metric_function_name_means_the_same_in_keras3(training_files):
    values = json.loads((training_files / "functions.json").read_text())
    assert len(values) > 50
    for key, expected in values.items():
        kind, name = key.split(":")
        actual = keras3_values(kind, name, *training.function_data(name))
        expected = np.asarray(expected)
        # A metric object reports the mean over the batch of what the function gives.
        expected = expected.mean() if actual.ndim == 0 and expected.ndim else expected
        np.testing.assert_allclose(actual, expected, atol=1e-5, err_msg=key)


BYTECODE = {"class_name": "__lambda__", "config": {"code": "4wAAAA==", "defaults": None, "closure": None}}
ADAM = {"class_name": "Adam", "config": {"learning_rate": 0.01}}


@pytest.mark.parametrize(
    "setup, kind",
    [
        ({"loss": BYTECODE, "optimizer_config": ADAM}, "loss"),
        ({"loss": "mse", "metrics": [BYTECODE], "optimizer_config": ADAM}, "metric"),
        ({"loss": "mse", "optimizer_config": {"class_name": "__lambda__", "config": {}}}, "optimizer"),
    ],
)
def test_bytecode_in_a_compile_config_is_never_compiled_in_but_said(setup, kind):
    """Keras' deserializers hand back the string "__lambda__" for such a config, which
    `compile` took as the name of a loss, failing only at `evaluate`."""
    arguments, problems = compile_configs.compile_arguments(setup)
    assert arguments == {}
    assert problems == [
        f"its {kind} is Python bytecode stored in the file, which keras-graft never runs "
        "(a lambda, or a function Keras 2 could not store by name)"
    ]


def test_a_loss_or_optimizer_class_keras3_lacks_is_said_not_compiled_in():
    for setup, problem in (
        ({"loss": {"class_name": "NoSuchLoss", "config": {}}, "optimizer_config": ADAM}, "loss `NoSuchLoss`"),
        ({"loss": "mse", "optimizer_config": {"class_name": "NoSuchOptimizer", "config": {}}}, "optimizer"),
    ):
        arguments, problems = compile_configs.compile_arguments(setup)
        assert arguments == {} and problem in problems[0], problems


if __name__ == "__main__":
    sweeps.main(__file__)
