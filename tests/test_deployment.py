"""Models with op layers export to SavedModel and convert to TFLite."""

import keras
import numpy as np
import tensorflow as tf


def build():
    x = keras.Input((10,))
    values, indices = tf.math.top_k(tf.clip_by_value(x, -1.0, 1.0), k=3)
    return keras.Model(x, [keras.layers.Dense(2)(values), indices])


def test_saved_model_export_serves_the_same_outputs(tmp_path):
    model = build()
    model.export(tmp_path / "exported", verbose=False)
    restored = tf.saved_model.load(str(tmp_path / "exported"))
    data = np.random.default_rng(0).normal(size=(2, 10)).astype("float32")
    for ours, theirs in zip(model(data), restored.serve(data)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_tflite_conversion_runs_with_builtin_ops(tmp_path):
    model = build()
    model.export(tmp_path / "exported", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "exported"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    data = np.random.default_rng(1).normal(size=(1, 10)).astype("float32")
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], data)
    interpreter.invoke()
    outputs = sorted(
        (interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()),
        key=lambda a: a.dtype.kind,
    )
    expected_values, expected_indices = model(data)
    np.testing.assert_array_equal(outputs[1], expected_indices)
    np.testing.assert_allclose(outputs[0], expected_values, rtol=1e-5)
