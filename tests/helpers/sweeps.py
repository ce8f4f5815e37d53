"""Sweeps too long for CI: a fixed sample in the suite, every case from the command line.

    python tests/test_keras2_corpus.py --all      # every file of the Keras 2 corpus
    python tests/test_keras2_training.py --all    # every optimizer, in both formats
    python tests/test_hostile_files.py --all      # every hostile model file

Without `--all` (and in `pytest`), each sweep runs its fixed sample, chosen to
cover every class of case (every release and format, every kind of state).
Other arguments go to pytest (`-n 2`, `-k keras2.13`).
"""

from __future__ import annotations

import os
import sys

WHOLE = "KERAS_GRAFT_WHOLE_SWEEPS"


def whole() -> bool:
    """Whether this run covers every case (`--all`)."""
    return os.environ.get(WHOLE) == "1"


def sample(cases: list, in_ci) -> list:
    """`cases`, or only those for which `in_ci(case)` holds unless the run is whole."""
    return list(cases) if whole() else [case for case in cases if in_ci(case)]


def main(test_file: str) -> None:
    """Runs `test_file` with pytest: the whole sweep with `--all`."""
    import pytest

    arguments = sys.argv[1:]
    if "--all" in arguments:
        arguments.remove("--all")
        os.environ[WHOLE] = "1"
    sys.exit(pytest.main([test_file, "-q", "-p", "no:cacheprovider", *arguments]))
