"""Forged Keras 2 files that attack `keras-graft convert` and `keras-graft inspect`,
and the real commands run on them in a limited child.

keras-graft promises that `keras-graft convert OLD NEW.keras` (without
`--trust-file-code`) and `keras-graft inspect MODEL` run nothing from a
file: no file written (but convert's own target), nothing imported from the
working directory, at most 1.5 GB resident memory per process, and an answer
in seconds. Each builder here writes one file that breaks (or probes) that
promise, from real tf_keras files (`sources`, written by tf_keras in a child
process, once per directory):

- `savedmodel_lambda_in_metadata`: a SavedModel whose root config says
  `ReLU` while the layer's own metadata, which tf_keras rebuilds it from, is
  a `Lambda` whose bytecode writes `marker`; variations hide the Lambda in a
  second node 0, in a node no config names, in an RNN cell listed before its
  RNN, and in an object number two layers share;
- `keras_zip_hidden_initializer` (and `h5_hidden_initializer`): a
  `SeparableConv1D` whose `kernel_initializer`, which keras-graft drops as
  unused, is a `Functional` model whose `TFOpLambda` calls `tf.io.write_file`
  on `marker` (tf_keras builds it, and the op runs);
- `keras_zip_foreign_module`, `keras_zip_registered_name`: object configs that
  tf_keras would look up elsewhere than keras-graft;
- `*_stft_window_bomb`: `tf.signal.stft` with a 2**27-sample window, which
  constant folding in XLA or TFLite computes (1 GB), in each format;
- `*_keras_hub`: configs naming a module of `keras_hub`, which Keras imports.

`run_command` runs `keras-graft ...` (the installed launcher) in a fresh
working directory under an address-space limit and a timeout, through the
runner of `hostile.py`, and reports the peak memory, the files created,
and whether `marker` exists. `run_batch` runs the command's entry point on
many files, one after the other, in one such child (what CI affords);
`sweep` runs every forgery through both commands, each in its own child:

    python tests/helpers/hostile_keras2.py --all          # the whole sweep, a JSON line per run
    python tests/helpers/hostile_keras2.py --only range_250m,fill_40k   # some of it
    python hostile_keras2.py --sources DIR MARKER # (the child that writes the sources)
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import hostile

HERE = Path(__file__).resolve().parent
STFT_WINDOW = 1 << 27  # samples: 512 MB of float32, once folded
MEMORY_BUDGET_MB = 1536  # per process, TensorFlow included


# ---------------------------------------------------------------------------
# The real tf_keras files the forgeries start from
# ---------------------------------------------------------------------------


def _write_sources(directory: Path, marker: str) -> None:
    """In the tf_keras child: the source models, each in the formats it is forged in."""
    import tensorflow as tf
    import tf_keras as keras

    def save(name, model, formats=("h5", "keras", "savedmodel")):
        for kind in formats:
            target = directory / (f"{name}_savedmodel" if kind == "savedmodel" else f"{name}.{kind}")
            model.save(target, **({"save_format": "tf"} if kind == "savedmodel" else {}))

    def dense_then(activation):
        keras.backend.clear_session()
        x = keras.Input((3,), name="x")
        return keras.Model(x, activation(keras.layers.Dense(3, name="dense")(x)), name="model")

    save("dense_relu", dense_then(keras.layers.ReLU(name="act")))
    # The payload: a Lambda named as the ReLU, whose bytecode writes `marker`.
    writes = keras.layers.Lambda(lambda t, path=marker: (open(path, "w").close(), t)[1], name="act")
    save("dense_lambda", dense_then(writes), formats=("savedmodel",))
    keras.backend.clear_session()
    x = keras.Input((8, 2), name="x")
    save("separable", keras.Model(x, keras.layers.SeparableConv1D(3, 3, name="sep")(x)), ("h5", "keras"))
    keras.backend.clear_session()
    x = keras.Input((4,), name="x")
    recurrent = keras.layers.LSTM(3, name="lstm")(keras.layers.Reshape((2, 2), name="pairs")(x))
    save("lstm", keras.Model(x, recurrent), formats=("savedmodel",))
    keras.backend.clear_session()
    x = keras.Input((64,), name="x")
    save("stft", keras.Model(x, tf.math.abs(tf.signal.stft(x, frame_length=8, frame_step=8))))


def sources(directory) -> Path:
    """The real tf_keras source files in `directory` (written once, by a tf_keras child).

    The Lambda of `dense_lambda` writes to `directory/MARKER`.
    """
    directory = Path(directory)
    if not (directory / "stft.h5").exists():
        completed = subprocess.run(
            [sys.executable, __file__, "--sources", str(directory), str(marker(directory))],
            env=hostile._child_env({"TF_USE_LEGACY_KERAS": "1"}),
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"tf_keras could not write the sources:\n{completed.stderr[-3000:]}")
        marker(directory).unlink()  # written when tf_keras built the Lambda
    return directory


def marker(directory) -> Path:
    """The file every payload of `directory`'s forgeries writes when it runs."""
    return Path(directory).resolve() / "MARKER"


