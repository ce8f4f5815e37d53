"""`keras_graft.inspect(model)`: where each op layer of a model will work.

For every layer that runs TF ops (auto-wrapped ops, `keras_graft.Op`,
`@keras_graft.layer` layers) it finds, by trying (`checks`): whether XLA
compiles it, whether TFLite converts it with builtin ops only or needs Select
TF ops, whether every op on its float paths has a gradient, how the JAX and
torch backends run it, whether it loads from a file in safe mode, and the
`keras.ops` equivalent where one exists (`equivalents`). XLA compilation and
TFLite conversion run in a child process within a budget (`sandbox`). A
`keras.layers.Lambda` is listed too, with `safe: no` and why: its function is
Python bytecode in the file, which safe mode refuses.

>>> import keras, tensorflow as tf, keras_graft
>>> x = keras.Input((4,))
>>> report = keras_graft.inspect(keras.Model(x, tf.clip_by_value(x, -1.0, 1.0)))
>>> report.summary_line()
'1 op layers: 1 XLA-ready, 1 TFLite-builtin, 1 differentiable, 1 compile into JAX (0 callback, 0 cannot run), 1 run on torch, 1 load in safe mode'
>>> report.failures(["xla", "tflite"])
[]
"""

from __future__ import annotations

import keras
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from keras_graft.child_process import Budget
from keras_graft.inspection import checks, sandbox
from keras_graft.inspection.equivalents import keras_ops_equivalent
from keras_graft.inspection.report import CHECKS, LayerReport, Report
from keras_graft.terminal import escape

__all__ = ["CHECKS", "Budget", "LayerReport", "Report", "inspect", "lambda_layers", "op_layers"]

LAMBDA_UNSAFE = (
    "a Lambda: its function is stored as Python bytecode, which safe mode refuses to run; "
    "call its TF ops directly instead (each becomes an op layer)"
)

# The checks that run in the check process (`jax` reads `xla`'s outcome).
_IN_CHECK_PROCESS = ("xla", "tflite", "jax")

_CHECK_FUNCTIONS = {
    "xla": checks.xla,
    "tflite": checks.tflite,
    "gradient": checks.gradient,
    "jax": checks.jax,
    "torch": checks.torch,
    "safe": checks.safe,
}


def op_layers(model) -> list:
    """The op layers of `model`, nested models included, in model order."""
    found = []
    for layer in model.layers:
        if checks.is_op_layer(layer):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(op_layers(layer))
    return found


def lambda_layers(model) -> list:
    """The `keras.layers.Lambda` layers of `model`, nested models included, in model order."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Lambda):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(lambda_layers(layer))
    return found


def inspect(
    model, *, checks_to_run=CHECKS, console: Console | None = None, budget: Budget = sandbox.CHECK_BUDGET
) -> Report:
    """Runs the deployment checks on each op layer of `model`.

    `checks_to_run` picks among `CHECKS` (`"xla"`, `"tflite"`, `"gradient"`,
    `"jax"`, `"torch"`, `"safe"`); `console` shows a progress bar there;
    `budget` is each XLA or TFLite check's (plus three times the layer's
    weights): over it, the check is "not checked (budget)".
    """
    unknown = [c for c in checks_to_run if c not in CHECKS]
    if unknown:
        raise ValueError(f"Unknown check(s) {unknown}; choose from {', '.join(CHECKS)}.")
    layers = op_layers(model)
    if layers and any(check in _IN_CHECK_PROCESS for check in checks_to_run):
        sandbox.warm_up()
    session = sandbox.Session(budget)
    report = Report(model=model.name)
    columns = (
        TextColumn("inspecting {task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console or Console(quiet=True), transient=True) as progress:
        task = progress.add_task("", total=len(layers) * len(checks_to_run))
        for layer in layers:
            progress.update(task, description=escape(layer.name))
            report.layers.append(_inspect_layer(layer, checks_to_run, session, progress, task))
    report.layers += [_lambda_report(layer, checks_to_run) for layer in lambda_layers(model)]
    return report


def _lambda_report(layer, checks_to_run) -> LayerReport:
    """A `Lambda` is no op layer to check; what matters is that its file will not load."""
    function = getattr(layer, "function", None)
    return LayerReport(
        name=layer.name,
        op=getattr(function, "__name__", "<function>"),
        kind="Lambda",
        op_types=[],
        inputs=[_tensor(t) for t in keras.tree.flatten(layer.input)],
        outputs=[_tensor(t) for t in keras.tree.flatten(layer.output)],
        checks={"safe": checks.Verdict("no", LAMBDA_UNSAFE)} if "safe" in checks_to_run else {},
    )


def _inspect_layer(layer, checks_to_run, session, progress, task) -> LayerReport:
    probe = checks.probe(layer, session)
    problem = checks.trace_problem(probe)
    verdicts = {}
    for check in checks_to_run:
        verdicts[check] = (
            checks.Verdict(
                checks.NOT_CHECKED,
                "inspect could not trace the layer with "
                f"unknown dimensions set to {checks.UNKNOWN_DIMENSION}: {problem}",
            )
            if problem
            else _CHECK_FUNCTIONS[check](probe)
        )
        progress.advance(task)
    name = checks.op_name(layer)
    return LayerReport(
        name=layer.name,
        op=name,
        kind=type(layer).__name__,
        op_types=checks.graph_op_types(probe) if probe.dense and not problem else [],
        inputs=[_tensor(t) for t in probe.inputs],
        outputs=[_tensor(t) for t in probe.outputs],
        checks=verdicts,
        keras_ops=keras_ops_equivalent(name),
    )


def _tensor(tensor) -> dict:
    return {"shape": list(tensor.shape), "dtype": str(tensor.dtype)}
