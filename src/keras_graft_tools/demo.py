"""`keras-graft demo`: the seed article's three models, end to end.

For each example in `keras_graft.examples` (the repository's `examples/`):
build the model, train it briefly on synthetic data, save it to `.keras`,
load it back with `keras.models.load_model` in its default safe mode, and
check that the reloaded model predicts exactly the same. A table sums up,
then `keras-graft inspect`'s table of each model tells where its op layers
deploy; the exit code is non-zero if any check fails.

An example module provides `build_model()` (an uncompiled model),
`synthetic_data()` (features and targets) and optionally
`check_reloaded(model, reloaded)`, which raises `AssertionError` on a
mismatch and returns a short description of what it checked.
"""

from __future__ import annotations

import importlib
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import keras
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from keras_graft import child_process
from keras_graft.core.op_layer import TFOp
from keras_graft.inspection import inspect, sandbox
from keras_graft.layers.function_layer import FunctionLayer
from keras_graft.terminal import NAME_COLUMN, escape, wide_console

EXAMPLES = ("clip_values", "custom_matmul", "sequence_counter")
BATCH_SIZE = 32


@dataclass
class ExampleResult:
    """What happened to one example."""

    name: str
    layers: str = ""
    params: int = 0
    epochs: int = 0
    first_loss: float = math.nan
    final_loss: float = math.nan
    saved_bytes: int = 0
    reloaded: bool = False
    identical: bool = False
    detail: str = ""
    seconds: float = 0.0
    error: str | None = None
    model: keras.Model | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None and self.reloaded and self.identical


class ProgressCallback(keras.callbacks.Callback):
    """Advances a `rich` progress bar per training batch, showing the loss."""

    def __init__(self, progress: Progress, task):
        super().__init__()
        self.progress, self.task = progress, task

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        self.progress.update(self.task, advance=1, loss=f"{float(loss):.4f}" if loss is not None else "")


def load_example(name: str) -> ModuleType:
    """The example module `keras_graft.examples.<name>`."""
    if name not in EXAMPLES:
        raise ValueError(f"Unknown example {name!r}; choose from {', '.join(EXAMPLES)}.")
    return importlib.import_module(f"keras_graft.examples.{name}")


def predictions_identical(model: keras.Model, reloaded: keras.Model, x: np.ndarray) -> bool:
    """Whether both models predict bit-for-bit the same on `x`."""
    ours = keras.tree.flatten(model.predict(x, batch_size=BATCH_SIZE, verbose=0))
    theirs = keras.tree.flatten(reloaded.predict(x, batch_size=BATCH_SIZE, verbose=0))
    return len(ours) == len(theirs) and all(np.array_equal(a, b) for a, b in zip(ours, theirs))


def example_name(module: ModuleType) -> str:
    """`clip_values` for `keras_graft.examples.clip_values`, or a script's file name."""
    return Path(module.__file__).stem


def run_example(module: ModuleType, *, epochs: int, directory: Path, progress: Progress) -> ExampleResult:
    """Builds, trains, saves, reloads and compares one example; never raises."""
    name = example_name(module)
    result = ExampleResult(name=name, epochs=epochs)
    start = time.perf_counter()
    try:
        keras.utils.set_random_seed(0)
        model = result.model = module.build_model()
        result.params = model.count_params()
        result.layers = ", ".join(
            f"{layer.name} ({type(layer).__name__})"
            for layer in model.layers
            if isinstance(layer, (TFOp, FunctionLayer))
        )
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
        x, y = module.synthetic_data()
        task = progress.add_task(name, total=epochs * math.ceil(len(x) / BATCH_SIZE), loss="")
        history = model.fit(
            x,
            y,
            epochs=epochs,
            batch_size=BATCH_SIZE,
            verbose=0,
            callbacks=[ProgressCallback(progress, task)],
        )
        result.first_loss = float(history.history["loss"][0])
        result.final_loss = float(history.history["loss"][-1])

        path = directory / f"{name}.keras"
        model.save(path)
        result.saved_bytes = path.stat().st_size
        reloaded = keras.models.load_model(path)  # safe mode, no custom_objects
        result.reloaded = True

        check = getattr(module, "check_reloaded", None)
        if check is not None:
            result.detail = check(model, reloaded)
        result.identical = predictions_identical(model, reloaded, x)
        if not result.identical:
            result.error = "the reloaded model predicts differently"
    except Exception as error:  # Reported in the table; the demo goes on.
        result.error = f"{type(error).__name__}: {error}"
    result.seconds = time.perf_counter() - start
    return result


