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

Files that Keras 2 itself cannot reload (`keras2_reload.error` in the
manifest: it saved `tf.einsum` without its operands) must be refused, by
loading and by `convert`, with an error naming the layer, saying that Keras 2
dropped part of the call and that the weights still load
(`keras_graft.keras2.files.load_weights`).

Files with `Lambda` layers are converted with `trust_file_code=True` (the
explicit trust of `--trust-file-code`) and loading them without it must be
refused in a way that names that option. Files that need the user's own code (a
registered layer or loss, a named function) get their module,
`corpus_objects`, imported first, as a user would (`--import`).

CI runs a fixed sample (`SAMPLE`): every release in every format it wrote,
every model, every SavedModel and every keras 2.13 `.keras` (whose weight
names only structure can match). The whole corpus runs from the command line:

    python tests/test_keras2_corpus.py --all       # or KERAS_GRAFT_CORPUS=all pytest ...
"""

from __future__ import annotations

import io
import json
import os
import select
import subprocess
import sys
import tempfile
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
RELEASES = ("keras2.12", "keras2.13", "keras2.14", "keras2.15", "tf_keras2.16", "tf_keras2.21")
EVERY_FILE = os.environ.get("KERAS_GRAFT_CORPUS") == "all"

sys.path.insert(0, str(CORPUS))


def case_id(entry: dict) -> str:
    return entry["path"].removeprefix("files/")


def in_sample(entry: dict) -> bool:
    """The CI sample: each model in every format of one release (the releases taken in
    turn), every SavedModel, every keras 2.13 `.keras`, and the models only one release has."""
    models = sorted({e["model"] for e in ENTRIES})
    releases = sorted({e["release"] for e in ENTRIES if e["model"] == entry["model"]}, key=RELEASES.index)
    turn = releases[models.index(entry["model"]) % len(releases)]
    return (
        entry["release"] == turn
        or entry["format"] == "saved_model"
        or (entry["release"] == "keras2.13" and entry["format"] == "keras")
    )


SAMPLE = [entry for entry in ENTRIES if in_sample(entry)]


def cases(entries):
    return [pytest.param(entry, id=case_id(entry)) for entry in entries if EVERY_FILE or in_sample(entry)]


def user_modules(entry: dict) -> list[str]:
    """The user's modules the file needs, imported here as a user would first."""
    needs = entry["custom_objects"] or any(lam["module"] == USER_MODULE for lam in entry["lambdas"])
    modules = [USER_MODULE] if needs else []
    for module in modules:
        __import__(module)
    return modules


# What a file Keras 2 saved incompletely is refused with (`keras_graft.keras2.op_layers`).
LOSSY_REFUSAL = (
    r"(?s)Layer `tf\.einsum[^`]*`.*Keras 2 dropped .* when it saved.*keras_graft\.keras2\.files\.load_weights"
)


def keras2_lost_the_call(entry: dict) -> bool:
    """Keras 2 could not reload its own file: it dropped part of an op call when it saved."""
    return "error" in entry["keras2_reload"]


def arrays(entry: dict, prefix: str) -> list[np.ndarray]:
    stored = np.load(CORPUS / entry["arrays"])
    return [stored[f"{prefix}{i}"] for i in range(sum(name.startswith(prefix) for name in stored.files))]


