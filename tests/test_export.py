"""`keras_graft.export`: SavedModel and TFLite artifacts reload and predict
as the Keras model does; Select TF ops only when inspect finds them needed."""

import contextlib
import io
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from rich.console import Console

import keras_graft
from keras_graft.inspection.export import ExportError


def build(with_select_op: bool):
    x = keras.Input((8,), name="a_values")  # the signature's inputs, sorted by name
    image = keras.Input((4, 4, 3), name="b_image")
    clipped = tf.clip_by_value(keras.layers.Dense(8)(x), -1.0, 1.0)
    values, indices = tf.math.top_k(clipped, k=3)
    outputs = [values, indices]
    if with_select_op:
        outputs.append(tf.image.rgb_to_hsv(image))
    return keras.Model([x, image], outputs)


def inputs(batch=1):
    rng = np.random.default_rng(0)
    return [
        rng.normal(size=(batch, 8)).astype("float32"),
        rng.uniform(size=(batch, 4, 4, 3)).astype("float32"),
    ]


def run_tflite(path, data):
    interpreter = tf.lite.Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner("serving_default")
    names = sorted(runner.get_input_details())
    results = runner(**dict(zip(names, data)))
    return [results[name] for name in sorted(results)]


def assert_same_outputs(expected, actual):
    expected = sorted((np.asarray(e) for e in expected), key=lambda a: (a.dtype.kind, a.shape))
    actual = sorted((np.asarray(a) for a in actual), key=lambda a: (a.dtype.kind, a.shape))
    assert len(expected) == len(actual)
    for e, a in zip(expected, actual):
        assert e.dtype == a.dtype
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)


def test_saved_model_reloads_with_matching_outputs(tmp_path):
    model = build(with_select_op=True)
    exported = keras_graft.export(model, tmp_path / "saved", format="saved_model")
    restored = tf.saved_model.load(str(exported.path))
    data = inputs(batch=2)
    assert_same_outputs(model(data), restored.serve(data))


def test_tflite_with_builtin_ops_only(tmp_path):
    model = build(with_select_op=False)
    console = Console(record=True)
    exported = keras_graft.export(model, tmp_path / "model.tflite", format="tflite", console=console)
    assert exported.select_tf_ops == []
    assert "Select TF ops" not in console.export_text()
    data = inputs()
    assert_same_outputs(model(data), run_tflite(exported.path, data))


def test_tflite_enables_select_tf_ops_only_when_needed_and_says_so(tmp_path):
    model = build(with_select_op=True)
    console = Console(record=True, width=200)
    exported = keras_graft.export(model, tmp_path / "model.tflite", format="tflite", console=console)
    assert exported.select_tf_ops == ["tf.image.rgb_to_hsv: needs Select TF ops: RGBToHSV"]
    assert "Enabling Select TF ops" in console.export_text()
    # Only the op that needs it runs as a TF (Flex) op; the rest stay builtin.
    assert tflite_ops(exported.path) == ["FULLY_CONNECTED", "FlexRGBToHSV", "TOPK_V2"]
    # TensorFlow's pip package ships no Flex delegate for its Python
    # interpreter, so the artifact runs only where one is linked in.
    with pytest.raises(RuntimeError, match="Flex delegate"):
        run_tflite(exported.path, inputs())


def tflite_ops(path):
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        tf.lite.experimental.Analyzer.analyze(model_path=str(path))
    return sorted(re.findall(r"Op#\d+ (\w+)\(", report.getvalue()))


def test_ops_tflite_cannot_convert_are_refused_before_converting(tmp_path):
    x = keras.Input((8,))
    model = keras.Model(x, tf.histogram_fixed_width(x, [-1.0, 1.0], nbins=4))
    with pytest.raises(ExportError, match=r"TFLite cannot convert tf.histogram_fixed_width .*saved_model"):
        keras_graft.export(model, tmp_path / "model.tflite", format="tflite")
    assert not (tmp_path / "model.tflite").exists()
    with pytest.raises(ExportError, match="Unknown export format 'onnx'"):
        keras_graft.export(model, tmp_path / "model.onnx", format="onnx")
