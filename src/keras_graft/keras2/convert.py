"""`keras-graft convert OLD NEW.keras`: a Keras 2 model file as a Keras 3 `.keras` file.

Loads the Keras 2 `.h5`, tf_keras `.keras` or SavedModel directory with
`keras_graft.keras2.files.load_model` (in safe mode), prints what was translated layer by layer,
writes the `.keras` file, and checks it: tf_keras (Keras 2 itself, when
installed) predicts the original file and Keras 3 the converted one, each in
a fresh process, the converted file loaded in safe mode, on the same random
inputs.

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

from keras_graft.errors import ConversionError, UntranslatedCompileWarning
from keras_graft.keras2 import files, predict, report
from keras_graft.terminal import wide_console

ATOL = 1e-4
BATCH = 2
UNKNOWN_DIMENSION = 8



@dataclass
class Result:
    """What a conversion did."""

    notes: list = field(default_factory=list)
    checked: bool = False
    passed: bool = False
    max_difference: float | None = None
    reference: str = ""


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


def convert(source, target, *, check: bool = True, trust_file_code: bool = False, imports=(),
            console: Console | None = None) -> Result:
    """Converts `source` to the `.keras` file `target`; returns what happened.

    `trust_file_code`: the file's code may run (each Keras 2 `Lambda`'s
    function, once, in a separate process). `imports`: the user's modules the
    file needs (registered layers and losses, named functions), imported in
    the checking processes too; import them in this process first.

    Raises `ConversionError` when `source` cannot be loaded or `target` is not
    a `.keras` path.
    """
    source, target = Path(source), Path(target)
    console = console or wide_console(140)
    if target.suffix != ".keras":
        raise ConversionError(f"The converted model is written as a .keras file; got {target}.")
    result = Result()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        step = progress.add_task(f"Loading {source.name}")
        with report.recording() as result.notes:
            model = load(source, trust_file_code, imports)
        progress.update(step, description=f"Writing {target.name} ({len(model.layers)} layers)")
        target.parent.mkdir(parents=True, exist_ok=True)
        model.save(target)
        if check:
            _check(model, source, target, result, progress, step, imports)
    _print_report(console, model, source, target, result)
    return result


def _check(model, source: Path, target: Path, result: Result, progress, step, imports) -> None:
    inputs = random_inputs(model.inputs)
    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        progress.update(step, description=f"Predicting with the original {source.name}")
        try:
            expected = predict.in_fresh_process(predict.KERAS2, source, inputs, workdir, imports)
            result.reference = "tf_keras (Keras 2) on the original file"
        except predict.PredictionError:
            expected = _as_list(model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0))
            result.reference = (
                "Keras 3's reading of the original file (tf_keras is not installed "
                "or could not read it: `pip install tf_keras` to compare with Keras 2 itself)"
            )
        progress.update(step, description=f"Reloading {target.name} in safe mode in a fresh process")
        actual = predict.in_fresh_process(predict.KERAS3, target, inputs, workdir, imports)
    result.checked = True
    result.max_difference = max(
        (float(np.max(np.abs(np.asarray(a, "float64") - np.asarray(e, "float64")), initial=0.0))
         for a, e in zip(actual, expected)),
        default=0.0,
    )
    result.passed = len(actual) == len(expected) and result.max_difference <= ATOL


def _as_list(outputs) -> list:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _print_report(console: Console, model, source: Path, target: Path, result: Result) -> None:
    table = Table(title=f"{source.name} -> {target.name}: what was translated")
    for column in ("Layer", "Keras 2 class", "Translation"):
        table.add_column(column)
    for note in result.notes:
        table.add_row(note.layer, note.keras2_class, note.change)
    if result.notes:
        console.print(table)
    translated = len({note.layer for note in result.notes})
    console.print(
        f"{len(model.layers)} layers, {translated} translated, the rest read as they were. "
        f"Wrote {target}."
    )
    if not result.checked:
        console.print("Prediction check skipped (--no-check).")
    elif result.passed:
        console.print(
            f"[green]Check passed[/]: the converted file, reloaded in safe mode in a fresh "
            f"process, predicts as {result.reference} (max difference "
            f"{result.max_difference:.2g} <= {ATOL})."
        )
    else:
        console.print(
            f"[red]Check FAILED[/]: the converted file predicts differently from "
            f"{result.reference} (max difference {result.max_difference:.3g} > {ATOL})."
        )
