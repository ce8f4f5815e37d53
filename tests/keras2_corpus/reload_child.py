"""A fresh Keras 3 process that reloads converted corpus files in safe mode and predicts.

`tests/test_keras2_corpus.py` starts it once per test process and sends it
one request per line on standard input, a JSON object:

    {"model": "converted.keras", "inputs": "in.npz", "outputs": "out.npz", "imports": ["corpus_objects"]}

It imports the user modules named (as `keras-graft convert --import` would),
then `import keras_graft`, loads the model with `keras.models.load_model` in
safe mode, predicts the inputs (`input_0`, ...) in one batch, writes
`output_0`, ... and answers one line: `REPLY` and a JSON object, `{"ok": true}`
or `{"error": ...}` (other lines on standard output are TensorFlow's).

This process never loads an original Keras 2 file, and nothing the converting
process registered or translated reaches it: what it loads is what the
`.keras` file holds. One process serves many files because starting
TensorFlow costs seconds per file.
"""

import importlib
import json
import sys

import keras
import numpy as np

import keras_graft  # noqa: F401  (its layers; safe mode is Keras' default)

REPLY = "@@reload-child@@"


def answer(request: dict) -> dict:
    for module in request.get("imports", []):
        importlib.import_module(module)
    keras.backend.clear_session()
    model = keras.models.load_model(request["model"], safe_mode=True)
    arrays = np.load(request["inputs"])
    inputs = [arrays[f"input_{i}"] for i in range(len(arrays.files))]
    outputs = model.predict(inputs if len(inputs) > 1 else inputs[0], batch_size=len(inputs[0]), verbose=0)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    np.savez(request["outputs"], **{f"output_{i}": np.asarray(o) for i, o in enumerate(outputs)})
    return {"ok": True}


def main() -> None:
    for line in sys.stdin:
        try:
            reply = answer(json.loads(line))
        except Exception as error:  # noqa: BLE001  (the test reports any failure)
            reply = {"error": f"{type(error).__name__}: {error}"}
        print(REPLY + json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
