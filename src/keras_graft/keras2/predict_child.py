"""The child process of `keras_graft.keras2.predict`: one model file predicts saved inputs.

Run as a script, never imported by it, so that the Keras 2 process never
imports Keras 3 (nor keras-graft, which imports Keras 3):

    TF_USE_LEGACY_KERAS=1 python predict_child.py keras2 old.h5 inputs.npz outputs.npz
    python predict_child.py keras3 new.keras inputs.npz outputs.npz

Each first imports the user's modules that `KERAS_GRAFT_CHILD_IMPORTS` names
(`--import`: registered layers and losses the file needs).

>>> arrays = {"input_0": np.zeros(2), "input_1": np.ones(2)}
>>> [a.tolist() for a in ordered(arrays, "input_")]
[[0.0, 0.0], [1.0, 1.0]]
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import numpy as np

KERAS2, KERAS3 = "keras2", "keras3"
# The user's modules to import first: `keras_graft.child_imports.request`, as JSON.
IMPORTS_VARIABLE = "KERAS_GRAFT_CHILD_IMPORTS"


def _import_user_modules() -> None:
    wanted = json.loads(os.environ.get(IMPORTS_VARIABLE) or "{}")
    sys.path[:0] = wanted.get("paths", [])
    for module in wanted.get("modules", []):
        importlib.import_module(module)


def ordered(arrays, prefix: str) -> list:
    """The arrays named `prefix0`, `prefix1`... in order."""
    count = sum(name.startswith(prefix) for name in arrays)
    return [arrays[f"{prefix}{i}"] for i in range(count)]


def save_arrays(path: Path, prefix: str, values) -> None:
    np.savez(path, **{f"{prefix}{i}": np.asarray(v) for i, v in enumerate(values)})


def _main(keras_version: str, model_path: str, inputs_path: str, outputs_path: str) -> None:
    if keras_version == KERAS2:
        import tf_keras

        _import_user_modules()
        model = tf_keras.models.load_model(model_path, compile=False)
    else:
        import keras

        import keras_graft  # noqa: F401  (op layers; safe mode is the default)

        _import_user_modules()
        model = keras.models.load_model(model_path, compile=False)
    inputs = ordered(np.load(inputs_path), "input_")
    outputs = model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0)
    save_arrays(Path(outputs_path), "output_", outputs if isinstance(outputs, (list, tuple)) else [outputs])


if __name__ == "__main__":
    _main(*sys.argv[1:])
