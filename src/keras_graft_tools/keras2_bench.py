"""The Keras 2 (`tf_keras`) side of `keras_graft_tools.side_by_side`, run by path in a
child process with `TF_USE_LEGACY_KERAS=1`, without importing keras_graft:
`python keras2_bench.py SIZES REPEATS RUN_BLOCKS UNITS BATCH` prints one JSON
line of `{workload: [seconds per round]}`.
"""

import json
import os
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf
import tf_keras


def seconds_per_round(function, repeats: int) -> list:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return samples


def main(sizes, repeats: int, run_blocks: int, units: int, batch: int) -> dict:
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20 * max(sizes)))  # deep models

    def build(blocks):
        inputs = tf_keras.Input((units,))
        hidden = inputs
        for _ in range(blocks):
            hidden = tf.clip_by_value(tf.nn.relu(tf_keras.layers.Dense(units)(hidden)), 0.0, 6.0)
        return tf_keras.Model(inputs, hidden)

    def construct(blocks):
        tf_keras.backend.clear_session()
        build(blocks)

    results = {
        f"construction, {blocks} blocks": seconds_per_round(lambda: construct(blocks), repeats)
        for blocks in sizes
    }
    model = build(run_blocks)
    x = np.random.default_rng(0).normal(size=(batch, units)).astype("float32")
    y = np.zeros((batch, units), "float32")
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "model.h5")
        results["save .keras"] = seconds_per_round(lambda: model.save(path), repeats)
        results["load .keras"] = seconds_per_round(lambda: tf_keras.models.load_model(path), repeats)
    results["eager call"] = seconds_per_round(lambda: model(x), repeats)
    for jit in (False, True):
        model.compile("sgd", "mse", jit_compile=jit)
        model.predict_on_batch(x)
        model.train_on_batch(x, y)
        suffix = " (XLA)" if jit else ""
        results[f"predict_on_batch{suffix}"] = seconds_per_round(
            lambda: model.predict_on_batch(x), repeats * 3
        )
        results[f"train_on_batch{suffix}"] = seconds_per_round(
            lambda: model.train_on_batch(x, y), repeats * 3
        )
    return results


if __name__ == "__main__":
    arguments = sys.argv[1:]
    print(json.dumps(main(json.loads(arguments[0]), *map(int, arguments[1:]))))
