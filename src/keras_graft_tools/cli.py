"""The `keras-graft` command: `demo` (the main job), `bench`, `convert` and `inspect`."""

from __future__ import annotations

import argparse
import importlib
import os
import sys


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keras-graft")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-graft",
        description="TensorFlow operations as first-class citizens of Keras 3 models.",
    )
    parser.add_argument("--version", action="version", version=f"keras-graft {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="three ways to put TF ops in Keras models, end to end (train, save, safe reload, compare)",
    )
    demo.add_argument("--epochs", type=int, default=3, help="training epochs per example (default 3)")
    demo.add_argument("--keep", metavar="DIR", help="keep the saved .keras models in DIR")
    demo.add_argument(
        "--backend",
        choices=("tensorflow", "jax", "torch"),
        default="tensorflow",
        help="also load, check and train the saved models on this Keras backend "
        "(saved on TensorFlow first; needs keras-graft[jax] or [torch])",
    )
    demo.add_argument(
        "--only",
        action="append",
        metavar="EXAMPLE",
        help="run only this example (repeatable): clip_values, custom_matmul, sequence_counter",
    )

    convert = commands.add_parser(
        "convert",
        help="convert a Keras 2 model (.h5, tf_keras .keras, SavedModel dir) to a Keras 3 .keras file",
    )
    convert.add_argument("source", metavar="OLD", help="the Keras 2 model file or SavedModel directory")
    convert.add_argument("target", metavar="NEW.keras", help="the Keras 3 file to write")
    convert.add_argument(
        "--no-check",
        action="store_true",
        help="skip checking that the converted model predicts as the original on random inputs",
    )
    convert.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import this module first, here and in the checking processes (repeatable): the one "
        "defining the file's registered layers, losses or Lambda functions, e.g. my_project.layers",
    )
    convert.add_argument(
        "--trust-file-code",
        action="store_true",
        help="trust this file: allow running its code (each Keras 2 Lambda's function runs once, in "
        "a separate process, and the TF ops it calls replace it; Keras 2 itself loads the "
        "original to check the conversion). Without it, nothing from the file runs",
    )
    _budget_arguments(convert, "the prediction check's process", PREDICTION_SECONDS)

    inspect = commands.add_parser(
        "inspect",
        help="report where each TF op layer of a model works: XLA, TFLite, gradients, "
        "JAX, torch, safe loading",
    )
    inspect.add_argument(
        "model",
        metavar="MODEL",
        help="a .keras file (loaded in safe mode), or a Keras 2 .h5/.keras/SavedModel",
    )
    inspect.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import this module first (repeatable): the one defining the model's "
        "@keras_graft.op / @keras_graft.layer functions, e.g. my_project.layers",
    )
    inspect.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    inspect.add_argument(
        "--html",
        metavar="FILE",
        help="also write a self-contained page: the model's graph, each op layer coloured by what it passes",
    )
    inspect.add_argument(
        "--require",
        type=_check_list,
        default=(),
        metavar="CHECKS",
        help="exit 1 unless every op layer passes these checks: a comma-separated list of "
        f"{', '.join(INSPECT_CHECKS)} (tflite: builtin ops only; a check not made, "
        "'not checked (budget)', does not pass)",
    )
    _budget_arguments(inspect, "each XLA or TFLite check (in its own process)", CHECK_SECONDS)

    bench = commands.add_parser("bench", help="measure construction scaling and run-time overhead")
    bench.add_argument("--quick", action="store_true", help="small sizes and few repeats (seconds)")
    bench.add_argument("--markdown", action="store_true", help="print markdown tables (for the README)")
    bench.add_argument(
        "--results",
        metavar="DIR",
        default="benchmarks/results",
        help="where to write the side-by-side rounds (JSON) and plot (PNG) (default benchmarks/results)",
    )
    bench.add_argument(
        "--backends",
        type=_backend_list,
        default=(),
        metavar="jax,torch",
        help="also compare TF ops with keras.ops on these Keras backends (each in its own process)",
    )
    parser.commands = commands.choices  # each command's own parser, for its usage errors
    return parser


# The budgets' defaults: `keras_graft.child_process.Budget`, `inspection.sandbox.CHECK_BUDGET`
# and `keras2.convert.PREDICTION_BUDGET`, named here so that parsing imports
# no TensorFlow (a test keeps them equal).
MEMORY_MB = 1536
CHECK_SECONDS = 10
PREDICTION_SECONDS = 90


def _budget_arguments(command, what: str, seconds: float) -> None:
    command.add_argument(
        "--check-memory",
        type=float,
        default=MEMORY_MB,
        metavar="MB",
        help=f"peak resident memory {what} may take, TensorFlow included, plus three times "
        f"the weights it is given (default {MEMORY_MB}); over it, it is stopped and the "
        "check reported as not made (budget)",
    )
    command.add_argument(
        "--check-seconds",
        type=float,
        default=seconds,
        metavar="S",
        help=f"wall time {what} may take (default {seconds:g})",
    )


