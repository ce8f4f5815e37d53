"""Predictions of a model file in a fresh process: Keras 2's own, or Keras 3's in safe mode.

`keras-graft convert` checks a conversion with two fresh processes: tf_keras
(Keras 2) predicts the original file, and Keras 3, after `import
keras_graft`, loads the converted `.keras` file in safe mode and predicts
the same inputs. Each runs `predict_child.py` as a script, so that the Keras 2
process never imports Keras 3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from keras_graft import child_imports
from keras_graft.errors import PredictionError
from keras_graft.keras2 import predict_child
from keras_graft.keras2.predict_child import KERAS2, KERAS3, ordered, save_arrays

__all__ = ["KERAS2", "KERAS3", "PredictionError", "in_fresh_process"]


def in_fresh_process(keras: str, model_path: Path, inputs: list, workdir: Path, imports=()) -> list:
    """`keras` ("keras2" or "keras3") loads `model_path` in a new process and predicts `inputs`.

    The process first imports the user's modules `imports` (imported here).
    """
    inputs_path, outputs_path = workdir / f"{keras}_inputs.npz", workdir / f"{keras}_outputs.npz"
    save_arrays(inputs_path, "input_", inputs)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    env["TF_USE_LEGACY_KERAS"] = "1" if keras == KERAS2 else "0"
    env[predict_child.IMPORTS_VARIABLE] = json.dumps(child_imports.request(imports))
    completed = subprocess.run(
        [sys.executable, predict_child.__file__, keras, str(model_path), str(inputs_path),
         str(outputs_path)],
        capture_output=True, text=True, env=env,
    )
    if completed.returncode != 0:
        last_line = (completed.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise PredictionError(f"{'tf_keras' if keras == KERAS2 else 'Keras 3'} could not predict with {model_path}: {last_line}")
    return ordered(np.load(outputs_path), "output_")
