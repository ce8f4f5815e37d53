"""Fuzzing `keras-graft convert` and `keras-graft inspect` with forged Keras 2 files.

The sibling of `fuzz_loading.py` for Keras 2 files. Hypothesis mutates
real tf_keras files (`keras2_models.py`: `.h5`, tf_keras `.keras` and
SavedModel directories): layer class names, op names (from TensorFlow's
whole export table), config values (object configs among them: a
`Functional` whose op writes a file, a `Lambda`'s bytecode, modules of
`os` and `keras_hub`), registered names and modules, the call kwargs of
each input of a node, and, in SavedModels, the layers' own metadata and
their order. Each forged file goes through `convert` (without its
prediction check: that is `test_hostile_commands`') and through `inspect`'s
loading and checks (in CI the ones that run in this process: `safe`,
`gradient`, `torch`; `--checks all` adds XLA and TFLite, in inspect's check
process). Allowed outcomes:

- a clean refusal: `convert.ConversionError` / `inspect`'s `ModelFileError`
  whose cause is a `ValueError` or `TypeError` (keras-graft's errors and
  Keras's own refusals are of these kinds), or any exception raised inside
  Keras itself on a config it cannot read (`KeyError`...: counted apart);
- a converted model whose op layers all name allow-listed or registered
  ops, which `inspect` reports on.

Anything else is a problem: another exception, a crash or hang (the test
runs this in a child with a timeout and a memory limit), the payloads'
marker written, a file created, process state changed.

    python tests/children/fuzz_keras2.py --examples 500 --seed 7 --checks all    # a longer search
"""

from __future__ import annotations

import copy
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The test helpers (`tests/helpers/`), imported by name as in the tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))

from hypothesis import strategies as st

import fuzzing  # noqa: E402
import hostile  # noqa: E402
import hostile_keras2  # noqa: E402
import keras2_models  # noqa: E402
import keras_graft  # noqa: E402
from keras_graft import inspection  # noqa: E402
from keras_graft.core import op_names, safety  # noqa: E402
from keras_graft.inspection import loading  # noqa: E402
from keras_graft.keras2 import convert  # noqa: E402

SOURCES = ("ops", "nested", "sequential", "transformer")
CLEAN = (ValueError, TypeError)


def payloads(marker: Path) -> list:
    """Values that must never run, or be imported, wherever a file puts them."""
    lambda_node = json.loads(hostile_keras2._lambda_metadata(marker.parent))
    return [
        hostile_keras2._write_file_model(marker),
        {"class_name": "Lambda", "config": lambda_node["config"]},
        {"module": "os", "class_name": "function", "config": "system", "registered_name": "function"},
        {"module": "keras_hub.src.evil", "class_name": "Evil", "config": {}, "registered_name": None},
        {
            "module": "keras.initializers",
            "class_name": "GlorotUniform",
            "config": {"seed": None},
            "registered_name": "keras_graft>TFOp",
        },
        {"class_name": "__lambda__", "config": {"value": lambda_node["config"]["function"]}},
    ]


def _layers(config: dict) -> list[dict]:
    """Every layer config of a model config, nested models included."""
    found = []
    for layer in config.get("config", {}).get("layers", []) if isinstance(config.get("config"), dict) else []:
        found.append(layer)
        found += _layers(layer)
    return found


