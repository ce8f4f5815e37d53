"""`keras-graft bench --side-by-side`: every way to write the same model, in one run.

The model is N blocks of `Dense(64) -> relu -> clip(0, 6)`, written as:

- `graft`: TF ops called on Keras tensors (keras-graft's auto-wrapping);
- `graft Op`: `keras_graft.Op(tf.nn.relu)`, `keras_graft.Op(tf.clip_by_value, ...)`;
- `graft layer`: one `@keras_graft.layer` function of both ops;
- `Lambda`: Keras 3's `keras.layers.Lambda` of the TF ops;
- `keras.ops`: Keras 3's native ops (the Keras-native limit for construction);
- `Keras 2`: `tf_keras` auto-wrapping, in a child process (when installed);
- `TensorFlow`: the same computation as a plain function, eager and `tf.function`
  (the run-time limit; nothing to construct or save).

Workloads: construction at several sizes, `.keras` save and load (Keras 2:
`.h5`; load also at the middle size), an eager call, and compiled
`predict_on_batch` / `train_on_batch` with and without `jit_compile`. Each is
timed in interleaved rounds (every
system once per round), reported as median and spread (min-max), and as
ratios against `keras.ops`. Results go to `benchmarks/results/` with the
machine described, and a PNG plot of construction time against model size.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import keras_graft
from keras_graft import child_process

UNITS, BATCH = 64, 128


@keras_graft.layer(package="keras_graft_bench")
def relu_clip(ctx, x):
    return tf.clip_by_value(tf.nn.relu(x), 0.0, 6.0)


def _activation(system: str, hidden):
    if system == "graft":
        return tf.clip_by_value(tf.nn.relu(hidden), 0.0, 6.0)
    if system == "graft Op":
        return keras_graft.Op(tf.clip_by_value, 0.0, 6.0)(keras_graft.Op(tf.nn.relu)(hidden))
    if system == "graft layer":
        return relu_clip()(hidden)
    if system == "Lambda":
        # output_shape: without it Keras 3 cannot even load the model back.
        return keras.layers.Lambda(
            lambda t: tf.clip_by_value(tf.nn.relu(t), 0.0, 6.0), output_shape=(UNITS,)
        )(hidden)
    return keras.ops.clip(keras.ops.relu(hidden), 0.0, 6.0)


SYSTEMS = ("graft", "graft Op", "graft layer", "Lambda", "keras.ops")


def build(system: str, blocks: int) -> keras.Model:
    inputs = keras.Input((UNITS,))
    hidden = inputs
    for _ in range(blocks):
        hidden = _activation(system, keras.layers.Dense(UNITS)(hidden))
    return keras.Model(inputs, hidden)


def deep_enough_for(blocks: int) -> None:
    """Keras walks a functional model recursively, a few frames per layer:
    800 blocks need more than Python's default recursion limit."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20 * blocks))


def _timed(function: Callable) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _rounds(functions: dict, repeats: int) -> dict:
    """Seconds of each function per round, rounds interleaving all of them."""
    samples = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            samples[name].append(_timed(function))
    return samples