# ---------------------------------------------------------------------------
# Editing Keras 2 files
# ---------------------------------------------------------------------------


def _edit_h5(source: Path, target: Path, edit) -> Path:
    import h5py

    shutil.copyfile(source, target)
    with h5py.File(target, "r+") as file:
        config = json.loads(file.attrs["model_config"])
        edit(config)
        file.attrs["model_config"] = json.dumps(config).encode()
    return target


def _metadata(path: Path):
    from tensorflow.python.keras.protobuf import saved_metadata_pb2

    metadata = saved_metadata_pb2.SavedMetadata()
    metadata.ParseFromString((path / "keras_metadata.pb").read_bytes())
    return metadata


def _edit_savedmodel(source: Path, target: Path, edit) -> Path:
    """`source` copied to `target`, `edit(metadata)` applied to its keras_metadata.pb."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    metadata = _metadata(target)
    edit(metadata)
    (target / "keras_metadata.pb").write_bytes(metadata.SerializeToString())
    return target


def _node(metadata, path: str):
    return next(node for node in metadata.nodes if node.node_path == path)


def _layer(config: dict, name: str) -> dict:
    return next(layer for layer in config["config"]["layers"] if layer["name"] == name)


def _edit_everywhere(kind: str, source: Path, target: Path, edit_model) -> Path:
    """`edit_model(model config)` applied to a file of any kind: for a SavedModel to the
    root config and, consistently, to each layer's own metadata."""
    if kind == "h5":
        return _edit_h5(source, target, edit_model)
    if kind == "keras":
        return hostile.edited_keras(source, target, edit_model)

    def edit(metadata):
        root = _node(metadata, "root")
        model = json.loads(root.metadata)
        edit_model(model)
        root.metadata = json.dumps(model)
        layers = {layer["name"]: layer for layer in model["config"]["layers"]}
        for node in metadata.nodes:
            data = json.loads(node.metadata)
            if node.node_path != "root" and data.get("name") in layers:
                data["config"] = layers[data["name"]]["config"]
                node.metadata = json.dumps(data)

    return _edit_savedmodel(source, target, edit)


# ---------------------------------------------------------------------------
# SavedModel: what tf_keras rebuilds is not what the root config says
# ---------------------------------------------------------------------------


def _lambda_metadata(directory: Path) -> str:
    return _node(_metadata(directory / "dense_lambda_savedmodel"), "root.layer-2").metadata


def savedmodel_lambda_in_metadata(directory) -> Path:
    """Root config: Dense -> ReLU. The ReLU's own node (what tf_keras rebuilds it
    from): the Lambda whose bytecode writes the marker."""
    directory = sources(directory)
    payload = _lambda_metadata(directory)

    def edit(metadata):
        _node(metadata, "root.layer-2").metadata = payload

    return _edit_savedmodel(
        directory / "dense_relu_savedmodel", directory / "savedmodel_lambda_in_metadata", edit
    )