def _backend_list(text: str) -> tuple[str, ...]:
    backends = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in backends if name not in ("jax", "torch")]
    if not backends or unknown:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of jax and torch; got {text!r}")
    return backends


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The parsed command line; usage errors exit with status 2.

    An argument a command does not take is reported with that command's own
    usage, not the top-level one. Needs nothing but argparse, so the
    `keras-graft` launcher parses with it before importing TensorFlow.
    """
    parser = _parser()
    arguments, unknown = parser.parse_known_args(argv)
    command = parser.commands.get(arguments.command)
    if unknown:
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    # Checked here, before TensorFlow is imported, so a typo answers at once.
    given = {"convert": "source", "inspect": "model"}.get(arguments.command)
    if given and not os.path.exists(getattr(arguments, given)):
        command.error(f"{getattr(arguments, given)} does not exist")
    return arguments


# `keras_graft.inspection.CHECKS`, named here so that parsing `--require`
# imports no TensorFlow (a test keeps the two equal).
INSPECT_CHECKS = ("xla", "tflite", "gradient", "jax", "torch", "safe")


def _check_list(text: str) -> tuple[str, ...]:
    checks = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in checks if name not in INSPECT_CHECKS]
    if not checks or unknown:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(INSPECT_CHECKS)}; got {text!r}"
        )
    return checks


def _error_console():
    from rich.console import Console

    return Console(stderr=True, emoji=False, highlight=False, soft_wrap=True)


def _import_user_modules(modules, errors, command: str) -> bool:
    """Imports `--import` modules from the Python path as it is: never from the
    working directory or the model's folder, where a downloaded model may sit
    beside planted modules (`PYTHONPATH=/your/project` names a folder of your
    own)."""
    from keras_graft.terminal import escape

    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as error:  # the user's module: whatever it raised
            hint = ""
            if (
                isinstance(error, ModuleNotFoundError)
                and module.split(".")[0] == (error.name or "").split(".")[0]
            ):
                hint = (
                    " keras-graft looks for it on the Python path only, never in the working directory "
                    "(a model's folder may hold planted modules): install it, or run with "
                    "`PYTHONPATH=/path/to/your/project`."
                )
            errors.print(
                f"keras-graft {command}: --import {escape(module)} failed: "
                f"{type(error).__name__}: {escape(error)}{escape(hint)}"
            )
            return False
    return True


def _import_hint(error: BaseException) -> str:
    """What to add to the command line when `error` comes from an unregistered name."""
    from keras_graft.errors import UnregisteredNameError

    while error is not None and not isinstance(error, UnregisteredNameError):
        error = error.__cause__
    if error is None:
        return ""
    return f" Use `--import {error.module or 'MODULE'}` (the module that defines it)."


def _inspect(arguments) -> int:
    from keras_graft import inspection
    from keras_graft.inspection import loading, sandbox
    from keras_graft.terminal import escape, wide_console

    sandbox.warm_up()  # the check process imports TensorFlow while the model loads
    errors = _error_console()
    if not _import_user_modules(arguments.imports, errors, "inspect"):
        return 2
    try:
        model, keras2 = loading.load(arguments.model)
    except loading.ModelFileError as error:
        errors.print(f"keras-graft inspect: {escape(error)}{escape(_import_hint(error))}")
        return 2
    budget = inspection.Budget(memory_mb=arguments.check_memory, seconds=arguments.check_seconds)
    report = inspection.inspect(model, console=errors, budget=budget)
    report.source, report.keras2 = arguments.model, keras2
    if arguments.html:
        from keras_graft.inspection import html

        with open(arguments.html, "w", encoding="utf-8") as page:
            page.write(html.page(report, html.model_graph(model)))
        errors.print(f"Report page written to {escape(arguments.html)}")
    failures = report.failures(arguments.require)
    if arguments.json:
        print(report.to_json())
    else:
        report.print(wide_console(200))
    for failure in failures:
        errors.print(f"[red]required check failed[/] {escape(failure)}")
    if arguments.require and not failures:
        errors.print(f"All op layers pass {', '.join(arguments.require)}.")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the process exit code."""
    arguments = parse(argv)
    if arguments.command == "demo":
        if arguments.epochs < 1:
            print("keras-graft demo: --epochs must be at least 1.", file=sys.stderr)
            return 2
        if arguments.backend != "tensorflow":
            # The demo saves on TensorFlow in this process; the other backend
            # runs in a child process.
            os.environ["KERAS_BACKEND"] = "tensorflow"
        from keras_graft_tools import demo

        examples = arguments.only or demo.EXAMPLES
        try:
            if arguments.backend != "tensorflow":
                return (
                    0
                    if demo.run_on_backend(
                        arguments.backend, examples, epochs=arguments.epochs, keep=arguments.keep
                    )
                    else 1
                )
            results = demo.run(examples, epochs=arguments.epochs, keep=arguments.keep)
        except (ValueError, ImportError) as error:  # unknown or broken example
            print(f"keras-graft demo: {error}", file=sys.stderr)
            return 2
        return 0 if all(r.ok for r in results) else 1
    if arguments.command == "convert":
        from keras_graft.keras2 import convert
        from keras_graft.terminal import escape

        errors = _error_console()
        if not _import_user_modules(arguments.imports, errors, "convert"):
            return 2
        budget = convert.Budget(memory_mb=arguments.check_memory, seconds=arguments.check_seconds)
        try:
            result = convert.convert(
                arguments.source,
                arguments.target,
                check=not arguments.no_check,
                trust_file_code=arguments.trust_file_code,
                imports=arguments.imports,
                budget=budget,
            )
        except convert.ConversionError as error:
            errors.print(f"keras-graft convert: {escape(error)}{escape(_import_hint(error))}")
            return 2
        return 0 if result.passed or not result.checked else 1
    if arguments.command == "inspect":
        return _inspect(arguments)
    from keras_graft_tools import bench

    bench.run(
        quick=arguments.quick,
        markdown=arguments.markdown,
        backends=arguments.backends,
        results_dir=arguments.results,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
