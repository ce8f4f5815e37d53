"""The child process of `keras_graft.keras2.lambdas`: a trusted file's Lambda functions, traced.

Run as a script, in a fresh interpreter, only when the user trusts the file
(`--trust-file-code`):

    python lambda_child.py READY_MARKER REQUEST.json REPLY.json

READY_MARKER is printed once the user's modules and keras-graft are imported,
before the file is read (`keras_graft.child_process`: the budget's address-space
cap starts there).

`REQUEST.json`: `{"source": "old.h5", "modules": ["my_project.lambdas"], "paths": ["/src"]}`
(`keras_graft.keras2.child_imports.request`).
The child imports the user's modules, builds the Keras 2 model in Keras 3
with each `Lambda` a `TracedLambda`, which runs the function on the layer's
inputs (so the layers after it get their shapes) and records the input shapes
of each call. Then it calls each function once more, on `keras.Input`s of
those shapes with auto-wrapping on and Python operators meaning TF's (as on
the `tf.Tensor`s a Keras 2 `Lambda` received), and answers with the config of
the functional model of op layers each function produced:

    {"lambdas": {"lambda_1": {"config": {...}}, "inner/lambda": {...}}}
    {"error": {"layer": "lambda_1", "message": "..."}}

Keys are the layers' paths through nested models. The parent loads nothing
of this process but that JSON, and loads it in safe mode.

Where a Lambda's function comes from: a named callable (`function_type:
"function"`) from the user's module, never from the file; bytecode
(`function_type: "lambda"`, which Keras 2 wrote for every Python function,
named or not) from the user's module too when the module it recorded is
imported and defines the function's name (`co_name`), else the bytecode, with
`tf` and `np` as globals (and the recorded module's, when imported), as
Keras 2 ran it. Bytecode that does not unmarshal on this Python was written
by another Python version.
"""

from __future__ import annotations

import base64
import builtins
import importlib
import inspect
import json
import marshal
import sys
import types
from pathlib import Path

TRACED_CLASS = "KerasGraftTracedLambda"

# A Keras 2 `Lambda` received `tf.Tensor`s, whose Python operators are TF's
# ops; on Keras tensors they are Keras' own. While a function is traced they
# are TF's: dunder -> (TF function name, whether the operands are swapped).
TF_OPERATORS = {
    "__add__": ("math.add", False),
    "__radd__": ("math.add", True),
    "__sub__": ("math.subtract", False),
    "__rsub__": ("math.subtract", True),
    "__mul__": ("math.multiply", False),
    "__rmul__": ("math.multiply", True),
    "__truediv__": ("math.truediv", False),
    "__rtruediv__": ("math.truediv", True),
    "__floordiv__": ("math.floordiv", False),
    "__rfloordiv__": ("math.floordiv", True),
    "__mod__": ("math.floormod", False),
    "__rmod__": ("math.floormod", True),
    "__pow__": ("math.pow", False),
    "__rpow__": ("math.pow", True),
    "__matmul__": ("linalg.matmul", False),
    "__rmatmul__": ("linalg.matmul", True),
    "__lt__": ("math.less", False),
    "__le__": ("math.less_equal", False),
    "__gt__": ("math.greater", False),
    "__ge__": ("math.greater_equal", False),
    "__neg__": ("math.negative", False),
    "__abs__": ("math.abs", False),
    "__getitem__": ("__operators__.getitem", False),
}


