"""The cross-backend part of `keras-graft bench --backends jax,torch`.

The same small models, once with TF ops (keras-graft) and once in native
`keras.ops`, timed on one Keras backend in one process (the backend is fixed
per process), in interleaved rounds: forward per op, forward of a whole
model, a training step, and the floor: an op that does nothing, crossing
into TensorFlow and back (on JAX through the callback path), whose time over
no op is the bridge's fixed cost per crossing. Run by `bench.py` as
`KERAS_BACKEND=jax python -m keras_graft_tools.backend_bench QUICK`, which prints
one JSON line.

Where the time of one workload goes, as cProfile sees it (the functions
that cost most in themselves, over 200 calls of the keras-graft model):

    KERAS_BACKEND=torch python -m keras_graft_tools.backend_bench profile "training step"

The JSON names the thread settings it ran with (`settings`): torch's
OpenMP threads spin after each parallel region unless
`OMP_WAIT_POLICY=PASSIVE`, and on two busy cores that stalls whatever runs
next, on both sides.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import keras
import numpy as np
import tensorflow as tf

import keras_graft  # noqa: F401  (auto-wrapping)

BATCH, FEATURES = 64, 256
# The workload that measures an empty crossing.
FLOOR = "floor: empty crossing (identity)"


def _models(kind: str):
    """(forward model of one op, trainable block) in `kind`: "graft" or "native"."""
    x = keras.Input((FEATURES,))
    if kind == "graft":
        one_op = tf.clip_by_value(x, -1.0, 1.0)
    else:
        one_op = keras.ops.clip(x, -1.0, 1.0)
    hidden = keras.layers.Dense(FEATURES)(x)
    if kind == "graft":
        hidden = tf.clip_by_value(tf.nn.relu(hidden), 0.0, 6.0)
    else:
        hidden = keras.ops.clip(keras.ops.relu(hidden), 0.0, 6.0)
    block = keras.Model(x, keras.layers.Dense(1)(hidden))
    block.compile("sgd", "mse")
    return keras.Model(x, one_op), block


def _callback_models():
    """An op without an XLA kernel: bicubic resize (JAX's callback path)."""
    x = keras.Input((16, 16, 3))
    graft = keras.Model(x, tf.image.resize(x, [32, 32], method="bicubic"))
    native = keras.Model(x, keras.ops.image.resize(x, (32, 32), interpolation="bicubic"))
    return graft, native


class _EmptyCallback(keras.layers.Layer):
    """JAX: `tf.identity` through the bridge's callback path (`jax.pure_callback`
    into TF and back), which the op itself would not take (XLA compiles it)."""

    def compute_output_spec(self, x):
        return keras.KerasTensor(x.shape, x.dtype)

    def call(self, x):
        from keras_graft.backends import jax_bridge

        spec = tf.TensorSpec(tuple(x.shape), str(x.dtype))
        concrete = tf.function(lambda t: [tf.identity(t)], autograph=False).get_concrete_function(spec)
        return jax_bridge._callback(lambda: concrete, [spec])(x)[0]


def _floor_models():
    """The bridge's fixed cost: an op that does nothing, crossing into TF and
    back (torch: `tf.identity`; JAX: its callback path), against no op."""
    x = keras.Input((16, 16, 3))
    if keras.backend.backend() == "jax":
        crossed = _EmptyCallback()(x)
    else:
        crossed = tf.identity(x)
    return keras.Model(x, crossed), keras.Model(x, keras.layers.Identity()(x))


def _median_seconds(functions: dict, *, calls: int, repeats: int) -> dict:
    for function in functions.values():
        function()  # compile and warm up
    samples = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            for _ in range(calls):
                keras.ops.convert_to_numpy(keras.tree.flatten(function())[0])
            samples[name].append((time.perf_counter() - start) / calls)
    return {name: statistics.median(times) for name, times in samples.items()}


def _workloads() -> dict:
    """{name: (keras-graft call, keras.ops call)}."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, FEATURES)).astype("float32")
    y = rng.normal(size=(BATCH, 1)).astype("float32")
    images = rng.normal(size=(8, 16, 16, 3)).astype("float32")
    (graft_op, graft_block), (native_op, native_block) = _models("graft"), _models("native")
    graft_resize, native_resize = _callback_models()
    graft_floor, native_floor = _floor_models()
    return {
        "one op forward (clip)": (
            lambda: graft_op.predict_on_batch(x),
            lambda: native_op.predict_on_batch(x),
        ),
        "op without XLA kernel (bicubic resize)": (
            lambda: graft_resize.predict_on_batch(images),
            lambda: native_resize.predict_on_batch(images),
        ),
        # What part of the ratios above is the bridge's fixed cost, per crossing.
        FLOOR: (
            lambda: graft_floor.predict_on_batch(images),
            lambda: native_floor.predict_on_batch(images),
        ),
        "model forward": (lambda: graft_block.predict_on_batch(x), lambda: native_block.predict_on_batch(x)),
        "training step": (
            lambda: graft_block.train_on_batch(x, y),
            lambda: native_block.train_on_batch(x, y),
        ),
    }


def measure(quick: bool) -> dict:
    calls, repeats = (5, 3) if quick else (30, 9)
    results = {}
    for name, (graft, native) in _workloads().items():
        seconds = _median_seconds({"graft": graft, "native": native}, calls=calls, repeats=repeats)
        results[name] = (seconds["graft"], seconds["native"])
    return {"backend": keras.backend.backend(), "settings": settings(), "results": results}


def settings() -> dict:
    """The thread settings the numbers were measured with: on a few cores
    they move both sides' times by up to tenfold (README, "What it costs")."""
    found = {
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
    }
    if keras.backend.backend() == "torch":
        import torch

        found["torch_threads"] = torch.get_num_threads()
    return found


def profile(workload: str, calls: int = 200, top: int = 25) -> None:
    """Prints cProfile's `top` functions by own time over `calls` calls of
    the keras-graft side of `workload` (warmed up first)."""
    import cProfile
    import pstats

    graft, _ = _workloads()[workload]
    for _ in range(20):
        graft()
    profiler = cProfile.Profile()
    profiler.runcall(lambda: [graft() for _ in range(calls)])
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


if __name__ == "__main__":
    if sys.argv[1:2] == ["profile"]:
        profile(sys.argv[2])
    else:
        print(json.dumps(measure(quick=sys.argv[1:] == ["quick"])))
