"""Keras 2 model files of every kind, loaded as trainable Keras 3 models.

- `.h5`: Keras 3's own loader, through the translations of
  `keras_graft.keras2.loading` (so `keras.models.load_model` works too).
- `.keras` written by tf_keras (its `metadata.json` says Keras 2): Keras 3's
  new-format loader cannot locate tf_keras classes, but the config inside is
  Keras 2's legacy config, which goes through the same translations; the
  weights file has Keras 3's layout.
- Keras 2 SavedModel directories: Keras 3 only offers an inference-only
  `TFSMLayer`. When `keras_metadata.pb` holds the model's config (functional
  and Sequential models), it is rebuilt from it, and its variables are read
  from the checkpoint, in the order Keras 2 saved them (`model.variables`).
  Subclassed models keep no config: they are refused, saying so.

>>> kind(Path("model.h5"))
'h5'
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_graft import _compat
from keras_graft.errors import Keras2FileError
from keras_graft.keras2 import weights

H5, TF_KERAS_ZIP, SAVED_MODEL = "h5", "tf_keras .keras", "SavedModel"



def kind(path: Path) -> str | None:
    """Which kind of Keras 2 file `path` is, or None when it is none of them."""
    if path.is_dir():
        return SAVED_MODEL if (path / "saved_model.pb").exists() else None
    if path.suffix in (".h5", ".hdf5"):
        return H5
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if "metadata.json" in archive.namelist():
                version = json.loads(archive.read("metadata.json")).get("keras_version", "")
                return TF_KERAS_ZIP if version.startswith("2.") else None
    return None


def load_model(path, safe_mode: bool = True) -> keras.Model:
    """The Keras 2 model file (or SavedModel directory) at `path` as a Keras 3 model."""
    path = Path(path)
    file_kind = kind(path)
    if file_kind == TF_KERAS_ZIP:
        return _load_tf_keras_zip(path, safe_mode)
    if file_kind == SAVED_MODEL:
        return _load_saved_model(path, safe_mode)
    return keras.models.load_model(path, compile=False, safe_mode=safe_mode)


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


def _load_tf_keras_zip(path: Path, safe_mode: bool) -> keras.Model:
    with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory() as workdir:
        model = _compat.legacy_model_from_config(json.loads(archive.read("config.json")), safe_mode)
        archive.extract("model.weights.h5", workdir)
        model.load_weights(Path(workdir) / "model.weights.h5")
    return model


def _load_saved_model(path: Path, safe_mode: bool) -> keras.Model:
    metadata_path = path / "keras_metadata.pb"
    if not metadata_path.exists():
        raise Keras2FileError(
            f"{path} is a SavedModel without Keras metadata (not written by "
            "Keras 2's `model.save`): it holds no Keras model. Use "
            "`keras.layers.TFSMLayer` to call it for inference."
        )
    root = _compat.keras2_root_metadata(metadata_path.read_bytes())
    if root.get("class_name") not in ("Functional", "Sequential", "Model") or "layers" not in (
        root.get("config") or {}
    ):
        raise Keras2FileError(
            f"{path} holds a subclassed Keras 2 model ({root.get('class_name')}): its "
            "SavedModel keeps the traced functions but no config Keras 3 could rebuild "
            "it from. Rebuild the model class in Keras 3 and load the weights, or use "
            "`keras.layers.TFSMLayer` for inference only."
        )
    model = _compat.legacy_model_from_config(
        {"class_name": root["class_name"], "config": root["config"]}, safe_mode
    )
    _assign(model, _saved_variables(path), path)
    return model


def _saved_variables(path: Path) -> list[np.ndarray]:
    """The model's variables in Keras 2's `model.variables` order.

    Keras 2 tracks that list as the root's `variables`; a variable reachable
    by a shorter path is stored under that path, found through the object graph.
    """
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    reader = tf.train.load_checkpoint(str(path / "variables" / "variables"))
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    listed = next((c.node_id for c in graph.nodes[0].children if c.local_name == "variables"), None)
    if listed is None:
        return []
    children = sorted(graph.nodes[listed].children, key=lambda c: int(c.local_name))
    values = []
    for child in children:
        attributes = graph.nodes[child.node_id].attributes
        key = next(a.checkpoint_key for a in attributes if a.name == "VARIABLE_VALUE")
        values.append(reader.get_tensor(key))
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
