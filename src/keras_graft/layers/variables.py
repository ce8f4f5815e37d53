"""What a `@keras_graft.layer` knows about each variable its function asked for.

`ctx.weight(...)` and `ctx.state(...)` describe a variable with a
`VariableSpec`; the layer keeps one `(spec, variable)` per name in its
`LayerVariables`, created when the layer is built and handed back on every
later call, checked against the spec the call asks for.

>>> kernel = VariableSpec("weight", (3, 2), "float32")
>>> kernel.describe()
'shape (3, 2), dtype float32'
>>> kernel.differences(VariableSpec("weight", (3, 4), "float32"))
'shape: (3, 2) then (3, 4)'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import tensorflow as tf

__all__ = ["LayerVariables", "VariableSpec"]


@dataclasses.dataclass(frozen=True)
class VariableSpec:
    """A variable as `ctx.weight` (kind "weight") or `ctx.state` (kind "state") asked for it."""

    kind: str
    shape: tuple
    dtype: str
    trainable: bool = True  # weights only; state is never trainable
    aggregation: str | None = None  # state only

    def describe(self) -> str:
        text = f"shape {self.shape}, dtype {self.dtype}"
        if self.kind == "weight" and not self.trainable:
            text += ", trainable=False"
        if self.kind == "state":
            text += f", aggregation={self.aggregation!r}"
        return text

    def differences(self, other: VariableSpec) -> str:
        fields = [f.name for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(other, f.name)]
        return "; ".join(f"{name}: {getattr(self, name)!r} then {getattr(other, name)!r}" for name in fields)

    def accepts(self, other: VariableSpec) -> bool:
        """Whether a call asking for `other` may use the variable made for this
        spec: equal but for unknown dimensions."""
        return dataclasses.replace(self, shape=()) == dataclasses.replace(other, shape=()) and (
            tf.TensorShape(self.shape).is_compatible_with(tf.TensorShape(other.shape))
        )

    def placeholder(self):
        """A TF graph placeholder of this variable's shape and dtype."""
        return tf.compat.v1.placeholder(tf.as_dtype(self.dtype), self.shape)


class LayerVariables:
    """`{name: (VariableSpec, variable)}` of one layer, in creation order.

    `track_state(index, variable)` is called for each state variable as it is
    added: the layer tracks it then, so its variables keep creation order (the
    order a saved file's weights are matched in).
    """

    def __init__(self, track_state: Callable | None = None):
        self._entries: dict[str, tuple[VariableSpec, object]] = {}
        self._track_state = track_state
        # " (on inputs of shape ...)" once the layer is built: for error messages.
        self.built_on = ""

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str):
        """`(spec, variable)` for `name`, or None."""
        return self._entries.get(name)

    def add(self, name: str, spec: VariableSpec, variable) -> None:
        if spec.kind == "state" and self._track_state is not None:
            self._track_state(len(self._entries), variable)
        self._entries[name] = (spec, variable)

    def items(self):
        return self._entries.items()

    def names(self) -> list[str]:
        return list(self._entries)

    def variables(self) -> dict:
        return {name: variable for name, (_, variable) in self._entries.items()}

    def has_state(self) -> bool:
        return any(spec.kind == "state" for spec, _ in self._entries.values())
