"""Child Python processes that import nothing from the working directory, within a budget.

keras-graft starts child interpreters for work that must not happen in the
caller's process: `keras-graft convert`'s prediction check (a fresh process
reloads the converted file), `keras-graft inspect`'s XLA and TFLite checks
(constant folding a file's constants can take gigabytes), the demo on another
Keras backend, the benchmark's Keras 2 workloads. Two rules hold for each:

- **Nothing from the working directory is imported.** `python -c` puts the
  working directory first on `sys.path`, `python script.py` the script's
  folder. Keras imports a module that a config names when its package is
  `keras_hub`, `keras_cv` or `keras_nlp`, so such a folder shipped next to a
  downloaded model would run. `python_code`, `python_script` and
  `python_module` take that entry out before anything is imported, and the
  callers run children in a scratch directory of their own.
- **A `Budget` bounds memory and time.** A `Child` is watched while it works:
  near its budget of resident memory (TensorFlow included; 64 MB before it,
  for what grows between two looks 5 ms apart) or past its time it is
  killed and `BudgetExceededError` is raised. Once the child prints `READY`
  (after its imports, before it touches a model file), its address space is
  capped as well, so that one huge allocation fails at once instead of
  growing between two looks. Memory is enforced on Linux (`/proc`,
  `prlimit`); elsewhere only time is.

This module imports only the standard library.

>>> command = python_code("print(sys.path[0] != '')")
>>> import subprocess; subprocess.run(command, capture_output=True, text=True).stdout
'True\\n'
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

MiB = 1 << 20

# Printed by a child on its standard output once its imports are done.
READY = "@@keras-graft child ready@@"

# Before anything else, the child forgets the entry Python put first on
# `sys.path` for `-c` (the working directory), unless `-P`/PYTHONSAFEPATH
# already kept it out, and writes no core file if it crashes.
_PRELUDE = (
    "import resource, sys\n"
    "if not getattr(sys.flags, 'safe_path', False): del sys.path[0]\n"
    "resource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"
)

# How often a working child's memory and time are looked at, and how far
# below its budget it is stopped: memory keeps growing between two looks.
_POLL_SECONDS = 0.005
_KILL_MARGIN = 64 * MiB
# Address space a child may add beyond its budget of resident memory, for
# thread stacks and allocator arenas that reserve more than they touch.
_ADDRESS_SPACE_SLACK = 512 * MiB
# What a child's error output says when an allocation failed.
_OUT_OF_MEMORY = re.compile(
    r"MemoryError|OOM when allocating|ResourceExhausted|std::bad_alloc|"
    r"Cannot allocate memory|out of memory",
    re.IGNORECASE,
)


def python_code(code: str, *args) -> list[str]:
    """The command line running `code` (with `sys` imported) in a fresh interpreter."""
    return [sys.executable, "-c", _PRELUDE + code, *map(str, args)]


def python_script(script, *args) -> list[str]:
    """The command line running the file `script` as `__main__`, with `args`.

    Unlike `python script.py`, the script's folder is not put on `sys.path`.
    """
    run = "import runpy\nsys.argv.pop(0)\nrunpy.run_path(sys.argv[0], run_name='__main__')\n"
    return python_code(run, script, *args)


def python_module(module: str, *args) -> list[str]:
    """The command line of `python -m module args`, without the working directory on `sys.path`."""
    run = (
        f"import runpy\nsys.argv.pop(0)\nrunpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
    )
    return python_code(run, module, *args)


def child_env(extra: dict | None = None) -> dict:
    """The environment of a child: the caller's, with TensorFlow's C++ logging held back."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Budget:
    """The peak resident memory (MB, TensorFlow included) and wall time a child may take.

    >>> Budget(memory_mb=1536).with_data(100 * MiB).memory_mb
    1836.0
    """

    memory_mb: float = 1536
    seconds: float = 60

    def with_data(self, data_bytes: int) -> Budget:
        """This budget plus three times `data_bytes`: weights a child receives are
        held once as they arrive and copied at most twice more (TFLite freezes
        them into its graph, then writes them into its flatbuffer)."""
        return replace(self, memory_mb=self.memory_mb + 3 * data_bytes / MiB)


