"""A Keras 2 `.h5` file's weights, matched to the layers of a model rebuilt from code.

Some Keras 2 files cannot be rebuilt by any Keras: Keras 2 dropped part of an
op call when it saved (the operands of `tf.einsum`, see `op_layers`). Their
weights are all still there, layer by layer, and `load_weights` gives them
to the model built in Keras 3 from the same code
(`keras_graft.keras2.files.load_weights`):

1. **by name**: a file layer and a model layer of the same name (or of the
   name Keras 3 allows for it, `/` made `_`) are the same layer;
2. **by graph order**: between two layers matched by name (and before the
   first, after the last), the other layers with weights are paired in the
   order the model holds them, the order the code built them in, which is
   also the order Keras 2 saved them in.

Each pair must hold as many weights, of the same shapes, in Keras 2's order
(trainable first). Anything ambiguous is refused with `WeightMatchError`,
naming the layers: names that contradict the graph order (the model's
`dense_2` is its first layer with weights, the file's is its third), or a
stretch of the graph where the file and the model hold different numbers of
layers with weights.

>>> pairs([("dense", [(2, 3)]), ("tf.einsum", []), ("dense_1", [(3,)])],
...       [("my_dense", [(2, 3)]), ("dense_1", [(3,)])])
[(0, 0, 'graph order'), (2, 1, 'name')]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_graft.errors import WeightMatchError
from keras_graft.keras2 import file_limits
from keras_graft.keras2.names import legal_name


def legacy_weights(layer) -> list:
    """A layer's weights in the order Keras 2's `.h5` files hold them (trainable first)."""
    return layer.trainable_weights + layer.non_trainable_weights


def read_h5_weights(path: Path) -> list[tuple[str, list[np.ndarray]]]:
    """(layer name, weight values) for each layer of a Keras 2 `.h5` file, in its order."""
    try:
        with file_limits.open_hdf5(path) as file:
            if "layers" in file and "layer_names" not in file.attrs:
                raise WeightMatchError(
                    f"{path} holds its weights by the model's structure (the `.weights.h5` "
                    "layout of Keras 3 and of tf_keras' `save_weights('x.weights.h5')`), not "
                    "by layer: load it with `model.load_weights(path)`."
                )
            group = file.get("model_weights", file)
            layers = []
            for name in file_limits.list_attribute(group, "layer_names"):
                layer = group[name]
                layers.append(
                    (name, [np.asarray(layer[w]) for w in file_limits.list_attribute(layer, "weight_names")])
                )
            return layers
    except (OSError, KeyError) as error:
        raise WeightMatchError(
            f"{path} holds no Keras 2 `.h5` weights ({error}). `load_weights` reads the "
            "`.h5` files of Keras 2's `model.save` and `model.save_weights`."
        ) from None


def pairs(saved: list[tuple[str, list]], model: list[tuple[str, list]], source: str = "the file"):
    """(file index, model index, how) for each file layer with weights and its model layer.

    `saved` and `model` list (layer name, weight shapes) in graph order; layers
    without weights are skipped.
    """
    saved_indices = [i for i, (_, shapes) in enumerate(saved) if shapes]
    model_indices = [i for i, (_, shapes) in enumerate(model) if shapes]
    model_position = {legal_name(model[i][0]): position for position, i in enumerate(model_indices)}
    anchors = []
    for position, i in enumerate(saved_indices):
        match = model_position.get(legal_name(saved[i][0]))
        if match is not None:
            if anchors and match <= anchors[-1][1]:
                earlier = saved[saved_indices[anchors[-1][0]]][0]
                raise WeightMatchError(
                    f"Cannot tell which layers of the model the weights in {source} belong "
                    f"to: the file's layer `{saved[i][0]}` comes after its layer `{earlier}`, "
                    f"but in the model the layer named `{model[model_indices[match]][0]}` comes "
                    "first, so the names contradict the order of the layers. Give the model's "
                    "layers the names the file has (`name=`), or build the model in the order "
                    "the file's layers come in."
                )
            anchors.append((position, match))
    matched = []
    previous = (-1, -1)
    for position, match in anchors + [(len(saved_indices), len(model_indices))]:
        file_gap = range(previous[0] + 1, position)
        model_gap = range(previous[1] + 1, match)
        if len(file_gap) != len(model_gap):
            raise WeightMatchError(
                _gap_message(source, saved, model, saved_indices, model_indices, file_gap, model_gap)
            )
        matched += [(saved_indices[f], model_indices[m], "graph order") for f, m in zip(file_gap, model_gap)]
        if position < len(saved_indices):
            matched.append((saved_indices[position], model_indices[match], "name"))
        previous = (position, match)
    for file_index, model_index, how in matched:
        if [tuple(s) for s in saved[file_index][1]] != [tuple(s) for s in model[model_index][1]]:
            raise WeightMatchError(
                f"The weights of layer `{saved[file_index][0]}` in {source} have the shapes "
                f"{[tuple(s) for s in saved[file_index][1]]}, but the model's layer "
                f"`{model[model_index][0]}` (matched by {how}) has "
                f"{[tuple(s) for s in model[model_index][1]]}. Build the model with the "
                "arguments the file was saved with."
            )
    return sorted(matched)


def _gap_message(source, saved, model, saved_indices, model_indices, file_gap, model_gap) -> str:
    file_names = [saved[saved_indices[i]][0] for i in file_gap]
    model_names = [model[model_indices[i]][0] for i in model_gap]
    return (
        f"Cannot match the weights in {source} to the model's layers: where the file "
        f"holds {len(file_names)} layer(s) with weights ({', '.join(file_names) or 'none'}), "
        f"the model holds {len(model_names)} ({', '.join(model_names) or 'none'}), and no "
        "name tells which is which. Build the model from the code that wrote the file, or "
        "name its layers as the file does (`name=`)."
    )
