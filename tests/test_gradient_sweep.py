"""One training step on JAX and torch equals TensorFlow's (`_gradient_sweep.py`).

CI runs its sample: every chain (complex intermediates, integer outputs, unused
outputs, `@keras_graft.layer` between op layers, a TF-op loss, JAX's callback
path), built on each backend and loaded from TensorFlow's file, and a fixed
sample of ops; each backend in its own process. The whole sweep, every op
`inspect` finds a gradient for: `python tests/_gradient_sweep.py --all`.
"""

import _gradient_sweep
import pytest

BACKENDS = ("jax", "torch")

# Where a backend may not train the chain, what it must do instead (TF itself
# has no gradient for `Unique`; JAX cannot compile its value-dependent shape).
NOT_TRAINED = {("jax", "unique"): "refused", ("torch", "unique"): "raised"}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return _gradient_sweep.run(tmp_path_factory.mktemp("gradient_sweep"), timeout=900)


def test_the_sample_holds_every_chain_and_every_sampled_op(sweep):
    cases = {case["id"] for case in sweep["manifest"]["cases"]}
    assert {f"chain {name}" for name in _gradient_sweep.CHAINS} <= cases
    assert {f"op {name}" for name in _gradient_sweep.SAMPLE_OPS} <= cases


def test_the_weights_before_the_ops_train_on_tensorflow(sweep):
    """Else matching TF's update would not show that the bridge passes gradients."""
    untrained = [case["id"] for case in sweep["manifest"]["cases"]
                 if not case["before_trained"] and "tf_error" not in case]
    assert untrained == []


@pytest.mark.parametrize("mode", ["built", "loaded"])
@pytest.mark.parametrize("chain", sorted(_gradient_sweep.CHAINS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_chain_trains_as_on_tensorflow(sweep, backend, chain, mode):
    finding = sweep[backend][(f"chain {chain}", mode)]
    assert finding["status"] == NOT_TRAINED.get((backend, chain), "match"), finding


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_sampled_op_trains_as_on_tensorflow(sweep, backend):
    findings = {case: f for (case, _), f in sweep[backend].items() if case.startswith("op ")}
    assert len(findings) == len(_gradient_sweep.SAMPLE_OPS)
    assert {case: f for case, f in findings.items() if f["status"] != "match"} == {}


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_gradient_is_missing_silently(sweep, backend):
    """Where TensorFlow has no gradient, the backend says so, naming the layer."""
    finding = sweep[backend][("chain unique", "built")]
    assert "tf.unique" in finding["detail"]