class Spec:
    """The shape and dtype of one input of a call (a leaf, not a structure)."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = list(shape), str(dtype)


class Refusal(Exception):
    """A Lambda that cannot be migrated, and why (with the fix)."""

    def __init__(self, layer: str, message: str):
        super().__init__(message)
        self.layer = layer


def _function(config: dict, imports: list[str]):
    """The Python function of a Keras 2 `Lambda` config."""
    import numpy as np
    import tensorflow as tf

    name, kind, module, stored = (
        config.get("name"),
        config.get("function_type"),
        config.get("module"),
        config.get("function"),
    )
    user_module = sys.modules.get(module) if module in imports else None
    if kind == "function":
        function = getattr(user_module, str(stored), None)
        if not callable(function):
            raise Refusal(
                name,
                f"its function is `{module}.{stored}`, a named function the file does not hold: "
                f"import the module that defines it (`--import {module}`)",
            )
        return function
    if kind != "lambda" or not isinstance(stored, (list, tuple)) or len(stored) != 3:
        raise Refusal(name, f"its function is stored as {kind!r}, which Keras 2 does not write")
    code, defaults, closure = stored
    try:
        code = marshal.loads(base64.decodebytes(str(code).encode("ascii")))
    except (ValueError, EOFError, TypeError) as error:
        raise Refusal(
            name,
            f"its bytecode does not load on Python {sys.version.split()[0]} ({error}): it was "
            "written by another Python version. Convert it with the Python version that saved "
            "the file, or rebuild the layer in code",
        ) from error
    if not isinstance(code, types.CodeType):
        raise Refusal(name, "its stored function is not Python bytecode")
    named = getattr(user_module, code.co_name, None)
    if code.co_name != "<lambda>" and callable(named):
        return named  # the user's own function, not the file's copy of it
    namespace = {"__builtins__": builtins, "tf": tf, "np": np}
    if user_module is not None:
        namespace.update(vars(user_module))
    cells = tuple(types.CellType(value) for value in closure) if closure else None
    return types.FunctionType(code, namespace, code.co_name, tuple(defaults) if defaults else None, cells)


def _traced_lambda_class(imports: list[str]):
    import keras

    class TracedLambda(keras.layers.Layer):
        """A Keras 2 `Lambda` in the child: runs its function, records each call's input shapes."""

        def __init__(self, function, arguments=None, **kwargs):
            super().__init__(**kwargs)
            self.function, self.arguments, self.calls = function, dict(arguments or {}), []
            parameters = inspect.signature(function).parameters
            if "mask" in parameters or "training" in parameters:
                raise Refusal(
                    self.name,
                    "its function takes `mask` or `training`, which op layers do not "
                    "pass: rebuild the layer as an `@keras_graft.layer` function",
                )

        def __call__(self, inputs, *args, **kwargs):
            self.calls.append(keras.tree.map_structure(lambda t: Spec(t.shape, t.dtype), inputs))
            return super().__call__(inputs, *args, **kwargs)

        def call(self, inputs):
            return self.function(inputs, **self.arguments)

        @classmethod
        def from_config(cls, config):
            keys = ("name", "trainable", "dtype")
            return cls(
                _function(config, imports),
                config.get("arguments"),
                **{k: config[k] for k in keys if k in config},
            )

    return TracedLambda


def _renamed_lambdas(config):
    """The model config with each `Lambda` read as a `TracedLambda`."""
    if isinstance(config, list):
        return [_renamed_lambdas(item) for item in config]
    if not isinstance(config, dict):
        return config
    renamed = {key: _renamed_lambdas(value) for key, value in config.items()}
    if config.get("class_name") == "Lambda" and isinstance(config.get("config"), dict):
        renamed["class_name"] = TRACED_CLASS
        renamed.pop("module", None)
        renamed.pop("registered_name", None)
    return renamed


def _traced_layers(model, prefix=()):
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _traced_layers(layer, (*prefix, layer.name))
        elif type(layer).__name__ == "TracedLambda":
            yield "/".join((*prefix, layer.name)), layer


def _general_spec(calls: list):
    """One input structure for every call: a dimension the calls differ in is unknown."""
    import keras

    def merge(*leaves):
        shapes = [leaf.shape for leaf in leaves]
        if len({len(s) for s in shapes}) != 1 or len({leaf.dtype for leaf in leaves}) != 1:
            raise ValueError("calls of different ranks or dtypes")
        rank = len(shapes[0])
        return Spec(
            [None if i == 0 or len({s[i] for s in shapes}) > 1 else shapes[0][i] for i in range(rank)],
            leaves[0].dtype,
        )

    return keras.tree.map_structure(merge, *calls)


