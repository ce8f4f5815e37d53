"""Keras 2 `Lambda` layers: never run on load; migrated to op layers when the file is trusted.

Keras 2 stored a `Lambda`'s function in the model config:

    {"class_name": "Lambda", "config": {"function": [CODE, DEFAULTS, CLOSURE],
     "function_type": "lambda", "module": "__main__", "arguments": {"k": 3}, ...}}

`CODE` is the base64 of the marshalled code object, for *every* Python
function, named or not (Keras 2 tested `isinstance(f, types.LambdaType)`,
which every function is); `function_type: "function"` with the name only
was written for other callables. `module` is where the function was
defined (`__main__` for a script), and the code object's name is the
function's. Bytecode runs only on the Python version that wrote it.

Loading a Keras 2 file in safe mode (the default) refuses a `Lambda`, naming
it and the way to migrate it (`refusal`). With `trust_file_code=True`
(`keras-graft convert --trust-file-code`) `migrated` runs each function once,
in a fresh process (`lambda_child.py`, within a time and memory limit), on
Keras tensors with auto-wrapping on; each `Lambda` becomes a nested
functional model of the op layers its function produced (named as the
Lambda, called where it was called), and the converted file holds no
bytecode: it loads in safe mode, on every backend. The reply is only a model
config, which goes through the same safe-mode checks as any file.

>>> str(refusal({"name": "scale", "config": {"function_type": "lambda"}}))[:57]
'Layer `scale` is a Keras 2 `Lambda`: its function is Pyth'
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from keras_graft import child_process
from keras_graft.child_process import Budget
from keras_graft.errors import BudgetExceededError, LambdaLayerError
from keras_graft.keras2 import child_imports, references, report

LAMBDA = "Lambda"
FUNCTIONAL_CLASSES = ("Functional", "Model")
MODEL_CLASSES = (*FUNCTIONAL_CLASSES, "Sequential")
# A script, run by path: it imports keras-graft's loading, which imports this module.
CHILD_SCRIPT = Path(__file__).with_name("lambda_child.py")
# The child's budget, plus three times the file's size (`Budget.with_data`): it
# builds the whole model, and the Lambda functions run on its tensors.
CHILD_BUDGET = Budget(memory_mb=2048, seconds=300)

TRUST_HINT = (
    "To migrate it, convert the file trusting its code: `keras-graft convert OLD NEW.keras "
    "--trust-file-code` (in Python `convert(..., trust_file_code=True)` or "
    "`keras_graft.keras2.files.load_model(..., trust_file_code=True)`). That runs each "
    "Lambda's function once, in a separate process, and puts the TF ops it calls in its "
    "place: the converted file holds no bytecode and loads in safe mode. Only for a file "
    "you trust: its code runs. Or rebuild the layer in code with the TF ops it calls."
)


def refusal(layer: dict) -> LambdaLayerError:
    """The error for loading a `Lambda` without trusting the file."""
    inner = layer.get("config") if isinstance(layer.get("config"), dict) else {}
    name = layer.get("name") or inner.get("name")
    kind = "bytecode" if inner.get("function_type") == "lambda" else "code"
    return LambdaLayerError(
        f"Layer `{name}` is a Keras 2 `Lambda`: its function is Python {kind} stored in the "
        f"file, which loading never runs. {TRUST_HINT}"
    )


# Where a wrapper (`TimeDistributed`, `Bidirectional`) holds the layers it wraps.
WRAPPED_LAYER_KEYS = ("layer", "forward_layer", "backward_layer")


def wrapped_lambda(config: dict) -> dict | None:
    """The config of a `Lambda` that the layer of `config` wraps (at any depth), or None.

    Keras reads a wrapped layer's config itself, past keras-graft's hook
    (`loading.translate`), and fails on a Keras 2 `Lambda` with "Unrecognized
    keyword arguments passed to Lambda".

    >>> lam = {"class_name": "Lambda", "config": {"name": "double"}}
    >>> wrapped_lambda({"class_name": "TimeDistributed", "config": {"layer": lam}}) is lam
    True
    """
    inner = config.get("config") if isinstance(config, dict) else None
    for key in WRAPPED_LAYER_KEYS if isinstance(inner, dict) else ():
        nested = inner.get(key)
        if not isinstance(nested, dict):
            continue
        if nested.get("class_name") == LAMBDA:
            return nested
        deeper = wrapped_lambda(nested)
        if deeper is not None:
            return deeper
    return None


def wrapped_refusal(wrapper: dict, layer: dict) -> LambdaLayerError:
    """The error for a `Lambda` inside a wrapper, which no trust migrates."""
    inner = layer.get("config") if isinstance(layer.get("config"), dict) else {}
    outer = wrapper.get("config") if isinstance(wrapper.get("config"), dict) else {}
    return LambdaLayerError(
        f"Layer `{wrapper.get('name') or outer.get('name')}` ({wrapper.get('class_name')}) wraps a "
        f"Keras 2 `Lambda`, `{layer.get('name') or inner.get('name')}`: its function is Python code "
        "stored in the file, which loading never runs. keras-graft does not migrate a Lambda inside "
        "a wrapper, also not with `--trust-file-code`: rebuild the model in code, with the TF ops "
        "the function calls in the wrapped layer's place, and load the file's weights into it with "
        "`keras_graft.keras2.files.load_weights(model, path)`."
    )


def _layers(config: dict) -> list:
    inner = config.get("config") if isinstance(config, dict) else None
    return (
        inner.get("layers", []) if isinstance(inner, dict) and isinstance(inner.get("layers"), list) else []
    )


def _name(layer: dict) -> str:
    return layer.get("name") or layer.get("config", {}).get("name")


def lambda_paths(config: dict, prefix: tuple = ()) -> list[str]:
    """The path through nested models of every `Lambda` in a model config."""
    found = []
    for layer in _layers(config):
        if layer.get("class_name") == LAMBDA:
            found.append("/".join((*prefix, _name(layer))))
        elif layer.get("class_name") in MODEL_CLASSES:
            found += lambda_paths(layer, (*prefix, _name(layer)))
    return found


def traced(source: Path, imports) -> dict:
    """Runs `lambda_child.py` on `source`, in a child process of its own within
    `CHILD_BUDGET`: the config of each Lambda's op layers, by path."""
    with tempfile.TemporaryDirectory() as workdir:
        request, reply = Path(workdir) / "request.json", Path(workdir) / "reply.json"
        request.write_text(
            json.dumps({"source": str(Path(source).resolve()), **child_imports.request(imports)})
        )
        child = child_process.Child(
            child_process.python_script(CHILD_SCRIPT, child_process.READY, request, reply),
            cwd=workdir,
            env={"TF_USE_LEGACY_KERAS": "0"},
            stderr_path=Path(workdir) / "stderr",
        )
        try:
            child.wait(CHILD_BUDGET.with_data(Path(source).stat().st_size))
        except BudgetExceededError as error:
            raise LambdaLayerError(
                f"Running the Lambda functions of {source} went over its budget ({error}): the "
                "process was stopped."
            ) from error
        finally:
            child.close()
        if child.returncode != 0 or not reply.exists():
            last = (child.stderr_tail().strip().splitlines() or ["(no output)"])[-1]
            raise LambdaLayerError(
                f"The process running the Lambda functions of {source} failed (exit "
                f"{child.returncode}: {last}). A crash there often means bytecode written by "
                "another Python version: convert with the Python that saved the file."
            )
        answer = json.loads(reply.read_text())
    if "error" in answer:
        layer, message = answer["error"].get("layer"), answer["error"].get("message")
        where = f"Layer `{layer}` (a Keras 2 `Lambda`) cannot be migrated: " if layer else ""
        raise LambdaLayerError(f"{where}{message}")
    return {path: entry["config"] for path, entry in answer["lambdas"].items()}


