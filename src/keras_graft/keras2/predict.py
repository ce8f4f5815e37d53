"""Predictions of model files in a fresh process, within a memory and time budget.

`keras-graft convert` checks a conversion with fresh processes
(`predict_child.py`, run as a script so that the Keras 2 process never
imports Keras 3): Keras 3, after `import keras_graft`, loads the converted
`.keras` file in safe mode and predicts random inputs; the reference predicts
the same inputs: the Keras 3 model keras-graft builds from the original file
in safe mode (in the same process, after the converted file), or, for a file
the user trusts, tf_keras (Keras 2) on the original, in a process of its own.

Each process runs in a scratch directory, imports nothing from the caller's
working directory and works under a `Budget` (`keras_graft.child_process`):
running a model computes what its ops compute, which a hostile file can make
large.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_graft import child_process
from keras_graft.child_process import Budget
from keras_graft.errors import BudgetExceededError, PredictionError
from keras_graft.keras2 import child_imports, predict_child
from keras_graft.keras2.predict_child import (
    KERAS2,
    KERAS3,
    KERAS3_OF_KERAS2,
    ordered,
    save_arrays,
)

__all__ = ["KERAS2", "KERAS3", "KERAS3_OF_KERAS2", "Budget", "Job", "PredictionError", "in_fresh_process"]

_READERS = {
    KERAS2: "tf_keras (Keras 2)",
    KERAS3: "Keras 3 (safe mode)",
    KERAS3_OF_KERAS2: "keras-graft's Keras 3 reading (safe mode)",
}


@dataclass(frozen=True)
class Job:
    """One model file for one reader (`predict_child.KERAS2`, `KERAS3`, `KERAS3_OF_KERAS2`)."""

    reader: str
    model: Path

    def __str__(self) -> str:
        return f"{_READERS[self.reader]} predicting with {Path(self.model).name}"


def in_fresh_process(
    jobs: list[Job], inputs: list, workdir: Path, budget: Budget, imports: tuple[str, ...] = ()
) -> list[list]:
    """The outputs of each job, run in order in one new process in `workdir`,
    which first imports the user's modules `imports` (imported here: the
    registered layers and losses the files need).

    Raises `PredictionError` when a job fails (naming it and quoting the
    child's last error line), `BudgetExceededError` when the process goes
    over `budget` (naming the job it was running).
    """
    workdir = Path(workdir)
    inputs_path = workdir / "inputs.npz"
    save_arrays(inputs_path, "input_", inputs)
    outputs = [workdir / f"outputs_{index}.npz" for index in range(len(jobs))]
    for path in outputs:
        path.unlink(missing_ok=True)
    jobs_path = workdir / "jobs.json"
    jobs_path.write_text(
        json.dumps(
            [
                {
                    "reader": job.reader,
                    "model": str(Path(job.model).resolve()),
                    "inputs": str(inputs_path),
                    "outputs": str(path),
                }
                for job, path in zip(jobs, outputs)
            ]
        )
    )
    env = {
        "TF_USE_LEGACY_KERAS": "1" if jobs[0].reader == KERAS2 else "0",
        "MALLOC_ARENA_MAX": "2",
        predict_child.IMPORTS_VARIABLE: json.dumps(child_imports.request(imports)),
    }
    child = child_process.Child(
        child_process.python_script(predict_child.__file__, child_process.READY, jobs_path),
        cwd=workdir,
        env=env,
        stderr_path=workdir / "stderr",
    )

    def running() -> Job:
        return next((job for job, path in zip(jobs, outputs) if not path.exists()), jobs[-1])

    try:
        child.wait(budget)
    except BudgetExceededError as error:
        raise BudgetExceededError(f"{error} while {running()}", reason=error.reason) from error
    finally:
        child.close()
    if child.returncode != 0:
        if child.out_of_memory():
            raise BudgetExceededError(
                f"ran out of memory (at {child.peak_rss_mb:.0f} MB) while {running()}", reason="memory"
            )
        last_line = (child.stderr_tail().strip().splitlines() or ["(no output)"])[-1]
        raise PredictionError(f"{running()} failed: {last_line}")
    return [ordered(np.load(path), "output_") for path in outputs]
