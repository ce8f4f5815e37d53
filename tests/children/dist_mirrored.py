"""Runs `@keras_graft.layer` models under MirroredStrategy on 2 logical CPUs.

Run by `test_distribute.py` in a fresh process (the CPU must be split into
two logical devices before TensorFlow initialises). Prints one JSON object on
its last line: what each scenario ended with.
"""

import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_graft  # noqa: E402

STEPS = 4
GLOBAL_BATCH = 4  # 2 examples per replica


def _replica_id():
    """This replica's index as a float (0 outside a replica context)."""
    context = tf.distribute.get_replica_context()
    if context is None:
        return tf.constant(0.0)
    return tf.cast(context.replica_id_in_sync_group, tf.float32)


@keras_graft.layer
def counters(ctx, x):
    """Every kind of state update, each in its own variable."""
    # Counters: +1 per replica per step.
    for aggregation in ("sum", "mean", "only_first_replica"):
        ctx.state(aggregation, aggregation=aggregation).assign_add(1.0)
    ctx.state("int_sum", dtype="int32").assign_add(1)
    ctx.state("examples", dtype="int64").assign_add(tf.shape(x, out_type=tf.int64)[0])
    # Increments that differ per replica: replica r adds r + 1.
    increment = _replica_id() + 1.0
    for aggregation in ("sum", "mean", "only_first_replica"):
        ctx.state(f"{aggregation}_by_replica", aggregation=aggregation).assign_add(increment)
    ctx.state("down", initializer="ones").assign_sub(increment)
    # Assignments.
    ctx.state("batch_mean", aggregation="mean").assign(tf.reduce_mean(x))
    ctx.state("first_id", aggregation="only_first_replica").assign(_replica_id() + 10.0)
    ctx.state("constant").assign(5.0)  # "sum" accepts constants
    return x


@keras_graft.layer
def assigns_batch_mean(ctx, x):
    ctx.state("last").assign(tf.reduce_mean(x))  # "sum": not expressible
    return x


@keras_graft.layer
def custom_matmul(ctx, x, units=3):
    kernel = ctx.weight("kernel", (x.shape[-1], units), initializer="glorot_uniform")
    return tf.matmul(x, kernel)


def _replicas_of(variable):
    """The per-replica copies of a Keras variable, as lists."""
    strategy = tf.distribute.get_strategy()
    return [np.asarray(v).tolist() for v in strategy.experimental_local_results(variable.value)]


def main():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS * GLOBAL_BATCH, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    results = {"replicas": strategy.num_replicas_in_sync}

    with strategy.scope():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((3,))
        hidden = counters(name="counters")(inputs)
        hidden = custom_matmul(units=3, name="matmul")(hidden)
        model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
        model.compile(optimizer="sgd", loss="mse")
        layer = model.get_layer("counters")
        state = layer.named_variables

        model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
        results["after_fit"] = {k: v.numpy().item() for k, v in state.items()}
        results["replica_copies"] = {k: _replicas_of(v) for k, v in state.items()}
        kernel = model.get_layer("matmul").named_variables["kernel"]
        results["kernel_copies"] = _replicas_of(kernel)
        results["last_batch_mean"] = float(x[-GLOBAL_BATCH:].mean())

        model.predict(x, batch_size=8, verbose=0)  # 2 steps
        results["sum_after_predict"] = state["sum"].numpy().item()
        model.evaluate(x, y, batch_size=16, verbose=0)  # 1 step
        results["sum_after_evaluate"] = state["sum"].numpy().item()
        predictions = model.predict(x, batch_size=8, verbose=0)
        results["sum_before_save"] = state["sum"].numpy().item()

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "mirrored.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path)  # safe mode, no strategy
    reloaded_state = reloaded.get_layer("counters").named_variables
    results["reloaded"] = {k: v.numpy().item() for k, v in reloaded_state.items()}
    results["reloaded_predictions_match"] = bool(
        np.allclose(predictions, reloaded.predict(x, batch_size=8, verbose=0), atol=1e-6)
    )

    with strategy.scope():
        inputs = keras.Input((3,))
        bad = keras.Model(inputs, keras.layers.Dense(1)(assigns_batch_mean()(inputs)))
        bad.compile(optimizer="sgd", loss="mse")
    try:
        bad.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, verbose=0)
        results["sum_assign_error"] = None
    except ValueError as error:
        results["sum_assign_error"] = str(error)

    print(json.dumps(results))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
