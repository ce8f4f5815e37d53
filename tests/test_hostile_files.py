"""Hostile model files, loaded in child processes with a timeout and a memory limit.

Each attack of `hostile.ATTACKS` (classes: 1 names that are no pure tensor
ops, 2 Python functions with process-wide effects, 3 ops that would parse,
decode or compute something large, run a program, search or build without
bound at load, 4 malformed arguments, hyperparameters, `Print` options and
Keras structure, 5 a load that reports shapes the model does not compute)
must end in a clean refusal, or in a model that loaded without running
anything: never a hang, a crash, a large allocation, a file written (also
when the model runs, for the attacks that run it) or a change of process
state. A model that loads must report the output shapes it computes.

The attacks load one after another in one limited child
(`hostile.load_batch_in_child`: a fresh Keras session and folder each, one
start of TensorFlow for all), except those that preload something into the
process, which load alone. CI runs a fixed sample that covers every class
and kind of attack (`CI_SAMPLE`); `python tests/test_hostile_files.py --all`
runs all of them.
"""

import pytest

import hostile
import sweeps

# Peak resident memory of the loading process, TensorFlow included.
MEMORY_BUDGET_MB = 1536
CLEAN_REFUSALS = {
    "UnsafeOpError",
    "OpTraceError",
    "UnstorableArgumentError",
    "MalformedModelFileError",
    "TracingBudgetError",
    "ValueError",
    "TypeError",
    "LambdaLayerError",
    "UnregisteredNameError",
}
# Keras parses config.json whole, but keras-graft checks the zip first
# (`keras2/file_limits.py`): a zipped JSON bomb is refused before it is parsed.
KERAS_OWN_PARSE: set[str] = set()
MUST_BE_REFUSED = {1, 2, 4}
MUST_LOAD = {5}  # models a user could have built: they load, with true shapes
# At least one attack of each class and of each way in: names, process switches, bombs
# parsed or folded at load, unbounded searches and counts (also through functions passed
# as arguments), malformed Keras structure (the functional loader's loops), stored
# tensors in nodes, hyperparameters, `Print` options, and the signature cache.
CI_SAMPLE = {
    "h5_lambda_in_sequential",
    "h5_lambda_loss",
    "xla_call_module_spin",
    "rpc_server",
    "timestamp",
    "enable_check_numerics",
    "state_then_valid_op",
    "parse_tensor_bomb",
    "decode_png_bomb",
    "fill_constant_value",
    "keras_op_fill_bypass",
    "einsum_optimal_path",
    "map_flat_values_einsum",
    "dynamic_partition_count",
    "graph_ops_loop",
    "deep_nesting",
    "config_zip_bomb",
    "self_referencing_node",
    "unknown_node_index",
    "node_stored_tensor_fill",
    "hyperparameter_any_object",
    "print_to_file",
    "cache_partly_known_shape",
    "h5_shape_bomb",
    "h5_external_storage",
    "zip_member_bomb",
}
ATTACKS = sweeps.sample(hostile.ATTACKS, lambda attack: attack.name in CI_SAMPLE)


@pytest.fixture(scope="module")
def forge_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hostile")
    hostile.benign_model(directory)
    return directory


def test_the_ci_sample_covers_every_class_of_attack():
    names = {attack.name for attack in hostile.ATTACKS}
    assert CI_SAMPLE <= names, CI_SAMPLE - names
    sampled = {attack.weakness for attack in hostile.ATTACKS if attack.name in CI_SAMPLE}
    assert sampled == {attack.weakness for attack in hostile.ATTACKS}


@pytest.fixture(scope="module")
def batched(forge_dir):
    """{attack name: result} of the attacks that preload nothing, loaded in one batch."""
    attacks = [attack for attack in ATTACKS if not attack.preload]
    jobs = [
        {
            "path": attack.build(forge_dir),
            "before": attack.before(forge_dir) if attack.before else None,
            "run": attack.run,
        }
        for attack in attacks
    ]
    results = hostile.load_batch_in_child(jobs, timeout_s=90)
    return {attack.name: result for attack, result in zip(attacks, results, strict=True)}


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda attack: f"class{attack.weakness}-{attack.name}")
def test_hostile_file_is_refused_or_loads_inertly(attack, forge_dir, request):
    if attack.preload:
        before = attack.before(forge_dir) if attack.before else None
        result = hostile.load_in_child(
            attack.build(forge_dir), timeout_s=90, preload=attack.preload, before=before, run=attack.run
        )
    else:
        result = request.getfixturevalue("batched")[attack.name]
    summary = f"{attack.name}: {attack.description}\n{result}"

    assert result["outcome"] in ("refused", "loaded"), summary  # not "timeout" or "crashed"
    if result["outcome"] == "refused":
        assert result["exception"] in CLEAN_REFUSALS, summary
    if attack.weakness in MUST_BE_REFUSED:
        assert result["outcome"] == "refused", summary
    if attack.weakness in MUST_LOAD:
        assert result["outcome"] == "loaded", summary
    if attack.name not in KERAS_OWN_PARSE:
        assert result["peak_rss_mb"] <= MEMORY_BUDGET_MB, summary
    assert result["state_changes"] == {}, summary
    assert result["files_created"] == [], summary
    if attack.run and result["outcome"] == "loaded":
        assert result["run_shapes"] is not None, summary
        for reported, computed in zip(result["output_shapes"], result["run_shapes"], strict=True):
            assert len(reported) == len(computed), summary
            assert all(r in (None, c) for r, c in zip(reported, computed)), summary


def test_the_sandbox_sees_what_a_load_changes(forge_dir):
    """The harness itself: a load that does change state is reported as such."""
    result = hostile.load_in_child(
        hostile.benign_model(forge_dir), timeout_s=90, preload=("hostile:_flip_state_on_load",)
    )
    assert result["outcome"] == "loaded"
    assert "traceback_filtering" in result["state_changes"]


def test_a_batch_reports_each_load_in_order_as_its_own(forge_dir):
    """The batch harness: each report is the load of its own job."""
    benign = hostile.benign_model(forge_dir)
    refused = next(a for a in hostile.ATTACKS if a.name == "rpc_server").build(forge_dir)
    results = hostile.load_batch_in_child([{"path": benign}, {"path": refused}, {"path": benign}])
    assert [r["outcome"] for r in results] == ["loaded", "refused", "loaded"], results
    assert [r["state_changes"] for r in results] == [{}, {}, {}]
    assert results[0]["peak_rss_mb"] <= results[2]["peak_rss_mb"]


def test_a_batch_loads_alone_each_job_it_did_not_report_on(forge_dir, monkeypatch):
    """A batch that dies (here at start-up, under a 64 MB address space) loads its jobs
    again one by one, so that a file that kills the process has an outcome of its own."""
    alone = []
    monkeypatch.setattr(
        hostile, "load_in_child", lambda path, *_, **__: alone.append(path) or {"outcome": "alone"}
    )
    benign = hostile.benign_model(forge_dir)
    results = hostile.load_batch_in_child([{"path": benign}, {"path": benign}], memory_limit_bytes=64 << 20)
    assert [r["outcome"] for r in results] == ["alone", "alone"]
    assert alone == [benign, benign]


if __name__ == "__main__":
    # python tests/test_hostile_files.py [--all] [pytest arguments]
    sweeps.main(__file__)
