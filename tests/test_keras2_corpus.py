"""Real Keras 2 files, from the Keras 2 releases people used, in Keras 3 with keras-graft.

`tests/keras2_corpus/` holds files written by the `keras` 2.x bundled with
TensorFlow 2.12-2.15 and by tf_keras 2.16 and 2.21 (`regenerate.py` writes
them, each release in its own virtual environment; this test only reads
them), with each model's inputs and Keras 2's own predictions beside it.
One case per file in `manifest.json`:

- it loads in Keras 3 after `import keras_graft` (`keras.models.load_model`
  for `.h5`, `keras_graft.keras2.files.load_model` for `.keras` and
  SavedModel directories) and predicts what Keras 2 predicted (atol 1e-4);
- `keras_graft.keras2.convert.convert` converts it (without its own check),
  and the converted file, reloaded in safe mode in a fresh process, predicts
  the same;
- a compiled file comes back compiled: Keras 2's learning rate and optimizer
  state, the same `evaluate`, and one more training step gives what that
  step gave in Keras 2.

Files with `Lambda` layers are converted with `trust_file_code=True` (the
explicit trust of `--trust-file-code`) and loading them without it must be
refused in a way that names that option. Files that need the user's own code (a
registered layer or loss, a named function) get their module,
`corpus_objects`, imported first, as a user would (`--import`).

`tests/keras2_corpus/FINDINGS.md` says which cases fail today and why.
"""

from __future__ import annotations

import io
import json
import os
import select
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from rich.console import Console

from keras_graft.keras2 import convert, files

CORPUS = Path(__file__).resolve().parent / "keras2_corpus"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text())
ENTRIES = MANIFEST["files"]
ATOL = 1e-4
USER_MODULE = "corpus_objects"
RELOAD_TIMEOUT_S = 300

sys.path.insert(0, str(CORPUS))


def case_id(entry: dict) -> str:
    return entry["path"].removeprefix("files/")


def cases(entries):
    return [pytest.param(entry, id=case_id(entry)) for entry in entries]


def user_modules(entry: dict) -> list[str]:
    """The user's modules the file needs, imported here as a user would first."""
    needs = entry["custom_objects"] or any(lam["module"] == USER_MODULE for lam in entry["lambdas"])
    modules = [USER_MODULE] if needs else []
    for module in modules:
        __import__(module)
    return modules


def arrays(entry: dict, prefix: str) -> list[np.ndarray]:
    stored = np.load(CORPUS / entry["arrays"])
    return [stored[f"{prefix}{i}"] for i in range(sum(name.startswith(prefix) for name in stored.files))]


def call(model, inputs) -> list[np.ndarray]:
    """The model's outputs on `inputs` (one batch; the reloading process uses `predict`)."""
    outputs = model(inputs if len(inputs) > 1 else inputs[0], training=False)
    return [np.asarray(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]


def assert_same_predictions(actual, expected, model: str) -> None:
    assert len(actual) == len(expected), f"the {model} model: {len(actual)} outputs, Keras 2 had {len(expected)}"
    for index, (got, want) in enumerate(zip(actual, expected)):
        assert got.shape == want.shape, f"the {model} model, output {index}: shape {got.shape}, Keras 2's {want.shape}"
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=0, err_msg=f"the {model} model, output {index}")


def load(entry: dict):
    """The file loaded as a user loads it: Keras' own loader for `.h5`, keras-graft's for the rest."""
    path = CORPUS / entry["path"]
    if entry["format"] == "h5":
        return keras.models.load_model(path)
    return files.load_model(path)


