"""`keras_graft.inspect` and `keras-graft inspect`: each check reports what
actually happens when the op is compiled, converted, differentiated, bridged
and reloaded."""

import json
import os
import subprocess
import sys
import zipfile
from typing import NamedTuple

import keras
import pytest
import tensorflow as tf
from rich.console import Console

import keras_graft
from keras_graft import _compat
from keras_graft.core import safety
from keras_graft.errors import BudgetExceededError
from keras_graft.inspection import CHECKS, LAMBDA_UNSAFE, checks, equivalents, html, inspect, sandbox
from keras_graft.inspection import op_layers as inspection_op_layers
from keras_graft_tools import cli

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def mixed_model():
    """clip (XLA and TFLite builtin), rgb_to_hsv (Select TF ops), histogram
    (no XLA kernel, no gradient), adjust_hue (XLA, no gradient)."""
    x = keras.Input((8,), name="values")
    image = keras.Input((4, 4, 3), name="image")
    clipped = tf.clip_by_value(x, -1.0, 1.0)
    hsv = tf.image.rgb_to_hsv(image)
    histogram = tf.histogram_fixed_width(clipped, [-1.0, 1.0], nbins=5)
    hue = tf.image.adjust_hue(image, 0.1)
    return keras.Model([x, image], [clipped, hsv, histogram, hue], name="mixed")


def by_name(report):
    return {layer.name: layer for layer in report.layers}


def statuses(layer):
    return {check: verdict.status for check, verdict in layer.checks.items()}


def test_each_op_is_reported_by_what_actually_happens():
    report = inspect(mixed_model())
    layers = by_name(report)
    assert list(layers) == [
        "tf.clip_by_value",
        "tf.image.rgb_to_hsv",
        "tf.histogram_fixed_width",
        "tf.image.adjust_hue",
    ]

    clip = layers["tf.clip_by_value"]
    assert statuses(clip) == {
        "xla": "yes",
        "tflite": "builtin",
        "gradient": "yes",
        "jax": "xla",
        "torch": "yes",
        "safe": "yes",
    }
    assert clip.op == "tf.clip_by_value" and clip.kind == "TFOp"
    assert clip.op_types == ["Maximum", "Minimum"]
    assert clip.outputs == [{"shape": [None, 8], "dtype": "float32"}]
    assert clip.keras_ops == "keras.ops.clip"

    hsv = layers["tf.image.rgb_to_hsv"]
    assert hsv.checks["tflite"] == checks.Verdict("select", "needs Select TF ops: RGBToHSV")
    assert statuses(hsv)["xla"] == "yes" and statuses(hsv)["gradient"] == "yes"
    assert hsv.keras_ops == "keras.ops.image.rgb_to_hsv"

    histogram = layers["tf.histogram_fixed_width"]
    assert histogram.checks["xla"] == checks.Verdict("no", "no XLA kernel for HistogramFixedWidth")
    assert histogram.checks["gradient"] == checks.Verdict(
        "no", "no registered gradient for HistogramFixedWidth"
    )
    assert histogram.checks["jax"] == checks.Verdict("callback", "no XLA kernel for HistogramFixedWidth")
    assert histogram.checks["tflite"].status == "no"
    assert "HistogramFixedWidth" in histogram.checks["tflite"].detail
    assert histogram.outputs == [{"shape": [5], "dtype": "int32"}]
    assert histogram.keras_ops is None

    hue = layers["tf.image.adjust_hue"]
    assert statuses(hue)["xla"] == "yes"
    assert hue.checks["gradient"] == checks.Verdict("no", "no registered gradient for AdjustHue")

    assert report.summary_line() == (
        "4 op layers: 3 XLA-ready, 1 TFLite-builtin (2 with Select TF ops, 1 cannot convert), "
        "2 differentiable, 3 compile into JAX (1 callback, 0 cannot run), 4 run on torch, "
        "4 load in safe mode"
    )
    assert report.failures(["xla"]) == [
        "tf.histogram_fixed_width: xla (no, no XLA kernel for HistogramFixedWidth)"
    ]
    assert report.failures(["torch", "safe"]) == []