def _spliced(config: dict, submodels: dict, prefix: tuple = ()) -> dict:
    """`config` with each Lambda replaced by its functional model of op layers."""
    inner = config["config"]
    layer_names = {_name(layer) for layer in inner["layers"]}
    replaced, layers = set(), []
    for layer in inner["layers"]:
        path = "/".join((*prefix, _name(layer)))
        if layer.get("class_name") == LAMBDA:
            submodel = submodels[path]
            ops = [op["config"]["op"] for op in submodel["layers"] if "op" in op.get("config", {})]
            report.note(
                _name(layer),
                LAMBDA,
                f"its function, run once (trusted): {len(ops)} op layers "
                f"({', '.join(ops[:4])}{'...' if len(ops) > 4 else ''})",
            )
            layer = {key: value for key, value in layer.items() if key not in ("module", "registered_name")}
            layers.append({**layer, "class_name": "Functional", "config": {**submodel, "name": _name(layer)}})
            replaced.add(_name(layer))
        elif layer.get("class_name") in MODEL_CLASSES:
            layers.append(_spliced(layer, submodels, (*prefix, _name(layer))))
        else:
            layers.append(layer)
    if config.get("class_name") not in FUNCTIONAL_CLASSES or not replaced:
        return {**config, "config": {**inner, "layers": layers}}

    # Keras 2 numbered a nested model's calls from 1 (its node 0 was its own).
    def new_place(layer, node):
        return (layer, node + 1) if layer in replaced else None

    layers = [
        {**layer, "inbound_nodes": references.rename(layer.get("inbound_nodes", []), layer_names, new_place)}
        for layer in layers
    ]
    ends = {
        key: references.rename(inner[key], layer_names, new_place)
        for key in ("input_layers", "output_layers")
    }
    return {**config, "config": {**inner, "layers": layers, **ends}}


def migrated(config: dict, source: Path, imports=()) -> dict:
    """`config` with its Lambdas made op layers (runs their functions: trusted files only)."""
    paths = lambda_paths(config)
    if not paths:
        return config
    submodels = traced(source, imports)
    missing = sorted(set(paths) - set(submodels))
    if missing:
        raise LambdaLayerError(
            f"The process running the Lambda functions of {source} traced none for {missing}."
        )
    return _spliced(config, submodels)
