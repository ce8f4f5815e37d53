"""The versions keras-graft supports, as three files state them, and a check of a venv.

Three files say which versions keras-graft runs with, and must agree
(`tests/test_versions.py` checks it):

- `pyproject.toml`: the ranges pip installs from;
- `.ci/minimum-versions.txt`: the lower bounds, pinned, which CI's second
  virtual environment installs;
- the README's "Tested with" table: the minimum and the newest of each.

Run as a script in a virtual environment, it checks that what is installed
there is one column of the table, and prints the versions (CI runs it in each
of its environments, so the table says what CI ran):

    python tests/helpers/versions.py minimum
    python tests/helpers/versions.py newest

>>> matches("2.21.0", "2.21.*"), matches("2.13.0+cpu", "2.13.0"), matches("2.16.2", "2.16.1")
(True, True, False)
"""

from __future__ import annotations

import platform
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
MINIMUM_PINS = ROOT / ".ci" / "minimum-versions.txt"
README = ROOT / "README.md"
TABLE_HEADING = "## Tested with"
COLUMNS = ("minimum", "newest")
PYTHON = "Python"


def matches(installed: str, cell: str) -> bool:
    """Whether `installed` is the version a table cell names: exact (`2.16.1`,
    ignoring a local tag such as `+cpu`) or a release series (`2.21.*`)."""
    return Version(installed).public in SpecifierSet(f"=={cell}")


def table(readme: str | None = None) -> dict[str, dict[str, str]]:
    """The README's "Tested with" table: {distribution or "Python": {column: cell}}.

    The first cell of a row is the distribution's name in backticks, as pip
    spells it (`` `tf_keras` ``), or Python; text after it is for the reader.
    """
    text = README.read_text() if readme is None else readme
    if TABLE_HEADING not in text:
        raise ValueError(f"README.md has no {TABLE_HEADING!r} section")
    section = text.split(TABLE_HEADING, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip().lower() for cell in rows[0].strip("|").split("|")]
    positions = {column: header.index(column) for column in COLUMNS}
    found = {}
    for line in rows[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        name = re.match(r"`([^`]+)`|(Python)\b", cells[0])
        if name is None:
            raise ValueError(f"README.md's {TABLE_HEADING!r} row {line!r} names no distribution in backticks")
        versions = {column: cells[i].strip("`") for column, i in positions.items()}
        found[name.group(1) or name.group(2)] = versions
    return found


def minimum_pins(text: str | None = None) -> dict[str, str]:
    """`.ci/minimum-versions.txt`: {distribution: pinned version}."""
    text = MINIMUM_PINS.read_text() if text is None else text
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            if specifier.operator != "==":
                raise ValueError(f"{MINIMUM_PINS.name}: {line!r} pins no version (write name==version)")
            pins[canonical(requirement.name)] = specifier.version
    return pins


def declared() -> tuple[dict[str, SpecifierSet], SpecifierSet]:
    """pyproject.toml's ranges, {distribution: specifiers of every mention}, and its Python range."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    ranges: dict[str, SpecifierSet] = {}
    for line in requirements:
        requirement = Requirement(line)
        name = canonical(requirement.name)
        ranges[name] = ranges.get(name, SpecifierSet()) & requirement.specifier
    return ranges, SpecifierSet(project["requires-python"])


def lower_bound(specifiers: SpecifierSet) -> str | None:
    bounds = [s.version for s in specifiers if s.operator == ">="]
    return max(bounds, key=Version) if bounds else None


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def installed_versions(names) -> dict[str, str | None]:
    """The installed version of each distribution (None when it is not installed), and Python's."""
    versions = {}
    for name in names:
        if name == PYTHON:
            versions[name] = platform.python_version()
            continue
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def mismatches(column: str, installed: dict[str, str | None], rows: dict[str, dict[str, str]]) -> list[str]:
    """What in `installed` is not the table's `column`, one sentence each
    (Python's cells name a series: `3.11` is any 3.11.x)."""
    problems = []
    for name, cells in rows.items():
        version, wanted = installed.get(name), cells[column]
        if version is None:
            problems.append(f"{name} is not installed; the README's {column} column says {wanted}")
        elif not matches(version, f"{wanted}.*" if name == PYTHON else wanted):
            problems.append(f"{name} {version} is installed; the README's {column} column says {wanted}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in COLUMNS:
        print(f"usage: python {Path(__file__).name} {{{','.join(COLUMNS)}}}", file=sys.stderr)
        return 2
    (column,) = argv
    rows = table()
    installed = installed_versions(rows)
    for name, version in installed.items():
        print(f"{name:12} {version}  (README {column}: {rows[name][column]})")
    problems = mismatches(column, installed, rows)
    for problem in problems:
        print(
            f"error: {problem}: update the README's {TABLE_HEADING!r} table, "
            "pyproject.toml and .ci/minimum-versions.txt together",
            file=sys.stderr,
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
