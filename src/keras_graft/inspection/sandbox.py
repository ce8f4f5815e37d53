"""`keras-graft inspect`'s XLA and TFLite checks, run in a child process within a budget.

Compiling a layer with XLA or converting it to TFLite folds its constants: a
1 KB file holding `tf.range(250_000_000)` makes TFLite's converter take
6.6 GB, `tf.fill([40000, 40000], 1.0)` runs out of memory after minutes, and
a PNG bomb that loads inertly is decoded there. So these two checks never run
in the process that loaded the file. Each layer's traced graph
(`Probe.concrete`) and the values it captures (its weights) are sent as a
`Task` to the check process (`sandbox_child.py`, which imports TensorFlow
only); it rebuilds the function, compiles or converts it, and answers with
TensorFlow's error, or none.

The check process is started once and reused (`warm_up` starts it early).
Each check runs under a `Budget`: `CHECK_BUDGET` (1.5 GB resident memory,
TensorFlow included, and 10 s), plus three times the layer's captured
values. A check over it kills the process (the next check starts a new one)
and raises `BudgetExceededError`, which `checks` reports as "not checked
(budget)". A `Session` (one per `inspect` call) stops trying after
`MAX_MISSES` such misses, so a file of many hostile layers costs seconds,
not minutes.

>>> import tensorflow as tf
>>> function = tf.function(lambda x: tf.math.sin(x)).get_concrete_function(tf.TensorSpec([2]))
>>> print(Session().run(Task.of(function).asking("xla")))
None
"""

from __future__ import annotations

import atexit
import json
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import tensorflow as tf

from keras_graft import child_process
from keras_graft.child_process import Budget
from keras_graft.errors import (
    BudgetExceededError,
    CheckProcessError,
    UncheckableLayerError,
)

CHECK_BUDGET = Budget(memory_mb=1536, seconds=10)
# How long the check process may take to import TensorFlow and warm up.
START_BUDGET = Budget(memory_mb=1536, seconds=180)
MAX_MISSES = 2

_SCRIPT = Path(__file__).with_name("sandbox_child.py")


@dataclass(frozen=True)
class Task:
    """A traced function as the check process reads it, and the check asked for."""

    header: dict
    graph: bytes
    captures: list = field(default_factory=list)  # tf.io.serialize_tensor bytes

    @classmethod
    def of(cls, function) -> Task:
        """The concrete function `function`, ready to be sent (no check asked yet).

        Raises `UncheckableLayerError` when it captures a TensorFlow resource
        other than a variable, which cannot be sent.
        """
        arguments = len(function.inputs) - len(function.captured_inputs)
        variables = {id(variable.handle): variable for variable in function.variables}
        captures, values = [], []
        for internal, external in zip(function.inputs[arguments:], function.captured_inputs):
            if external.dtype == tf.resource:
                variable = variables.get(id(external))
                if variable is None:
                    raise UncheckableLayerError(
                        "it captures a TensorFlow resource that is not a variable, which "
                        "inspect cannot pass to its check process"
                    )
                captures.append(["variable", internal.name, variable.dtype.name])
                values.append(variable.read_value())
            else:
                captures.append(["constant", internal.name, external.dtype.name])
                values.append(external)
        header = {
            "inputs": [[t.name, t.shape.as_list(), t.dtype.name] for t in function.inputs[:arguments]],
            "outputs": [t.name for t in function.outputs],
            "captures": captures,
        }
        return cls(
            header,
            function.graph.as_graph_def().SerializeToString(),
            [tf.io.serialize_tensor(value).numpy() for value in values],
        )

    def asking(self, check: str, ops_sets=()) -> Task:
        """This task, asking for `check`: "xla", or "tflite" with the names of
        the `tf.lite.OpsSet`s allowed."""
        return replace(self, header={**self.header, "check": check, "ops_sets": list(ops_sets)})

    @property
    def data_bytes(self) -> int:
        return sum(len(data) for data in self.captures)

    def encode(self) -> bytes:
        parts = [json.dumps(self.header).encode(), self.graph, *self.captures]
        return b"".join(len(part).to_bytes(8, "big") + part for part in parts)


class _Worker:
    """The check process: started, made ready, asked, and closed."""

    def __init__(self):
        self._scratch = tempfile.TemporaryDirectory(prefix="keras-graft-check-")
        self.child = child_process.Child(
            child_process.python_script(_SCRIPT, child_process.READY),
            cwd=self._scratch.name,
            stdin=True,
            env={"MALLOC_ARENA_MAX": "2"},
            stderr_path=Path(self._scratch.name) / "stderr",
        )
        self._started = time.monotonic()

    def ask(self, task: Task, budget: Budget) -> dict:
        """The check process's answer to `task`; BudgetExceededError or
        CheckProcessError (the process is then gone) when there is none."""
        while not self.child.ready:
            if self.child.read_line(START_BUDGET, started=self._started) is None:
                raise CheckProcessError(
                    "inspect's check process could not start: "
                    + (self.child.stderr_tail(600).strip().splitlines() or ["(no output)"])[-1]
                )
        self.child.cap(budget)
        try:
            self.child.send(task.encode())
        except BrokenPipeError:
            pass  # it died: read_line says how
        line = self.child.read_line(budget)
        if line is None:
            if self.child.out_of_memory():
                raise BudgetExceededError(
                    f"ran out of memory (at {self.child.peak_rss_mb:.0f} MB resident)", reason="memory"
                )
            raise CheckProcessError(f"the check process died (exit status {self.child.returncode})")
        return json.loads(line)

    def close(self) -> None:
        self.child.close()
        self._scratch.cleanup()


_worker: _Worker | None = None


def warm_up() -> None:
    """Starts the check process now, so that it is ready when the first check comes."""
    global _worker
    if _worker is None:
        _worker = _Worker()


@atexit.register
def close() -> None:
    """Ends the check process (if any); the next check starts a new one."""
    global _worker
    if _worker is not None:
        _worker.close()
        _worker = None


@dataclass
class Session:
    """The checks of one `inspect` call: their budget, and how many went over it."""

    budget: Budget = CHECK_BUDGET
    misses: int = 0

    def run(self, task: Task) -> str | None:
        """TensorFlow's reason why `task`'s check fails, or None when it passes.

        Raises `BudgetExceededError` when the check goes over the budget, or
        when `MAX_MISSES` checks of this session already did (not tried).
        """
        if self.misses >= MAX_MISSES:
            raise BudgetExceededError(
                f"was not asked: {self.misses} checks of this model already went over the budget",
                reason="skipped",
            )
        warm_up()
        try:
            answer = _worker.ask(task, self.budget.with_data(task.data_bytes))
        except (BudgetExceededError, CheckProcessError):
            close()
            self.misses += 1
            raise
        error = answer["error"]
        if error is not None and child_process.allocation_failed(error):
            close()  # what it allocated may stay with it; the next check starts afresh
            self.misses += 1
            raise BudgetExceededError(
                f"went over its memory budget ({self.budget.with_data(task.data_bytes).memory_mb:.0f} MB "
                f"resident): an allocation failed ({error.strip().splitlines()[-1][:200]})",
                reason="memory",
            )
        return error