def test_layer_functions_op_layers_and_nested_models_are_inspected():
    @keras_graft.layer(package="test_inspect")
    def scaled_matmul(ctx, x, units=2):
        kernel = ctx.weight("kernel", (x.shape[-1], units))
        return tf.matmul(x, kernel)

    inner = keras.Sequential([keras.Input((16,)), keras_graft.Op(tf.math.tanh)], name="inner")
    x = keras.Input((16,))
    model = keras.Model(x, scaled_matmul()(inner(x)))
    layers = by_name(inspect(model))
    assert layers["tf.math.tanh"].kind == "Op"
    layer = layers["scaled_matmul"]
    assert layer.op == "test_inspect>scaled_matmul" and layer.op_types == ["MatMul"]
    assert statuses(layer) == {
        "xla": "yes",
        "tflite": "builtin",
        "gradient": "yes",
        "jax": "xla",
        "torch": "yes",
        "safe": "yes",
    }
    assert layer.checks["safe"].detail == "once its module is imported"


def test_on_jax_and_torch_op_layers_are_checked_as_their_op_and_layer_functions_say_why_not(monkeypatch):
    """(The command on those backends: `test_the_checks_are_made_on_every_backend`.)"""

    @keras_graft.layer(package="test_inspect")
    def doubled(ctx, x):
        return x * ctx.weight("scale", ())

    x = keras.Input((4,))
    model = keras.Model(x, doubled()(keras_graft.Op(tf.math.tanh)(x)))
    monkeypatch.setattr(checks.backends, "backend", lambda: "jax")
    tanh, function = (checks.probe(layer) for layer in inspection_op_layers(model))
    assert checks.trace_problem(tanh) is None
    assert checks.trace_problem(function) == (
        "OpTraceError: inspect checks a @keras_graft.layer on the tensorflow backend only, "
        "not jax: run it with KERAS_BACKEND=tensorflow"
    )


def test_gradient_follows_loops_and_integer_outputs_need_none():
    x = keras.Input((8,))
    model = keras.Model(x, [tf.map_fn(tf.math.sin, x), tf.math.argmax(x, axis=-1, output_type="int32")])
    layers = by_name(inspect(model, checks_to_run=("gradient",)))
    assert layers["tf.map_fn"].checks["gradient"].status == "yes"
    assert layers["tf.math.argmax"].checks["gradient"] == checks.Verdict(
        "n/a", "no float path from the inputs to the outputs"
    )


def test_backends_say_why_they_cannot_run_an_op():
    x = keras.Input((8,))
    text = keras.Input((), dtype="string")
    model = keras.Model(
        [x, text], [tf.strings.length(text), tf.unique(tf.reshape(x, [-1])).y, tf.math.argmax(x, axis=-1)]
    )
    layers = by_name(inspect(model, checks_to_run=("xla", "jax", "torch")))
    strings = layers["tf.strings.length"]
    assert strings.checks["xla"] == checks.Verdict("no", "string tensors: XLA has none")
    assert strings.checks["jax"] == checks.Verdict(
        "no", "its input is a string tensor, which jax has no arrays for"
    )
    assert strings.checks["torch"].status == "no"
    unique = layers["tf.unique"]
    assert (
        unique.checks["jax"].status == "no" and "depends on the input values" in unique.checks["jax"].detail
    )
    assert unique.checks["torch"].status == "yes"
    argmax = layers["tf.math.argmax"]  # int64 output
    assert argmax.checks["jax"].status == "no" and "JAX_ENABLE_X64" not in argmax.checks["jax"].detail
    assert "int64" in argmax.checks["jax"].detail


