"""What the Hypothesis fuzzes share: running cases, watching their side effects,
their command line, and running a fuzz in a limited child process.

The fuzzes: `children/fuzz_loading.py` (forged keras-graft files),
`children/fuzz_keras2.py` (forged Keras 2 files) and `shape_programs.py`
(the trace cache against fresh traces).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import hostile

CHILDREN = Path(__file__).resolve().parents[1] / "children"


def export_table_names() -> list[str]:
    """Every name in TensorFlow's export table (`math.top_k`, `compat.v1.floor_div`...)."""
    from tensorflow.python.util import tf_export

    return sorted(tf_export._NAME_TO_SYMBOL_MAPPING)


def run_cases(case, *, examples: int, seed: int, home: Path | str, **strategies) -> None:
    """Calls `case(**drawn)` on `examples` draws from `strategies`.

    Seed 0 is the fixed sequence CI runs (derandomized); another seed, a
    random search. No example database and no deadline: every run starts
    afresh, and a slow case is no failure. Hypothesis keeps its files under `home`.
    """
    import hypothesis.configuration
    from hypothesis import HealthCheck, given, settings

    hypothesis.configuration.set_hypothesis_home_dir(home)
    case = settings(
        max_examples=examples,
        derandomize=seed == 0,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )(given(**strategies)(case))
    if seed:
        case = hypothesis.seed(seed)(case)
    case()


def side_effects(scratch: Path, state_before: dict, where: str) -> list[str]:
    """The problems a case left: files created in the working directory
    `scratch` (then removed, so that the next case starts clean), and process
    state (`hostile._state()`) other than `state_before`."""
    problems = []
    created = sorted(scratch.iterdir())
    if created:
        problems.append(f"files created: {created} by {where}")
        for path in created:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    now = hostile._state()
    if now != state_before:
        changed = {k: (state_before[k], now.get(k)) for k in state_before if state_before[k] != now.get(k)}
        problems.append(f"process state changed {changed} by {where}")
    return problems


def argument_parser(description: str, examples: int, what: str) -> argparse.ArgumentParser:
    """A fuzz's command line: `--examples` (default `examples`, of `what`) and `--seed`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--examples", type=int, default=examples, help=f"{what} to try (default {examples})")
    parser.add_argument(
        "--seed", type=int, default=0, help="0: the fixed CI sequence; other: a random search"
    )
    return parser


def run_in_child(script: str, *arguments: str, cwd: Path, timeout_s: float) -> dict:
    """The JSON report of `children/<script>` run with `arguments` in `cwd`,
    in a fresh interpreter under a memory limit and `timeout_s`: a forged file
    that crashes, hangs or exhausts the process fails the test, not the suite."""
    run = hostile.run_limited(
        [sys.executable, str(CHILDREN / script), *arguments], cwd=cwd, timeout_s=timeout_s
    )
    assert not run["timed_out"], f"{script} ran past {timeout_s} s"
    assert run["returncode"] in (0, 1), run["stderr"][-3000:]
    output = run["stdout"].decode()
    return json.loads(output[output.index("{") :])
