"""The loading fuzz (`fuzz_loading.py`) in CI: a fixed sequence of forged files.

It runs in a child process with a timeout and a memory limit, so a forged
file that crashes, hangs or exhausts the process fails this test instead of
the suite. For a longer search: `python tests/children/fuzz_loading.py --examples 5000 --seed 7`.
"""

import fuzzing

EXAMPLES = 1000


def test_forged_configs_are_refused_cleanly_or_load_only_allowed_ops(tmp_path):
    report = fuzzing.run_in_child("fuzz_loading.py", "--examples", str(EXAMPLES), cwd=tmp_path, timeout_s=170)
    assert report["problems"] == [], report["problems"]
    assert report["refused"] + report["loaded"] == EXAMPLES
    # The fuzz reaches past the name check into arguments, tracing and loading.
    assert report["loaded"] > 0 and report["refusals"].get("OpTraceError", 0) > 0
    assert list(tmp_path.iterdir()) == []