class ReloadChild:
    """A fresh Keras 3 process (`keras2_corpus/reload_child.py`) that reloads converted files."""

    def __init__(self):
        self.process = None

    def _start(self):
        env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "KERAS_BACKEND")}
        env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.pathsep.join([str(CORPUS), env.get("PYTHONPATH", "")]))
        self.process = subprocess.Popen(
            [sys.executable, str(CORPUS / "reload_child.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )

    def predict(self, model_path: Path, inputs: list, imports: list, workdir: Path) -> list[np.ndarray]:
        import reload_child

        if self.process is None or self.process.poll() is not None:
            self._start()
        np.savez(workdir / "inputs.npz", **{f"input_{i}": v for i, v in enumerate(inputs)})
        request = {"model": str(model_path), "inputs": str(workdir / "inputs.npz"),
                   "outputs": str(workdir / "outputs.npz"), "imports": imports}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        reply = self._reply(reload_child.REPLY)
        assert "error" not in reply, f"the converted file, reloaded in safe mode in a fresh process: {reply['error']}"
        stored = np.load(workdir / "outputs.npz")
        return [stored[f"output_{i}"] for i in range(len(stored.files))]

    def _reply(self, marker: str) -> dict:
        while True:
            ready, _, _ = select.select([self.process.stdout], [], [], RELOAD_TIMEOUT_S)
            line = self.process.stdout.readline() if ready else ""
            if not line:
                self.close()
                raise AssertionError("the reloading process died or timed out")
            if line.startswith(marker):
                return json.loads(line[len(marker):])

    def close(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


@pytest.fixture(scope="module")
def reload_child():  # one per test process (pytest-xdist worker)
    child = ReloadChild()
    yield child
    child.close()


def test_the_manifest_lists_every_file_of_the_corpus():
    listed = {CORPUS / entry["path"] for entry in ENTRIES} | {CORPUS / entry["arrays"] for entry in ENTRIES}
    present = {path for release in (CORPUS / "files").iterdir() for path in release.iterdir()}
    assert present == listed
    releases = {entry["release"] for entry in ENTRIES}
    assert releases == {"keras2.12", "keras2.13", "keras2.14", "keras2.15", "tf_keras2.16", "tf_keras2.21"}


@pytest.mark.parametrize("entry", cases(ENTRIES))
def test_loads_and_predicts_as_keras2_did(entry):
    user_modules(entry)
    if entry["lambdas"]:
        # Loading runs no bytecode: refused, saying how to migrate the file.
        with pytest.raises(Exception, match=r"trust.file.code"):
            load(entry)
        return
    assert_same_predictions(call(load(entry), arrays(entry, "input_")), arrays(entry, "output_"), "loaded")


@pytest.mark.parametrize("entry", cases(ENTRIES))
def test_converts_and_the_converted_file_reloads_in_safe_mode(entry, tmp_path, reload_child):
    imports = user_modules(entry)
    target = tmp_path / "converted.keras"
    options = {"trust_file_code": True} if entry["lambdas"] else {}
    convert.convert(CORPUS / entry["path"], target, check=False, console=Console(file=io.StringIO()),
                    imports=imports, **options)
    reloaded = reload_child.predict(target, arrays(entry, "input_"), imports, tmp_path)
    assert_same_predictions(reloaded, arrays(entry, "output_"), "converted, reloaded in safe mode in a fresh process,")


@pytest.mark.parametrize("entry", cases(e for e in ENTRIES if "compile" in e))
def test_compiled_files_come_back_compiled_and_training_continues(entry):
    user_modules(entry)
    expected = entry["compile"]
    model = load(entry)
    assert model.compiled and model.optimizer is not None, "loaded without its compile setup"
    optimizer = model.optimizer
    assert float(optimizer.learning_rate) == pytest.approx(expected["learning_rate"], rel=1e-6)
    assert int(optimizer.iterations) == expected["iterations"], "the optimizer's state was not restored"
    inputs, (targets,) = arrays(entry, "input_"), arrays(entry, "target_")
    evaluation = model.evaluate(inputs[0], targets, batch_size=len(targets), verbose=0, return_dict=True)
    for name, value in expected["evaluate"].items():
        assert evaluation.get(name) == pytest.approx(value, abs=ATOL), f"evaluate()[{name!r}]: {evaluation}"
    model.fit(inputs[0], targets, batch_size=len(targets), epochs=1, shuffle=False, verbose=0)
    assert_same_predictions(call(model, inputs), arrays(entry, "trained_output_"), "loaded, then trained one step")