def savedmodel_second_root(directory) -> Path:
    """The benign root first, then a second node 0 (which tf_keras keeps: the
    last one of an id) whose config has the Lambda in place of the ReLU."""
    directory = sources(directory)
    lambda_node = json.loads(_lambda_metadata(directory))

    def edit(metadata):
        root = copy.deepcopy(_node(metadata, "root"))
        model = json.loads(root.metadata)
        layer = _layer(model, "act")
        layer["class_name"], layer["config"] = "Lambda", lambda_node["config"]
        root.metadata = json.dumps(model)
        metadata.nodes.append(root)

    return _edit_savedmodel(directory / "dense_relu_savedmodel", directory / "savedmodel_second_root", edit)


def savedmodel_unlisted_lambda(directory) -> Path:
    """A Lambda layer node at a path that no model config lists."""
    directory = sources(directory)
    payload = _lambda_metadata(directory)

    def edit(metadata):
        extra = copy.deepcopy(_node(metadata, "root.layer-2"))
        extra.node_path, extra.node_id, extra.metadata = "root.keras_api.extra", 999, payload
        metadata.nodes.append(extra)

    return _edit_savedmodel(
        directory / "dense_relu_savedmodel", directory / "savedmodel_unlisted_lambda", edit
    )


def savedmodel_cell_before_its_rnn(directory) -> Path:
    """An LSTM's cell, listed before the LSTM, as the Lambda: tf_keras reaches the
    cell first and rebuilds it from its own metadata."""
    directory = sources(directory)
    payload = json.loads(_lambda_metadata(directory))

    def edit(metadata):
        cell = next(node for node in metadata.nodes if node.node_path.endswith(".cell"))
        data = json.loads(cell.metadata)
        cell.metadata = json.dumps({**payload, "name": data["name"]})
        nodes = [node for node in metadata.nodes if node is not cell]
        reordered = [copy.deepcopy(cell), *(copy.deepcopy(node) for node in nodes)]
        del metadata.nodes[:]
        metadata.nodes.extend(reordered)

    return _edit_savedmodel(directory / "lstm_savedmodel", directory / "savedmodel_cell_before_its_rnn", edit)


def savedmodel_shared_object(directory) -> Path:
    """Two configs of one shared object number (tf_keras builds the first for both):
    the Dense's own node gives its initializer another config under the number."""
    directory = sources(directory)

    def edit(metadata):
        node = _node(metadata, "root.layer_with_weights-0")
        data = json.loads(node.metadata)
        data["config"]["kernel_initializer"]["shared_object_id"] = 7
        data["config"]["bias_initializer"]["shared_object_id"] = 7
        node.metadata = json.dumps(data)

    return _edit_savedmodel(directory / "dense_relu_savedmodel", directory / "savedmodel_shared_object", edit)


# ---------------------------------------------------------------------------
# Config keys keras-graft drops, modules it does not read
# ---------------------------------------------------------------------------


def _write_file_model(marker_path: Path) -> dict:
    """A tf_keras `Functional` config whose `TFOpLambda` calls `tf.io.write_file(marker)`
    on constants: tf_keras runs it eagerly while it builds the model."""
    return {
        "module": "tf_keras.src.engine.functional",
        "class_name": "Functional",
        "registered_name": "Functional",
        "config": {
            "name": "payload",
            "trainable": True,
            "layers": [
                {
                    "module": "keras.layers",
                    "class_name": "InputLayer",
                    "registered_name": None,
                    "name": "seed",
                    "inbound_nodes": [],
                    "config": {
                        "batch_input_shape": [None, 1],
                        "dtype": "float32",
                        "sparse": False,
                        "ragged": False,
                        "name": "seed",
                    },
                },
                {
                    "module": "tf_keras.src.layers.core.tf_op_layer",
                    "class_name": "TFOpLambda",
                    "registered_name": "TFOpLambda",
                    "name": "tf.io.write_file",
                    "config": {
                        "name": "tf.io.write_file",
                        "trainable": True,
                        "dtype": "float32",
                        "function": "io.write_file",
                    },
                    "inbound_nodes": [
                        [
                            "_CONSTANT_VALUE",
                            -1,
                            str(marker_path),
                            {"contents": "written by the model file", "name": None},
                        ]
                    ],
                },
            ],
            "input_layers": [["seed", 0, 0]],
            "output_layers": [["seed", 0, 0]],
        },
    }


