"""Keras 2 model files of every kind, loaded as trainable Keras 3 models.

What a file is, is read from its content, never from its name: keras 2.12
saved `model.save("m.keras")` in the `.h5` format (its zip format was off
unless `save_format="keras_v3"`), so a `.keras` file may be HDF5.

- HDF5 (`.h5`, or a keras 2.12 `.keras`): Keras 3's legacy loader, through
  the translations of `keras_graft.keras2.loading`.
- `.keras` zip written by Keras 2 (its `metadata.json` says `2.x`): Keras 3's
  new-format loader cannot locate Keras 2 classes, but the config inside is
  Keras 2's legacy config, which goes through the same translations; the
  weights are matched to the layers by structure (`zip_weights`). Its object
  configs must name classes as Keras 2 would find them
  (`consistency.check_object_configs`).
- Keras 2 SavedModel directories: Keras 3 only offers an inference-only
  `TFSMLayer`. When `keras_metadata.pb` holds the model's config (functional
  and Sequential models), it is rebuilt from it, once every layer's own
  metadata agrees with it (`consistency.verified_saved_model_root`: what
  tf_keras would rebuild is what keras-graft audits), and its variables are read
  from the checkpoint, in the order Keras 2 saved them (`model.variables`).
  Subclassed models keep no config: they are refused, saying so.

A compiled file comes back compiled (`compile_configs`): its loss, metrics
and optimizer translated, and the optimizer state where the file has it
(`.h5`: `optimizer_weights/`; `.keras`: `optimizer/vars/` in
`model.weights.h5`; SavedModel: the checkpoint's `optimizer/_variables/`).

After `import keras_graft`, `keras.models.load_model` sends every Keras 2
file here.

>>> kind(Path("missing.h5")) is None
True
"""

from __future__ import annotations

import copy
import functools
import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import keras
import numpy as np
import tensorflow as tf

from keras_graft import _compat
from keras_graft.core import unregistered
from keras_graft.errors import Keras2FileError, malformed
from keras_graft.keras2 import compile_configs, consistency, file_limits, lambdas, weights, zip_weights

H5, TF_KERAS_ZIP, SAVED_MODEL = "h5", "tf_keras .keras", "SavedModel"


def _keras_version(path: Path) -> str:
    with file_limits.open_hdf5(path) as file:
        version = file.attrs.get("keras_version", "")
    return version.decode() if isinstance(version, bytes) else str(version)


def kind(path: Path) -> str | None:
    """Which kind of Keras 2 file `path` is (read from its content), or None
    when it is none of them (a Keras 3 file, or no model file at all)."""
    path = Path(path)
    if path.is_dir():
        return SAVED_MODEL if (path / "saved_model.pb").exists() else None
    if not path.is_file():
        return None
    if h5py.is_hdf5(path):
        return None if _keras_version(path).startswith("3.") else H5
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            # Every zip, a Keras 3 file too, before anyone reads a member of it.
            file_limits.check_zip(archive, path, path.stat().st_size)
            if "metadata.json" in archive.namelist():
                metadata = file_limits.read_json(archive, "metadata.json", path)
                version = metadata.get("keras_version", "") if isinstance(metadata, dict) else ""
                return TF_KERAS_ZIP if str(version).startswith("2.") else None
    return None


def load_model(
    path,
    custom_objects: dict | None = None,
    compile: bool = True,
    safe_mode: bool = True,
    *,
    trust_file_code: bool = False,
    imports: tuple[str, ...] = (),
) -> keras.Model:
    """The Keras 2 model file (or SavedModel directory) at `path` as a Keras 3 model.

    `custom_objects` maps names the file uses (a custom layer's class name, a
    loss function's name) to your objects, as in `keras.models.load_model`;
    objects registered with `keras.saving.register_keras_serializable` (or
    keras-graft's decorators) are found once their module is imported.
    With `compile`, a compiled file comes back compiled.

    `Lambda` layers hold Python bytecode, which loading never runs: such a file
    is refused, unless you trust it (`trust_file_code=True`): then each
    Lambda's function runs once, in a separate process that first imports
    `imports` (your modules: named functions come from them, never from the
    file), and the op layers it produced replace the layer
    (`keras_graft.keras2.lambdas`).
    """
    path = Path(path)
    if kind(path) is None:
        return keras.models.load_model(
            path, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode
        )
    custom_objects = dict(custom_objects or {})
    rewrite = functools.partial(lambdas.migrated, source=path, imports=imports) if trust_file_code else None
    model, stored = _build(path, custom_objects, safe_mode, rewrite)
    if compile:
        compile_configs.restore(model, stored.setup, stored.state, path, custom_objects)
    return model


