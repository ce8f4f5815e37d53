"""`keras-graft bench`: what keras-graft costs, measured as ratios in one run.

1. Construction: building a model of N chained wrapped ops; the time per op
   should stay flat as N grows (O(N) overall), next to the same chain in
   `keras.ops` (Keras `Operation`s) and in built-in Keras layers.
2. Run time: a model made of wrapped TF ops against the same computation
   hand-written as a `tf.function`, called on the same batch, with and
   without XLA (`jit_compile=True`). keras-graft should cost nothing: the
   op layers call the very same TF ops inside the traced function.

Timings go here, never into tests; compare the ratios, not the absolute
numbers, which depend on the machine.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import keras_graft  # noqa: F401  (auto-wrapping)
from keras_graft.terminal import NAME_COLUMN, wide_console
from keras_graft_tools import side_by_side

FEATURES, HIDDEN, BATCH = 256, 512, 256


# One block: two ops, written each way. `keras.layers.Activation` is the
# floor for anything that is a Keras `Layer` (keras.ops are `Operation`s,
# which Keras builds without a layer's machinery).
_BLOCKS = {
    "graft": lambda x: tf.math.tanh(tf.math.multiply(x, 1.01)),
    "keras.ops": lambda x: keras.ops.tanh(keras.ops.multiply(x, 1.01)),
    "Keras layers": lambda x: keras.layers.Activation("tanh")(keras.layers.Rescaling(1.01)(x)),
}


def construction_seconds(ops: int, way: str = "graft") -> float:
    """Seconds to build a functional model of `ops` chained ops written `way`."""
    keras.backend.clear_session()
    start = time.perf_counter()
    inputs = keras.Input((8,))
    outputs = inputs
    for _ in range(ops // 2):
        outputs = _BLOCKS[way](outputs)
    keras.Model(inputs, outputs)
    return time.perf_counter() - start


def _weights():
    rng = np.random.default_rng(0)
    return (
        rng.normal(size=(FEATURES, HIDDEN)).astype("float32") / 16,
        rng.normal(size=(HIDDEN, FEATURES)).astype("float32") / 16,
    )


def graft_model() -> keras.Model:
    """A block of wrapped TF ops with constant weights."""
    first, second = _weights()
    inputs = keras.Input((FEATURES,))
    hidden = tf.nn.relu(tf.linalg.matmul(inputs, first))
    hidden = tf.clip_by_value(hidden, 0.0, 6.0)
    # tf.math.add, not `+`: Keras 3.15's own `+` takes a (256, 1) operand
    # for a bias when the batch is 256 too, and adds it along the wrong axis.
    outputs = tf.math.add(
        tf.math.tanh(tf.linalg.matmul(hidden, second)),
        tf.math.reduce_mean(inputs, axis=-1, keepdims=True),
    )
    return keras.Model(inputs, outputs)


def handwritten(jit_compile: bool):
    """The same block in plain TensorFlow."""
    first, second = (tf.constant(w) for w in _weights())

    @tf.function(jit_compile=jit_compile)
    def block(inputs):
        hidden = tf.clip_by_value(tf.nn.relu(tf.linalg.matmul(inputs, first)), 0.0, 6.0)
        return tf.math.tanh(tf.linalg.matmul(hidden, second)) + tf.math.reduce_mean(
            inputs, axis=-1, keepdims=True
        )

    return block


def median_call_seconds(functions: dict, inputs, *, calls: int, repeats: int) -> dict:
    """Median seconds per call of each function, timed in interleaved rounds.

    Interleaving spreads the machine's ups and downs over all of them alike.
    """
    for function in functions.values():
        function(inputs)  # trace and warm up
    samples = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            for _ in range(calls):
                result = function(inputs)
            result.numpy()
            samples[name].append((time.perf_counter() - start) / calls)
    return {name: statistics.median(times) for name, times in samples.items()}


def other_backends(backends, *, quick: bool) -> dict:
    """`keras_graft_tools.backend_bench` on each backend, each in its own process."""
    import json
    import subprocess

    from keras_graft import child_process

    measured = {}
    for backend in backends:
        completed = subprocess.run(
            child_process.python_module("keras_graft_tools.backend_bench", *(["quick"] if quick else [])),
            capture_output=True,
            text=True,
            env={**os.environ, "KERAS_BACKEND": backend},
        )
        if completed.returncode != 0:
            raise RuntimeError(f"the {backend} benchmark failed:\n{completed.stderr[-2000:]}")
        measured[backend] = json.loads(completed.stdout.strip().splitlines()[-1])["results"]
    return measured


# Printed after the tables of `bench --quick`, whose models and rounds are too small to measure.
QUICK_NOTE = (
    "--quick is a smoke test: its models are tiny and its rounds few, so these ratios are "
    "noise, not measurements. Run `keras-graft bench` for numbers to compare."
)


def run(
    *,
    quick: bool = False,
    markdown: bool = False,
    console: Console | None = None,
    backends=(),
    results_dir: str | None = "benchmarks/results",
) -> dict:
    """Runs the benchmarks, prints their tables, returns the numbers.

    `backends` ("jax", "torch") adds keras-graft against native `keras.ops`
    on those Keras backends.
    """
    console = console or wide_console()
    sizes = (20, 40, 80) if quick else (50, 100, 200, 400)
    calls, repeats = (20, 3) if quick else (100, 15)
    inputs = tf.constant(np.random.default_rng(1).normal(size=(BATCH, FEATURES)).astype("float32"))

    construction = {}
    runtime = {}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("construction", total=len(sizes))
        for ops in sizes:
            construction[ops] = {
                way: min(construction_seconds(ops, way) for _ in range(2)) for way in _BLOCKS
            }
            progress.advance(task)
        task = progress.add_task("run time", total=2)
        model = graft_model()
        for jit in (False, True):
            wrapped, plain = tf.function(model, jit_compile=jit), handwritten(jit)
            np.testing.assert_allclose(wrapped(inputs), plain(inputs), rtol=1e-4, atol=1e-5)
            seconds = median_call_seconds(
                {"graft": wrapped, "plain": plain}, inputs, calls=calls, repeats=repeats
            )
            runtime["XLA" if jit else "graph"] = (seconds["graft"], seconds["plain"])
            progress.advance(task)
        side = side_by_side_results(progress, quick=quick)
        cross = {}
        if backends:
            task = progress.add_task("other backends", total=len(backends))
            for backend in backends:
                cross.update(other_backends([backend], quick=quick))
                progress.advance(task)

    numbers = {
        "construction": construction,
        "runtime": runtime,
        # The time per op at the most ops over the time per op at the fewest: 1 is linear.
        "per_op_growth": (construction[sizes[-1]]["graft"] / sizes[-1])
        / (construction[sizes[0]]["graft"] / sizes[0]),
        "backends": cross,
        "side_by_side": side,
    }
    print_tables(numbers, console, markdown=markdown, quick=quick)
    if results_dir:
        data, plot = side_by_side.write_results(side, Path(results_dir))
        console.print(
            f"Side-by-side rounds written to {data}"
            + (f", plot to {plot}" if plot else " (install the [bench] extra, matplotlib, for the plot)")
        )
    return numbers


def print_tables(numbers: dict, console: Console, *, markdown: bool = False, quick: bool = False) -> None:
    """Prints `run`'s numbers as tables (markdown ones for the README with `markdown`)."""
    construction, runtime = numbers["construction"], numbers["runtime"]
    sizes = sorted(construction)
    per_op = {
        ops: {way: seconds / ops * 1000 for way, seconds in ways.items()}
        for ops, ways in construction.items()
    }
    first = per_op[sizes[0]]["graft"]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, TF {tf.__version__}, Keras {keras.__version__}"

    scaling = Table(title=f"Model construction, per op: chained ops alone ({machine})")
    for column in (
        "wrapped ops",
        "build time",
        "per op",
        f"per op vs {sizes[0]} ops",
        "keras.ops per op",
        "Keras layers per op",
    ):
        scaling.add_column(column, justify="right")
    for ops in sizes:
        scaling.add_row(
            str(ops),
            f"{construction[ops]['graft'] * 1000:.0f} ms",
            f"{per_op[ops]['graft']:.2f} ms",
            f"{per_op[ops]['graft'] / first:.2f}x",
            f"{per_op[ops]['keras.ops']:.2f} ms",
            f"{per_op[ops]['Keras layers']:.2f} ms",
        )

    overhead = Table(title=f"Run time, batch {BATCH}x{FEATURES} ({machine})")
    overhead.add_column("mode", justify="right", **NAME_COLUMN)
    for column in ("keras-graft model", "hand-written tf.function", "ratio"):
        overhead.add_column(column, justify="right")
    for mode, (graft, plain) in runtime.items():
        overhead.add_row(mode, f"{graft * 1e6:.0f} µs", f"{plain * 1e6:.0f} µs", f"{graft / plain:.2f}x")

    tables = [scaling, overhead, side_by_side_table(numbers["side_by_side"], machine)]
    cross = numbers["backends"]
    if cross:
        across = Table(
            title=f"Other backends: keras-graft's TF ops against the same model in keras.ops ({machine})"
        )
        for column in ("backend", "workload"):
            across.add_column(column, justify="right", **NAME_COLUMN)
        for column in ("keras-graft", "keras.ops", "ratio"):
            across.add_column(column, justify="right")
        for backend, results in cross.items():
            for workload, (graft, native) in results.items():
                across.add_row(
                    backend,
                    workload,
                    f"{graft * 1e6:.0f} µs",
                    f"{native * 1e6:.0f} µs",
                    f"{graft / native:.2f}x",
                )
        tables.append(across)
    for table in tables:
        console.print(_markdown(table) if markdown else table, soft_wrap=markdown)
    if quick:
        console.print(QUICK_NOTE)


