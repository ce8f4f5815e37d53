"""The weights of a tf_keras `.keras` file, matched to the rebuilt model by structure.

A `.keras` zip's `model.weights.h5` holds one group per layer, named after the
layer's *class* and a counter, never after the layer: `dense`, `dense_1`...
Which group is which layer depends on the Keras 2 release that wrote it:

| release | container | n-th layer of a class (from 0) |
|---|---|---|
| keras 2.13 | `_layer_checkpoint_dependencies/` | `dense_{2n}` when it has weights (Keras 2.13 met every weighted layer twice and counted both), else the next free number |
| keras 2.14 | `_layer_checkpoint_dependencies/` | `dense_{n}` |
| keras 2.15, tf_keras 2.16-2.21 | `layers/` (as Keras 3) | `dense_{n}` |

Each group holds the layer's variables (`vars/0`, `vars/1`...) and, under the
attribute names, its sublayers' (`multi_head_attention/_query_dense/vars/0`);
a nested model holds a container of its own. Reading `dense_2` as "the third
Dense", as Keras 3's loader does, puts a 2.13 file's weights in the wrong
layers, or in none.

So the groups are matched by structure, whatever the counters: within one
class, groups sorted by counter are the model's layers of that class in
order (every release visits layers in order). The Keras 3 side comes from
Keras 3 itself: the rebuilt model's own weights file, whose groups name their
layer. Every group must match exactly one layer, and every variable its
counterpart's shape; anything else is refused (`Keras2FileError`), naming the
layer. Variables are then copied into Keras 3's layout and loaded with
`model.load_weights`.

>>> group_key("conv2d_4", {"conv2d", "max_pooling2d"})
('conv2d', 4)
>>> keras2_snake_case("TFOpLambda")
'tf_op_lambda'
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import h5py
import keras

from keras_graft.errors import Keras2FileError
from keras_graft.keras2 import names

CONTAINERS = ("layers", "_layer_checkpoint_dependencies")
MODEL_CLASSES = ("Functional", "Model", "Sequential")
# Groups beside the layers: the model's own (empty) variables and the
# training state, which `keras_graft.keras2.compile_configs` reads.
NOT_LAYERS = ("vars", "optimizer", "metrics")


def keras2_snake_case(class_name: str) -> str:
    """The group name Keras 2 derived from a class name (`generic_utils.to_snake_case`)."""
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
    return name if not name.startswith("_") else "private" + name


def group_key(group: str, prefixes) -> tuple[str, int] | None:
    """(class prefix, counter) of a group name, or None when no prefix fits."""
    matches = []
    for prefix in prefixes:
        if group == prefix:
            matches.append((prefix, 0))
        elif group.startswith(prefix + "_") and group[len(prefix) + 1 :].isdigit():
            matches.append((prefix, int(group[len(prefix) + 1 :])))
    if len(matches) > 1:
        raise Keras2FileError(
            f"The weights group `{group}` could belong to layers of several classes "
            f"({', '.join(m[0] for m in matches)}): refusing to guess which."
        )
    return matches[0] if matches else None


def _class_name(layer_config: dict) -> str:
    # keras 2.13 wrote the registered name (`package>Class`) as the class name.
    return str(layer_config.get("class_name", "")).rpartition(">")[2]


def _container(group: h5py.Group, where: str) -> h5py.Group | None:
    present = [name for name in CONTAINERS if name in group]
    if len(present) > 1:
        raise Keras2FileError(
            f"{where} holds both {' and '.join(present)}: refusing to guess which is the model's."
        )
    return group[present[0]] if present else None


def _keras2_groups(container: h5py.Group, layer_configs: list, where: str) -> dict[str, h5py.Group]:
    """{Keras 2 layer name: its group}, by class and counter order."""
    by_class: dict[str, list[dict]] = {}
    for layer in layer_configs:
        by_class.setdefault(keras2_snake_case(_class_name(layer)), []).append(layer)
    found: dict[str, list[tuple[int, str]]] = {prefix: [] for prefix in by_class}
    for group in container:
        key = group_key(group, by_class)
        if key is None:
            raise Keras2FileError(
                f"{where}: the weights group `{group}` belongs to no layer of the model's "
                "config: the file's weights do not match its config."
            )
        found[key[0]].append((key[1], group))
    matched = {}
    for prefix, layers in by_class.items():
        groups = sorted(found[prefix])
        if len(groups) != len(layers):
            raise Keras2FileError(
                f"{where}: the config has {len(layers)} layer(s) of class "
                f"`{_class_name(layers[0])}`, the weights file {len(groups)} group(s) "
                f"`{prefix}*`: the file's weights do not match its config."
            )
        for layer, (_, group) in zip(layers, groups):
            matched[layer["config"]["name"]] = container[group]
    return matched


def _keras3_groups(container: h5py.Group) -> dict[str, h5py.Group]:
    """{Keras 3 layer name: its group} in Keras 3's own file (groups name their layer)."""
    return {group["vars"].attrs["name"]: group for group in container.values() if "vars" in group}


