"""examples/multi_worker.py: MultiWorkerMirroredStrategy on two processes.

The example starts two worker processes on 127.0.0.1 (free ports), bounded
in time, and always kills and reaps them.
"""

import os

import numpy as np
import pytest

from keras_graft.examples import multi_worker


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_workers_train_together_and_counters_mean_what_they_say(tmp_path):
    results = multi_worker.run(timeout=240, workdir=str(tmp_path))
    multi_worker.check(results)  # the example's own checks, and more below:

    assert [r["index"] for r in results] == [0, 1]
    for result in results:
        assert result["replicas"] == 2
        assert result["counters"] == {
            "replica_calls": 8.0,  # 4 steps x 2 replicas ("sum")
            "steps": 4.0,  # "only_first_replica"
            "examples": 32,  # 4 steps x global batch 8 ("sum", int64)
        }
        assert len(result["losses"]) == 4
    # Both workers applied the same all-reduced updates.
    for a, b in zip(results[0]["weights"], results[1]["weights"]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert not any(_alive(r["pid"]) for r in results)


def test_workers_out_of_time_are_killed(tmp_path):
    with pytest.raises(multi_worker.WorkerError, match="did not finish within 0.5 s") as excinfo:
        multi_worker.run(timeout=0.5, workdir=str(tmp_path))
    assert len(excinfo.value.pids) == 2
    assert not any(_alive(pid) for pid in excinfo.value.pids)


def test_free_ports_are_distinct():
    ports = multi_worker.free_ports(2)
    assert len(set(ports)) == 2 and all(0 < p < 65536 for p in ports)
