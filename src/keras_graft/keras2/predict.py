"""Predictions of a model file in a fresh process: Keras 2's own, or Keras 3's in safe mode.

`keras-graft convert` checks a conversion with two fresh processes: tf_keras
(Keras 2) predicts the original file, and Keras 3, after `import
keras_graft`, loads the converted `.keras` file in safe mode and predicts
the same inputs. Run as a script so that the Keras 2 process never imports
Keras 3:

    TF_USE_LEGACY_KERAS=1 python predict.py keras2 old.h5 inputs.npz outputs.npz
    python predict.py keras3 new.keras inputs.npz outputs.npz

>>> arrays = {"input_0": np.zeros(2), "input_1": np.ones(2)}
>>> [a.tolist() for a in ordered(arrays, "input_")]
[[0.0, 0.0], [1.0, 1.0]]
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

KERAS2, KERAS3 = "keras2", "keras3"


class PredictionError(RuntimeError):
    """A fresh process could not load or run a model file."""


def ordered(arrays, prefix: str) -> list:
    """The arrays named `prefix0`, `prefix1`... in order."""
    count = sum(name.startswith(prefix) for name in arrays)
    return [arrays[f"{prefix}{i}"] for i in range(count)]


def save_arrays(path: Path, prefix: str, values) -> None:
    np.savez(path, **{f"{prefix}{i}": np.asarray(v) for i, v in enumerate(values)})


def in_fresh_process(keras: str, model_path: Path, inputs: list, workdir: Path) -> list:
    """`keras` ("keras2" or "keras3") loads `model_path` in a new process and predicts `inputs`."""
    inputs_path, outputs_path = workdir / f"{keras}_inputs.npz", workdir / f"{keras}_outputs.npz"
    save_arrays(inputs_path, "input_", inputs)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    env["TF_USE_LEGACY_KERAS"] = "1" if keras == KERAS2 else "0"
    completed = subprocess.run(
        [sys.executable, __file__, keras, str(model_path), str(inputs_path), str(outputs_path)],
        capture_output=True, text=True, env=env,
    )
    if completed.returncode != 0:
        last_line = (completed.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise PredictionError(f"{'tf_keras' if keras == KERAS2 else 'Keras 3'} could not predict with {model_path}: {last_line}")
    return ordered(np.load(outputs_path), "output_")


def _main(keras_version: str, model_path: str, inputs_path: str, outputs_path: str) -> None:
    if keras_version == KERAS2:
        import tf_keras

        model = tf_keras.models.load_model(model_path, compile=False)
    else:
        import keras

        import keras_graft  # noqa: F401  (op layers; safe mode is the default)

        model = keras.models.load_model(model_path, compile=False)
    inputs = ordered(np.load(inputs_path), "input_")
    outputs = model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0)
    save_arrays(Path(outputs_path), "output_", outputs if isinstance(outputs, (list, tuple)) else [outputs])


if __name__ == "__main__":
    _main(*sys.argv[1:])
