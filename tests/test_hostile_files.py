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
and kind of attack (`CI_SAMPLE`) on the TensorFlow backend, and a smaller
one (`BACKEND_SAMPLE`, every class) on JAX and on torch, whose op layers
compile through other paths (`keras_graft/backends/`), one batch child per
backend; `python tests/test_hostile_files.py --all` runs all of them on
every backend.
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
    "h5_lambda_in_wrapper_new_format",
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
# Each class once or twice, none preloading (one batch child per backend): bombs the
# shape refiner would fold, which JAX's second trace (`check_static_shapes`) sees too,
# and the signature cache's false shapes, run through the bridge.
BACKEND_SAMPLE = {
    "xla_call_module_spin",
    "enable_check_numerics",
    "fill_shape_refiner",
    "keras_op_fill_bypass",
    "einsum_optimal_path",
    "h5_lambda_loss",
    "node_stored_tensor_fill",
    "h5_lambda_in_sequential",
    "cache_partly_known_shape",
}
BACKEND_ATTACKS = sweeps.sample(hostile.ATTACKS, lambda attack: attack.name in BACKEND_SAMPLE)


@pytest.fixture(scope="module")
def forge_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hostile")
    hostile.benign_model(directory)
    return directory


@pytest.mark.parametrize("sample", [CI_SAMPLE, BACKEND_SAMPLE], ids=["ci", "backends"])
def test_the_sample_covers_every_class_of_attack(sample):
    names = {attack.name for attack in hostile.ATTACKS}
    assert sample <= names, sample - names
    sampled = {attack.weakness for attack in hostile.ATTACKS if attack.name in sample}
    assert sampled == {attack.weakness for attack in hostile.ATTACKS}


def test_the_backend_sample_loads_in_one_batch():
    assert not [attack.name for attack in hostile.ATTACKS if attack.name in BACKEND_SAMPLE and attack.preload]


def _load_alone(attack, forge_dir, env=None) -> dict:
    before = attack.before(forge_dir) if attack.before else None
    return hostile.load_in_child(
        attack.build(forge_dir), timeout_s=90, preload=attack.preload, env=env, before=before, run=attack.run
    )


def _load_batch(attacks, forge_dir, env=None) -> dict:
    """{attack name: result} of `attacks` (which preload nothing), loaded in one batch."""
    jobs = [
        {
            "path": attack.build(forge_dir),
            "before": attack.before(forge_dir) if attack.before else None,
            "run": attack.run,
        }
        for attack in attacks
    ]
    results = hostile.load_batch_in_child(jobs, timeout_s=90, env=env)
    return {attack.name: result for attack, result in zip(attacks, results, strict=True)}


@pytest.fixture(scope="module")
def batched(forge_dir):
    return _load_batch([attack for attack in ATTACKS if not attack.preload], forge_dir)


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda attack: f"class{attack.weakness}-{attack.name}")
def test_hostile_file_is_refused_or_loads_inertly(attack, forge_dir, request):
    result = (
        _load_alone(attack, forge_dir) if attack.preload else request.getfixturevalue("batched")[attack.name]
    )
    check_refused_or_inert(attack, result, "tensorflow")


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_hostile_files_are_refused_or_load_inertly_on(backend, forge_dir):
    """The backend sample in one batch child (with `--all`, every attack; those that
    preload something alone), each held to the TensorFlow backend's promises."""
    env = {"KERAS_BACKEND": backend}
    results = _load_batch([a for a in BACKEND_ATTACKS if not a.preload], forge_dir, env)
    results.update((a.name, _load_alone(a, forge_dir, env)) for a in BACKEND_ATTACKS if a.preload)
    failures = []
    for attack in BACKEND_ATTACKS:
        try:
            check_refused_or_inert(attack, results[attack.name], backend)
        except AssertionError as failure:
            failures.append(str(failure))
    assert not failures, "\n\n".join(failures)


def check_refused_or_inert(attack, result: dict, backend: str) -> None:
    """A clean refusal, or a load that ran nothing, within the memory budget,
    changing no state and writing no file, with true output shapes."""
    summary = f"{attack.name} ({backend}): {attack.description}\n{result}"
    assert result["outcome"] in ("refused", "loaded"), summary  # not "timeout" or "crashed"
    if result["outcome"] == "refused":
        assert result["exception"] in CLEAN_REFUSALS, summary
    if attack.weakness in MUST_BE_REFUSED:
        assert result["outcome"] == "refused", summary
    if attack.weakness in MUST_LOAD and backend == "jax":
        # jax.jit compiles static shapes only: a shape computed from values, as
        # these models have, is refused at load (`backends.check_static_shapes`).
        assert result["message"] and "cannot run on the jax backend" in result["message"], summary
    elif attack.weakness in MUST_LOAD:
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
    results = hostile.load_batch_in_child(
        [{"path": benign}, {"path": refused}, {"path": benign, "before": refused}]
    )
    assert [r["outcome"] for r in results] == ["loaded", "refused", "loaded"], results
    assert [r["state_changes"] for r in results] == [{}, {}, {}]
    assert results[0]["peak_rss_mb"] <= results[2]["peak_rss_mb"]
    # A refused `before` is reported, and the job's own file still loads after it.
    assert "before_refused" not in results[0]
    assert results[2]["before_refused"].startswith("UnsafeOpError: "), results[2]


def test_a_batch_loads_alone_each_job_it_did_not_report_on(forge_dir, monkeypatch):
    """A batch that dies (here at start-up, under a 64 MB address space) loads its jobs
    again one by one, so that a file that kills the process has an outcome of its own."""
    alone = []
    monkeypatch.setattr(
        hostile,
        "load_in_child",
        lambda path, *_, env=None, **__: alone.append((path, env)) or {"outcome": "alone"},
    )
    benign = hostile.benign_model(forge_dir)
    env = {"KERAS_BACKEND": "jax"}
    results = hostile.load_batch_in_child(
        [{"path": benign}, {"path": benign}], memory_limit_bytes=64 << 20, env=env
    )
    assert [r["outcome"] for r in results] == ["alone", "alone"]
    assert alone == [(benign, env), (benign, env)]


if __name__ == "__main__":
    # python tests/test_hostile_files.py [--all] [pytest arguments]
    sweeps.main(__file__)
