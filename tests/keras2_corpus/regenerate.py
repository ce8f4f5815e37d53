"""Regenerates the corpus of real Keras 2 files, one virtual environment per Keras 2 release.

    python tests/keras2_corpus/regenerate.py                      # every release
    python tests/keras2_corpus/regenerate.py --release keras2.13  # one (repeatable)
    python tests/keras2_corpus/regenerate.py --yamnet DIR         # also YAMNet's feature model

For each release in `RELEASES` it makes (or reuses) a virtual environment
under `--cache` (default `~/.cache/keras-graft-corpus/venv-NAME`, outside the
repository), installs the pinned packages there, and runs `write_corpus.py`
with that environment's Python in a child process: Keras 2 itself writes the
files, into `files/NAME/`. Then `manifest.json` lists every file with its
release's versions (from `pip freeze`), format, model kind, what it holds and
its sha256. CI only reads the files (`tests/test_keras2_corpus.py`);
installing the six releases takes several minutes each the first time.

`--yamnet DIR` names a folder holding `features.py` and `params.py` from
https://github.com/tensorflow/models/tree/master/research/audioset/yamnet
(supply your own copy; that code is not part of this repository). The
model built from it, unmodified, is written as `.h5` for the releases whose
`yamnet` is set.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

HERE = Path(__file__).resolve().parent
FILES = HERE / "files"
MANIFEST = HERE / "manifest.json"
PYTHON = "python3.11"
# Packages whose exact versions the manifest records for each release.
KEY_PACKAGES = ("tensorflow", "keras", "tf-keras", "numpy", "h5py", "protobuf")


@dataclass(frozen=True)
class Release:
    """One Keras 2 release: its environment's exact packages, and what it writes."""

    name: str
    venv: str
    requirements: tuple[str, ...]
    saved_model: tuple[str, ...] = ()  # the models also written as SavedModel directories (100-300 KB each)
    application: tuple[str, ...] = ()  # the formats of the applications model (about 1 MB each)
    yamnet: bool = False  # YAMNet's feature model, with `--yamnet` (120 KB)

    @property
    def environment(self) -> dict:
        """How its Python finds Keras 2 as `tf.keras`.

        TF 2.16+ needs TF_USE_LEGACY_KERAS=1 for tf_keras; TF 2.15 also reads
        the variable, and with it set fails to import its bundled `keras`.
        """
        env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "KERAS_BACKEND")}
        if any(r.startswith("tf_keras") for r in self.requirements):
            env["TF_USE_LEGACY_KERAS"] = "1"
        return {**env, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(HERE), "PYTHONHASHSEED": "0"}


def _pins(tensorflow: str, keras: str, numpy: str, h5py: str = "3.16.0", protobuf: str = "4.25.9"):
    return (f"tensorflow=={tensorflow}", keras, f"numpy=={numpy}", f"h5py=={h5py}", f"protobuf=={protobuf}")


# The `keras` 2.x that TensorFlow 2.12-2.15 bring, and tf_keras, which TF 2.16+
# gives as `tf.keras` with TF_USE_LEGACY_KERAS=1. Exact versions, as pip
# resolved them for each TensorFlow on Python 3.11.
RELEASES = (
    Release(
        "keras2.12",
        "venv-tf2.12",
        _pins("2.12.1", "keras==2.12.0", "1.24.3"),
        saved_model=("unet", "compiled_custom_loss"),
        yamnet=True,
    ),
    Release("keras2.13", "venv-tf2.13", _pins("2.13.1", "keras==2.13.1", "1.24.3"), application=("keras",)),
    Release("keras2.14", "venv-tf2.14", _pins("2.14.1", "keras==2.14.0", "1.26.4")),
    Release(
        "keras2.15",
        "venv-tf2.15",
        _pins("2.15.1", "keras==2.15.0", "1.26.4"),
        saved_model=("nested_shared", "compiled_custom_loss"),
        yamnet=True,
    ),
    Release("tf_keras2.16", "venv-tf2.16", _pins("2.16.2", "tf_keras==2.16.0", "1.26.4")),
    Release("tf_keras2.21", "venv-tf2.21", _pins("2.21.0", "tf_keras==2.21.0", "2.4.6", "3.14.0", "7.36.2")),
)


def _run(command: list, progress: Progress) -> subprocess.CompletedProcess:
    completed = subprocess.run(command, check=False, capture_output=True, text=True)
    if completed.returncode != 0:
        progress.stop()
        sys.exit(
            f"{' '.join(map(str, command))} failed:\n{completed.stdout[-3000:]}{completed.stderr[-6000:]}"
        )
    return completed


def ensure_venv(release: Release, cache: Path, progress: Progress, task) -> Path:
    """The Python of the release's environment, with exactly its requirements installed."""
    venv = cache / release.venv
    python = venv / "bin" / "python"
    marker = venv / "keras-graft-corpus-requirements.txt"
    wanted = "\n".join(release.requirements)
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    if not python.exists():
        progress.update(task, description=f"{release.name}: creating {venv}")
        _run([PYTHON, "-m", "venv", str(venv)], progress)
    progress.update(
        task, description=f"{release.name}: pip install {' '.join(release.requirements)} (minutes)"
    )
    _run([str(python), "-m", "pip", "install", "-q", *release.requirements], progress)
    marker.write_text(wanted)
    return python