def test_safe_names_the_allow_a_layer_needs():
    x = keras.Input((4,))
    model = keras.Model(x, tf.print("x:", x))
    (layer,) = inspect(model, checks_to_run=("safe",)).layers
    assert layer.op == "tf.print"
    assert layer.checks["safe"] == checks.Verdict("allow", "keras_graft.allow('print')")


def test_lambda_layers_are_listed_as_not_loading_in_safe_mode_with_the_reason():
    x = keras.Input((4,))
    inner_x = keras.Input((4,))
    inner = keras.Model(inner_x, keras.layers.Lambda(lambda t: t * 2.0, name="double")(inner_x), name="inner")
    y = keras.layers.Lambda(keras.ops.abs, name="absolute")(tf.clip_by_value(inner(x), -1.0, 1.0))
    report = inspect(keras.Model(x, y))
    by_name = {layer.name: layer for layer in report.layers}
    assert set(by_name) == {"double", "absolute", "tf.clip_by_value"}
    for name in ("double", "absolute"):
        assert by_name[name].kind == "Lambda" and set(by_name[name].checks) == {"safe"}
        assert by_name[name].checks["safe"].status == "no"
        assert by_name[name].checks["safe"].detail == LAMBDA_UNSAFE
        assert by_name[name].outputs == [{"shape": [None, 4], "dtype": "float32"}]
    assert report.failures(["safe"]) == [
        f"{name}: safe (no, {LAMBDA_UNSAFE})" for name in ("double", "absolute")
    ]


def test_slow_checks_run_once_per_op_and_signature(monkeypatch):
    asked = []
    original = sandbox.Session.run
    monkeypatch.setattr(
        sandbox.Session, "run", lambda self, task: asked.append(task.header["check"]) or original(self, task)
    )
    x = keras.Input((3,))
    model = keras.Model(
        x, [tf.clip_by_value(x, -2.0, 2.0), tf.clip_by_value(x, -2.0, 2.0), tf.clip_by_value(x, -3.0, 3.0)]
    )
    report = inspect(model, checks_to_run=("tflite",))
    assert [layer.checks["tflite"].status for layer in report.layers] == ["builtin"] * 3
    assert asked == ["tflite", "tflite"]  # the same constants and signature convert once


def test_progress_is_shown_per_layer():
    console = Console(record=True, force_terminal=True, width=100)
    inspect(mixed_model(), checks_to_run=("xla",), console=console)
    output = console.export_text()
    assert "inspecting tf.image.adjust_hue" in output and "4/4" in output


def test_unknown_checks_are_refused():
    with pytest.raises(ValueError, match="Unknown check"):
        inspect(mixed_model(), checks_to_run=("xla", "onnx"))


def test_keras_ops_equivalents_name_real_ops_on_both_sides():
    for tf_name, path in equivalents.KERAS_OPS.items():
        function = safety.allowed_ops().get(tf_name)
        assert function is not None, tf_name
        assert _compat.canonical_tf_name(function) == tf_name, tf_name  # stored names
        target = keras.ops
        for part in path.split("."):
            target = getattr(target, part)
        assert callable(target), path
    assert equivalents.keras_ops_equivalent("tf.linalg.matmul") == "keras.ops.matmul"
    assert equivalents.keras_ops_equivalent("tf.signal.stft") == "keras.ops.stft"
    assert equivalents.keras_ops_equivalent("tf.math.reduce_sum") == "keras.ops.sum"


