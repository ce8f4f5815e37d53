"""CI, in the wheel's virtual environment: each model `keras-graft demo --keep DIR` kept
loads in safe mode from the installed wheel, and predicts.

    python .ci/load_kept_models.py DIR
"""

import importlib
import sys
from pathlib import Path

import keras
import numpy as np

import keras_graft
from keras_graft_tools import demo


def main(directory: Path) -> None:
    if not Path(keras_graft.__file__).is_relative_to(sys.prefix):
        sys.exit(f"error: keras_graft was imported from {keras_graft.__file__}, not from this venv's wheel")
    paths = sorted(directory.glob("*.keras"))
    if [path.stem for path in paths] != sorted(demo.EXAMPLES):
        sys.exit(f"error: the demo kept {[p.name for p in paths]} in {directory}, not one file per example")
    for path in paths:
        # An example's own @keras_graft.layer functions are registered by importing it.
        importlib.import_module(f"keras_graft.examples.{path.stem}")
        model = keras.models.load_model(path)  # safe mode
        x = np.random.default_rng(0).normal(size=(4, *model.input_shape[1:])).astype("float32")
        print(f"{path.name}: loaded in safe mode, predicts {model.predict(x, verbose=0).shape}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
