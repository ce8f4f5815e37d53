"""`keras_graft.export(model, path, format=...)`: deployable artifacts, guided by inspect.

- `"saved_model"`: Keras's own `model.export` (a TF SavedModel with a `serve`
  endpoint).
- `"tflite"`: TensorFlow's converter on that SavedModel, with builtin ops
  only unless `keras_graft.inspect` finds a layer that needs Select TF ops;
  then Select TF ops are enabled, and the layers that need them are named.
  A layer TFLite cannot convert at all is refused before converting, and so
  is one whose check was not made (over inspect's budget: converting the
  whole model would fold the same constants in this process).

>>> import keras, tensorflow as tf, keras_graft
>>> x = keras.Input((4,))
>>> model = keras.Model(x, tf.clip_by_value(x, -1.0, 1.0))
>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "clip.tflite")
>>> keras_graft.export(model, path, format="tflite").select_tf_ops
[]
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import tensorflow as tf
from rich.console import Console

from keras_graft.errors import ExportError
from keras_graft.inspection import checks, inspect

FORMATS = ("saved_model", "tflite")


@dataclass
class Exported:
    """What `export` wrote."""

    path: Path
    format: str
    # 'layer: why' for each layer that needs Select TF ops (TFLite only).
    select_tf_ops: list = field(default_factory=list)


def export(model, path, format: str = "saved_model", *, console: Console | None = None) -> Exported:
    """Writes `model` to `path` as a SavedModel directory or a `.tflite` file."""
    if format not in FORMATS:
        raise ExportError(f"Unknown export format {format!r}; choose from {', '.join(FORMATS)}.")
    path = Path(path)
    if format == "saved_model":
        model.export(str(path), format="tf_saved_model", verbose=False)
        return Exported(path, format)
    report = inspect(model, checks_to_run=("tflite",), console=console)
    select = [
        f"{layer.name}: {layer.checks['tflite'].detail}"
        for layer in report.layers
        if layer.checks["tflite"].status == "select"
    ]
    impossible = [
        f"{layer.name} ({layer.checks['tflite'].detail})"
        for layer in report.layers
        if layer.checks["tflite"].status == "no"
    ]
    unchecked = [
        f"{layer.name} ({layer.checks['tflite'].detail})"
        for layer in report.layers
        if layer.checks["tflite"].status in (checks.BUDGET, checks.NOT_CHECKED)
    ]
    if unchecked:
        raise ExportError(
            f"Inspect could not check {', '.join(unchecked)} for TFLite, and converting the model "
            "would do the same work in this process. Find out why with `keras_graft.inspect` "
            "(a larger budget: inspect(model, budget=keras_graft.inspection.Budget(...)))."
        )
    if impossible:
        raise ExportError(
            f"TFLite cannot convert {', '.join(impossible)}, even with Select TF ops. "
            "Export a SavedModel instead (format='saved_model'), or replace these ops "
            "(see `keras-graft inspect` for keras.ops equivalents)."
        )
    ops_sets = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if select:
        ops_sets.append(tf.lite.OpsSet.SELECT_TF_OPS)
        (console or Console(stderr=True)).print(
            "Enabling Select TF ops for TFLite (the interpreter then needs the Flex "
            "delegate): " + "; ".join(select),
            soft_wrap=True,
        )
    with tempfile.TemporaryDirectory() as scratch:
        model.export(scratch, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(scratch)
        converter.target_spec.supported_ops = ops_sets
        flatbuffer = converter.convert()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(flatbuffer)
    return Exported(path, format, select)
