"""`keras-graft convert OLD NEW.keras`: a Keras 2 model file as a Keras 3 `.keras` file.

Loads the Keras 2 `.h5`, tf_keras `.keras` or SavedModel directory with
`keras_graft.keras2.files.load_model` (in safe mode: nothing from the file
runs), prints what was translated layer by layer, writes the `.keras` file,
and checks it on random inputs: Keras 3 reloads the converted file in safe
mode in a fresh process and predicts, and so does the reference.

The reference runs nothing from the file either: the Keras 3 model
keras-graft built from the original in safe mode (read again in that fresh
process, after the converted file). Keras 2 itself (tf_keras) has no safe
mode for these formats; it predicts with the original only when the user
trusts the file (`trust_file_code=True`, `--trust-file-code`), in a process
of its own. Every prediction process works within a `Budget`
(`PREDICTION_BUDGET`, plus three times the model's weights): over it, the
check is "not checked (budget)", never "passed".

>>> import keras_graft
>>> random_inputs([keras.KerasTensor((None, 3), "float32")], seed=0)[0].shape
(2, 3)
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from keras_graft.child_process import Budget
from keras_graft.errors import (
    BudgetExceededError,
    ConversionError,
    PredictionError,
    UntranslatedCompileWarning,
)
from keras_graft.keras2 import files, predict, report
from keras_graft.terminal import NAME_COLUMN, escape, wide_console

ATOL = 1e-4
BATCH = 2
UNKNOWN_DIMENSION = 8
PREDICTION_BUDGET = Budget(memory_mb=1536, seconds=90)
# The most values the random inputs may hold: the file gives the input
# shapes, and they are allocated here, in the converting process.
INPUT_VALUES = 1 << 24

SKIPPED, PASSED, FAILED, NOT_CHECKED = "skipped", "passed", "failed", "not checked (budget)"
KERAS2_REFERENCE = "tf_keras (Keras 2) on the original file"
KERAS3_REFERENCE = "the Keras 3 model keras-graft built from the original file in safe mode"


@dataclass
class Result:
    """What a conversion did, and what its check found (`outcome`)."""

    notes: list = field(default_factory=list)
    outcome: str = SKIPPED
    max_difference: float | None = None
    reference: str = ""
    # Why tf_keras was not the reference although the file was trusted, or
    # why the check failed or was not made.
    problem: str = ""
    trust_file_code: bool = False  # Keras 2 was allowed to load the original
    keras2_ran: bool = False

    @property
    def checked(self) -> bool:
        return self.outcome != SKIPPED

    @property
    def passed(self) -> bool:
        return self.outcome == PASSED


def random_inputs(inputs, seed: int = 0) -> list[np.ndarray]:
    """Random arrays for a model's input tensors (batch of 2, unknown dimensions 8).

    Integer inputs are 0 or 1, valid indices for any embedding.
    """
    rng = np.random.default_rng(seed)
    arrays = []
    for tensor in inputs:
        shape = [BATCH] + [UNKNOWN_DIMENSION if d is None else d for d in tensor.shape[1:]]
        dtype = str(tensor.dtype)
        if dtype == "bool":
            arrays.append(rng.random(shape) > 0.5)
        elif dtype == "string":
            arrays.append(np.full(shape, "keras", dtype=object))
        elif "int" in dtype:
            arrays.append(rng.integers(0, 2, size=shape).astype(dtype))
        else:
            arrays.append(rng.normal(size=shape).astype(dtype))
    return arrays


def load(source: Path, trust_file_code: bool = False, imports=()) -> keras.Model:
    """The Keras 2 model at `source`, read by Keras 3 with keras-graft's translations.

    What its training setup loses in Keras 3 is noted in the report.
    """
    if not source.exists():
        raise ConversionError(f"{source} does not exist.")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UntranslatedCompileWarning)
            model = files.load_model(source, trust_file_code=trust_file_code, imports=tuple(imports))
    except Exception as error:
        raise ConversionError(f"{source} could not be loaded: {type(error).__name__}: {error}") from error
    for warning in caught:
        if issubclass(warning.category, UntranslatedCompileWarning):
            report.note("(model)", "training setup", f"dropped: {warning.message}")
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return model


def convert(
    source,
    target,
    *,
    check: bool = True,
    trust_file_code: bool = False,
    imports=(),
    budget: Budget = PREDICTION_BUDGET,
    console: Console | None = None,
) -> Result:
    """Converts `source` to the `.keras` file `target`; returns what happened.

    `trust_file_code`: the user trusts the file, so its code may run: each
    Keras 2 `Lambda`'s function, once, in a separate process (migrated to op
    layers), and Keras 2 itself may load it to predict the reference.
    `imports`: the user's modules the file needs (registered layers and
    losses, named functions), imported in the checking processes too; import
    them in this process first. `budget`: each prediction process's, plus
    three times the model's weights.

    Raises `ConversionError` when `source` cannot be loaded or `target` is not
    a `.keras` path.
    """
    source, target = Path(source), Path(target)
    console = console or wide_console(140)
    if target.suffix != ".keras":
        raise ConversionError(f"The converted model is written as a .keras file; got {target}.")
    result = Result(trust_file_code=trust_file_code)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        step = progress.add_task(f"Loading {escape(source.name)}")
        with report.recording() as result.notes:
            model = load(source, trust_file_code, imports)
        progress.update(step, description=f"Writing {escape(target.name)} ({len(model.layers)} layers)")
        target.parent.mkdir(parents=True, exist_ok=True)
        model.save(target)
        if check:
            _check(
                model,
                source,
                target,
                result,
                progress,
                step,
                budget.with_data(_weight_bytes(model)),
                tuple(imports),
            )
    _print_report(console, model, source, target, result)
    return result


def _weight_bytes(model) -> int:
    return sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in model.weights)


def _input_values(inputs) -> int:
    return sum(
        BATCH * int(np.prod([UNKNOWN_DIMENSION if d is None else d for d in t.shape[1:]])) for t in inputs
    )


def _check(
    model,
    source: Path,
    target: Path,
    result: Result,
    progress,
    step,
    budget: Budget,
    imports: tuple[str, ...],
) -> None:
    if _input_values(model.inputs) > INPUT_VALUES:
        result.outcome, result.problem = (
            NOT_CHECKED,
            (
                f"the model's inputs hold {_input_values(model.inputs):,} values for a batch of {BATCH} "
                f"(the file's input shapes), more than the check makes ({INPUT_VALUES:,}); "
                "check the converted model on inputs of your own"
            ),
        )
        return
    inputs = random_inputs(model.inputs)
    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        expected = None
        try:
            if result.trust_file_code:
                progress.update(
                    step, description=f"Keras 2 predicting with the original {escape(source.name)}"
                )
                try:
                    (expected,) = predict.in_fresh_process(
                        [predict.Job(predict.KERAS2, source)], inputs, workdir, budget, imports
                    )
                    result.reference, result.keras2_ran = KERAS2_REFERENCE, True
                except PredictionError as error:
                    result.problem = str(error)
            progress.update(
                step, description=f"Reloading {escape(target.name)} in safe mode in a fresh process"
            )
            jobs = [predict.Job(predict.KERAS3, target)]
            if expected is None:
                jobs.append(predict.Job(predict.KERAS3_OF_KERAS2, source))
            actual, *reference = predict.in_fresh_process(jobs, inputs, workdir, budget, imports)
        except BudgetExceededError as error:
            result.outcome, result.problem = (
                NOT_CHECKED,
                (
                    f"the prediction process {error}; raise the budget with --check-memory MB / "
                    "--check-seconds S if the model needs more"
                ),
            )
            return
        except PredictionError as error:
            result.outcome, result.problem = FAILED, str(error)
            return
    if expected is None:
        expected, result.reference = reference[0], KERAS3_REFERENCE
    result.max_difference = max(
        (
            float(np.max(np.abs(np.asarray(a, "float64") - np.asarray(e, "float64")), initial=0.0))
            for a, e in zip(actual, expected)
        ),
        default=0.0,
    )
    same = len(actual) == len(expected) and result.max_difference <= ATOL
    result.outcome = PASSED if same else FAILED


def _print_report(console: Console, model, source: Path, target: Path, result: Result) -> None:
    table = Table(title=f"{escape(source.name)} -> {escape(target.name)}: what was translated")
    for column in ("Layer", "Keras 2 class"):
        table.add_column(column, **NAME_COLUMN)
    table.add_column("Translation", overflow="fold")
    for note in result.notes:
        table.add_row(escape(note.layer), escape(note.keras2_class), escape(note.change))
    if result.notes:
        console.print(table)
    translated = len({note.layer for note in result.notes})
    console.print(
        f"{len(model.layers)} layers, {translated} translated, the rest read as they were. "
        f"Wrote {escape(target)}."
    )
    for line in _check_lines(result):
        console.print(line)


def _check_lines(result: Result) -> list[str]:
    """What the check found, in words (rich markup; file text escaped)."""
    if result.outcome == SKIPPED:
        return ["Prediction check skipped (--no-check)."]
    if result.outcome == NOT_CHECKED:
        return [f"[magenta]Check not made (budget)[/]: {escape(result.problem)}."]
    lines = []
    if result.problem and result.max_difference is not None:
        lines.append(
            f"Keras 2 could not predict with the original ({escape(result.problem)}); "
            f"compared with {KERAS3_REFERENCE} instead."
        )
    if result.outcome == PASSED:
        lines.append(
            f"[green]Check passed[/]: the converted file, reloaded in safe mode in a fresh "
            f"process, predicts as {result.reference} (max difference "
            f"{result.max_difference:.2g} <= {ATOL})."
        )
    elif result.max_difference is None:
        lines.append(f"[red]Check FAILED[/]: {escape(result.problem)}.")
    else:
        lines.append(
            f"[red]Check FAILED[/]: the converted file predicts differently from "
            f"{result.reference} (max difference {result.max_difference:.3g} > {ATOL})."
        )
    if not result.trust_file_code:
        lines.append(
            "Keras 2 itself was not run: tf_keras has no safe mode for this file and would run "
            "code from it. To compare with Keras 2's own predictions, pass --trust-file-code "
            "(only for a file you trust)."
        )
    return lines
