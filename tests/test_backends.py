"""TF ops in Keras models on the JAX and torch backends, one child process per backend.

A model with auto-wrapped TF ops and an `@keras_graft.layer` is saved on the
TensorFlow backend, then loaded (safe mode), run and trained on each backend.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def run_checks(backend, directory, *checks, env=None):
    completed = subprocess.run(
        [sys.executable, str(HERE / "children" / "backend_checks.py"), str(directory), *checks],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    if checks == ("save_reference",):
        return None
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    directory = tmp_path_factory.mktemp("backends")
    run_checks("tensorflow", directory, "save_reference")
    return directory


CHECKS = {
    "jax": [
        "load_predict_fit",
        "gradients",
        "refusals",
        "lowering",
        "callback_thread",
        "unsupported_differentiation",
        "random_ops",
    ],
    "torch": [
        "load_predict_fit",
        "gradients",
        "refusals",
        "torch_memory_layout",
        "unsupported_differentiation",
        "torch_compile",
        "random_ops",
        "torch_fused_chains",
    ],
}


@pytest.fixture(scope="module")
def found(reference):
    """Each backend's findings: {backend: {check: result}}."""
    return {backend: run_checks(backend, reference, *checks) for backend, checks in CHECKS.items()}


@pytest.mark.parametrize("backend", CHECKS)
def test_model_saved_on_tensorflow_predicts_the_same(found, backend):
    result = found[backend]["load_predict_fit"]
    assert result["max_abs_error"] < 1e-4
    assert result["indices_dtype"] == "int32" and result["indices_equal"]


@pytest.mark.parametrize("backend", CHECKS)
def test_fit_updates_every_weight_and_state(found, backend):
    result = found[backend]["load_predict_fit"]
    assert result["unchanged_weights"] == []
    assert result["calls_counted"] == 2  # two batches


@pytest.mark.parametrize("backend", CHECKS)
def test_gradients_match_tensorflow_on_both_paths(found, backend):
    assert found[backend]["gradients"]["xla"] < 1e-4
    assert found[backend]["gradients"]["no_xla_kernel"] < 1e-4  # JAX's callback path
    # Also where XLA's kernels would give other singular vectors and eigenvectors.
    assert found[backend]["gradients"]["xla_differs"] < 1e-4


@pytest.mark.parametrize(
    "backend, case, reason",
    [
        ("jax", "string", "string tensor"),
        ("jax", "ragged", "ragged tensor"),
        ("jax", "int64", "JAX_ENABLE_X64=1"),
        ("jax", "value_dependent_shape", "depends on the input values"),
        ("jax", "sparse", "sparse tensor"),
        ("torch", "string", "string tensor"),
        ("torch", "ragged", "ragged tensor"),
    ],
)
def test_what_a_backend_cannot_run_is_refused_at_build(found, backend, case, reason):
    message = found[backend]["refusals"][case]
    assert f"cannot run on the {backend} backend" in message and reason in message


@pytest.mark.parametrize("backend", CHECKS)
def test_results_keras_marks_sparse_but_are_dense_build(found, backend):
    assert found[backend]["refusals"]["keras_marked_sparse"] == "built"


def test_gradients_through_random_ops_use_the_forward_draws_or_are_refused(found):
    torch_result = found["torch"]["random_ops"]
    assert torch_result["gradient_is_the_forward_mask"] and 0 < torch_result["kept"] < 128
    error = found["jax"]["random_ops"]["error"]
    assert error.startswith("BridgeGradientError: tf.nn.dropout: its TF ops draw random numbers")


def test_torch_runs_int64_and_value_dependent_shapes(found):
    assert found["torch"]["refusals"]["int64"] == "built"
    assert found["torch"]["refusals"]["value_dependent_shape"] == "built"


def test_jax_inlines_compilable_ops_and_calls_back_for_the_others(found):
    assert found["jax"]["lowering"] == {"clip": False, "bicubic": True, "svd": True}


def test_jax_callbacks_run_tensorflow_on_the_calling_thread_not_its_pool(found):
    result = found["jax"]["callback_thread"]
    assert result["same_values"]
    assert result["threads"] and not any(name.startswith("tf_") for name in result["threads"])


def test_torch_copies_unaligned_views_and_bools(found):
    assert found["torch"]["torch_memory_layout"]["max_abs_error"] == 0.0
    assert found["torch"]["torch_memory_layout"]["bool"] == [[False, True, False]]


def test_torch_fuses_the_backward_of_consecutive_op_layers(found):
    fused = found["torch"]["torch_fused_chains"]
    # relu, sin, square, add, clip: one call for the chain, one for relu's output to Concatenate.
    assert (fused["fused_calls"], fused["one_each_calls"]) == (2, 5)
    assert fused["max_difference"] < 1e-6
    # relu's output doubled in place: sin's gradient starts from it, as without fusion.
    assert fused["in_place_calls"] == 2
    assert fused["in_place_max_difference"] < 1e-6


def test_torch_runs_gradients_in_the_calling_thread_where_tf_can(found):
    fused = found["torch"]["torch_fused_chains"]
    assert fused["in_caller_thread"] == [True, True]
    # expm's loops and branches too, with finite gradients.
    assert fused["loops_in_caller_thread"] == [True] and fused["loop_gradients_finite"]


def test_torch_op_layer_calls_are_freed_with_their_last_tensor(found):
    assert found["torch"]["torch_fused_chains"]["freed_without_the_cycle_collector"]


def test_jax_differentiation_limits_are_stated_in_the_errors(found):
    limits = found["jax"]["unsupported_differentiation"]
    assert "can't apply forward-mode autodiff (jvp)" in limits["jvp"]
    assert limits["vmap_callback"] == "no error"  # the callback path maps sequentially
    assert "Batching rule for 'call_tf' not implemented" in limits["vmap_xla"]


def test_torch_double_backward_is_refused_with_the_reason_and_a_second_backward_works(found):
    limits = found["torch"]["unsupported_differentiation"]
    assert limits["double_backward"].startswith(f"BridgeGradientError: {limits['layer']}: ")
    assert "gradients of gradients (double backward" in limits["double_backward"]
    assert limits["second_backward"] == "no error"
    assert limits["second_backward_adds_the_same_gradient"]


@pytest.fixture(scope="module")
def distributed(reference):
    """JAX's findings over 2 CPU devices."""
    return run_checks(
        "jax", reference, "keras_distribution", env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    )["keras_distribution"]


@pytest.mark.parametrize("distribution", ["data_parallel", "model_parallel"])
def test_keras_distributions_on_two_devices_train_as_one_device(distributed, distribution):
    assert distributed["devices"] == 2
    result = distributed[distribution]
    assert result["error_of_update"] < 1e-4
    assert result["devices_holding_weights"] == [2]
    if distribution == "model_parallel":  # a @keras_graft.layer weight among the sharded ones
        assert result["sharded"] == ["first/bias", "first/kernel", "tanh_matmul/kernel"]


@pytest.mark.parametrize(
    "when", ["state_at_build_data_parallel", "state_at_build_model_parallel", "state_at_call"]
)
def test_state_under_a_keras_distribution_is_refused_with_the_reason(distributed, when):
    error = distributed[when]
    assert error.startswith("DistributedStateError: ") and "scaled" in error
    assert "ctx.state updates combine across replicas only under tf.distribute" in error


def test_torch_compile_trains_through_the_bridge_without_recompiling(found):
    compiled = found["torch"]["torch_compile"]
    assert compiled["loss_finite"]
    assert compiled["graphs_after_three_more"] == compiled["graphs_after_first_epoch"] > 0