def _hidden_initializer(kind: str, directory) -> Path:
    directory = sources(directory)

    def edit(config):
        _layer(config, "sep")["config"]["kernel_initializer"] = _write_file_model(marker(directory))

    return _edit_everywhere(
        kind, directory / f"separable.{kind}", directory / f"hidden_initializer.{kind}", edit
    )


def keras_zip_hidden_initializer(directory) -> Path:
    """tf_keras `.keras`: SeparableConv1D's unused `kernel_initializer` is a Functional
    whose TFOpLambda writes the marker (the issue's forgery)."""
    return _hidden_initializer("keras", directory)


def h5_hidden_initializer(directory) -> Path:
    """The same in an `.h5` file."""
    return _hidden_initializer("h5", directory)


def _dense_initializer(kind: str, directory, name: str, initializer: dict) -> Path:
    directory = sources(directory)

    def edit(config):
        _layer(config, "dense")["config"]["kernel_initializer"] = initializer

    return _edit_everywhere(kind, directory / f"dense_relu.{kind}", directory / f"{name}.{kind}", edit)


def keras_zip_foreign_module(directory) -> Path:
    """tf_keras `.keras`: an initializer config naming module `os` (tf_keras imports
    any module a `.keras` file names)."""
    return _dense_initializer(
        "keras",
        directory,
        "foreign_module",
        {"module": "os", "class_name": "GlorotUniform", "config": {"seed": None}, "registered_name": None},
    )


def keras_zip_registered_name(directory) -> Path:
    """tf_keras `.keras`: a Dense initializer registered under another name
    (`keras_graft>TFOp`), which Keras 3 and tf_keras look up differently."""
    return _dense_initializer(
        "keras",
        directory,
        "registered_name",
        {
            "module": "keras.initializers",
            "class_name": "GlorotUniform",
            "config": {"seed": None},
            "registered_name": "keras_graft>TFOp",
        },
    )


def keras3_keras_hub(directory) -> Path:
    """A Keras 3 `.keras` whose layer names module `keras_hub.src.evil`: Keras 3, even
    in safe mode, imports it (from the working directory, were it on `sys.path`)."""
    directory = Path(directory)
    evil = {
        "module": "keras_hub.src.evil",
        "class_name": "Evil",
        "config": {"name": "evil"},
        "registered_name": "keras_hub>Evil",
        "name": "evil",
        "inbound_nodes": [
            {
                "args": [
                    {
                        "class_name": "__keras_tensor__",
                        "config": {"shape": [None, 3], "dtype": "float32", "keras_history": ["input", 0, 0]},
                    }
                ],
                "kwargs": {},
            }
        ],
    }
    layers = [hostile.input_layer(), evil]
    return hostile.write_keras(directory, "keras3_keras_hub.keras", hostile.model_config(layers))


def keras_hub_initializer(kind: str, directory) -> Path:
    """A Dense initializer of module `keras_hub.src.evil` (Keras imports keras_hub,
    keras_cv and keras_nlp modules a config names)."""
    return _dense_initializer(
        kind,
        directory,
        "keras_hub",
        {"module": "keras_hub.src.evil", "class_name": "Evil", "config": {}, "registered_name": None},
    )


# ---------------------------------------------------------------------------
# Constant folding in inspect's checks, and the inputs convert's check makes
# ---------------------------------------------------------------------------


def stft_window_bomb(kind: str, directory) -> Path:
    """`tf.signal.stft(x, frame_length=2**27)` on a (2**27,) input: its Hann window is
    computed from constants alone, so XLA and TFLite fold 512 MB+ (a 2 KB file)."""
    directory = sources(directory)

    def edit(config):
        x = _layer(config, "x")
        x["config"]["batch_input_shape"] = [None, STFT_WINDOW]
        stft = next(
            layer
            for layer in config["config"]["layers"]
            if layer["class_name"] == "TFOpLambda" and layer["config"]["function"] == "signal.stft"
        )
        stft["inbound_nodes"][0][3].update(frame_length=STFT_WINDOW, frame_step=STFT_WINDOW)

    source = directory / ("stft_savedmodel" if kind == "savedmodel" else f"stft.{kind}")
    target = directory / ("stft_bomb_savedmodel" if kind == "savedmodel" else f"stft_bomb.{kind}")
    return _edit_everywhere(kind, source, target, edit)


