"""The hooks that let `keras.models.load_model` read Keras 2 files.

`install()` (run by `import keras_graft`) sets two:

- `keras.models.load_model` sends every Keras 2 file (HDF5 whatever its
  suffix, a Keras 2 `.keras` zip, a SavedModel directory) to
  `keras_graft.keras2.files.load_model`, which also restores its training
  setup; Keras 3's own files go to Keras as before.
- Keras 3 reads Keras 2 configs with its legacy loader, which deserializes
  every model and layer config through one function; `load` takes its
  place, so each Keras 2 config is first rewritten into its Keras 3 form:
  layer names Keras 3 refuses are renamed (`names`), op layers become
  keras-graft `TFOp` layers (`op_layers`), `Lambda` layers are refused in
  safe mode, saying how to migrate them (`lambdas`), calls with tensors
  among their kwargs take Keras 3's node form (`nodes`), and layer configs
  Keras 3 reads differently are translated (`layer_configs`). Configs
  without Keras 2 specifics pass through unchanged. The rewrite runs inside
  the loader's safe-mode scope, so keras-graft's allow-list and audit apply
  as to any keras-graft model file.

>>> import keras_graft
>>> translate({"class_name": "DepthwiseConv2D", "config": {"groups": 1}})[0]
{'class_name': 'DepthwiseConv2D', 'config': {}}
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from keras_graft import _compat
from keras_graft.core import unregistered
from keras_graft.errors import malformed
from keras_graft.keras2 import files, lambdas, layer_configs, names, nodes, op_layers

FUNCTIONAL_CLASSES = ("Functional", "Model")
MODEL_CLASSES = (*FUNCTIONAL_CLASSES, "Sequential")

# Keys newer tf_keras versions write on nested layer configs. Keras 3 reads
# a layer that has them with its new-format loader, past this hook, where
# Keras 2 configs fail; without them it reads the layer as a legacy config.
NEW_FORMAT_KEYS = ("module", "registered_name")
REGISTERED_SEPARATOR = ">"


def translate(config) -> tuple[dict, list[Callable]]:
    """A legacy (Keras 2 / h5) config in the form Keras 3 loads, and fixes for the result.

    In safe mode a `Lambda` (nested in a wrapper too) is refused here, saying
    how to migrate it: it holds Python bytecode, which safe mode never runs.
    """
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        return config, []
    if _compat.in_keras_safe_mode():
        if config.get("class_name") == lambdas.LAMBDA:
            raise lambdas.refusal(config)
        wrapped = lambdas.wrapped_lambda(config)
        if wrapped is not None:
            raise lambdas.wrapped_refusal(config, wrapped)
    inner = config["config"]
    if config.get("class_name") in MODEL_CLASSES and isinstance(inner.get("layers"), list):
        layers = [_as_legacy(layer) for layer in inner["layers"]]
        inner = {**inner, "layers": layers}
        if config["class_name"] in FUNCTIONAL_CLASSES:
            _check_functional(inner)
            inner = names.translate_functional(inner)
            inner = nodes.translate_functional(op_layers.translate_functional(inner))
        config = {**config, "config": inner}
    return layer_configs.translate(names.translate_layer(config))


def _check_functional(config: dict) -> None:
    """Refuses a functional model config missing what its translations read."""
    for key in ("input_layers", "output_layers"):
        if not isinstance(config.get(key), list):
            raise malformed(f"A Keras 2 functional model config has no `{key}` list", writer="Keras 2")
    for layer in config["layers"]:
        if not (
            isinstance(layer, dict)
            and isinstance(layer.get("name"), str)
            and isinstance(layer.get("config"), dict)
            and isinstance(layer.get("inbound_nodes"), list)
        ):
            raise malformed(
                f"A layer of a Keras 2 functional model config ({str(layer)[:80]}) lacks a `name`, "
                "a `config` dict or an `inbound_nodes` list",
                writer="Keras 2",
            )


def _as_legacy(layer):
    """A nested layer config without the new-format keys, in the legacy form.

    keras 2.14+ writes a registered layer as `class_name: "ScaledDense"` with
    `registered_name: "package>ScaledDense"`; the legacy form (keras 2.13, `.h5`)
    names it by its registered name in `class_name`, which is kept.
    """
    if not isinstance(layer, dict):
        return layer
    legacy = {key: value for key, value in layer.items() if key not in NEW_FORMAT_KEYS}
    registered = layer.get("registered_name")
    if isinstance(registered, str) and REGISTERED_SEPARATOR in registered:
        legacy["class_name"] = registered
    return legacy


def load(config, custom_objects, keras_load: Callable):
    """Keras' legacy `model_from_config`, on the translated config."""
    config, fixes = translate(config)
    loaded = keras_load(config, custom_objects=custom_objects)
    for fix in fixes:
        fix(loaded)
    return loaded


def load_model(filepath, custom_objects, compile, safe_mode, keras_load: Callable):
    """`keras.models.load_model`: a Keras 2 file through `files.load_model`, any
    other through Keras (`keras_load`), and a name nothing registered explained
    (`keras_graft.core.unregistered`)."""
    local = isinstance(filepath, (str, os.PathLike)) and "://" not in str(filepath)
    if local and files.kind(Path(filepath)) is not None:
        return files.load_model(filepath, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)
    try:
        return keras_load(filepath, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)
    except RecursionError:  # Keras' own JSON parse, or its walk of nested configs
        raise malformed(
            f"{filepath}: its config is nested too deep for Python to read", writer="Keras"
        ) from None
    except (TypeError, ValueError) as error:
        explained = unregistered.explain(error, files.stored_config(filepath) if local else None)
        if explained is None or explained is error:
            raise
        raise explained from error


def install() -> None:
    """Makes Keras' legacy loader go through `load`, and `keras.models.load_model`
    through `load_model` (idempotent)."""
    _compat.translate_legacy_configs(load)
    _compat.route_load_model(load_model)
