"""Keras 2 model files of every kind, loaded as trainable Keras 3 models.

- `.h5`: Keras 3's own loader, through the translations of
  `keras_graft.keras2.loading` (so `keras.models.load_model` works too).
- `.keras` written by tf_keras (its `metadata.json` says Keras 2): Keras 3's
  new-format loader cannot locate tf_keras classes, but the config inside is
  Keras 2's legacy config, which goes through the same translations; the
  weights file has Keras 3's layout. Its object configs must name classes
  as Keras 2 would find them (`consistency.check_object_configs`).
- Keras 2 SavedModel directories: Keras 3 only offers an inference-only
  `TFSMLayer`. When `keras_metadata.pb` holds the model's config (functional
  and Sequential models), it is rebuilt from it, once every layer's own
  metadata agrees with it (`consistency.verified_saved_model_root`), and its
  variables are read from the checkpoint, in the order Keras 2 saved them
  (`model.variables`). Subclassed models keep no config: they are refused,
  saying so.

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
from keras_graft.keras2 import consistency

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


def _load_tf_keras_zip(path: Path, safe_mode: bool) -> keras.Model:
    with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory() as workdir:
        config = json.loads(archive.read("config.json"))
        consistency.check_object_configs(config)
        model = _compat.legacy_model_from_config(config, safe_mode)
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
