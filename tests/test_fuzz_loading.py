"""The loading fuzz (`_fuzz_loading.py`) in CI: a fixed sequence of forged files.

It runs in a child process with a timeout and a memory limit, so a forged
file that crashes, hangs or exhausts the process fails this test instead of
the suite. For a longer search: `python tests/_fuzz_loading.py --examples 5000 --seed 7`.
"""

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLES = 1000


def _limit_memory():
    limit = 8 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_forged_configs_are_refused_cleanly_or_load_only_allowed_ops(tmp_path):
    completed = subprocess.run(
        [sys.executable, str(HERE / "_fuzz_loading.py"), "--examples", str(EXAMPLES)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=170,
        preexec_fn=_limit_memory,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert completed.returncode in (0, 1), completed.stderr[-3000:]
    report = json.loads(completed.stdout[completed.stdout.index("{") :])
    assert report["problems"] == [], report["problems"]
    assert report["refused"] + report["loaded"] == EXAMPLES
    # The fuzz reaches past the name check into arguments, tracing and loading.
    assert report["loaded"] > 0 and report["refusals"].get("OpTraceError", 0) > 0
    assert list(tmp_path.iterdir()) == []