def test_no_keras_ops_equivalent_is_named_that_the_installed_keras_lacks(monkeypatch):
    assert equivalents.keras_ops_equivalent("tf.image.sobel_edges") == "keras.ops.image.sobel_edges"
    monkeypatch.delattr(keras.ops.image, "sobel_edges")  # as in Keras 3.12
    assert equivalents.keras_ops_equivalent("tf.image.sobel_edges") is None


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------
def run_cli(*arguments, env=None):
    """`python -m keras_graft_tools inspect ...`: the command as users start it."""
    return subprocess.run(
        [sys.executable, "-m", "keras_graft_tools", "inspect", *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        env={**ENV, **(env or {})},
    )


class Completed(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def inspect_cli(capsys):
    """`keras-graft inspect ...` run in this process, as `cli.main` (a fresh interpreter
    per call would cost each one TensorFlow's start-up; the command's own start-up is
    tested by `test_python_m_keras_graft_inspect_help` and tests/test_cli.py)."""

    def run(*arguments):
        capsys.readouterr()
        try:
            returncode = cli.main(["inspect", *arguments])
        except SystemExit as usage_error:  # argparse's, for a malformed option
            returncode = usage_error.code
        stdout, stderr = capsys.readouterr()
        return Completed(returncode, stdout, stderr)

    return run


@pytest.fixture(scope="module")
def mixed_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inspect") / "mixed.keras"
    keras.backend.clear_session()  # layer names must not depend on the tests run before
    mixed_model().save(path)
    return path


def test_cli_json_is_complete_and_require_sets_the_exit_status(mixed_file, inspect_cli):
    completed = inspect_cli(str(mixed_file), "--json", "--require", "torch,safe")
    assert completed.returncode == 0, completed.stderr
    data = json.loads(completed.stdout)
    assert data["model"] == "mixed" and data["source"] == str(mixed_file)
    assert data["summary"]["layers"] == 4 and data["summary"]["tflite"] == {
        "builtin": 1,
        "select": 2,
        "no": 1,
    }
    for layer in data["layers"]:
        assert set(layer) == {"name", "op", "kind", "op_types", "inputs", "outputs", "checks", "keras_ops"}
        assert set(layer["checks"]) == set(CHECKS)
        assert all(set(v) == {"status", "detail"} for v in layer["checks"].values())
    hsv = next(layer for layer in data["layers"] if layer["op"] == "tf.image.rgb_to_hsv")
    assert hsv["checks"]["tflite"] == {"status": "select", "detail": "needs Select TF ops: RGBToHSV"}
    assert "All op layers pass torch, safe" in completed.stderr

    failing = inspect_cli(str(mixed_file), "--json", "--require", "xla,tflite")
    assert failing.returncode == 1
    json.loads(failing.stdout)
    assert "tf.histogram_fixed_width: xla (no, no XLA kernel for HistogramFixedWidth)" in failing.stderr
    assert "tf.image.rgb_to_hsv: tflite (select" in failing.stderr


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_checks_are_made_on_every_backend(mixed_file, inspect_cli, backend):
    """On JAX and torch, Keras' layer call takes only that backend's tensors: the
    checks call an op layer's op, and report what they report on TensorFlow."""
    expected = json.loads(inspect_cli(str(mixed_file), "--json").stdout)
    completed = run_cli(str(mixed_file), "--json", env={"KERAS_BACKEND": backend})
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert [layer["checks"] for layer in json.loads(completed.stdout)["layers"]] == [
        layer["checks"] for layer in expected["layers"]
    ]


def test_cli_table_for_people(mixed_file, inspect_cli):
    completed = inspect_cli(str(mixed_file))
    assert completed.returncode == 0, completed.stderr
    for text in (
        "keras-graft inspect: mixed",
        "tf.histogram_fixed_width",
        "RGBToHSV",
        "keras.ops.clip",
        "4 op layers: 3 XLA-ready",
    ):
        assert text in completed.stdout


def test_the_table_keeps_every_check_visible_in_a_narrow_terminal():
    audio = keras.Input((16000,))
    spectrum = tf.math.abs(tf.signal.stft(audio, frame_length=400, frame_step=160))
    histogram = tf.histogram_fixed_width(spectrum, [0.0, 1.0], nbins=5)
    report = inspect(keras.Model(audio, [spectrum, histogram]))
    for width, shows_reasons in ((100, False), (200, True)):
        console = Console(width=width, record=True)
        report.print(console)
        lines = [line for line in console.export_text().splitlines() if line.startswith(("┃", "│"))]
        text = "\n".join(lines)
        assert all(check in text for check in CHECKS), text
        assert all(line.rstrip().endswith(("┃", "│")) for line in lines), text  # nothing cut off
        assert ("no XLA kernel" in text) is shows_reasons
        assert ("keras.ops" in text) is shows_reasons
        assert ("+14" in text) is shows_reasons  # stft's graph ops: the first few, then how many more


def test_cli_unloadable_files_and_bad_requirements_exit_2(tmp_path, mixed_file, inspect_cli):
    missing = inspect_cli(str(tmp_path / "missing.keras"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr

    forged = tmp_path / "forged.keras"
    with zipfile.ZipFile(mixed_file) as source, zipfile.ZipFile(forged, "w") as target:
        for item in source.namelist():
            data = source.read(item)
            if item == "config.json":
                data = data.replace(b'"tf.clip_by_value"', b'"tf.io.write_file"')
            target.writestr(item, data)
    refused = inspect_cli(str(forged))
    assert refused.returncode == 2
    assert "could not be loaded in safe mode" in refused.stderr and "io.write_file" in refused.stderr

    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"not a model")
    assert inspect_cli(str(garbage)).returncode == 2

    usage = inspect_cli(str(mixed_file), "--require", "xla,onnx")
    assert usage.returncode == 2 and "comma-separated list of xla, tflite" in usage.stderr


def test_python_m_keras_graft_inspect_help():
    completed = run_cli("--help")
    assert completed.returncode == 0 and "--require" in completed.stdout


# ---------------------------------------------------------------------------
# Keras 2 files
# ---------------------------------------------------------------------------
def test_keras2_files_report_what_convert_would_do_and_where_it_deploys(keras2_files, capsys):
    from keras_graft_tools import cli

    source = keras2_files / "ops.h5"
    assert cli.main(["inspect", str(source), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["keras2"]["kind"] == "h5"
    translated = {note["keras2_class"] for note in data["keras2"]["translations"]}
    assert translated >= {"TFOpLambda", "SlicingOpLambda"}
    assert data["layers"] and all(set(layer["checks"]) == set(CHECKS) for layer in data["layers"])

    assert cli.main(["inspect", str(source)]) == 0
    output = capsys.readouterr().out
    assert "is a Keras 2 file (h5)" in output and "what `keras-graft convert` would translate" in output
    assert "keras-graft inspect:" in output


def test_html_graph_shows_every_layer_keras_op_and_output():
    """Keras' own ops (`+`) are nodes too, each output is marked: no node leads nowhere."""
    x = keras.Input((4,), name="x")
    dense = keras.layers.Dense(4, name="dense")
    summed = dense(x) + x  # Keras 3 records `+` as its own op, not a layer
    sine = tf.math.sin(summed)
    model = keras.Model(x, [sine, summed])
    keras.Model(x, dense(x) * 2)  # a call of the layer in another model is no edge of this one
    graph = html.model_graph(model)
    names = [node["name"] for node in graph["nodes"]]
    add = summed._keras_history.operation.name
    assert {layer.name for layer in model.layers} | {add} == set(names)
    assert graph["outputs"] == ["tf.math.sin", add]
    assert all(source in names and target in names for source, target in graph["edges"])
    assert sorted(graph["edges"]) == sorted(
        [["x", "dense"], ["dense", add], ["x", add], [add, "tf.math.sin"]]
    )
    sources = {source for source, _ in graph["edges"]}
    targets = {target for _, target in graph["edges"]}
    for name in names:  # every node is fed (but the input) and feeds a node or is an output
        assert name == "x" or name in targets
        assert name in sources or name in graph["outputs"]

    page = html.page(inspect(model), graph)
    for name in names:
        assert f'data-layer="{name}"' in page
    assert page.count("<line ") == len(graph["edges"])
    assert 'class="layer pass output" data-layer="tf.math.sin" data-outputs="0"' in page
    assert f'class="layer other output" data-layer="{add}" data-outputs="1"' in page
    assert "→ model output 0" in page and "→ model output 1" in page
    assert 'data-layer="dense">' in page  # neither an output nor an op layer


def test_html_report_shows_the_graph_coloured_by_checks_in_a_real_browser(mixed_file, tmp_path):
    """The page renders in headless Chromium: the DOM holds every layer and
    colour, and the screenshot is a real picture."""
    import shutil

    import matplotlib.image

    assert shutil.which("chromium"), (
        "this test renders the report in a real browser: install Chromium "
        "(`apt-get install chromium` on Debian; .ci/run does)"
    )
    page = tmp_path / "report.html"
    completed = run_cli(str(mixed_file), "--html", str(page))
    assert completed.returncode == 0, completed.stderr
    chromium = ["chromium", "--headless", "--no-sandbox", "--disable-gpu"]
    dom = subprocess.run(
        [*chromium, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    for layer in (
        "values",
        "image",
        "tf.clip_by_value",
        "tf.image.rgb_to_hsv",
        "tf.histogram_fixed_width",
        "tf.image.adjust_hue",
    ):
        assert f'data-layer="{layer}"' in dom.stdout
    # Each is also one of the model's outputs (in the order the model returns them).
    assert 'class="layer pass output" data-layer="tf.clip_by_value" data-outputs="0"' in dom.stdout
    assert 'class="layer fail output" data-layer="tf.histogram_fixed_width" data-outputs="2"' in dom.stdout
    assert 'class="layer conditional output" data-layer="tf.image.rgb_to_hsv" data-outputs="1"' in dom.stdout
    screenshot = tmp_path / "report.png"
    shot = subprocess.run(
        [*chromium, f"--screenshot={screenshot}", "--window-size=1200,700", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    pixels = matplotlib.image.imread(screenshot)
    assert pixels.shape[0] >= 600 and pixels.std() > 0.05  # drawn, not blank


def test_cli_imports_the_module_that_defines_the_model_s_own_ops(tmp_path, monkeypatch, inspect_cli):
    (tmp_path / "my_ops.py").write_text(
        "import tensorflow as tf, keras_graft\n"
        "@keras_graft.op(package='my_ops')\n"
        "def soft_clip(x):\n"
        "    return tf.math.tanh(x)\n"
    )
    saved = subprocess.run(
        [
            sys.executable,
            "-c",
            "import keras, my_ops\n"
            "x = keras.Input((3,))\n"
            "keras.Model(x, my_ops.soft_clip(x)).save('own.keras')\n",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert saved.returncode == 0, saved.stderr

    # Where `python -m keras_graft_tools` would find it: the working directory. The
    # module is imported only by `--import`, so this process has not seen it before.
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_ops", raising=False)

    def inspect_in(*arguments):
        return inspect_cli("own.keras", *arguments)

    without = inspect_in()
    assert without.returncode == 2 and "Use `--import my_ops` (the module that defines it)" in without.stderr
    assert inspect_in("--import", "not_a_module").returncode == 2
    with_module = inspect_in("--import", "my_ops", "--json")
    assert with_module.returncode == 0, with_module.stderr
    assert json.loads(with_module.stdout)["layers"][0]["op"] == "my_ops>soft_clip"


# ---------------------------------------------------------------------------
# The check process and its budget
# ---------------------------------------------------------------------------
def test_constant_folding_over_the_budget_is_not_checked_and_never_passes():
    """`tf.signal.stft` with a 2**27-sample window: its Hann window is computed from
    constants only, and converting folds it (1 GB). The check process is stopped,
    the check is "not checked (budget)", and the next layer is checked as usual."""
    audio = keras.Input(batch_shape=(1, 1 << 27))
    spectrum = tf.signal.stft(audio, frame_length=1 << 27, frame_step=1 << 27)
    x = keras.Input((3,))
    report = inspect(
        keras.Model([audio, x], [spectrum, tf.clip_by_value(x, -1.0, 1.0)]), checks_to_run=("tflite",)
    )
    stft, clip = report.layers
    assert stft.checks["tflite"].status == checks.BUDGET, stft.checks
    assert (
        "memory budget" in stft.checks["tflite"].detail and "--check-memory" in stft.checks["tflite"].detail
    )
    assert clip.checks["tflite"].status == "builtin"
    assert report.failures(["tflite"]) == [
        f"{stft.name}: tflite (not checked (budget), {stft.checks['tflite'].detail})"
    ]
    assert "1 checks not checked (budget)" in report.summary_line()
    assert html.verdict_class(stft) == "unchecked"


def test_a_session_stops_trying_after_its_misses(monkeypatch):
    asked = []

    def over_budget(self, task, budget):
        asked.append(task.header["check"])
        raise BudgetExceededError("went over its time budget (10 s)", reason="time")

    monkeypatch.setattr(sandbox._Worker, "ask", over_budget)
    x = keras.Input((3,))
    model = keras.Model(x, [tf.math.sin(x), tf.math.cos(x), tf.math.tan(x)])
    report = inspect(model, checks_to_run=("xla", "jax"))
    assert len(asked) == sandbox.MAX_MISSES  # after that many misses, no layer is tried again
    assert [layer.checks["xla"].status for layer in report.layers] == [checks.BUDGET] * 3
    assert "was not asked" in report.layers[2].checks["xla"].detail
    assert all(layer.checks["jax"].status == checks.BUDGET for layer in report.layers)
    assert all(not layer.passes("xla") for layer in report.layers)


def test_export_refuses_a_layer_whose_tflite_check_was_not_made(monkeypatch, tmp_path):
    import keras_graft.inspection as inspection
    from keras_graft.errors import ExportError

    monkeypatch.setitem(
        inspection._CHECK_FUNCTIONS,
        "tflite",
        lambda p: checks.Verdict(checks.BUDGET, "went over its memory budget"),
    )
    x = keras.Input((3,))
    with pytest.raises(ExportError, match="could not check tf.math.sin.*budget"):
        keras_graft.export(keras.Model(x, tf.math.sin(x)), tmp_path / "m.tflite", format="tflite")


def test_a_layer_that_reads_no_input_is_checked_too():
    """A stored op that ignores the tensor it is called on (files can hold one):
    its graph has an input no op reads, and still compiles and converts."""
    x = keras.Input((3,))
    ignores_x = keras_graft.TFOp(tf.fill, {"args": [[2, 2], 1.0], "kwargs": {}})
    report = inspect(keras.Model(x, ignores_x(x)), checks_to_run=("xla", "tflite"))
    assert {check: v.status for check, v in report.layers[0].checks.items()} == {
        "xla": "yes",
        "tflite": "builtin",
    }


def test_to_json_is_a_json_document_of_to_dict():
    x = keras.Input((4,))
    report = inspect(keras.Model(x, tf.clip_by_value(x, -1.0, 1.0)), checks_to_run=("gradient",))
    document = report.to_json()
    assert isinstance(document, str)
    assert json.loads(document) == report.to_dict()
    assert report.to_dict()["layers"][0]["checks"]["gradient"]["status"] == "yes"


def test_long_layer_names_are_shortened_with_an_ellipsis_not_wrapped():
    from rich.console import Console

    x = keras.Input((4,))
    long_name = "a_layer_name_far_longer_than_the_column_is_wide"
    model = keras.Model(x, tf.clip_by_value(x, -1.0, 1.0, name=long_name))
    report = inspect(model, checks_to_run=("gradient",))
    console = Console(record=True, width=100)
    console.print(report.table(100))
    lines = console.export_text().splitlines()
    shown = [line for line in lines if "a_layer_name" in line]
    assert len(shown) == 1 and "…" in shown[0], lines