# ---------------------------------------------------------------------------
# Names that would rewrite the terminal
# ---------------------------------------------------------------------------

# ESC sequences (erase line, colour, OSC 8 link), carriage return, backspace,
# a bidi override, a newline, rich markup and an emoji code.
FORGED_NAME = (
    "clip\x1b[2K\x1b[32mCheck passed\x1b[0m\x1b]8;;http://x.test\x07link\x1b]8;;\x07"
    "\r\b\u202eevil\n[bold red]required[/]:white_check_mark:"
)
HIDDEN_CHARACTERS = ("\x1b", "\x07", "\r", "\b", "\u202e")


def _rename(config: dict, old: str, new: str) -> None:
    """Renames a layer of a model config, references included (the text, everywhere)."""
    text = json.dumps(config).replace(json.dumps(old)[1:-1], json.dumps(new)[1:-1])
    config.clear()
    config.update(json.loads(text))


def forged_names_h5(directory) -> Path:
    """A Keras 2 `.h5` (x -> tf.signal.stft -> tf.math.abs) whose model and op layer
    `tf.math.abs` are named `FORGED_NAME`."""
    directory = sources(directory)

    def edit(config):
        _rename(config, "tf.math.abs", FORGED_NAME)
        config["config"]["name"] = FORGED_NAME

    return _edit_h5(directory / "stft.h5", directory / "forged_names.h5", edit)


def forged_op_name_h5(directory) -> Path:
    """The same `.h5` whose op layer names the op `FORGED_NAME` (refused, quoting it)."""
    directory = sources(directory)

    def edit(config):
        _layer(config, "tf.math.abs")["config"]["function"] = FORGED_NAME

    return _edit_h5(directory / "stft.h5", directory / "forged_op_name.h5", edit)


# ---------------------------------------------------------------------------
# The commands, in a limited child
# ---------------------------------------------------------------------------


def launcher() -> list[str]:
    """The installed `keras-graft` command (the console script), or its module."""
    script = Path(sys.executable).with_name("keras-graft")
    return [str(script)] if script.exists() else [sys.executable, "-m", "keras_graft_tools.command"]


def plant_modules(directory: Path, marker_path: Path, launcher_module: bool = True) -> None:
    """`keras_hub`, `keras_cv`, `keras_nlp` (and with `launcher_module`, the
    `keras_graft_tools` package the console script imports) in `directory`, each
    writing `marker_path` when imported. (`python -m keras_graft_tools` finds its
    package in the working directory by design, before any of our code runs: no
    launcher module is planted for it.)"""
    code = f"open({str(marker_path)!r}, 'a').write(__name__ + '\\n')\n"
    for package in ("keras_hub", "keras_cv", "keras_nlp"):
        (directory / package / "src").mkdir(parents=True, exist_ok=True)
        (directory / package / "__init__.py").write_text(code)
        (directory / package / "src" / "__init__.py").write_text(code)
        (directory / package / "src" / "evil.py").write_text(code + "class Evil: pass\n")
    if launcher_module:
        (directory / "keras_graft_tools").mkdir()
        (directory / "keras_graft_tools" / "__init__.py").write_text(code)
        (directory / "keras_graft_tools" / "command.py").write_text(code + "def main(): pass\n")


