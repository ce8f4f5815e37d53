"""A model file that uses a name no imported module registered says which module to import.

Models with a `@keras_graft.layer`, `@keras_graft.op`, `@keras_graft.loss` and
`@keras_graft.metric` of a user module are saved here; a fresh process that
has not imported the module loads each (`keras.models.load_model`) and runs
`keras-graft inspect`, as a user who forgot the import would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import keras
import pytest

from keras_graft.core import unregistered
from keras_graft.errors import UnregisteredNameError

PACKAGE, MODULE = "h7_unregistered", "h7_unregistered.parts"
USER_CODE = """
import tensorflow as tf
import keras_graft

@keras_graft.layer
def scaled_matmul(ctx, x, units=3):
    return tf.matmul(x, ctx.weight("kernel", (x.shape[-1], units), initializer="ones"))

@keras_graft.op(package="h7_ops")
def soft_clip(x, limit=1.0):
    return limit * tf.math.tanh(x / limit)

@keras_graft.loss
def cosh_loss(y_true, y_pred):
    return tf.reduce_mean(tf.math.log(tf.cosh(y_pred - y_true)), axis=-1)

@keras_graft.metric
def close_enough(y_true, y_pred):
    return tf.reduce_mean(tf.cast(tf.abs(y_pred - y_true) < 0.1, y_pred.dtype), axis=-1)
"""
CHILD = textwrap.dedent("""
    import json, sys, io, contextlib
    import keras, keras_graft
    from keras_graft_tools import cli
    messages = {}
    for name in ("layer", "op", "loss", "metric"):
        try:
            keras.models.load_model(f"{name}.keras")
            messages[name] = None
        except Exception as error:
            messages[name] = [type(error).__name__, str(error)]
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        without = cli.main(["inspect", "layer.keras"])
        imported = cli.main(["inspect", "layer.keras", "--import", sys.argv[1]])
    print(json.dumps({"messages": messages, "inspect": [without, imported, errors.getvalue()]}))
""")


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """The four models, saved by a process that imported the user module."""
    root = tmp_path_factory.mktemp("unregistered")
    (root / PACKAGE).mkdir()
    (root / PACKAGE / "__init__.py").write_text("")
    (root / PACKAGE / "parts.py").write_text(USER_CODE)
    sys.path.insert(0, str(root))
    try:
        parts = __import__(MODULE, fromlist=["parts"])
    finally:
        sys.path.remove(str(root))
    x = keras.Input((4,))
    keras.Model(x, parts.scaled_matmul(units=3)(x)).save(root / "layer.keras")
    keras.Model(x, parts.soft_clip(x)).save(root / "op.keras")
    for name, compile_arguments in (
        ("loss", {"loss": parts.cosh_loss}),
        ("metric", {"loss": "mse", "metrics": [parts.close_enough]}),
    ):
        model = keras.Model(x, keras.layers.Dense(1)(x))
        model.compile("adam", **compile_arguments)
        model.save(root / f"{name}.keras")
    return root


@pytest.fixture(scope="module")
def fresh_process_report(saved_models):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, MODULE],
        cwd=saved_models,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "name, expected",
    [
        ("layer", rf"'parts>scaled_matmul'.*Import `{MODULE}`"),
        ("op", rf"'h7_ops>soft_clip'.*Import `{MODULE}`"),
        ("loss", r"'parts>cosh_loss'.*registered under the package 'parts'.*`my_project.parts`"),
        ("metric", r"'parts>close_enough'.*registered under the package 'parts'"),
    ],
)
def test_each_unregistered_kind_of_name_says_which_module_to_import(fresh_process_report, name, expected):
    kind, message = fresh_process_report["messages"][name]
    assert kind == "UnregisteredNameError"
    assert re.search(expected, message), message
    assert "custom_objects=" in message


def test_inspect_says_which_module_to_import_and_loads_with_it(fresh_process_report):
    without, imported, errors = fresh_process_report["inspect"]
    assert without == 2 and f"Use `--import {MODULE}`" in errors
    assert imported == 0


def test_keras_own_messages_are_read_for_the_missing_name():
    error = TypeError(
        "<class 'Functional'> could not be deserialized properly. ... Exception "
        "encountered: Could not locate class 'scaled_matmul'. Make sure custom ..."
    )
    config = {
        "config": {
            "layers": [
                {
                    "module": "my_project.parts",
                    "class_name": "scaled_matmul",
                    "registered_name": "parts>scaled_matmul",
                    "build_config": {"input_dtypes": ["float32"]},
                }
            ]
        }
    }
    explained = unregistered.explain(error, config)
    assert isinstance(explained, UnregisteredNameError) and explained.module == "my_project.parts"
    assert "@keras_graft.layer 'parts>scaled_matmul'" in str(explained)
    legacy = ValueError("Unknown layer: 'corpus>ScaledDense'. Please ensure you are using ...")
    assert unregistered.explain(legacy, {"class_name": "corpus>ScaledDense"}).name == "corpus>ScaledDense"
    assert unregistered.explain(ValueError("shapes differ"), config) is None


def test_a_file_cannot_make_the_message_name_python_or_keras_modules_as_the_users():
    for module in ("keras.layers", "builtins", "__main__", "tf_keras.src.engine", None, 7):
        config = {"class_name": "x", "registered_name": "p>x", "module": module}
        assert unregistered.explain(TypeError("Could not locate class 'x'"), config).module is None