def measure(sizes, *, repeats: int, run_blocks: int, progress=None) -> dict:
    """{workload: {system: [seconds per round]}} for the Keras 3 systems and TF."""
    deep_enough_for(max(sizes))
    results: dict[str, dict[str, list]] = {}

    def constructing(system, blocks):
        def construct():
            keras.backend.clear_session()
            build(system, blocks)

        return construct

    for blocks in sizes:
        results[f"construction, {blocks} blocks"] = _rounds(
            {s: constructing(s, blocks) for s in SYSTEMS}, repeats
        )
        if progress:
            progress()

    x = np.random.default_rng(0).normal(size=(BATCH, UNITS)).astype("float32")
    y = np.zeros((BATCH, UNITS), "float32")
    models = {s: build(s, run_blocks) for s in SYSTEMS}
    with tempfile.TemporaryDirectory() as scratch:

        def save(system):
            return lambda: models[system].save(os.path.join(scratch, f"{system}.keras"))

        def load(system):
            # Lambda needs unsafe mode to load at all (its bytecode).
            return lambda: keras.models.load_model(
                os.path.join(scratch, f"{system}.keras"), safe_mode=system != "Lambda"
            )

        results["save .keras"] = _rounds({s: save(s) for s in SYSTEMS}, repeats)
        results["load .keras"] = _rounds({s: load(s) for s in SYSTEMS}, repeats)
        # Loading grows with the model too: once more at a middle size.
        load_blocks = sorted(sizes)[len(sizes) // 2]
        for system in SYSTEMS:
            build(system, load_blocks).save(os.path.join(scratch, f"{system}.keras"))
        results[f"load .keras, {load_blocks} blocks"] = _rounds({s: load(s) for s in SYSTEMS}, repeats)
    if progress:
        progress()

    kernels = [w.numpy() for w in models["keras.ops"].weights]
    plain_weights = [tf.constant(w) for w in kernels]

    def plain(inputs):
        hidden = inputs
        for kernel, bias in zip(plain_weights[::2], plain_weights[1::2]):
            hidden = tf.clip_by_value(tf.nn.relu(tf.matmul(hidden, kernel) + bias), 0.0, 6.0)
        return hidden

    # Every system compiles its own step functions, which TensorFlow would
    # report as retracing: expected here, so not printed.
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        _run_time(results, models, plain, x, y, repeats=repeats, progress=progress)
    finally:
        logger.setLevel(level)
    return results


def _run_time(results: dict, models: dict, plain: Callable, x, y, *, repeats: int, progress) -> None:
    """Eager and compiled calls of every system, into `results`."""
    compiled_plain = tf.function(plain)
    tf_x = tf.constant(x)
    eager = {s: (lambda m: lambda: m(tf_x))(models[s]) for s in SYSTEMS}
    eager["TensorFlow"] = lambda: plain(tf_x)
    for call in eager.values():
        call()  # the first eager call of each system is not what is measured
    results["eager call"] = _rounds(eager, repeats)
    for jit in (False, True):
        for model in models.values():
            model.compile("sgd", "mse", jit_compile=jit)
            model.predict_on_batch(x)
            model.train_on_batch(x, y)
        suffix = " (XLA)" if jit else ""
        predict = {s: (lambda m: lambda: m.predict_on_batch(x))(models[s]) for s in SYSTEMS}
        predict["TensorFlow"] = tf.function(plain, jit_compile=True) if jit else compiled_plain
        predict["TensorFlow"](tf_x)
        predict["TensorFlow"] = (lambda f: lambda: f(tf_x).numpy())(predict["TensorFlow"])
        results[f"predict_on_batch{suffix}"] = _rounds(predict, repeats * 3)
        results[f"train_on_batch{suffix}"] = _rounds(
            {s: (lambda m: lambda: m.train_on_batch(x, y))(models[s]) for s in SYSTEMS}, repeats * 3
        )
        if progress:
            progress()


def measure_keras2(sizes, *, repeats: int, run_blocks: int) -> dict | None:
    """The same workloads on Keras 2 (`tf_keras`) in a child process, or None."""
    try:
        import tf_keras  # noqa: F401
    except ImportError:
        return None
    # Run by path, not as part of the package: the child must not import
    # keras_graft, whose dispatcher would sit in front of Keras 2's own.
    completed = subprocess.run(
        child_process.python_script(
            Path(__file__).with_name("keras2_bench.py"),
            json.dumps(list(sizes)),
            repeats,
            run_blocks,
            UNITS,
            BATCH,
        ),
        capture_output=True,
        text=True,
        env={**os.environ, "TF_USE_LEGACY_KERAS": "1"},
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the Keras 2 benchmark failed:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, TF {tf.__version__}, Keras {keras.__version__}"


def write_results(results: dict, directory: Path) -> tuple[Path, Path | None]:
    """The raw rounds as JSON, and the construction plot as PNG (when
    matplotlib is installed), in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    data = directory / f"side-by-side-{stamp}.json"
    data.write_text(
        json.dumps(
            {
                "machine": machine(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "results": results,
            },
            indent=1,
        )
    )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return data, None
    sizes = sorted(int(k.split(", ")[1].split()[0]) for k in results if k.startswith("construction"))
    systems = list(results[f"construction, {sizes[0]} blocks"])
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for system in systems:
        axes.plot(
            sizes,
            [statistics.median(results[f"construction, {n} blocks"][system]) for n in sizes],
            marker="o",
            label=system,
        )
    axes.set_xlabel("blocks (Dense -> relu -> clip)")
    axes.set_ylabel("construction time (s, median)")
    axes.set_title(f"Model construction\n{machine()}", fontsize=9)
    axes.legend()
    axes.grid(alpha=0.3)
    plot = directory / f"side-by-side-{stamp}.png"
    figure.tight_layout()
    figure.savefig(plot, dpi=110)
    plt.close(figure)
    return data, plot


def summary_rows(results: dict) -> list[tuple]:
    """(workload, system, median, spread, ratio vs keras.ops) rows."""
    rows = []
    for workload, systems in results.items():
        reference = statistics.median(systems["keras.ops"]) if "keras.ops" in systems else None
        for system, seconds in systems.items():
            median = statistics.median(seconds)
            ratio = f"{median / reference:.2f}x" if reference else ""
            spread = f"{min(seconds) * 1000:.3g}-{max(seconds) * 1000:.3g} ms"
            rows.append((workload, system, f"{median * 1000:.3g} ms", spread, ratio))
    return rows