def run_command(
    arguments: list,
    *,
    marker_path: Path,
    timeout_s: float = 240,
    memory_limit_bytes: int = 8 * hostile.GiB,
    plant: bool = True,
    command: list[str] | None = None,
    env: dict | None = None,
    cwd: Path | None = None,
) -> dict:
    """`keras-graft ARGUMENTS` (or `command`) in a fresh working directory (with the
    planted modules of `plant_modules`), or in `cwd`, under an address-space limit
    and a timeout.

    Arguments may name `{cwd}` for the working directory. Returns the runner's
    result (`hostile.run_limited`) with `outcome` ("exited", "timeout"),
    `stdout` as text, `peak_rss_mb` (the largest process of the tree),
    `files_created` (names in the working directory, planted ones left out)
    and `marker` (whether `marker_path` exists afterwards).
    """
    with tempfile.TemporaryDirectory(prefix="hostile-command-") as scratch:
        cwd = Path(cwd or scratch)
        if plant:
            console_script = (command or launcher())[0].endswith("keras-graft")
            plant_modules(cwd, marker_path, launcher_module=console_script)
        before = set(_tree(cwd))
        argv = [str(a).replace("{cwd}", str(cwd)) for a in arguments]
        result = hostile.run_limited(
            (command or launcher()) + argv,
            cwd=cwd,
            timeout_s=timeout_s,
            memory_limit_bytes=memory_limit_bytes,
            env=env,
        )
        result["files_created"] = sorted(set(_tree(cwd)) - before)
    result.update(
        outcome="timeout" if result["timed_out"] else "exited",
        stdout=result["stdout"].decode(errors="replace"),
        marker=marker_path.exists(),
    )
    return result


def _tree(directory: Path) -> list[str]:
    return [
        str(path.relative_to(directory)) for path in directory.rglob("*") if "__pycache__" not in path.parts
    ]


_RESULTS = "@@BATCH_RESULTS@@"


def run_batch(commands: list[list], *, marker_path: Path, timeout_s: float = 900, env=None) -> dict:
    """Each `keras-graft ARGUMENTS` of `commands`, one after the other, through the
    command's entry point (`keras_graft_tools.command.main`) in one limited child
    (`run_command`; `{cwd}` in an argument is its working directory): its
    result, with `runs`, per command: `status` (exit code), `stdout`, `stderr`.
    A command whose first item is a dict runs with those environment variables
    set (e.g. `{"FORCE_COLOR": "1"}`, read by the consoles it makes)."""
    commands = [[c[0], *map(str, c[1:])] if isinstance(c[0], dict) else [str(a) for a in c] for c in commands]
    result = run_command(
        ["--batch", json.dumps(commands)],
        marker_path=marker_path,
        timeout_s=timeout_s,
        env=env,
        command=[sys.executable, __file__],
    )
    reported = [line for line in result["stdout"].splitlines() if line.startswith(_RESULTS)]
    result["runs"] = json.loads(reported[-1][len(_RESULTS) :]) if reported else None
    return result


def _batch(commands: list[list[str]]) -> None:
    import contextlib
    import io
    import os
    from unittest import mock

    import keras_graft_tools.command

    runs = []
    for argv in commands:
        env, argv = (argv[0], argv[1:]) if isinstance(argv[0], dict) else ({}, argv)
        out, err = io.StringIO(), io.StringIO()
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            mock.patch.dict(os.environ, env),
        ):
            try:
                status = keras_graft_tools.command.main(argv)
            except SystemExit as exit:  # usage errors
                status = exit.code
        runs.append({"argv": argv, "status": status, "stdout": out.getvalue(), "stderr": err.getvalue()})
    print(_RESULTS + json.dumps(runs), flush=True)


def keras3_bombs(directory) -> dict:
    """Keras 3 files that load inertly but whose constants XLA or TFLite would fold:
    `tf.range(250_000_000)` (1 KB), `tf.fill([40000, 40000], 1.0)`, a PNG bomb, a zlib bomb."""
    directory = Path(directory)
    return {
        "range_250m": hostile.single_op(directory, "range_250m.keras", "tf.range", args=[250_000_000]),
        "fill_40k": hostile.single_op(directory, "fill_40k.keras", "tf.fill", args=[[40000, 40000], 1.0]),
        "decode_png_bomb": hostile.decode_png_bomb(directory),
        "decode_compressed_bomb": hostile.decode_compressed_bomb(directory),
    }