def mutations(names: list[str], marker: Path):
    """One change to one layer of a Keras 2 model config: (kind, index, value)."""
    junk = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 2**40),
        st.text(max_size=10),
        st.lists(st.integers(-2, 8), max_size=3),
    )
    values = st.one_of(junk, st.sampled_from(payloads(marker)))
    class_names = st.sampled_from(
        [
            "Lambda",
            "TFOpLambda",
            "SlicingOpLambda",
            "Functional",
            "Sequential",
            "keras_graft>TFOp",
            "InputLayer",
            "Dense",
            "SeparableConv1D",
            "ThresholdedReLU",
            "MultiHeadAttention",
            "Bidirectional",
            "",
            "os.system",
        ]
    )
    functions = st.one_of(
        st.sampled_from(names),
        st.sampled_from(sorted(safety.allowed_ops())),
        st.text(max_size=12),
        st.sampled_from(["io.write_file", "py_function", "print"]),
    )
    keys = st.sampled_from(
        [
            "kernel_initializer",
            "kernel_regularizer",
            "kernel_constraint",
            "groups",
            "activity_regularizer",
            "dtype",
            "trainable",
            "name",
            "query_shape",
            "rng_type",
            "time_major",
            "function",
            "layer",
            "units",
            "axis",
            "extra",
        ]
    )
    return st.one_of(
        st.tuples(st.just("class_name"), st.integers(0, 60), class_names),
        st.tuples(st.just("function"), st.integers(0, 60), functions),
        st.tuples(st.just("config"), st.integers(0, 60), st.tuples(keys, values)),
        st.tuples(st.just("entry"), st.integers(0, 60), st.tuples(keys, values)),
        st.tuples(st.just("node_kwargs"), st.integers(0, 60), st.dictionaries(keys, values, max_size=2)),
        st.tuples(
            st.just("module"),
            st.integers(0, 60),
            st.sampled_from(
                [None, "os", "keras_hub.src.evil", "keras.layers", "tf_keras.src.layers.core.lambda_layer", 3]
            ),
        ),
        st.tuples(
            st.just("registered_name"),
            st.integers(0, 60),
            st.sampled_from([None, "keras_graft>TFOp", "Lambda", "Custom>CustomScaleLayer", ""]),
        ),
    )


def mutate(config: dict, mutation) -> None:
    kind, index, value = mutation
    layers = _layers(config)
    layer = layers[index % len(layers)]
    inner = layer.get("config") if isinstance(layer.get("config"), dict) else {}
    if kind == "class_name":
        layer["class_name"] = value
    elif kind == "function":
        inner["function"] = value
    elif kind == "config":
        inner[value[0]] = copy.deepcopy(value[1])
    elif kind == "entry":
        layer[value[0]] = copy.deepcopy(value[1])
    elif kind == "node_kwargs":  # the last input of the first call gets other kwargs
        nodes = layer.get("inbound_nodes") or []
        entries = [
            e for e in (nodes[0] if nodes and isinstance(nodes[0], list) else []) if isinstance(e, list)
        ]
        if entries and len(entries[-1]) == 4:
            entries[-1][3] = copy.deepcopy(value)
        elif nodes and isinstance(nodes[0], list) and len(nodes[0]) == 4 and isinstance(nodes[0][0], str):
            nodes[0][3] = copy.deepcopy(value)
    else:
        layer[kind] = value


def forge(source: Path, target: Path, mutation, savedmodel_change) -> Path:
    """`source` (any Keras 2 kind) with `mutation` applied; in a SavedModel, to the root
    config, and to the layers' own metadata as `savedmodel_change` says."""
    if source.suffix == ".h5":
        return hostile_keras2._edit_h5(source, target.with_suffix(".h5"), lambda c: mutate(c, mutation))
    if source.suffix == ".keras":
        return hostile.edited_keras(source, target.with_suffix(".keras"), lambda c: mutate(c, mutation))

    def edit(metadata):
        root = hostile_keras2._node(metadata, "root")
        model = json.loads(root.metadata)
        mutate(model, mutation)
        root.metadata = json.dumps(model)
        if savedmodel_change == "layers too":  # the same change in the layers' own nodes
            layers = {layer.get("name"): layer for layer in _layers(model)}
            for node in metadata.nodes:
                data = json.loads(node.metadata)
                if node.node_path != "root" and data.get("name") in layers:
                    data["class_name"] = layers[data["name"]].get("class_name")
                    data["config"] = layers[data["name"]].get("config")
                    node.metadata = json.dumps(data)
        elif savedmodel_change == "reversed":
            nodes = [copy.deepcopy(node) for node in reversed(metadata.nodes)]
            del metadata.nodes[:]
            metadata.nodes.extend(nodes)

    return hostile_keras2._edit_savedmodel(source, target.with_name(target.name + "_savedmodel"), edit)