def load_weights(model: keras.Model, path) -> dict[str, str]:
    """Loads the weights of the Keras 2 `.h5` file at `path` into `model`, built from code.

    For a file no Keras can rebuild (`keras_graft.errors.LossyKeras2FileError`:
    Keras 2 dropped the operands of a `tf.einsum` when it saved), build the
    model in Keras 3 from the code that made it, then load its weights. Layers
    are matched by name, then by graph order, and their weight shapes checked
    (`keras_graft.keras2.weights`); anything ambiguous raises `WeightMatchError`.
    Returns {model layer name: file layer name} for every layer that got weights.

    Example (`old.h5` saved by Keras 2 from the same code):

        x = keras.Input((4, 8))
        r = keras.layers.Dense(8)(x)
        model = keras.Model(x, tf.einsum("bij,bkj->bik", r, r))
        keras_graft.keras2.files.load_weights(model, "old.h5")
    """
    path = Path(path)
    saved = weights.read_h5_weights(path)
    layers = [layer for layer in model.layers if weights.legacy_weights(layer)]
    matched = weights.pairs(
        [(name, [value.shape for value in values]) for name, values in saved],
        [(layer.name, [tuple(w.shape) for w in weights.legacy_weights(layer)]) for layer in layers],
        source=str(path),
    )
    for file_index, model_index, _ in matched:
        for variable, value in zip(weights.legacy_weights(layers[model_index]), saved[file_index][1]):
            variable.assign(value)
    return {layers[m].name: saved[f][0] for f, m, _ in matched}


def build_model(
    path, custom_objects: dict | None = None, safe_mode: bool = True, rewrite=None
) -> keras.Model:
    """The uncompiled model of a Keras 2 file, its weights loaded; `rewrite(config)`
    may change the model config (as stored) before it is built."""
    return _build(Path(path), dict(custom_objects or {}), safe_mode, rewrite)[0]


def _build(path: Path, custom_objects: dict, safe_mode: bool, rewrite):
    stored = _READERS[kind(path)](path)
    config = stored.config if rewrite is None else rewrite(stored.config)
    try:
        # Keras' legacy loader edits the configs it reads; the weights need them as stored.
        model = _compat.legacy_model_from_config(copy.deepcopy(config), safe_mode, custom_objects)
    except (TypeError, ValueError) as error:
        explained = unregistered.explain(error, stored.config)
        if explained is None or explained is error:
            raise
        raise explained from error
    stored.load_weights(model)
    return model, stored


@dataclass
class _Stored:
    """What a Keras 2 file holds: the model config, the training setup and
    optimizer state (None where the file has none), and how its weights load."""

    config: dict
    setup: dict | None
    state: list | None
    load_weights: Callable[[keras.Model], None]


def _read_h5(path: Path) -> _Stored:
    with file_limits.open_hdf5(path) as file:
        config, setup = file.attrs.get("model_config"), file.attrs.get("training_config")
        if config is None:
            raise Keras2FileError(
                f"{path} is an HDF5 file without a model config: save the model, not only its weights."
            )
        state = None
        if "optimizer_weights" in file:
            group = file["optimizer_weights"]
            names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
            state = [np.asarray(group[name]) for name in names]

    def load_weights(model):
        with file_limits.open_hdf5(path) as file:
            _compat.load_legacy_h5_weights(file["model_weights"], model)

    setup = _decoded(setup, path, "training_config") if setup is not None else None
    return _Stored(_decoded(config, path, "model_config"), setup, state, load_weights)


def _decoded(text, path: Path, attribute: str):
    """An `.h5` file's JSON attribute, decoded as Keras does; refused when it is no JSON."""
    try:
        return _compat.decode_legacy_json(text)
    except RecursionError:
        raise malformed(f"{path}: its `{attribute}` is nested too deep to parse", writer="Keras 2") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise malformed(
            f"{path}: its `{attribute}` is no JSON ({str(error)[:200]})", writer="Keras 2"
        ) from None


def _read_tf_keras_zip(path: Path) -> _Stored:
    with zipfile.ZipFile(path) as archive:
        file_limits.check_zip(archive, path, path.stat().st_size)
        config = file_limits.read_json(archive, "config.json", path)
        weights = file_limits.read_member(archive, "model.weights.h5", path)
    consistency.check_object_configs(config)
    with h5py.File(io.BytesIO(weights), "r") as stored:
        file_limits.check_hdf5(stored, f"{path}'s model.weights.h5", len(weights))
        state = None
        if "optimizer" in stored and "vars" in stored["optimizer"]:
            variables = stored["optimizer"]["vars"]
            state = [np.asarray(variables[str(i)]) for i in range(len(variables))]

    def load_weights(model):
        with h5py.File(io.BytesIO(weights), "r") as stored:
            zip_weights.load(model, config, stored, path)

    return _Stored(config, config.get("compile_config"), state, load_weights)