class Child:
    """A child process (its own session) whose standard output is read line by line
    while its budget is watched."""

    def __init__(
        self,
        command: list[str],
        *,
        cwd,
        env: dict | None = None,
        stdin: bool = False,
        stderr_path: Path | None = None,
    ):
        self._stderr_path = stderr_path
        with open(stderr_path, "wb") if stderr_path else contextlib.nullcontext(subprocess.DEVNULL) as stderr:
            self.process = subprocess.Popen(  # its own session: killpg reaches what it starts
                command,
                cwd=cwd,
                env=child_env(env),
                stdout=subprocess.PIPE,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        os.set_blocking(self.process.stdout.fileno(), False)
        self._buffer = b""
        self._eof = False
        self.ready = False
        self.capped = False
        self.returncode: int | None = None
        # The largest resident memory seen. (Not the kernel's peak: a child's
        # counts the memory of the process it was forked from.)
        self.peak_rss_mb = 0.0

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, data: bytes) -> None:
        """Writes `data` to the child's standard input (BrokenPipeError if it is gone)."""
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def read_line(self, budget: Budget, *, started: float | None = None) -> str | None:
        """The child's next line of output, or None once it has exited.

        A `READY` line also caps the child's address space for `budget`.
        Raises `BudgetExceededError` (the child killed) when the child goes
        over `budget` (time counted from `started`, default now).
        """
        started = time.monotonic() if started is None else started
        while True:
            line = self._take_line()
            if line == READY:
                self.ready = True
                self.cap(budget)
            if line is not None:
                return line
            if self._eof:  # output closed: wait (watching) for the exit
                self._reap(block=False)
                if self.returncode is not None:
                    return None
                self._watch(budget, started)
                time.sleep(_POLL_SECONDS)
                continue
            self._watch(budget, started)
            readable, _, _ = select.select([self.process.stdout], [], [], _POLL_SECONDS)
            if readable:
                chunk = os.read(self.process.stdout.fileno(), 1 << 16)
                self._buffer += chunk
                self._eof = not chunk

    def wait(self, budget: Budget, *, started: float | None = None) -> list[str]:
        """Every further line of output (but `READY`), once the child has exited within `budget`."""
        started = time.monotonic() if started is None else started
        lines = []
        while (line := self.read_line(budget, started=started)) is not None:
            if line != READY:
                lines.append(line)
        return lines

    def cap(self, budget: Budget) -> None:
        """Caps the child's address space: what it has now, plus what `budget`
        leaves of resident memory, plus some slack. A no-op off Linux."""
        status = _proc_status(self.pid)
        if not status or not hasattr(resource, "prlimit"):
            return
        headroom = max(budget.memory_mb * MiB - status["VmRSS"], 0) + _ADDRESS_SPACE_SLACK
        try:
            resource.prlimit(
                self.pid, resource.RLIMIT_AS, (status["VmSize"] + int(headroom), resource.RLIM_INFINITY)
            )
            self.capped = True
        except (OSError, ValueError):  # The child has just exited, or a hard limit is lower.
            pass

    def out_of_memory(self) -> bool:
        """Whether the child ended because an allocation failed: its error output
        says so, or it aborted while its address space was capped."""
        aborted = self.returncode in (-signal.SIGABRT, -signal.SIGSEGV, -signal.SIGBUS)
        return allocation_failed(self.stderr_tail(1 << 16)) or (self.capped and aborted)

    def stderr_tail(self, characters: int = 2000) -> str:
        if not self._stderr_path or not self._stderr_path.exists():
            return ""
        with open(self._stderr_path, "rb") as stderr:
            stderr.seek(max(stderr.seek(0, os.SEEK_END) - characters, 0))
            return stderr.read().decode(errors="replace")

    def kill(self) -> None:
        """Kills the child and everything it started; idempotent."""
        if self.returncode is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap(block=True)

    def close(self) -> None:
        """Ends the child: its standard input closed, then killed if still running."""
        if self.process.stdin and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass
        self.kill()
        self.process.stdout.close()

    def _take_line(self) -> str | None:
        if b"\n" not in self._buffer:
            return None
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode(errors="replace")

    def _watch(self, budget: Budget, started: float) -> None:
        status = _proc_status(self.pid)
        if status:
            self.peak_rss_mb = max(self.peak_rss_mb, status["VmRSS"] / MiB)
        if status and status["VmRSS"] > budget.memory_mb * MiB - _KILL_MARGIN:
            self.kill()
            raise _over_budget(f"went over its memory budget ({budget.memory_mb:.0f} MB resident)", "memory")
        if time.monotonic() - started > budget.seconds:
            self.kill()
            raise _over_budget(f"went over its time budget ({budget.seconds:g} s)", "time")

    def _reap(self, block: bool) -> None:
        if self.returncode is not None:
            return
        pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        if pid:
            self.returncode = os.waitstatus_to_exitcode(status)
            self.process.returncode = self.returncode


def allocation_failed(text: str) -> bool:
    """Whether an error message says that memory could not be allocated (as it
    does in a child whose address space is capped).

    >>> allocation_failed("RuntimeError: std::bad_alloc"), allocation_failed("no kernel")
    (True, False)
    """
    return bool(_OUT_OF_MEMORY.search(text))


def _proc_status(pid: int) -> dict | None:
    """VmSize and VmRSS of `pid` in bytes, from /proc (None where there is none)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {}
    for key in ("VmSize", "VmRSS"):
        found = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
        if not found:  # a zombie has no memory lines
            return None
        values[key] = int(found.group(1)) * 1024
    return values


def _over_budget(message: str, reason: str):
    from keras_graft.errors import (
        BudgetExceededError,  # here: this module stays stdlib-only
    )

    return BudgetExceededError(message, reason=reason)