def _datasets(group: h5py.Group) -> dict[str, h5py.Dataset]:
    found = {}

    def take(path, item):  # returns None: h5py stops visiting at the first other value
        if isinstance(item, h5py.Dataset):
            found[path] = item

    group.visititems(take)
    return found


def _copy_model(source: h5py.Group, target: h5py.Group, config: dict, model, where: str) -> None:
    inner = config["config"]
    layer_configs = inner["layers"]
    if config.get("class_name") == "Sequential":
        # Keras 2's Sequential lists its input in the config, not among its layers.
        layer_configs = [layer for layer in layer_configs if layer.get("class_name") != "InputLayer"]
    source_container = _container(source, where)
    if source_container is None:
        if model.weights:
            raise Keras2FileError(
                f"{where} holds no layer weights, but the model has {len(model.weights)} variables."
            )
        return
    keras2 = _keras2_groups(source_container, layer_configs, where)
    keras3 = _keras3_groups(target["layers"])
    new_name = names.new_names(config)
    copied = set()
    for layer_config in layer_configs:
        old = layer_config["config"]["name"]
        name = new_name.get(old, old)
        layer_where = f"{where}, layer `{old}`"
        if name not in keras3:
            if _datasets(keras2[old]):
                raise Keras2FileError(
                    f"{layer_where}: the file has its weights, but the rebuilt model has no such layer."
                )
            continue  # an op layer: no weights, maybe split into one layer per call
        copied.add(name)
        layer = model.get_layer(name)
        if _class_name(layer_config) in MODEL_CLASSES:
            _copy_model(keras2[old], keras3[name], layer_config, layer, layer_where)
        else:
            _copy_layer(keras2[old], keras3[name], layer_where)
    missing = [name for name, group in keras3.items() if name not in copied and _datasets(group)]
    if missing:
        raise Keras2FileError(f"{where}: no weights in the file for the layers {missing}.")


def _copy_layer(source: h5py.Group, target: h5py.Group, where: str) -> None:
    stored, expected = _datasets(source), _datasets(target)
    if set(stored) != set(expected):
        raise Keras2FileError(
            f"{where}: the file stores the variables {sorted(stored)}, the Keras 3 layer "
            f"has {sorted(expected)}: refusing to guess which is which."
        )
    for path, dataset in expected.items():
        if stored[path].shape != dataset.shape:
            raise Keras2FileError(
                f"{where}: variable `{path}` has shape {stored[path].shape} in the file, "
                f"{dataset.shape} in the Keras 3 layer."
            )
        dataset[...] = stored[path][...]


def load(model: keras.Model, config: dict, weights: h5py.File, source: Path) -> None:
    """Loads `weights` (a tf_keras `.keras` file's `model.weights.h5`) into `model`,
    rebuilt from the file's Keras 2 `config`."""
    with tempfile.TemporaryDirectory() as workdir:
        layout = Path(workdir) / "keras3.weights.h5"
        model.save_weights(layout)
        with h5py.File(layout, "r+") as target:
            _copy_model(weights, target, config, model, str(source))
        model.load_weights(layout)
