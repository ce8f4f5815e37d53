"""pyproject.toml's ranges, CI's pinned minimums and the README's "Tested with" table agree."""

import pytest
from packaging.version import Version

import versions

ROWS = versions.table()
PINS = versions.minimum_pins()
RANGES, PYTHON_RANGE = versions.declared()
DISTRIBUTIONS = [name for name in ROWS if name != versions.PYTHON]


def test_the_table_lists_python_tensorflow_keras_and_every_backend():
    assert {"Python", "tensorflow", "keras", "tf_keras", "jax", "torch"} <= set(ROWS)


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_each_minimum_is_pyprojects_lower_bound_and_ci_pins_it(name):
    assert versions.lower_bound(RANGES[name]) == PINS[name] == ROWS[name]["minimum"]


def test_every_pin_is_a_lower_bound_pyproject_declares():
    for name, version in PINS.items():
        assert versions.lower_bound(RANGES[name]) == version, name


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_the_newest_series_is_the_last_one_pyproject_allows(name):
    """pip can resolve nothing newer than the table's newest series, and does resolve it."""
    series = ROWS[name]["newest"]
    assert series.endswith(".*"), f"{name}: the newest column names a series, like 2.21.*"
    major, minor = (int(part) for part in series[:-2].split("."))
    allowed = RANGES[name]
    assert Version(f"{major}.{minor}.0") in allowed
    assert Version(f"{major}.{minor + 1}.0") not in allowed
    assert Version(f"{major + 1}.0.0") not in allowed


def test_python_minimum_is_requires_python_and_newest_is_not_below_it():
    minimum, newest = ROWS["Python"]["minimum"], ROWS["Python"]["newest"]
    assert versions.lower_bound(PYTHON_RANGE) == minimum
    assert Version(newest) >= Version(minimum)


def test_a_venv_is_checked_against_one_column():
    newest = {
        "Python": "3.11.4",
        "tensorflow": "2.21.0",
        "keras": "3.15.1",
        "tf_keras": "2.21.0",
        "jax": "0.10.2",
        "torch": "2.13.0+cpu",
    }
    rows = {
        "Python": {"minimum": "3.11", "newest": "3.11"},
        "tensorflow": {"minimum": "2.16.1", "newest": "2.21.*"},
        "keras": {"minimum": "3.12.0", "newest": "3.15.*"},
        "tf_keras": {"minimum": "2.16.0", "newest": "2.21.*"},
        "jax": {"minimum": "0.4.34", "newest": "0.10.*"},
        "torch": {"minimum": "2.13.0", "newest": "2.13.*"},
    }
    assert versions.mismatches("newest", newest, rows) == []
    problems = versions.mismatches("minimum", {**newest, "jax": None}, rows)
    assert "tensorflow 2.21.0 is installed; the README's minimum column says 2.16.1" in problems
    assert "jax is not installed; the README's minimum column says 0.4.34" in problems
    assert "torch 2.13.0+cpu" not in " ".join(problems)  # the +cpu build is 2.13.0
    assert not any(problem.startswith("Python") for problem in problems)
    assert versions.mismatches("newest", {**newest, "Python": "3.12.0"}, rows) == [
        "Python 3.12.0 is installed; the README's newest column says 3.11"
    ]


def test_pins_must_be_exact():
    assert versions.minimum_pins("keras==3.11.0  # why\n\n# comment\ntf-keras==2.16.0\n") == {
        "keras": "3.11.0",
        "tf_keras": "2.16.0",
    }
    with pytest.raises(ValueError, match="pins no version"):
        versions.minimum_pins("keras>=3.11\n")


def test_a_row_without_a_distribution_name_is_an_error():
    readme = "## Tested with\n\n| | minimum | newest |\n|---|---|---|\n| TensorFlow | 2.16.1 | 2.21.* |\n"
    with pytest.raises(ValueError, match="names no distribution"):
        versions.table(readme)