def side_by_side_results(progress: Progress, *, quick: bool) -> dict:
    """Every way to write the same model (`keras_graft_tools.side_by_side`), and Keras 2."""
    sizes, repeats, run_blocks = ((2, 4, 8), 2, 2) if quick else ((50, 200, 800), 3, 20)
    task = progress.add_task("side by side", total=len(sizes) + 4)
    results = side_by_side.measure(
        sizes, repeats=repeats, run_blocks=run_blocks, progress=lambda: progress.advance(task)
    )
    keras2 = side_by_side.measure_keras2(sizes, repeats=repeats, run_blocks=run_blocks)
    for workload, seconds in (keras2 or {}).items():
        results[workload]["Keras 2"] = seconds
    progress.advance(task)
    return results


def side_by_side_table(results: dict, machine: str) -> Table:
    has_keras2 = any("Keras 2" in systems for systems in results.values())
    keras2 = (
        "Keras 2 runs in its own process"
        if has_keras2
        else "no Keras 2 rows: install tf_keras (in the [test] extra) to compare"
    )
    table = Table(
        title=f"Side by side: N blocks of Dense -> relu -> clip, every way to write it ({machine}); "
        f"ratio against keras.ops; {keras2}"
    )
    for column in ("workload", "system"):
        table.add_column(column, justify="right", **NAME_COLUMN)
    for column in ("median", "spread", "vs keras.ops"):
        table.add_column(column, justify="right")
    for row in side_by_side.summary_rows(results):
        table.add_row(*row)
    return table


def _markdown(table: Table) -> str:
    headers = [str(column.header) for column in table.columns]
    rows = list(zip(*(column.cells for column in table.columns)))
    lines = [f"**{table.title}**", "", "| " + " | ".join(headers) + " |", "|" + "---:|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