def forgeries(directory) -> dict:
    """Every forged file of this module, and `keras3_bombs`, by name."""
    directory = Path(directory)
    built = [
        savedmodel_lambda_in_metadata,
        savedmodel_second_root,
        savedmodel_unlisted_lambda,
        savedmodel_cell_before_its_rnn,
        savedmodel_shared_object,
        keras_zip_hidden_initializer,
        h5_hidden_initializer,
        keras_zip_foreign_module,
        keras_zip_registered_name,
        keras3_keras_hub,
        forged_names_h5,
        forged_op_name_h5,
    ]
    files = {build.__name__: build(directory) for build in built}
    for kind in ("h5", "keras", "savedmodel"):
        files[f"stft_window_bomb_{kind}"] = stft_window_bomb(kind, directory)
    for kind in ("h5", "keras"):
        files[f"keras_hub_initializer_{kind}"] = keras_hub_initializer(kind, directory)
    files.update(keras3_bombs(directory))
    files.update(file_format_attacks(directory))
    return files


def file_format_attacks(directory) -> dict:
    """The HDF5 and zip forgeries of `hostile.FILE_FORMAT_ATTACKS` (shape, gzip and zip
    bombs, links and external storage, path traversal...), by name."""
    return {build.__name__: build(Path(directory)) for build in hostile.FILE_FORMAT_ATTACKS}


def sweep(directory, only: list[str] | None = None) -> list[dict]:
    """Both commands on every forgery (or those named in `only`), each run in its own
    limited child (an hour on a 2-core machine for all of them)."""
    results = []
    mark = marker(directory)
    built = forgeries(directory)
    unknown = sorted(set(only or ()) - set(built))
    if unknown:
        raise SystemExit(f"no forgery named {', '.join(unknown)}; there are: {', '.join(built)}")
    for name, path in built.items():
        if only and name not in only:
            continue
        for command in ("convert", "inspect"):
            mark.unlink(missing_ok=True)
            arguments = [command, path, *(["{cwd}/out.keras"] if command == "convert" else ["--json"])]
            run = run_command(arguments, marker_path=mark)
            results.append(
                {
                    "forgery": name,
                    "command": command,
                    **{
                        key: run[key]
                        for key in (
                            "returncode",
                            "outcome",
                            "marker",
                            "peak_rss_mb",
                            "peak_pss_mb",
                            "seconds",
                            "files_created",
                        )
                    },
                }
            )
            print(json.dumps(results[-1]), flush=True)
    return results


def broken_promises(run: dict) -> list[str]:
    """What a sweep run (`sweep`) did that an untrusted file must never make a command do."""
    broken = []
    if run["marker"]:
        broken.append("a payload ran or a planted module was imported")
    if set(run["files_created"]) - {"out.keras"}:
        broken.append(f"created {sorted(set(run['files_created']) - {'out.keras'})}")
    if run["peak_rss_mb"] > MEMORY_BUDGET_MB:
        broken.append(f"{run['peak_rss_mb']} MB resident")
    if run["outcome"] != "exited" or run["returncode"] not in (0, 1, 2):
        broken.append(f"{run['outcome']}, exit status {run['returncode']}")
    return broken


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--sources":
        Path(sys.argv[2]).mkdir(parents=True, exist_ok=True)
        _write_sources(Path(sys.argv[2]), sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "--batch":
        _batch(json.loads(sys.argv[2]))
    elif sys.argv[1:] == ["--all"] or sys.argv[1:2] == ["--only"] and len(sys.argv) == 3:
        with tempfile.TemporaryDirectory(prefix="hostile-keras2-") as scratch:
            runs = sweep(scratch, only=sys.argv[2].split(",") if len(sys.argv) == 3 else None)
        failures = {f"{run['command']} {run['forgery']}": broken_promises(run) for run in runs}
        failures = {run: broken for run, broken in failures.items() if broken}
        print(
            json.dumps(
                {
                    "runs": len(runs),
                    "max_peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                    "max_seconds": max(r["seconds"] for r in runs),
                    "failures": failures,
                }
            )
        )
        sys.exit(1 if failures else 0)
