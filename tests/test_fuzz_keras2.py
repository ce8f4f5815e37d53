"""The Keras 2 fuzz (`fuzz_keras2.py`) in CI: forged Keras 2 files through convert and inspect.

It runs in a child process with a timeout and a memory limit, so a forged
file that crashes, hangs or exhausts the process fails this test instead of
the suite. For a longer search:
`python tests/children/fuzz_keras2.py --examples 500 --seed 7 --checks all`.
"""

import fuzzing

EXAMPLES = 12


def test_forged_keras2_files_are_refused_cleanly_or_convert_to_allowed_ops(keras2_files, tmp_path):
    report = fuzzing.run_in_child(
        "fuzz_keras2.py",
        "--examples",
        str(EXAMPLES),
        "--keras2-files",
        str(keras2_files),
        cwd=tmp_path,
        timeout_s=900,
    )
    assert report["problems"] == [], report["problems"]
    assert report["refused"] + report["converted"] == EXAMPLES
    # The fuzz reaches past the consistency checks into translation and loading.
    assert report["converted"] > 0 and report["refused"] > 0
    assert list(tmp_path.iterdir()) == []
