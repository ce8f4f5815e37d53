"""The `keras-graft` command line: demo (the main job) and bench."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from rich.console import Console

from keras_graft_tools import bench, cli, demo

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def run_cli(*arguments, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "keras_graft_tools", *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
        cwd=cwd,
    )


def test_demo_runs_every_example_end_to_end(tmp_path):
    completed = run_cli("demo", "--epochs", "1", "--keep", str(tmp_path))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    for name in demo.EXAMPLES:
        assert name in completed.stdout
        assert (tmp_path / f"{name}.keras").stat().st_size > 0
    assert "All 3 examples saved, reloaded in safe mode and predicted identically" in completed.stdout
    assert "counter saved at" in completed.stdout
    # It ends with the inspect table of each model built.
    tables = completed.stdout[completed.stdout.index("All 3 examples") :]
    for name in demo.EXAMPLES:
        assert f"keras-graft inspect: {name}" in tables
    assert tables.count("1 op layers: 1 XLA-ready") == 3


def test_demo_reports_a_failing_example_and_exits_non_zero(monkeypatch, tmp_path):
    monkeypatch.setattr(demo, "predictions_identical", lambda *args: False)
    console = Console(record=True, width=120)
    results = demo.run(["clip_values"], epochs=1, console=console)
    output = console.export_text()
    assert not results[0].ok
    assert "FAILED clip_values: the reloaded model predicts differently" in output
    monkeypatch.setattr(demo, "run", lambda *a, **k: results)
    assert cli.main(["demo", "--only", "clip_values"]) == 1


def test_demo_keeps_going_after_an_example_raises(monkeypatch):
    module = demo.load_example("custom_matmul")
    monkeypatch.setattr(module, "build_model", lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    results = demo.run(["custom_matmul", "clip_values"], epochs=1, console=Console(record=True))
    assert [r.ok for r in results] == [False, True]
    assert results[0].error == "RuntimeError: boom"


def test_predictions_identical_compares_exactly():
    class Fixed:
        def __init__(self, value):
            self.value = value

        def predict(self, x, **kwargs):
            return np.full((len(x), 1), self.value, "float32")

    x = np.zeros((3, 2), "float32")
    assert demo.predictions_identical(Fixed(1.0), Fixed(1.0), x)
    assert not demo.predictions_identical(Fixed(1.0), Fixed(1.0 + 1e-6), x)


def test_unknown_example_and_bad_epochs_are_usage_errors(capsys):
    assert cli.main(["demo", "--only", "nope"]) == 2
    assert "Unknown example 'nope'" in capsys.readouterr().err
    assert cli.main(["demo", "--epochs", "0"]) == 2


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory):
    """One `bench --quick --backends jax` run (about a minute), shared by the bench tests."""
    console = Console(record=True, width=200)
    results = tmp_path_factory.mktemp("bench-results")
    numbers = bench.run(quick=True, console=console, backends=("jax",), results_dir=str(results))
    return numbers, console.export_text(), results


def test_bench_quick_measures_scaling_overhead_and_every_way_side_by_side(quick_bench):
    numbers, output, results = quick_bench
    assert "Model construction" in output and "Run time" in output and "Side by side" in output
    assert " ".join(bench.QUICK_NOTE.split()) in " ".join(output.split())  # quick numbers are noise
    assert set(numbers["runtime"]) == {"graph", "XLA"}
    assert all(graft > 0 and plain > 0 for graft, plain in numbers["runtime"].values())
    assert sorted(numbers["construction"]) == [20, 40, 80]
    assert set(numbers["construction"][20]) == {"graft", "keras.ops", "Keras layers"}
    side = numbers["side_by_side"]
    assert set(side["construction, 8 blocks"]) == {
        "graft",
        "graft Op",
        "graft layer",
        "Lambda",
        "keras.ops",
        "Keras 2",
    }
    assert {
        "save .keras",
        "load .keras",
        "load .keras, 4 blocks",
        "eager call",
        "predict_on_batch (XLA)",
        "train_on_batch",
    } <= set(side)
    assert "TensorFlow" in side["eager call"] and "TensorFlow" in side["predict_on_batch"]
    (written,) = results.glob("side-by-side-*.json")
    assert json.loads(written.read_text())["results"] == side
    (plot,) = results.glob("side-by-side-*.png")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_markdown_tables(quick_bench):
    console = Console(record=True, width=200)
    bench.print_tables(quick_bench[0], console, markdown=True, quick=True)
    output = console.export_text()
    assert "| wrapped ops | build time | per op |" in output and "keras.ops per op" in output
    assert "| mode | keras-graft model | hand-written tf.function | ratio |" in output
    assert "| backend | workload | keras-graft | keras.ops | ratio |" in output


def test_help_lists_the_commands():
    completed = run_cli("--help")
    assert completed.returncode == 0
    assert "demo" in completed.stdout and "bench" in completed.stdout


@pytest.mark.parametrize("name", demo.EXAMPLES)
def test_each_example_runs_as_a_script(name):
    path = os.path.join(os.path.dirname(demo.load_example(name).__file__), f"{name}.py")
    completed = subprocess.run([sys.executable, path], capture_output=True, text=True, timeout=300, env=ENV)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "predicted identically" in completed.stdout


def test_demo_on_another_backend_loads_trains_and_saves_there(tmp_path):
    """Run where `keras_hub` and its kin are planted: neither the demo nor its child on
    the other backend imports them. (`python -m keras_graft_tools` finds its own package
    in the working directory by design, so no launcher is planted here.)"""
    from hostile_keras2 import plant_modules

    marker = tmp_path / "imported"
    (tmp_path / "cwd").mkdir()
    plant_modules(tmp_path / "cwd", marker, launcher_module=False)
    completed = run_cli(
        "demo",
        "--backend",
        "torch",
        "--only",
        "custom_matmul",
        "--epochs",
        "1",
        "--keep",
        str(tmp_path / "kept"),
        cwd=tmp_path / "cwd",
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "saved on TensorFlow, loaded, trained and saved again on torch" in completed.stdout
    assert (tmp_path / "kept" / "custom_matmul.torch.keras").stat().st_size > 0
    assert not marker.exists()


def test_demo_rejects_an_unknown_backend(capsys):
    with pytest.raises(SystemExit):
        cli.main(["demo", "--backend", "mxnet"])
    assert "invalid choice: 'mxnet'" in capsys.readouterr().err


def test_bench_compares_tf_ops_with_keras_ops_on_other_backends(quick_bench):
    numbers, output, _ = quick_bench
    assert "Other backends" in output
    assert set(numbers["backends"]["jax"]) >= {"one op forward (clip)", "training step"}
    assert all(graft > 0 and native > 0 for graft, native in numbers["backends"]["jax"].values())


def test_backend_bench_names_the_thread_settings_it_ran_with(monkeypatch):
    from keras_graft_tools import backend_bench

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    found = backend_bench.settings()
    assert found["OMP_WAIT_POLICY"] == "PASSIVE"
    assert {"tf_intra_op_threads", "tf_inter_op_threads"} <= found.keys()


def test_bench_rejects_unknown_backends(capsys):
    with pytest.raises(SystemExit):
        cli.main(["bench", "--backends", "jax,mxnet"])
    assert "comma-separated list of jax and torch" in capsys.readouterr().err


def _without_tf_log_setting():
    return {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


@pytest.mark.parametrize("argument", ["--help", "--version"])
def test_help_and_version_answer_without_importing_tensorflow(argument):
    script = (
        "import sys, keras_graft_tools.command\n"
        f"try:\n    keras_graft_tools.command.main([{argument!r}])\nexcept SystemExit as exit:\n    code = exit.code\n"
        "print('tensorflow imported:', 'tensorflow' in sys.modules, 'exit', code)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=_without_tf_log_setting(),
    )
    assert "tensorflow imported: False exit 0" in completed.stdout, completed.stderr
    assert ("usage: keras-graft" if argument == "--help" else "keras-graft 0.") in completed.stdout


def test_a_wrong_inspect_check_is_refused_without_importing_tensorflow():
    script = (
        "import sys, keras_graft_tools.command\n"
        "try:\n    keras_graft_tools.command.main(['inspect', 'm.keras', '--require', 'xla,speed'])\n"
        "except SystemExit as exit:\n    code = exit.code\n"
        "print('tensorflow imported:', 'tensorflow' in sys.modules, 'exit', code)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=_without_tf_log_setting(),
    )
    assert "tensorflow imported: False exit 2" in completed.stdout, completed.stderr
    assert "usage: keras-graft inspect" in completed.stderr
    assert "xla, tflite, gradient, jax, torch, safe; got 'xla,speed'" in completed.stderr


def test_the_command_names_the_checks_inspect_has():
    from keras_graft import inspection

    assert cli.INSPECT_CHECKS == inspection.CHECKS


def test_a_commands_wrong_option_shows_that_commands_usage():
    completed = subprocess.run(
        [sys.executable, "-m", "keras_graft_tools.command", "bench", "--bogus"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert "usage: keras-graft bench" in completed.stderr
    assert "keras-graft bench: error: unrecognized arguments: --bogus" in completed.stderr


def test_tensorflow_start_up_noise_is_held_back_unless_asked_for(tmp_path):
    command = [
        sys.executable,
        "-m",
        "keras_graft_tools.command",
        "demo",
        "--only",
        "clip_values",
        "--epochs",
        "1",
    ]
    quiet = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env=_without_tf_log_setting()
    )
    assert quiet.returncode == 0, quiet.stderr
    assert "oneDNN" not in quiet.stderr and "absl::InitializeLog" not in quiet.stderr
    assert "three ways to put TF ops in Keras models" in quiet.stdout
    asked = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}
    )
    assert "oneDNN" in asked.stderr
