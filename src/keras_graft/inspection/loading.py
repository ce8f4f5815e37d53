"""The model file `keras-graft inspect` looks at, loaded in safe mode.

A Keras 3 `.keras` file goes through `keras.models.load_model` (safe mode, its
default); a Keras 2 file (`.h5`, tf_keras `.keras`, SavedModel directory)
through the translations `keras-graft convert` uses, recording what they
changed, so the report tells what converting would do.

>>> load("missing.keras")
Traceback (most recent call last):
...
keras_graft.errors.ModelFileError: missing.keras does not exist.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import keras

from keras_graft.errors import MalformedModelFileError, ModelFileError
from keras_graft.keras2 import convert, files, report


def load(path) -> tuple[keras.Model, dict | None]:
    """(model, Keras 2 info or None) for the file at `path`.

    The Keras 2 info is `{"kind": "h5", "translations": [{"layer", "keras2_class",
    "change"}, ...]}`.
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path} does not exist.")
    try:
        kind = files.kind(path)  # refuses a file over the limits before anything reads it
    except MalformedModelFileError as error:
        raise ModelFileError(str(error)) from error
    if kind is not None:
        with report.recording() as notes:
            try:
                model = convert.load(path)
            except convert.ConversionError as error:
                raise ModelFileError(str(error)) from error
        return model, {"kind": kind, "translations": [asdict(n) for n in notes]}
    try:
        return keras.models.load_model(path), None  # safe mode
    except Exception as error:
        raise ModelFileError(
            f"{path} could not be loaded in safe mode: {type(error).__name__}: {error}"
        ) from error
