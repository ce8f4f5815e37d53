"""Multi-worker training of `@keras_graft.layer` layers with tf.distribute.

`python examples/multi_worker.py` starts two worker processes on 127.0.0.1
(ports picked free), each running this file with `--worker INDEX`. The
workers form a `tf.distribute.MultiWorkerMirroredStrategy` cluster (one
replica each) and train a model made of `@keras_graft.layer` layers for
4 steps with a standard `tf.distribute` training loop (`strategy.run` of a
step that applies a Keras optimizer; Keras 3's own `fit` does not run under
`MultiWorkerMirroredStrategy`: keras-team/keras#20585). Each worker writes
what it ended with to a JSON file, and the launcher checks that the workers
agree and that the state counters mean what they say:

- `replica_calls` ("sum", +1 per call): 4 steps x 2 replicas = 8;
- `steps` ("only_first_replica", +1 per call): 4;
- `examples` (int64 "sum", + the batch size seen by each replica): 4 steps x
  a global batch of 8 = 32.

The launcher waits at most `timeout` seconds and kills the workers it
started, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

import keras_graft
from keras_graft.examples.custom_matmul import custom_matmul

WORKERS = 2
STEPS = 4
GLOBAL_BATCH = 8


@keras_graft.layer
def step_counters(ctx, x):
    """Pass `x` through, counting calls and examples across the cluster."""
    ctx.state("replica_calls").assign_add(1.0)
    ctx.state("steps", aggregation="only_first_replica").assign_add(1.0)
    ctx.state("examples", dtype="int64").assign_add(tf.shape(x, out_type=tf.int64)[0])
    return x


def build_model() -> keras.Model:
    """Input((5,)) -> step_counters -> custom_matmul(units=3) -> Dense(1)."""
    inputs = keras.Input((5,))
    hidden = step_counters(name="counters")(inputs)
    hidden = custom_matmul(units=3)(hidden)
    outputs = keras.layers.Dense(1)(hidden)
    return keras.Model(inputs, outputs, name="multi_worker")


def _dataset() -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS * GLOBAL_BATCH, 5)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    return dataset.repeat().with_options(options)


def worker(index: int, ports: list[int], result_path: str) -> None:
    """One worker of the cluster: train, then write its results as JSON."""
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
            "task": {"type": "worker", "index": index},
        }
    )
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model()
        optimizer = keras.optimizers.SGD(0.01)
        optimizer.build(model.trainable_variables)
    batches = iter(strategy.experimental_distribute_dataset(_dataset()))

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            per_example = keras.losses.mean_squared_error(y, model(x, training=True))
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=GLOBAL_BATCH)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    @tf.function
    def train_step(batches):
        x, y = next(batches)
        losses = strategy.run(replica_step, args=(x, y))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    losses = [float(train_step(batches)) for _ in range(STEPS)]
    counters = model.get_layer("counters").named_variables
    result = {
        "index": index,
        "pid": os.getpid(),
        "replicas": strategy.num_replicas_in_sync,
        "counters": {name: variable.numpy().item() for name, variable in counters.items()},
        "weights": [w.tolist() for w in model.get_weights()],
        "losses": losses,
    }
    with open(result_path, "w") as file:
        json.dump(result, file)


class WorkerError(RuntimeError):
    """The workers failed or ran out of time; `pids` are those started."""

    def __init__(self, message, pids):
        super().__init__(message)
        self.pids = pids


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, errors="replace") as file:
            return "".join(file.readlines()[-lines:])
    except OSError:
        return "(no log)"


def run(timeout: float = 240.0, workdir: str | None = None) -> list[dict]:
    """Start the workers, wait for them (at most `timeout` s), return results.

    Raises `WorkerError` (with the workers' log tails) if one fails or time
    runs out; the worker processes are killed and reaped in every case.
    """
    with tempfile.TemporaryDirectory() as scratch:
        workdir = workdir or scratch
        ports = free_ports(WORKERS)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        env.pop("TF_CONFIG", None)
        processes, logs, results = [], [], []
        try:
            for index in range(WORKERS):
                log_path = os.path.join(str(workdir), f"worker{index}.log")
                logs.append(log_path)
                with open(log_path, "w") as log:
                    processes.append(
                        subprocess.Popen(
                            [
                                sys.executable,
                                os.path.abspath(__file__),
                                "--worker",
                                str(index),
                                "--ports",
                                ",".join(map(str, ports)),
                                "--result",
                                os.path.join(str(workdir), f"worker{index}.json"),
                            ],
                            env=env,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL,
                            start_new_session=True,  # its own process group
                        )
                    )
            deadline = time.monotonic() + timeout
            for process in processes:
                remaining = deadline - time.monotonic()
                try:
                    process.wait(timeout=max(remaining, 0.01))
                except subprocess.TimeoutExpired:
                    raise WorkerError(
                        f"the workers did not finish within {timeout:g} s.\n"
                        + "\n".join(f"--- worker {i} ---\n{_tail(p)}" for i, p in enumerate(logs)),
                        [p.pid for p in processes],
                    ) from None
            failed = [i for i, p in enumerate(processes) if p.returncode != 0]
            if failed:
                raise WorkerError(
                    "worker(s) "
                    + ", ".join(map(str, failed))
                    + " failed.\n"
                    + "\n".join(
                        f"--- worker {i} (exit {processes[i].returncode}) ---\n{_tail(logs[i])}"
                        for i in failed
                    ),
                    [p.pid for p in processes],
                )
            for index in range(WORKERS):
                with open(os.path.join(str(workdir), f"worker{index}.json")) as file:
                    results.append(json.load(file))
        finally:
            for process in processes:
                if process.poll() is None:
                    try:
                        os.killpg(process.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    process.wait()
        return results


def check(results: list[dict]) -> None:
    """The workers agree, and each counter means what it says."""
    expected = {
        "replica_calls": float(STEPS * WORKERS),
        "steps": float(STEPS),
        "examples": STEPS * GLOBAL_BATCH,
    }
    for result in results:
        assert result["replicas"] == WORKERS, result["replicas"]
        assert result["counters"] == expected, (result["index"], result["counters"])
        assert np.all(np.isfinite(result["losses"])), result["losses"]
    first = results[0]["weights"]
    for result in results[1:]:
        for a, b in zip(first, result["weights"]):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", type=int, help="run as this worker (internal)")
    parser.add_argument("--ports", help="comma-separated worker ports (internal)")
    parser.add_argument("--result", help="where a worker writes its JSON (internal)")
    parser.add_argument("--timeout", type=float, default=240.0)
    args = parser.parse_args(argv)
    if args.worker is not None:
        worker(args.worker, [int(p) for p in args.ports.split(",")], args.result)
        return
    started = time.monotonic()
    results = run(timeout=args.timeout)
    check(results)
    counters = results[0]["counters"]
    print(
        f"multi_worker: {WORKERS} workers trained {STEPS} steps in "
        f"{time.monotonic() - started:.0f} s with identical weights; "
        f"replica_calls={counters['replica_calls']:g} (sum), "
        f"steps={counters['steps']:g} (only_first_replica), "
        f"examples={counters['examples']} (sum)."
    )


if __name__ == "__main__":
    main()