def frozen_versions(python: Path, progress: Progress) -> dict:
    """The installed versions of `KEY_PACKAGES` (`pip freeze`)."""
    frozen = _run([str(python), "-m", "pip", "freeze"], progress).stdout.splitlines()
    versions = {}
    for line in frozen:
        name, _, version = line.partition("==")
        if name.lower().replace("_", "-") in KEY_PACKAGES:
            versions[name.lower().replace("_", "-")] = version
    return versions


def write_release(release: Release, python: Path, yamnet: Path | None, progress: Progress, task) -> dict:
    """Runs `write_corpus.py` in the release's environment; returns its summary."""
    out = FILES / release.name
    shutil.rmtree(out, ignore_errors=True)
    command = [str(python), str(HERE / "write_corpus.py"), str(out)]
    if release.saved_model:
        command += ["--saved-model", *release.saved_model]
    if release.application:
        command += ["--application", *release.application]
    if yamnet and release.yamnet:
        command += ["--yamnet", str(yamnet)]
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=release.environment
    )
    for line in child.stdout:
        progress.update(task, description=f"{release.name}: {line.strip()}")
    stderr = child.stderr.read()
    if child.wait() != 0:
        progress.stop()
        sys.exit(f"write_corpus.py failed for {release.name}:\n{stderr[-6000:]}")
    summary_path = out / "written.json"
    summary = json.loads(summary_path.read_text())
    summary_path.unlink()
    return summary


def sha256(path: Path) -> str:
    """The file's sha256; for a directory, of its files' relative paths and contents in order."""
    digest = hashlib.sha256()
    if path.is_file():
        digest.update(path.read_bytes())
        return digest.hexdigest()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(child.relative_to(path)).encode() + b"\0")
        digest.update(hashlib.sha256(child.read_bytes()).digest())
    return digest.hexdigest()


def manifest_entries(release: Release, summary: dict) -> list[dict]:
    """One manifest entry per file the release wrote."""
    entries = []
    for written in summary["files"]:
        model = summary["models"][written["model"]]
        path = FILES / release.name / written["path"]
        entries.append(
            {
                "path": f"files/{release.name}/{written['path']}",
                "arrays": f"files/{release.name}/{written['arrays']}",
                "release": release.name,
                "keras_package": summary["keras_package"],
                "keras_version": summary["keras_version"],
                "tensorflow_version": summary["tensorflow_version"],
                "format": written["format"],
                "container": written["container"],
                "model": written["model"],
                **model,
                "keras2_reload": written["keras2_reload"],
                "sha256": sha256(path),
            }
        )
    return entries


def save_manifest(manifest: dict) -> None:
    """Writes the manifest, files in release order (after each release: a failure keeps the others)."""
    order = [r.name for r in RELEASES]
    manifest["files"].sort(key=lambda f: (order.index(f["release"]), f["path"]))
    MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def disk_usage(path: Path) -> str:
    return subprocess.run(
        ["du", "-sh", str(path)], check=True, capture_output=True, text=True
    ).stdout.split()[0]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--release",
        action="append",
        choices=[r.name for r in RELEASES],
        help="regenerate only this release (repeatable); the manifest keeps the others",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path.home() / ".cache" / "keras-graft-corpus",
        help="where the virtual environments live (default: %(default)s)",
    )
    parser.add_argument("--yamnet", type=Path, help="folder with YAMNet's features.py and params.py")
    args = parser.parse_args(argv)
    if args.yamnet and not all((args.yamnet / f).is_file() for f in ("features.py", "params.py")):
        parser.error(f"--yamnet {args.yamnet}: needs features.py and params.py from YAMNet's folder")
    releases = [r for r in RELEASES if not args.release or r.name in args.release]
    manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {"releases": {}, "files": []}
    console = Console(stderr=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        overall = progress.add_task("releases", total=len(releases))
        for release in releases:
            task = progress.add_task(release.name)
            python = ensure_venv(release, args.cache, progress, task)
            versions = frozen_versions(python, progress)
            summary = write_release(release, python, args.yamnet, progress, task)
            manifest["releases"][release.name] = {
                "requirements": list(release.requirements),
                "installed": versions,
                "python": summary["python"],
                "keras_package": summary["keras_package"],
                "keras_path": summary["keras_path"],
                "unwritable": summary["unwritable"],
                "not_built": summary["not_built"],
            }
            manifest["files"] = [f for f in manifest["files"] if f["release"] != release.name]
            manifest["files"] += manifest_entries(release, summary)
            save_manifest(manifest)
            skipped = " (YAMNet's model skipped: no --yamnet)" if release.yamnet and not args.yamnet else ""
            progress.update(task, description=f"{release.name}: {len(summary['files'])} files{skipped}")
            progress.advance(overall)
    console.print(f"{len(manifest['files'])} files in {MANIFEST.name}; corpus size {disk_usage(FILES)}.")


if __name__ == "__main__":
    main()
