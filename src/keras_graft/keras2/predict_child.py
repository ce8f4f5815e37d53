"""The child process of `keras_graft.keras2.predict`: model files predict saved inputs.

Run as a script, never imported by it, so that the Keras 2 process never
imports Keras 3 (nor keras-graft, which imports Keras 3):

    python predict_child.py READY_MARKER JOBS.json

`JOBS.json` lists `{"reader", "model", "inputs", "outputs"}` jobs, run in
order; each loads `model` with its reader, predicts the arrays of `inputs`
and writes `outputs` before the next starts. The readers:

- `keras2`: tf_keras (Keras 2 itself), which has no safe mode for `.h5` and
  SavedModel files: only for files the user trusts (`--trust-file-code`).
  A model in which tf_keras rebuilt a layer from a SavedModel's traced
  graphs instead of its config (a `Revived...` layer: graphs keras-graft
  never audited) is refused before it predicts;
- `keras3`: `keras.models.load_model` after `import keras_graft`, safe mode;
- `keras3_of_keras2`: `keras_graft.keras2.files.load_model`, safe mode: the
  Keras 3 model keras-graft builds from a Keras 2 file.

Each first imports the user's modules that `KERAS_GRAFT_CHILD_IMPORTS` names
(`--import`: registered layers and losses the file needs).
READY_MARKER is printed once the imports are done, before any model file is
read (the parent then caps the process's memory).

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

KERAS2, KERAS3, KERAS3_OF_KERAS2 = "keras2", "keras3", "keras3_of_keras2"
# The user's modules to import first: `keras_graft.keras2.child_imports.request`, as JSON.
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


def _loaders(readers: set):
    if readers == {KERAS2}:
        import tf_keras

        _import_user_modules()
        return {KERAS2: lambda path: _built_from_configs(tf_keras.models.load_model(path, compile=False))}
    if KERAS2 in readers:
        raise ValueError("tf_keras (Keras 2) predicts in a process of its own, without Keras 3")
    import keras

    import keras_graft  # noqa: F401  (op layers; safe mode is the default)
    from keras_graft.keras2 import files

    _import_user_modules()
    return {
        KERAS3: lambda path: keras.models.load_model(path, compile=False),
        KERAS3_OF_KERAS2: files.load_model,
    }


def _built_from_configs(model):
    revived = [
        layer.name for layer in [model, *model.submodules] if type(layer).__name__.startswith("Revived")
    ]
    if revived:
        raise RuntimeError(
            f"tf_keras rebuilt {', '.join(revived[:5])} from the SavedModel's traced graphs, not "
            "from the config keras-graft converted: those graphs would run unaudited"
        )
    return model


def _main(ready_marker: str, jobs_path: str) -> None:
    jobs = json.loads(Path(jobs_path).read_text())
    loaders = _loaders({job["reader"] for job in jobs})
    print(ready_marker, flush=True)
    for job in jobs:
        model = loaders[job["reader"]](job["model"])
        inputs = ordered(np.load(job["inputs"]), "input_")
        outputs = model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0)
        save_arrays(
            Path(job["outputs"]), "output_", outputs if isinstance(outputs, (list, tuple)) else [outputs]
        )


if __name__ == "__main__":
    _main(*sys.argv[1:])
