"""One training step on JAX and torch equals TensorFlow's (`gradient_sweep.py`).

CI runs its sample: every chain (complex intermediates, integer outputs, unused
outputs, `@keras_graft.layer` between op layers, a TF-op loss, JAX's callback
path), built on each backend and loaded from TensorFlow's file, and a fixed
sample of ops; each backend in its own process. The whole sweep, every op
`inspect` finds a gradient for: `python tests/helpers/gradient_sweep.py --all`.
"""

import pytest

import gradient_sweep

BACKENDS = ("jax", "torch")

# Where a backend may not train the chain, what it must do instead (TF itself
# has no gradient for `Unique`; JAX cannot compile its value-dependent shape).
NOT_TRAINED = {("jax", "unique"): "refused", ("torch", "unique"): "raised"}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return gradient_sweep.run(tmp_path_factory.mktemp("gradient_sweep"), timeout=900)


def test_the_sample_holds_every_chain_and_every_sampled_op(sweep):
    cases = {case["id"] for case in sweep["manifest"]["cases"]}
    assert {f"chain {name}" for name in gradient_sweep.CHAINS} <= cases
    assert {f"op {name}" for name in gradient_sweep.SAMPLE_OPS} <= cases


def test_the_weights_before_the_ops_train_on_tensorflow(sweep):
    """Else matching TF's update would not show that the bridge passes gradients."""
    untrained = [
        case["id"]
        for case in sweep["manifest"]["cases"]
        if not case["before_trained"] and "tf_error" not in case
    ]
    assert untrained == []


@pytest.mark.parametrize("mode", ["built", "loaded"])
@pytest.mark.parametrize("chain", sorted(gradient_sweep.CHAINS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_chain_trains_as_on_tensorflow(sweep, backend, chain, mode):
    finding = sweep[backend][(f"chain {chain}", mode)]
    assert finding["status"] == NOT_TRAINED.get((backend, chain), "match"), finding


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_sampled_op_trains_as_on_tensorflow_or_raises_where_it_does(sweep, backend):
    raising = {case["id"] for case in sweep["manifest"]["cases"] if "tf_error" in case}
    findings = {case: f for (case, _), f in sweep[backend].items() if case.startswith("op ")}
    assert len(findings) == len(gradient_sweep.SAMPLE_OPS)
    assert {
        case: f for case, f in findings.items() if f["status"] != ("raised" if case in raising else "match")
    } == {}


def test_the_sample_holds_ops_inspect_finds_no_gradient_for_both_where_tf_raises_and_trains(sweep):
    cases = {case["id"]: case for case in sweep["manifest"]["cases"]}
    assert "tf_error" in cases["op image.adjust_contrast"]
    assert cases["op image.adjust_contrast"]["inspect_gradient"].startswith("no")
    assert "tf_error" not in cases["op math.reduce_logsumexp"]
    assert cases["op math.reduce_logsumexp"]["inspect_gradient"].startswith("no")


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_gradient_is_missing_silently(sweep, backend):
    """Where TensorFlow's step raises for a missing gradient, the backend
    raises too (or refuses the model), naming the layer."""
    raising = [case for case in sweep["manifest"]["cases"] if "tf_error" in case]
    assert {case["id"] for case in raising} >= {"chain unique", "op image.adjust_contrast"}
    for case in raising:
        for (found_case, mode), finding in sweep[backend].items():
            if found_case == case["id"]:
                assert finding["status"] in ("raised", "refused"), (mode, finding)
                assert any(layer in finding["detail"] for layer in case["layers"]), finding
