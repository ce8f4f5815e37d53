"""The Keras 2 fuzz (`_fuzz_keras2.py`) in CI: forged Keras 2 files through convert and inspect.

It runs in a child process with a timeout and a memory limit, so a forged
file that crashes, hangs or exhausts the process fails this test instead of
the suite. For a longer search:
`python tests/_fuzz_keras2.py --examples 500 --seed 7 --checks all`.
"""

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLES = 12


def _limit_memory():
    limit = 8 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_forged_keras2_files_are_refused_cleanly_or_convert_to_allowed_ops(keras2_files, tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            str(HERE / "_fuzz_keras2.py"),
            "--examples",
            str(EXAMPLES),
            "--keras2-files",
            str(keras2_files),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        preexec_fn=_limit_memory,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert completed.returncode in (0, 1), completed.stderr[-3000:]
    report = json.loads(completed.stdout[completed.stdout.index("{") :])
    assert report["problems"] == [], report["problems"]
    assert report["refused"] + report["converted"] == EXAMPLES
    # The fuzz reaches past the consistency checks into translation and loading.
    assert report["converted"] > 0 and report["refused"] > 0
    assert list(tmp_path.iterdir()) == []