class _TFOperators:
    """Python operators on Keras tensors mean TF's ops inside the block."""

    def __enter__(self):
        from keras_graft import _compat
        from keras_graft.core.op_layer import TFOp

        def operator(function, swapped):
            if swapped:
                return lambda x, y: TFOp.wrap(function, (y, x), {})
            return lambda x, *rest: TFOp.wrap(function, (x, *rest), {})

        self.saved = {name: getattr(_compat.KerasTensor, name, None) for name in TF_OPERATORS}
        for name, (tf_name, swapped) in TF_OPERATORS.items():
            setattr(_compat.KerasTensor, name, operator(_compat.tf_symbol(tf_name), swapped))
        return self

    def __exit__(self, *exc):
        from keras_graft import _compat

        for name, saved in self.saved.items():
            setattr(_compat.KerasTensor, name, saved)


def _trace(path: str, layer) -> dict:
    import keras

    from keras_graft.core.op_layer import TFOp

    try:
        spec = _general_spec(layer.calls)
    except ValueError as error:
        raise Refusal(path, f"it is called on inputs of different ranks or dtypes ({error})") from error
    inputs = keras.tree.map_structure(
        lambda leaf: keras.Input(batch_shape=leaf.shape, dtype=leaf.dtype), spec
    )
    try:
        with _TFOperators():
            outputs = layer.function(inputs, **layer.arguments)
    except NameError as error:
        raise Refusal(
            path,
            f"its function uses a name the file does not hold ({error}): it was a global "
            "of the script that built the model; import a module that defines it "
            "(`--import MODULE`) or rebuild the layer in code",
        ) from error
    except Exception as error:  # the user's function: whatever it raised
        raise Refusal(
            path,
            f"its function does not run on Keras tensors ({type(error).__name__}: "
            f"{error}): rewrite it with TF ops, or as an `@keras_graft.op` function",
        ) from error
    leaves = keras.tree.flatten(outputs)
    if not leaves or not all(isinstance(t, keras.KerasTensor) for t in leaves):
        raise Refusal(path, "its function returns something other than tensors computed from its inputs")
    submodel = keras.Model(inputs, outputs, name=layer.name)
    foreign = sorted(
        {
            type(op).__name__
            for op in submodel.operations
            if not isinstance(op, (TFOp, keras.layers.InputLayer))
        }
    )
    if foreign:
        raise Refusal(
            path,
            f"its function does not reduce to TF ops: it calls {', '.join(foreign)} (Keras "
            "ops or layers): rewrite it with TF ops, or rebuild the layer in code",
        )
    if submodel.weights:
        raise Refusal(
            path,
            "its function creates weights, which a Lambda would create anew on every "
            "load: rebuild it as an `@keras_graft.layer` function",
        )
    return {"config": submodel.get_config()}


def answer(request: dict, ready=lambda: None) -> dict:
    for folder in request.get("paths", []):
        sys.path.insert(0, folder)
    imports = list(request.get("modules", []))
    for module in imports:
        importlib.import_module(module)
    import keras_graft  # noqa: F401  (auto-wrapping)
    from keras_graft.keras2 import files

    ready()
    try:
        model = files.build_model(
            Path(request["source"]),
            safe_mode=False,
            rewrite=_renamed_lambdas,
            custom_objects={TRACED_CLASS: _traced_lambda_class(imports)},
        )
        return {"lambdas": {path: _trace(path, layer) for path, layer in _traced_layers(model)}}
    except Refusal as refusal:
        return {"error": {"layer": refusal.layer, "message": str(refusal)}}


def main(ready_marker: str, request_path: str, reply_path: str) -> None:
    reply = answer(json.loads(Path(request_path).read_text()), ready=lambda: print(ready_marker, flush=True))
    Path(reply_path).write_text(json.dumps(reply))


if __name__ == "__main__":
    main(*sys.argv[1:])
