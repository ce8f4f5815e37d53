"""The wheel holds what users get: every module and data file, the examples, the command.

pyproject.toml lists the packages one by one (the library and its tools), so a new
subpackage or data file is left out of the wheel unless it is listed too; an editable install
would never notice. CI also installs the wheel in a fresh venv and runs the
demo from it (`.ci/run`).
"""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Where each folder of the repository lands in the wheel.
SHIPPED = {
    "src/keras_graft": "keras_graft",
    "src/keras_graft_tools": "keras_graft_tools",
    "examples": "keras_graft/examples",
}


def tracked_files() -> list[str]:
    """The files git tracks under the shipped folders (what a clone, and CI, builds from)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", *SHIPPED, "pyproject.toml", "README.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [name for name in listed.split("\0") if name]


def in_wheel(path: str) -> str:
    for folder, package in SHIPPED.items():
        if path.startswith(folder + "/"):
            return package + path[len(folder) :]
    return path.removeprefix("src/")


def test_the_wheel_holds_every_tracked_file_and_the_command(tmp_path):
    source = tmp_path / "source"
    files = tracked_files()
    for name in files:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel_path,) = (tmp_path / "dist").glob("keras_graft-*.whl")
    with zipfile.ZipFile(wheel_path) as wheel:
        names = set(wheel.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_points = wheel.read(entry_points).decode()

    expected = {in_wheel(name) for name in files if name not in ("pyproject.toml", "README.md")}
    assert "keras_graft/examples/clip_values.py" in expected and "keras_graft_tools/command.py" in expected
    missing = sorted(expected - names)
    assert not missing, (
        f"the wheel lacks {missing}: list their packages in pyproject.toml's [tool.setuptools] "
        "packages (data files: package-data)"
    )
    assert "keras-graft = keras_graft_tools.command:main" in entry_points
