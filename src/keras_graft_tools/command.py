"""The `keras-graft` command's entry point: fast and quiet.

`import keras_graft` imports TensorFlow (it installs auto-wrapping), which
takes seconds. The tools import the library only inside the commands that
need it, so the command first parses its arguments (`cli.parse`): `--help`,
`--version` and usage errors answer at once. Only a real command imports
TensorFlow, with its start-up log lines (oneDNN, CUDA drivers, absl) held
back, unless the user set `TF_CPP_MIN_LOG_LEVEL` and so asked for TF's own.

Before anything is imported, the command takes the working directory off
`sys.path` where Python put it (`python -m keras_graft_tools`): Keras imports a module a model config names when its package
is `keras_hub`, `keras_cv` or `keras_nlp`, so such a folder next to a
downloaded model must never be found. (`--import MODULE` finds MODULE on the Python
path only, never there.)
"""

from __future__ import annotations

import os
import sys
import tempfile

# Marks a TF_CPP_MIN_LOG_LEVEL that the command set, not the user.
_SET_BY_US = "KERAS_GRAFT_QUIET_TENSORFLOW"

# TensorFlow's start-up lines that say nothing about the user's work.
_START_UP_NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
    "Could not find cuda drivers",
    "failed call to cuInit",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation placer already registered",
    "TF-TRT Warning",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions",
)


def forget_working_directory() -> None:
    """Takes the working directory off the front of `sys.path`, where `python -m`
    and `python -c` put it (unless `-P` or PYTHONSAFEPATH kept it out)."""
    if sys.path and not getattr(sys.flags, "safe_path", False) and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow and starts its devices, dropping start-up noise.

    Lines that are not known noise still reach stderr.
    """
    user_chose = "TF_CPP_MIN_LOG_LEVEL" in os.environ and not os.environ.get(_SET_BY_US)
    if user_chose or "tensorflow" in sys.modules:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ[_SET_BY_US] = "1"  # child processes (demo --backend) hold it back too
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # device start-up logs here (cuInit)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        lines = captured.read().decode(errors="replace").splitlines()
    for line in lines:
        if line.strip() and not any(noise in line for noise in _START_UP_NOISE):
            print(line, file=sys.stderr)


def main(argv: list[str] | None = None, *, working_directory_forgotten: bool = False) -> int:
    """The `keras-graft` command. `working_directory_forgotten`: `python -m` took its
    entry off `sys.path` already, and what is first now is the user's own (a
    `PYTHONPATH` naming the working directory)."""
    if not working_directory_forgotten:
        forget_working_directory()
    argv = sys.argv[1:] if argv is None else list(argv)
    from keras_graft_tools import cli  # no TensorFlow: it imports the library where a command needs it

    cli.parse(argv)  # --help, --version, usage errors: exit here
    import_tensorflow_quietly()
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
