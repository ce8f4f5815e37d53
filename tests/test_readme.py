"""Every Python block in README.md runs as written.

Each block runs in its own fresh interpreter, in document order, in one shared folder
(so a block may load a file an earlier block saved, as a reader following the README
would). A block whose first line is a comment naming a backend (`# KERAS_BACKEND=jax
...`) runs with that backend, as its comment tells the reader to. Shell blocks
(installing, running the suite) are exempt.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
BACKEND_COMMENT = re.compile(r"#\s*KERAS_BACKEND=(\w+)")


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, source) of each fenced Python block in `text`.

    >>> python_blocks("intro\\n```python\\nx = 1\\n```\\n```bash\\nls\\n```\\n")
    [(3, 'x = 1\\n')]
    """
    return [(text.count("\n", 0, match.start(1)) + 1, match.group(1)) for match in FENCE.finditer(text)]


def backend_of(source: str) -> str | None:
    """The backend a block's first-line comment asks for, if any.

    >>> backend_of("# KERAS_BACKEND=jax python train.py\\nimport keras\\n")
    'jax'
    >>> backend_of("import keras\\n") is None
    True
    """
    first_line = source.lstrip().splitlines()[0] if source.strip() else ""
    match = BACKEND_COMMENT.match(first_line)
    return match.group(1) if match else None


def run_block(source: str, folder: Path, timeout_s: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("KERAS_BACKEND", None)
    if backend_of(source):
        env["KERAS_BACKEND"] = backend_of(source)
    return subprocess.run(
        [sys.executable, "-c", source],
        check=False,
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_the_readme_has_python_blocks_to_run():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 10, blocks
    assert {backend_of(source) for _, source in blocks} >= {None, "jax", "torch"}


def test_every_readme_python_block_runs(tmp_path):
    failures = []
    for line, source in python_blocks(README.read_text()):
        result = run_block(source, tmp_path)
        if result.returncode != 0:
            failures.append(
                f"README.md line {line} (exit {result.returncode}):\n{source}\n{result.stderr[-3000:]}"
            )
    assert not failures, "\n\n".join(failures)
