"""Ways to call TensorFlow ops, shared by the sweeps that call every allowed op.

A candidate call is a tuple of positional arguments in which a `Tensor(shape,
dtype)` stands for a tensor. `materialize(call, make)` replaces each one with
`make(spec)`: graph placeholders in `test_safety.py`, tf_keras inputs in the
Keras 2 op sweep (`keras2_op_sweep.py`). A sweep tries `CANDIDATES` in order
and keeps the first call the op accepts; the first seven are the generic
shapes most ops take, the others reach ops that need a particular argument
(an equation, a list of tensors, square matrices, images, a frame length...).

>>> materialize((FLOATS, [INTS, 2]), lambda spec: spec.dtype)
('float32', ['int32', 2])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class Tensor:
    """A tensor argument of a candidate call; `materialize` makes one tensor per occurrence."""

    shape: tuple
    dtype: str = "float32"
    sparse: bool = False

    def __repr__(self):
        kind = "sparse " if self.sparse else ""
        return f"<{kind}{self.dtype}{list(self.shape)}>"


FLOATS, STRINGS, SPARSE, INTS, BYTES = (
    Tensor((4, 4, 3)),
    Tensor((4,), "string"),
    Tensor((4, 3), sparse=True),
    Tensor((4,), "int32"),
    Tensor((4, 4, 3), "uint8"),
)
BOOLS = Tensor((4, 4, 3), "bool")
MATRICES = Tensor((3, 4, 4))
IMAGES = Tensor((2, 4, 4, 3))
FILTERS = Tensor((2, 2, 3, 2))
SIGNALS = Tensor((2, 16))
SEQUENCES = Tensor((2, 8, 3))
SPECTRA = Tensor((4, 4), "complex64")
VECTOR = Tensor((4,))
SCALAR_INT = Tensor((), "int32")

CANDIDATES: list[tuple] = [
    (FLOATS,),
    (STRINGS,),
    (SPARSE,),
    (INTS,),
    (FLOATS, FLOATS),
    (FLOATS, 2),
    (BYTES,),
    # Beyond the generic shapes, in the order they are tried.
    (BOOLS,),
    (BOOLS, BOOLS),
    (BOOLS, FLOATS, FLOATS),
    (FLOATS, 0.25, 0.75),
    (FLOATS, FLOATS, FLOATS),
    ([FLOATS, FLOATS],),
    ([FLOATS, FLOATS], 1),
    ("ijk->kji", FLOATS),
    ("ijk,ijk->ij", FLOATS, FLOATS),
    (MATRICES,),
    (MATRICES, MATRICES),
    (IMAGES,),
    (IMAGES, [2, 2]),
    (IMAGES, 0.5),
    (IMAGES, FILTERS, 1, "SAME"),
    (IMAGES, [1, 2, 2, 1], [1, 1, 1, 1], "VALID"),
    (SEQUENCES, Tensor((2, 3, 2)), 1, "SAME"),
    (IMAGES, Tensor((2, 2, 3, 1)), [1, 1, 1, 1], "SAME"),
    (IMAGES, Tensor((2, 2, 3, 1)), Tensor((1, 1, 3, 2)), [1, 1, 1, 1], "SAME"),
    (Tensor((1, 4, 4, 4, 3)), Tensor((2, 2, 2, 3, 2)), [1, 1, 1, 1, 1], "SAME"),
    (SIGNALS, 4, 2),
    (SIGNALS, 4),
    (SPECTRA,),
    (STRINGS, ","),
    (STRINGS, STRINGS),
    (STRINGS, 0, 1),
    (INTS, 3),
    (FLOATS, INTS),
    (INTS, FLOATS),
    (FLOATS, [2, 0, 1]),
    (FLOATS, [-1]),
    (FLOATS, 1, 2),
    (VECTOR,),
    (VECTOR, VECTOR),
    (SCALAR_INT,),
    (SCALAR_INT, SCALAR_INT),
    (INTS, INTS),
]


def materialize(value: Any, make: Callable[[Tensor], Any]) -> Any:
    """`value` with each `Tensor` spec replaced by `make(spec)` (lists, tuples, dicts and
    slices walked)."""
    if isinstance(value, Tensor):
        return make(value)
    if isinstance(value, slice):
        return slice(*(materialize(v, make) for v in (value.start, value.stop, value.step)))
    if isinstance(value, list):
        return [materialize(item, make) for item in value]
    if isinstance(value, tuple):
        return tuple(materialize(item, make) for item in value)
    if isinstance(value, dict):
        return {key: materialize(item, make) for key, item in value.items()}
    return value


def specs(value: Any) -> list[Tensor]:
    """The `Tensor` specs in `value`, in the order `materialize` meets them."""
    found = []
    materialize(value, found.append)
    return found


def sample(spec: Tensor, seed: int) -> np.ndarray:
    """Values for `spec` in the range most ops accept: floats in (0.1, 0.9) (logs,
    square roots, arc sines), integers that index every axis of the calls above,
    short comma-separated strings."""
    rng = np.random.default_rng(seed)
    if spec.dtype == "string":
        words = np.array(["a,b", "cd", "e,f,g", "hij"], dtype=object)
        return rng.choice(words, size=spec.shape)
    if spec.dtype == "bool":
        return rng.random(spec.shape) > 0.5
    if spec.dtype == "uint8":
        return rng.integers(0, 256, spec.shape).astype("uint8")
    if spec.dtype == "int32":
        # Scalars from 1: also valid as a slice's step.
        return rng.integers(0 if spec.shape else 1, 3, spec.shape).astype("int32")
    real = rng.uniform(0.1, 0.9, spec.shape)
    if spec.dtype == "complex64":
        return (real + 1j * rng.uniform(0.1, 0.9, spec.shape)).astype("complex64")
    return real.astype(spec.dtype)
