"""Keras 2 `Lambda` layers: no file code runs unless the file is trusted; trusted, they become op layers.

tf_keras (Keras 2), in a child process, writes an `.h5` file whose `Lambda`
functions are Python bytecode: one writes a marker file when it runs (its
path is the Lambda's `arguments`), one uses `arguments`, one is a TF op
chain, and one uses `*` on its tensors (TF's operator in Keras 2). The marker
tells whether anything ran the file's code:

- without `--trust-file-code`, loading (`keras.models.load_model`,
  `files.load_model`), `keras-graft inspect` and `keras-graft convert` refuse
  the file, say that the flag exists and what it means, and no marker appears;
- with it, `convert` runs each function once (in a child process: the marker
  appears) and the converted file holds no bytecode: fresh processes on the
  TensorFlow and JAX backends load it in safe mode and predict what tf_keras
  predicted;
- bytecode that does not load on this Python, and a function that does not
  run on Keras tensors, are refused naming the layer and the fix.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import h5py
import keras
import numpy as np
import pytest
from rich.console import Console

from keras_graft.errors import ConversionError, LambdaLayerError
from keras_graft.keras2 import convert, files
from keras_graft_tools import cli

TF_KERAS_WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    folder, marker = sys.argv[1], sys.argv[2]

    def write_marker(t, marker):
        open(marker, "w").close()  # the file's code ran
        return tf.identity(t)

    x = keras.Input((6,), name="x")
    h = keras.layers.Dense(6, name="dense")(x)
    h = keras.layers.Lambda(write_marker, arguments={"marker": marker}, name="marker")(h)
    h = keras.layers.Lambda(lambda t: tf.clip_by_value(t, -0.5, 0.5) * 3.0, name="clip")(h)
    y = keras.layers.Lambda(lambda t, k: tf.math.top_k(t, k=k).values, arguments={"k": 2}, name="top")(h)
    model = keras.Model(x, y)
    model.save(f"{folder}/lambdas.h5")
    inputs = np.random.default_rng(3).normal(size=(4, 6)).astype("float32")
    np.savez(f"{folder}/lambdas.npz", input_0=inputs, output_0=model.predict(inputs, verbose=0))

    z = keras.Input((3,), name="z")
    shaped = keras.layers.Lambda(lambda t: t * float(t.shape.as_list()[-1]), name="shaped")(z)
    keras.Model(z, shaped).save(f"{folder}/tensorshape.h5")
""")
RELOADER = textwrap.dedent("""
    import sys
    import keras, numpy as np
    import keras_graft
    model = keras.models.load_model(sys.argv[1])  # safe mode
    inputs = np.load(sys.argv[2])["input_0"]
    np.save(sys.argv[3], np.asarray(model.predict(inputs, verbose=0)))
    print(keras.backend.backend())
""")


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "KERAS_BACKEND")}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


@pytest.fixture(scope="module")
def keras2_lambdas(tmp_path_factory):
    """(folder, marker): the files tf_keras wrote, the marker its build wrote removed."""
    folder = tmp_path_factory.mktemp("keras2_lambdas")
    marker = folder / "marker"
    completed = subprocess.run(
        [sys.executable, "-c", TF_KERAS_WRITER, str(folder), str(marker)],
        env=_env(TF_USE_LEGACY_KERAS="1"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert marker.exists(), "tf_keras ran the Lambda when it built the model"
    marker.unlink()
    return folder, marker


def test_without_trust_nothing_runs_the_files_code_and_every_refusal_names_the_flag(keras2_lambdas, capsys):
    folder, marker = keras2_lambdas
    source = folder / "lambdas.h5"
    for load in (keras.models.load_model, files.load_model):
        with pytest.raises(
            LambdaLayerError, match=r"Layer `marker` is a Keras 2 `Lambda`.*--trust-file-code"
        ):
            load(source)
    with pytest.raises(ConversionError, match=r"--trust-file-code.*runs each Lambda's function once"):
        convert.convert(source, folder / "untrusted.keras", console=Console(file=io.StringIO()))
    assert cli.main(["inspect", str(source)]) == 2
    assert "--trust-file-code" in capsys.readouterr().err
    assert cli.main(["convert", str(source), str(folder / "untrusted.keras")]) == 2
    assert "--trust-file-code" in capsys.readouterr().err
    assert not marker.exists(), "the file's code ran without --trust-file-code"
    assert not (folder / "untrusted.keras").exists()


def test_trusted_lambdas_become_op_layers_that_load_in_safe_mode_on_tensorflow_and_jax(keras2_lambdas):
    folder, marker = keras2_lambdas
    target = folder / "trusted.keras"
    result = convert.convert(
        folder / "lambdas.h5", target, check=False, trust_file_code=True, console=Console(file=io.StringIO())
    )
    assert marker.exists(), "the trusted Lambda's function did not run"
    changed = {note.layer: note.change for note in result.notes if note.keras2_class == "Lambda"}
    assert set(changed) == {"marker", "clip", "top"} and "math.top_k" in changed["top"], changed
    with zipfile.ZipFile(target) as archive:
        config = archive.read("config.json").decode()
    assert '"Lambda"' not in config and "function_type" not in config
    expected = np.load(folder / "lambdas.npz")["output_0"]
    for backend in ("tensorflow", "jax"):
        predictions = folder / f"{backend}.npy"
        completed = subprocess.run(
            [sys.executable, "-c", RELOADER, str(target), str(folder / "lambdas.npz"), str(predictions)],
            env=_env(KERAS_BACKEND=backend),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        assert completed.stdout.split()[-1] == backend
        np.testing.assert_allclose(np.load(predictions), expected, atol=1e-5, err_msg=backend)


def _with_bytecode(source, target, layer_name: str, code: bytes) -> None:
    """`source` copied to `target`, the Lambda `layer_name`'s bytecode replaced by `code`."""
    target.write_bytes(source.read_bytes())
    with h5py.File(target, "r+") as file:
        config = json.loads(file.attrs["model_config"])
        for layer in config["config"]["layers"]:
            if layer["config"]["name"] == layer_name:
                layer["config"]["function"][0] = base64.encodebytes(code).decode("ascii")
        file.attrs["model_config"] = json.dumps(config)


def test_bytecode_of_another_python_is_refused_naming_the_layer_and_the_fix(keras2_lambdas, tmp_path):
    folder, _ = keras2_lambdas
    source = tmp_path / "other_python.h5"
    # What marshal data of another Python version looks like here: it does not load.
    _with_bytecode(folder / "lambdas.h5", source, "clip", b"\xe3\xff\x00bad")
    with pytest.raises(
        LambdaLayerError,
        match=r"Layer `clip` .*written by another Python version.*"
        r"Convert it with the Python version that saved the file",
    ):
        files.load_model(source, trust_file_code=True)


def test_a_function_that_does_not_run_on_keras_tensors_is_refused_naming_the_layer_and_the_fix(
    keras2_lambdas,
):
    folder, _ = keras2_lambdas
    with pytest.raises(
        LambdaLayerError,
        match=r"Layer `shaped` .*does not run on Keras tensors \(AttributeError.*"
        r"rewrite it with TF ops",
    ):
        files.load_model(folder / "tensorshape.h5", trust_file_code=True)
