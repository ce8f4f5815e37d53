"""`ctx.state` under tf.distribute.MirroredStrategy on 2 logical CPU devices.

The CPU has to be split into two logical devices before TensorFlow
initialises, so the scenarios run once, in a fresh process
(`dist_mirrored.py`), and the tests below check what it reports. Each step
of `fit` feeds a global batch of 4 (2 examples per replica); `fit` runs 4
steps.
"""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS, REPLICAS, GLOBAL_BATCH = 4, 2, 4


@pytest.fixture(scope="module")
def mirrored():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    completed = subprocess.run(
        [sys.executable, os.path.join(HERE, "children", "dist_mirrored.py")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert completed.returncode == 0, completed.stderr[-5000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_two_replicas_are_in_sync(mirrored):
    assert mirrored["replicas"] == REPLICAS


def test_counters_mean_what_they_say_after_4_steps(mirrored):
    after = mirrored["after_fit"]
    assert after["sum"] == STEPS * REPLICAS == 8  # Keras' own "sum" reads 30
    assert after["only_first_replica"] == STEPS == 4
    assert after["mean"] == STEPS == 4
    assert after["int_sum"] == 8
    assert after["examples"] == STEPS * GLOBAL_BATCH == 16


def test_per_replica_increments_combine_by_aggregation(mirrored):
    after = mirrored["after_fit"]  # replica 0 adds 1, replica 1 adds 2
    assert after["sum_by_replica"] == STEPS * (1 + 2)
    assert after["mean_by_replica"] == STEPS * 1.5
    assert after["only_first_replica_by_replica"] == STEPS * 1
    assert after["down"] == 1 - STEPS * (1 + 2)  # assign_sub, from ones


def test_assign_stores_the_mean_or_the_first_replicas_value(mirrored):
    after = mirrored["after_fit"]
    # The mean of the replicas' batch means is the global batch mean.
    assert after["batch_mean"] == pytest.approx(mirrored["last_batch_mean"], rel=1e-5)
    assert after["first_id"] == 10.0  # replica 0 assigned 10, replica 1 assigned 11
    assert after["constant"] == 5.0


def test_every_replica_holds_the_same_values(mirrored):
    for name, copies in mirrored["replica_copies"].items():
        assert copies[0] == copies[1], name
    assert mirrored["kernel_copies"][0] == mirrored["kernel_copies"][1]


def test_predict_and_evaluate_update_state_per_replica(mirrored):
    assert mirrored["sum_after_predict"] == 8 + 2 * REPLICAS  # 2 predict steps
    assert mirrored["sum_after_evaluate"] == 12 + 1 * REPLICAS  # 1 evaluate step


def test_state_saved_under_a_strategy_reloads_without_one(mirrored):
    assert mirrored["reloaded"]["sum"] == mirrored["sum_before_save"] == 18
    assert mirrored["reloaded"]["only_first_replica"] == 9
    assert mirrored["reloaded_predictions_match"]


def test_sum_state_refuses_assign_of_a_computed_value_with_a_clear_error(mirrored):
    message = mirrored["sum_assign_error"]
    assert message is not None, "assign under 'sum' should have been refused"
    assert "assigns_batch_mean: state 'last' (aggregation='sum')" in message
    assert "cannot be expressed with aggregation='sum' on 2 replicas" in message
    assert "aggregation='mean'" in message and "aggregation='only_first_replica'" in message
