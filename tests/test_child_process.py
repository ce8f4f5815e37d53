"""Child interpreters: nothing from the working directory, a budget of memory and time."""

import signal
import subprocess

import pytest

from keras_graft import child_process
from keras_graft.child_process import READY, Budget, Child
from keras_graft.errors import BudgetExceededError


@pytest.fixture
def planted(tmp_path):
    """A working directory holding a `keras_hub` package that writes a marker when imported."""
    marker = tmp_path / "imported"
    (tmp_path / "keras_hub").mkdir()
    (tmp_path / "keras_hub" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (tmp_path / "child.py").write_text("import sys\nprint(sys.path)\nimport keras_hub\n")
    return tmp_path, marker


@pytest.mark.parametrize("command", ["code", "script", "module"])
def test_children_import_nothing_from_the_working_directory(planted, command):
    directory, marker = planted
    line = {
        "code": child_process.python_code("print(sys.path)\nimport keras_hub"),
        "script": child_process.python_script(directory / "child.py"),
        "module": child_process.python_module("json.tool", "--help"),
    }[command]
    completed = subprocess.run(line, cwd=directory, capture_output=True, text=True, timeout=60)
    assert not marker.exists()
    if command != "module":
        assert "No module named 'keras_hub'" in completed.stderr
        path = completed.stdout.strip()
        assert "''" not in path and repr(str(directory)) not in path
    else:
        assert completed.returncode == 0  # a module runs, with its arguments
    assert subprocess.run(["python3", "-c", "import keras_hub"], cwd=directory).returncode == 0
    assert marker.exists()  # the planted package does import where the directory is on the path


def test_a_child_over_its_memory_budget_is_killed(tmp_path):
    grow = "chunks = []\nwhile True:\n    chunks.append(bytearray(20 << 20))\n"
    child = Child(child_process.python_code(grow), cwd=tmp_path)
    with pytest.raises(BudgetExceededError, match="memory budget \\(200 MB") as error:
        child.wait(Budget(memory_mb=200, seconds=60))
    assert error.value.reason == "memory" and child.returncode is not None
    assert child.peak_rss_mb <= 200  # stopped before its budget


def test_a_ready_child_cannot_allocate_far_past_its_budget(tmp_path):
    """After READY its address space is capped: one 4 GB allocation fails at once."""
    code = f"print({READY!r}, flush=True)\nimport time\ntime.sleep(0.5)\nbytearray(4 << 30)\n"
    child = Child(child_process.python_code(code), cwd=tmp_path, stderr_path=tmp_path / "stderr")
    child.wait(Budget(memory_mb=300, seconds=60))
    assert child.ready and child.capped
    assert child.returncode == 1 and child.out_of_memory(), child.stderr_tail()
    assert child.peak_rss_mb < 300


def test_a_child_over_its_time_budget_is_killed(tmp_path):
    child = Child(child_process.python_code("import time\ntime.sleep(60)"), cwd=tmp_path)
    with pytest.raises(BudgetExceededError, match="time budget") as error:
        child.wait(Budget(seconds=1))
    assert error.value.reason == "time"
    assert child.returncode == -signal.SIGKILL  # stopped by the budget, not by finishing its sleep


def test_lines_are_read_as_the_child_prints_them(tmp_path):
    child = Child(
        child_process.python_code("print('one', flush=True)\ninput()\nprint('two')"), cwd=tmp_path, stdin=True
    )
    generous = Budget(seconds=30)  # a limit the child never comes near
    first = child.read_line(generous)
    child.send(b"go\n")
    rest = child.wait(generous)
    assert first == "one" and rest == ["two"] and child.returncode == 0
    child.close()
