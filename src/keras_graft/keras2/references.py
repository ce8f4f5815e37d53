"""Keras 2's references to tensors in a functional model config, and renaming them.

Keras 2 names a tensor `[layer, node_index, tensor_index]` (with the call's
kwargs as a fourth item in inbound nodes) in `inbound_nodes`, in call kwargs
and in `input_layers`/`output_layers`. Rewrites that rename or split layers
must follow every reference; `rename` does that in one walk.

>>> rename([["a/b", 0, 0, {"y": ["a/b", 0, 1]}]], {"a/b"}, lambda name, node: ("a_b", node))
[['a_b', 0, 0, {'y': ['a_b', 0, 1]}]]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from keras_graft.errors import malformed


def is_reference(value: Any, layer_names) -> bool:
    """Whether `value` is Keras 2's reference to a tensor: `[layer, node, tensor(, kwargs)]`.

    Keras 2 read any list of 3 or 4 items starting with a string as one; here
    the string must also name a layer of the model and the indices be ints.
    """
    return (
        isinstance(value, (list, tuple))
        and len(value) in (3, 4)
        and isinstance(value[0], str)
        and value[0] in layer_names
        and all(isinstance(i, int) and not isinstance(i, bool) for i in value[1:3])
    )


def rename(value: Any, layer_names, new_place: Callable[[str, int], tuple[str, int] | None]) -> Any:
    """`value` with each reference moved to `new_place(layer, node)` (None: unchanged)."""
    if is_reference(value, layer_names):
        place = new_place(value[0], value[1])
        head = list(place) if place is not None else list(value[:2])
        return [*head, value[2], *(rename(item, layer_names, new_place) for item in value[3:])]
    if isinstance(value, list):
        return [rename(item, layer_names, new_place) for item in value]
    if isinstance(value, dict):
        return {key: rename(item, layer_names, new_place) for key, item in value.items()}
    return value


def unused_name(base: str, taken: set) -> str:
    """`base`, or `base_1`, `base_2`... whichever is not in `taken` (then added to it)."""
    name, count = base, 1
    while name in taken:
        name, count = f"{base}_{count}", count + 1
    taken.add(name)
    return name


def call_kwargs(entries: list, layer: str) -> dict:
    """The call kwargs of a Keras 2 node: the same in each of its `entries`.

    Keras 2 repeats a call's kwargs in every input of its node, and calls
    the layer with the last input's (as does Keras 3's legacy loader). A
    node whose inputs carry different kwargs was forged: readers that take
    the first and the last would build different calls.

    >>> call_kwargs([["x", 0, 0, {"y": 2.0}], ["z", 0, 0, {"y": 2.0}]], "add")
    {'y': 2.0}
    """
    found = [entry[3] if len(entry) == 4 else {} for entry in entries]
    if not all(isinstance(kwargs, dict) for kwargs in found):
        raise malformed(
            f"Keras 2 layer {layer!r} has a call whose arguments are not a dict", writer="Keras 2"
        )
    if any(kwargs != found[0] for kwargs in found[1:]):
        raise malformed(
            f"The inputs of a call of Keras 2 layer {layer!r} carry different call "
            "arguments, which Keras 2 reads from the last and keras-graft from the first",
            writer="Keras 2",
        )
    return found[0] if found else {}