def call(model, inputs) -> list[np.ndarray]:
    """The model's outputs on `inputs` (one batch; the reloading process uses `predict`)."""
    outputs = model(inputs if len(inputs) > 1 else inputs[0], training=False)
    return [np.asarray(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]


def assert_same_predictions(actual, expected, model: str) -> None:
    assert len(actual) == len(expected), (
        f"the {model} model: {len(actual)} outputs, Keras 2 had {len(expected)}"
    )
    for index, (got, want) in enumerate(zip(actual, expected)):
        assert got.shape == want.shape, (
            f"the {model} model, output {index}: shape {got.shape}, Keras 2's {want.shape}"
        )
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
        env.update(
            TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.pathsep.join([str(CORPUS), env.get("PYTHONPATH", "")])
        )
        self.process = subprocess.Popen(
            [sys.executable, str(CORPUS / "reload_child.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )

    def predict(self, model_path: Path, inputs: list, imports: list, workdir: Path) -> list[np.ndarray]:
        import reload_child

        if self.process is None or self.process.poll() is not None:
            self._start()
        np.savez(workdir / "inputs.npz", **{f"input_{i}": v for i, v in enumerate(inputs)})
        request = {
            "model": str(model_path),
            "inputs": str(workdir / "inputs.npz"),
            "outputs": str(workdir / "outputs.npz"),
            "imports": imports,
        }
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        reply = self._reply(reload_child.REPLY)
        assert "error" not in reply, (
            f"the converted file, reloaded in safe mode in a fresh process: {reply['error']}"
        )
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
                return json.loads(line[len(marker) :])

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
    assert releases == set(RELEASES)


def test_the_ci_sample_covers_every_release_format_and_model():
    def covered(entries):
        return {(e["release"], e["format"]) for e in entries}, {e["model"] for e in entries}

    assert covered(SAMPLE) == covered(ENTRIES)
    assert {e["path"] for e in ENTRIES if e["format"] == "saved_model"} <= {e["path"] for e in SAMPLE}


@pytest.mark.parametrize("entry", cases(ENTRIES))
def test_loads_and_predicts_as_keras2_did(entry):
    user_modules(entry)
    if keras2_lost_the_call(entry):
        with pytest.raises(Exception, match=LOSSY_REFUSAL):
            load(entry)
        return
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
    if keras2_lost_the_call(entry):
        with pytest.raises(convert.ConversionError, match=LOSSY_REFUSAL):
            convert.convert(CORPUS / entry["path"], target, check=False, console=Console(file=io.StringIO()))
        return
    convert.convert(
        CORPUS / entry["path"],
        target,
        check=False,
        console=Console(file=io.StringIO()),
        imports=imports,
        **options,
    )
    reloaded = reload_child.predict(target, arrays(entry, "input_"), imports, tmp_path)
    assert_same_predictions(
        reloaded, arrays(entry, "output_"), "converted, reloaded in safe mode in a fresh process,"
    )


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
    assert_same_predictions(
        call(model, inputs), arrays(entry, "trained_output_"), "loaded, then trained one step"
    )


def corpus_table(junit_xml: Path) -> str:
    """The README's table of a run: per release, the files and the cases that passed."""
    from xml.etree import ElementTree

    tests = {
        test_loads_and_predicts_as_keras2_did.__name__: "load",
        test_converts_and_the_converted_file_reloads_in_safe_mode.__name__: "convert",
        test_compiled_files_come_back_compiled_and_training_continues.__name__: "compiled",
    }
    passed: dict = {}
    for case in ElementTree.parse(junit_xml).iter("testcase"):
        test, _, file = case.get("name").partition("[")
        if test in tests and file:
            ok = not any(child.tag in ("failure", "error", "skipped") for child in case)
            passed[(tests[test], file.rstrip("]"))] = ok
    lines = [
        "| release | files | load + predict (atol 1e-4) | convert + safe reload | compiled files back compiled |",
        "|---|---:|---:|---:|---:|",
    ]
    for release in RELEASES:
        entries = [e for e in ENTRIES if e["release"] == release]
        first = entries[0]
        engine = f"{first['keras_package']} {first['keras_version']} (TF {first['tensorflow_version']})"

        def count(test, among):
            return sum(passed.get((test, case_id(e)), False) for e in among)

        compiled = [e for e in entries if "compile" in e]
        lines.append(
            f"| {engine} | {len(entries)} | {count('load', entries)} | {count('convert', entries)} "
            f"| {count('compiled', compiled)} of {len(compiled)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    # python tests/test_keras2_corpus.py [--all] [--table] [pytest arguments]
    arguments = sys.argv[1:]
    if "--all" in arguments:
        arguments.remove("--all")
        os.environ["KERAS_GRAFT_CORPUS"] = "all"
    table = "--table" in arguments
    junit_xml = Path(tempfile.mkdtemp()) / "keras2_corpus.xml"
    if table:
        arguments.remove("--table")
        arguments.append(f"--junitxml={junit_xml}")
    status = pytest.main([__file__, "-p", "no:cacheprovider", *arguments])
    if table:
        print(corpus_table(junit_xml))
    sys.exit(status)