def _read_saved_model(path: Path) -> _Stored:
    metadata_path = path / "keras_metadata.pb"
    if not metadata_path.exists():
        raise Keras2FileError(
            f"{path} is a SavedModel without Keras metadata (not written by "
            "Keras 2's `model.save`): it holds no Keras model. Use "
            "`keras.layers.TFSMLayer` to call it for inference."
        )
    root = consistency.verified_saved_model_root(path)
    if root.get("class_name") not in ("Functional", "Sequential", "Model") or "layers" not in (
        root.get("config") or {}
    ):
        raise Keras2FileError(
            f"{path} holds a subclassed Keras 2 model ({root.get('class_name')}): its "
            "SavedModel keeps the traced functions but no config Keras 3 could rebuild "
            "it from. Rebuild the model class in Keras 3 and load the weights, or use "
            "`keras.layers.TFSMLayer` for inference only."
        )
    checkpoint = _Checkpoint(path)
    optimizer = checkpoint.child(checkpoint.root, "optimizer")
    state = checkpoint.listed(optimizer, "_variables") if optimizer is not None else None
    return _Stored(
        {"class_name": root["class_name"], "config": root["config"]},
        root.get("training_config"),
        state,
        lambda model: _assign(model, checkpoint.listed(checkpoint.root, "variables"), path),
    )


def stored_config(path) -> dict | None:
    """The model config a model file holds (of any Keras), or None when none is found."""
    path = Path(path)
    try:
        if path.is_dir():
            metadata = path / "keras_metadata.pb"
            if metadata.exists():
                return _compat.keras2_metadata_nodes(metadata.read_bytes())[0]["metadata"]
            config = path / "config.json"
            return json.loads(config.read_text()) if config.exists() else None
        if h5py.is_hdf5(path):
            with file_limits.open_hdf5(path) as file:
                config = file.attrs.get("model_config")
            return _compat.decode_legacy_json(config) if config is not None else None
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                file_limits.check_zip(archive, path, path.stat().st_size)
                return file_limits.read_json(archive, "config.json", path)
    except (OSError, KeyError, ValueError, RecursionError):
        return None
    return None


_READERS = {H5: _read_h5, TF_KERAS_ZIP: _read_tf_keras_zip, SAVED_MODEL: _read_saved_model}


class _Checkpoint:
    """The variables of a SavedModel's checkpoint, found through its object graph.

    Keras 2 tracks the model's variables as the root's `variables` list, and an
    optimizer's as its `_variables` list (`[iteration, slots...]`); a variable
    reachable by a shorter path is stored under that path, so each is found by
    its node in the graph, not by its key.
    """

    def __init__(self, path: Path):
        from tensorflow.core.protobuf import trackable_object_graph_pb2

        self.reader = tf.train.load_checkpoint(str(path / "variables" / "variables"))
        self.graph = trackable_object_graph_pb2.TrackableObjectGraph()
        self.graph.ParseFromString(self.reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
        self.root = 0

    def child(self, node: int, name: str) -> int | None:
        return next((c.node_id for c in self.graph.nodes[node].children if c.local_name == name), None)

    def listed(self, node: int, name: str) -> list[np.ndarray]:
        """The values of the variables in the list attribute `name` of `node`, in order."""
        listed = self.child(node, name)
        if listed is None:
            return []
        children = sorted(self.graph.nodes[listed].children, key=lambda c: int(c.local_name))
        values = []
        for child in children:
            attributes = self.graph.nodes[child.node_id].attributes
            key = next(a.checkpoint_key for a in attributes if a.name == "VARIABLE_VALUE")
            values.append(self.reader.get_tensor(key))
        return values


def _layer_ordered_weights(model: keras.Model) -> list:
    """The weights layer by layer (nested models flattened), each layer's trainable ones first."""
    weights = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            weights += _layer_ordered_weights(layer)
        else:
            weights += layer.trainable_weights + layer.non_trainable_weights
    return weights


def _assign(model: keras.Model, values: list[np.ndarray], path: Path) -> None:
    variables = _layer_ordered_weights(model)
    shapes = [tuple(v.shape) for v in variables]
    saved = [tuple(v.shape) for v in values]
    if shapes != saved:
        raise Keras2FileError(
            f"The variables saved in {path} ({len(saved)}: {saved[:6]}...) do not match "
            f"the Keras 3 model rebuilt from its config ({len(shapes)}: {shapes[:6]}...). "
            "Save the model with tf_keras as .h5 (`model.save('model.h5')`) and convert that."
        )
    for variable, value in zip(variables, values):
        variable.assign(value)