def op_names_in(model) -> list[str]:
    return [
        layer.op_name
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras_graft.TFOp)
    ]


def run(examples: int, seed: int, keras2_dir: Path, checks_to_run=inspection.CHECKS) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="graft-fuzz-keras2-"))
    marker = hostile_keras2.marker(hostile_keras2.sources(workdir / "payloads"))
    sources = [keras2_dir / f"{name}.h5" for name in SOURCES]
    sources += [keras2_dir / f"{name}.keras" for name in keras2_models.KERAS_ZIP_MODELS]
    sources += [keras2_dir / f"{name}_savedmodel" for name in keras2_models.SAVED_MODELS]
    scratch = workdir / "scratch"
    scratch.mkdir()
    os.chdir(scratch)
    names = fuzzing.export_table_names()
    state = hostile._state()
    tally = {"refused": 0, "converted": 0}
    kinds: dict[str, int] = {}
    problems: list[str] = []

    def case(source, mutation, savedmodel_change):
        where = f"{source.name} {mutation!r:.200} ({savedmodel_change})"
        forged = forge(source, workdir / "forged", mutation, savedmodel_change)
        target = workdir / "converted.keras"
        target.unlink(missing_ok=True)
        try:
            convert.convert(forged, target, check=False, console=_quiet_console())
            model, _ = loading.load(forged)
            inspection.inspect(model, checks_to_run=checks_to_run)
        except (convert.ConversionError, loading.ModelFileError) as error:
            cause = error.__cause__
            if isinstance(cause, CLEAN) or cause is None or not _raised_by_keras_graft(cause):
                tally["refused"] += 1
                kind = type(cause).__name__ + ("" if isinstance(cause, CLEAN) else " (in Keras)")
                kinds[kind] = kinds.get(kind, 0) + 1
            else:
                problems.append(f"{type(cause).__name__} for {where}: {str(cause)[:300]}")
        except Exception as error:  # Collected and reported: the point of the fuzz.
            problems.append(f"{type(error).__name__} for {where}: {str(error)[:300]}")
        else:
            tally["converted"] += 1
            for name in op_names_in(model):
                if ">" not in name and safety.refusal_reason(name[len(op_names.TF_PREFIX) :]) is not None:
                    problems.append(f"converted a disallowed op {name} from {where}")
        if marker.exists():
            problems.append(f"a payload ran: {where}")
            marker.unlink()
        problems.extend(fuzzing.side_effects(scratch, state, where))

    fuzzing.run_cases(
        case,
        examples=examples,
        seed=seed,
        home=workdir / ".hypothesis",
        source=st.sampled_from(sources),
        mutation=mutations(names, marker),
        savedmodel_change=st.sampled_from(["root only", "layers too", "reversed"]),
    )
    return {**tally, "refusals": kinds, "problems": problems}


def _raised_by_keras_graft(error: BaseException) -> bool:
    """Whether the innermost frame of `error`'s traceback is keras-graft's code."""
    traceback = error.__traceback__
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    return traceback is not None and f"{os.sep}keras_graft{os.sep}" in traceback.tb_frame.f_code.co_filename


def _quiet_console():
    from rich.console import Console

    return Console(quiet=True)


def main(argv=None) -> int:
    parser = fuzzing.argument_parser(__doc__.splitlines()[0], 100, "forged files")
    parser.add_argument(
        "--keras2-files",
        type=Path,
        default=None,
        help="a folder of tf_keras files (keras2_models.py); default: written afresh",
    )
    parser.add_argument(
        "--checks",
        default="safe,gradient,torch",
        help="inspect's checks to run, comma-separated, or 'all' (default safe,gradient,torch)",
    )
    arguments = parser.parse_args(argv)
    keras2_dir = arguments.keras2_files or keras2_models.generate(Path(tempfile.mkdtemp()) / "keras2")
    checks_to_run = inspection.CHECKS if arguments.checks == "all" else tuple(arguments.checks.split(","))
    result = run(arguments.examples, arguments.seed, keras2_dir.resolve(), checks_to_run)
    print(json.dumps(result, indent=1))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
