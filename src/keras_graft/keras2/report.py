"""What loading a Keras 2 file translated, layer by layer.

Loading a Keras 2 file quietly rewrites parts of its config (op layers, config
keys Keras 3 renamed). `recording()` collects those rewrites, which is how
`keras-graft convert` prints its per-layer report; outside it, notes are
dropped.

>>> from keras_graft.keras2 import report
>>> with report.recording() as notes:
...     report.note("dw", "DepthwiseConv2D", "dropped `groups: 1` (Keras 3 has no such argument)")
>>> notes[0].layer, notes[0].keras2_class
('dw', 'DepthwiseConv2D')
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass


@dataclass(frozen=True)
class Note:
    """One rewrite of one layer's config."""

    layer: str
    keras2_class: str
    change: str


_notes: contextvars.ContextVar[list[Note] | None] = contextvars.ContextVar(
    "keras_graft_keras2_notes", default=None
)


def note(layer: str, keras2_class: str, change: str) -> None:
    """Records a rewrite when a `recording()` is active."""
    notes = _notes.get()
    if notes is not None:
        notes.append(Note(layer, keras2_class, change))


@contextlib.contextmanager
def recording():
    """Collects the notes of the loads inside the block into the yielded list."""
    notes: list[Note] = []
    token = _notes.set(notes)
    try:
        yield notes
    finally:
        _notes.reset(token)
