"""The runnable examples in docstrings stay true."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "keras_graft", "keras_graft.errors", "keras_graft.terminal", "keras_graft.child_process",
        "keras_graft.core.arguments", "keras_graft.layers.hyperparameters", "keras_graft.core.op_layer", "keras_graft.core.op_names",
        "keras_graft.core.safety", "keras_graft.patches.composite_methods", "keras_graft.patches.higher_order",
        "keras_graft.patches.printing", "keras_graft.core.static_values", "keras_graft.patches.operators", "keras_graft.patches.lambda_warning",
        *(f"keras_graft.keras2.{name}" for name in (
            "consistency", "constants", "convert", "files", "layer_configs", "loading", "names", "nodes",
            "op_layers", "predict_child", "references", "report", "tf1_names", "weights",
        )),
        "keras_graft.keras2",
        "keras_graft.backends", "keras_graft.backends.tracing",
        *(f"keras_graft.inspection.{name}" for name in (
            "checks", "equivalents", "export", "html", "loading", "report", "sandbox", "sandbox_child")),
        "keras_graft.inspection",
    ],
)
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