def summary_table(results: list[ExampleResult]) -> Table:
    table = Table(
        title="keras-graft demo: three ways to put TF ops in Keras models "
        "(a TF op on Keras tensors, a layer with weights, a layer with state)",
        caption="reloaded: keras.models.load_model in safe mode; same: identical predictions",
    )
    table.add_column("example", **NAME_COLUMN)
    for column, justify in (
        ("params", "right"),
        ("epochs", "right"),
        ("loss", "right"),
        ("saved", "right"),
        ("reloaded", "center"),
        ("same", "center"),
        ("time", "right"),
    ):
        table.add_column(column, justify=justify, no_wrap=True)

    def mark(flag: bool) -> str:
        return "[green]yes[/]" if flag else "[red]NO[/]"

    for r in results:
        table.add_row(
            escape(r.name),
            str(r.params),
            str(r.epochs),
            f"{r.first_loss:.3g} → {r.final_loss:.3g}",
            f"{r.saved_bytes / 1024:.0f} KiB",
            mark(r.reloaded),
            mark(r.identical),
            f"{r.seconds:.1f}s",
        )
    return table


def run(
    examples=EXAMPLES,
    *,
    epochs: int = 3,
    keep: str | None = None,
    console: Console | None = None,
    directory: Path | None = None,
) -> list[ExampleResult]:
    """Runs examples (names or modules), prints progress and a summary, returns the results.

    The models are saved in `keep` (kept and announced), `directory` (for
    the caller), or a scratch directory.
    """
    console = console or wide_console()
    modules = [load_example(e) if isinstance(e, str) else e for e in examples]
    sandbox.warm_up()  # inspect's check process starts while the examples train
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(keep) if keep else directory or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        columns = (
            TextColumn("{task.description:>18}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            results = [run_example(m, epochs=epochs, directory=directory, progress=progress) for m in modules]
    console.print(summary_table(results))
    for r in results:
        for line in (f"layers: {r.layers}" if r.layers else "", r.detail):
            if line:
                console.print(f"  {escape(r.name)}: {escape(line)}")
    failed = [r for r in results if not r.ok]
    for r in failed:
        console.print(f"[red]FAILED[/] {escape(r.name)}: {escape(r.error or 'a check did not hold')}")
    if not failed:
        saved = f" (kept in {keep})" if keep else ""
        console.print(
            f"[green]All {len(results)} examples saved, reloaded in safe mode and predicted identically{saved}.[/]"
        )
    print_inspection([r for r in results if r.model is not None], console)
    return results


def print_inspection(results: list[ExampleResult], console: Console) -> None:
    """`keras-graft inspect`'s table of each model built: where its op layers deploy."""
    for result in results:
        report = inspect(result.model, console=console)
        report.model = result.name
        console.print(report.table(console.width))


def run_checked(*examples, epochs: int = 3) -> None:
    """Runs examples like `run`, exiting with status 1 if any check fails."""
    if not all(result.ok for result in run(examples, epochs=epochs)):
        raise SystemExit(1)


# ---------------------------------------------------------------------------
# Another backend: saved on TensorFlow, loaded and trained on JAX or torch
# ---------------------------------------------------------------------------
BACKENDS = ("tensorflow", "jax", "torch")


@dataclass
class BackendResult:
    """What happened to one example's file on another backend."""

    name: str
    max_difference: float = math.nan
    first_loss: float = math.nan
    final_loss: float = math.nan
    trained: bool = False
    reloaded_same: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.max_difference <= 1e-4 and self.trained and self.reloaded_same


def save_reference_predictions(results: list[ExampleResult], directory: Path) -> None:
    """Next to each saved example, the TensorFlow predictions of its file."""
    for result in results:
        if result.ok:
            model = keras.models.load_model(directory / f"{result.name}.keras")
            x, _ = load_example(result.name).synthetic_data()
            np.save(directory / f"{result.name}.tf.npy", model.predict(x, batch_size=BATCH_SIZE, verbose=0))


def check_on_backend(directory: Path, names, *, epochs: int, console: Console) -> list[BackendResult]:
    """In a process whose Keras backend is JAX or torch: load each TF-saved
    example in safe mode, compare its predictions with TensorFlow's, train it,
    save it and reload it there."""
    backend = keras.backend.backend()
    results = []
    for name in names:
        result = BackendResult(name)
        try:
            x, y = load_example(name).synthetic_data()
            model = keras.models.load_model(directory / f"{name}.keras")
            expected = np.load(directory / f"{name}.tf.npy")
            predicted = keras.ops.convert_to_numpy(model.predict(x, batch_size=BATCH_SIZE, verbose=0))
            result.max_difference = float(np.abs(predicted - expected).max())
            before = [np.array(keras.ops.convert_to_numpy(w)) for w in model.trainable_weights]
            model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
            history = model.fit(x, y, epochs=epochs, batch_size=BATCH_SIZE, verbose=0)
            result.first_loss = float(history.history["loss"][0])
            result.final_loss = float(history.history["loss"][-1])
            result.trained = all(
                not np.array_equal(old, keras.ops.convert_to_numpy(w))
                for old, w in zip(before, model.trainable_weights)
            )
            path = directory / f"{name}.{backend}.keras"
            model.save(path)
            result.reloaded_same = predictions_identical(model, keras.models.load_model(path), x)
        except Exception as error:  # Reported in the table; the demo goes on.
            result.error = f"{type(error).__name__}: {error}"
        results.append(result)
    table = Table(
        title=f"saved on TensorFlow, loaded, trained and saved again on {backend}",
        caption="vs TF: largest difference from TensorFlow's predictions of the same file",
    )
    table.add_column("example", **NAME_COLUMN)
    for column in ("vs TF", f"loss on {backend}", "all weights trained", "reloaded same"):
        table.add_column(column, no_wrap=True)
    for r in results:
        table.add_row(
            escape(r.name),
            f"{r.max_difference:.1e}",
            f"{r.first_loss:.3g} → {r.final_loss:.3g}",
            "[green]yes[/]" if r.trained else "[red]NO[/]",
            "[green]yes[/]" if r.reloaded_same else "[red]NO[/]",
        )
    console.print(table)
    for r in results:
        if not r.ok:
            console.print(
                f"[red]FAILED[/] {escape(r.name)} on {backend}: {escape(r.error or 'a check did not hold')}"
            )
    return results


def run_on_backend(
    backend: str,
    examples=EXAMPLES,
    *,
    epochs: int = 3,
    keep: str | None = None,
    console: Console | None = None,
) -> bool:
    """`run` on TensorFlow, then `check_on_backend` in a child process with
    `KERAS_BACKEND=backend` (Keras fixes the backend per process)."""
    import os
    import subprocess

    console = console or wide_console()
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(keep) if keep else Path(scratch)
        results = run(examples, epochs=epochs, keep=keep, console=console, directory=directory)
        save_reference_predictions(results, directory)
        names = [r.name for r in results if r.ok]
        console.print(f"\nLoading the saved files on [bold]{backend}[/] ...")
        # Through the command's launcher, so TF's start-up noise stays held back.
        launch = (
            "import runpy, keras_graft_tools.command; keras_graft_tools.command.import_tensorflow_quietly(); "
            "runpy.run_module('keras_graft_tools.demo', run_name='__main__')"
        )
        child = subprocess.run(
            child_process.python_code(launch, directory.resolve(), epochs, *names),
            cwd=directory,
            env={**os.environ, "KERAS_BACKEND": backend},
        )
    return all(r.ok for r in results) and child.returncode == 0


if __name__ == "__main__":  # the child of `run_on_backend`
    import sys

    _directory, _epochs, *_names = sys.argv[1:]
    _results = check_on_backend(Path(_directory), _names, epochs=int(_epochs), console=wide_console())
    sys.exit(0 if _results and all(r.ok for r in _results) else 1)
