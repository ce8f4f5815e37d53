"""Keras 2 `.h5` files with TF ops (`TFOpLambda`, `SlicingOpLambda`) load in Keras 3.

The files are written by tf_keras in a child process (`keras2_models.py`);
each loads here in safe mode after `import keras_graft`, predicts what tf_keras
predicted, and saves to a `.keras` file that reloads in safe mode.
"""

import json
import shutil

import h5py
import keras
import numpy as np
import pytest

import keras_graft
from keras2_models import MODELS, read_arrays

ATOL = 1e-4


def predict(model, inputs):
    outputs = model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0)
    return outputs if isinstance(outputs, (list, tuple)) else [outputs]


def assert_predicts(model, path):
    inputs, expected = read_arrays(path)
    actual = predict(model, inputs)
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, atol=ATOL)


def op_layers(model):
    layers = []
    for layer in model.layers:
        layers += op_layers(layer) if isinstance(layer, keras.Model) else [layer]
    return [layer for layer in layers if isinstance(layer, keras_graft.TFOp)]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_keras2_h5_loads_predicts_the_same_and_saves_safely(keras2_files, tmp_path, name):
    path = keras2_files / f"{name}.h5"
    model = keras.models.load_model(path, compile=False)  # safe mode
    assert op_layers(model), "the Keras 2 op layers became keras-graft TFOp layers"
    assert_predicts(model, path)
    model.save(tmp_path / "converted.keras")
    reloaded = keras.models.load_model(tmp_path / "converted.keras", safe_mode=True)
    assert_predicts(reloaded, path)


def test_op_layers_keep_their_names_dtypes_and_arguments(keras2_files):
    model = keras.models.load_model(keras2_files / "ops.h5", compile=False)
    by_name = {layer.name: layer for layer in op_layers(model)}
    assert by_name["tf.math.top_k"].op_name == "tf.math.top_k"
    assert by_name["tf.math.top_k"].arguments.get_config()["kwargs"] == {"k": 2}
    assert by_name["tf.clip_by_value"].arguments.get_config()["kwargs"] == {
        "clip_value_min": -1.0,
        "clip_value_max": 1.0,
    }
    assert by_name["tf.__operators__.add"].op_name == "tf.__operators__.add"
    indices = by_name["tf.math.top_k"].output[1]
    assert indices.dtype == "int32"


def test_an_op_layer_called_twice_becomes_one_layer_per_call(keras2_files):
    model = keras.models.load_model(keras2_files / "shared_op.h5", compile=False)
    calls = {layer.name: layer.arguments.get_config()["kwargs"] for layer in op_layers(model)}
    assert calls["tf.math.multiply"] == {"y": 2.0}
    assert calls["tf.math.multiply_call1"] == {"y": 3.0}


def test_tf1_names_keras2_recorded_load_as_their_tf2_ops(keras2_files):
    model = keras.models.load_model(keras2_files / "transformer.h5", compile=False)
    names = {layer.op_name for layer in op_layers(model)}
    assert "tf.shape" in names and "tf.transpose" in names
    assert not any("compat.v1" in name for name in names)


def forge(source, target, function, node):
    """A copy of `source` whose first op layer is `function`, called as `node`."""
    shutil.copy(source, target)
    with h5py.File(target, "r+") as file:
        config = json.loads(file.attrs["model_config"])
        layer = next(l for l in config["config"]["layers"] if l["class_name"] == "TFOpLambda")
        layer["config"]["function"] = function
        layer["inbound_nodes"] = [node]
        file.attrs["model_config"] = json.dumps(config).encode()


@pytest.mark.parametrize("function", ["io.write_file", "os.system", "print", "py_function"])
def test_forged_keras2_files_naming_disallowed_ops_are_refused_and_nothing_runs(
    keras2_files, tmp_path, function
):
    target = tmp_path / "written_by_the_model"
    forged = tmp_path / "forged.h5"
    forge(
        keras2_files / "ops.h5",
        forged,
        function,
        ["_CONSTANT_VALUE", -1, str(target), {"contents": ["x", 0, 0]}],
    )
    with pytest.raises(keras_graft.UnsafeOpError, match="Refusing"):
        keras.models.load_model(forged, compile=False)
    assert not target.exists()


def test_serialized_objects_in_call_kwargs_stay_data(keras2_files, tmp_path):
    forged = tmp_path / "forged.h5"
    forge(
        keras2_files / "ops.h5",
        forged,
        "math.multiply",
        ["x", 0, 0, {"y": {"class_name": "__lambda__", "config": {"code": "print"}}}],
    )
    # The dict stays data: TensorFlow is handed it as `y` and cannot build the op.
    with pytest.raises(keras_graft.OpTraceError, match="tf.math.multiply"):
        keras.models.load_model(forged, compile=False)


def test_keras3_h5_files_with_op_layers_and_nested_models_still_load(tmp_path):
    import tensorflow as tf

    x = keras.Input((4,))
    hidden = keras.layers.Dense(4)(x)
    inner_input = keras.Input((4,))
    inner = keras.Model(inner_input, tf.math.top_k(inner_input, k=2).values)
    model = keras.Model(x, [tf.clip_by_value(hidden, -1.0, 1.0), inner(hidden)])
    model.save(tmp_path / "keras3.h5")
    reloaded = keras.models.load_model(tmp_path / "keras3.h5", compile=False)
    data = np.random.default_rng(0).normal(size=(2, 4)).astype("float32")
    for got, want in zip(reloaded.predict(data, verbose=0), model.predict(data, verbose=0)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("module_keys", [{}, {"module": "keras.layers", "registered_name": None}])
def test_a_lambda_inside_a_wrapper_is_refused_naming_both_layers(module_keys):
    """Also as tf_keras 2.16+ writes the wrapped layer (with `module`), which Keras reads
    past keras-graft's hook and failed on with "Unrecognized keyword arguments"."""
    from keras_graft.errors import LambdaLayerError
    from keras_graft.keras2 import loading

    lam = {"class_name": "Lambda", "config": {"name": "double", "function_type": "lambda"}, **module_keys}
    wrapper = {"class_name": "TimeDistributed", "config": {"name": "each_step", "layer": lam}}
    with pytest.raises(LambdaLayerError, match=r"`each_step` \(TimeDistributed\) wraps .*`double`"):
        loading.translate(wrapper)
