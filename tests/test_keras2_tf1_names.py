"""TF 1 names Keras 2 recorded load as their TF 2 ops, as TensorFlow relates them.

The map (`keras_graft.keras2.tf1_names`) is derived from TensorFlow: the
`compat.v1` names of the same function in its export table, and the
`compat.v1` function a TF 2 op hands all its arguments to and returns the
result of, with the TF 1 parameters it renames or fills. The sweep builds
every TF 2 op of a derived pair with tf_keras, loads each file in Keras 3 with
tf_keras's results, and counts the pairs whose TF 1 name Keras 2 recorded.
"""

import json
import shutil

import h5py
import keras
import pytest
import tensorflow as tf

import keras2_op_sweep as sweep
import keras_graft
from keras_graft import _compat
from keras_graft.keras2 import tf1_names

DELEGATIONS = tf1_names.delegations()
MAP = {tf1: delegation.tf2_name for tf1, delegation in DELEGATIONS.items()}
# Pairs where the TF 1 name is another function than the TF 2 op: the ones Keras 2 records.
DELEGATING = {tf1: tf2 for tf1, tf2 in MAP.items() if _compat.tf_symbol(tf1) is not _compat.tf_symbol(tf2)}


def test_the_derived_map_holds_the_names_keras2_records():
    assert MAP["compat.v1.floor_div"] == "math.floordiv"  # x // 2
    for name in ("shape", "size", "gather", "squeeze", "transpose", "boolean_mask", "pad", "norm"):
        assert MAP[f"compat.v1.{name}"] == name
    assert MAP["compat.v1.floordiv"] == MAP["compat.v1.math.floordiv"] == "math.floordiv"  # the same function
    assert len(DELEGATING) >= 40


def test_every_mapped_name_is_an_allowed_tf2_op_and_every_tf1_name_is_tf1():
    for tf1, tf2 in MAP.items():
        assert tf1.startswith("compat.v1.") and not tf2.startswith("compat.")
        assert keras_graft.core.safety.refusal_reason(tf2) is None, tf2


def test_renamed_and_filled_parameters_are_what_the_tf2_op_hands_on():
    conv2d = DELEGATIONS["compat.v1.nn.conv2d"]  # conv2d(input, filter=filters, ..., use_cudnn_on_gpu=True)
    assert (conv2d.tf2_name, dict(conv2d.renamed), dict(conv2d.filled)) == (
        "nn.conv2d",
        {"filter": "filters"},
        {"use_cudnn_on_gpu": True},
    )
    assert dict(DELEGATIONS["compat.v1.nn.depthwise_conv2d"].renamed) == {"rate": "dilations"}
    assert dict(DELEGATIONS["compat.v1.nn.conv1d"].renamed) == {"value": "input"}
    args, kwargs = tf1_names.tf2_arguments(
        "compat.v1.nn.conv1d", "x", {"filters": "k", "use_cudnn_on_gpu": True}
    )
    assert (args, kwargs) == ((), {"input": "x", "filters": "k"})


def test_a_value_the_tf2_op_would_not_pass_has_no_tf2_form():
    with pytest.raises(
        keras_graft.errors.UntranslatableConfigError, match="use_cudnn_on_gpu=False.*always passes"
    ):
        tf1_names.tf2_arguments("compat.v1.nn.conv2d", "x", {"filter": "k", "use_cudnn_on_gpu": False})


def test_an_op_that_computes_on_a_tf1_functions_result_is_no_pair():
    # `tf.image.grayscale_to_rgb` calls `compat.v1.shape` on its input, then goes on:
    # it does not hand its call on. Nor does `tf.io.is_jpeg` with `compat.v1.strings.substr`.
    assert MAP["compat.v1.shape"] == "shape"
    assert "compat.v1.strings.substr" not in MAP
    assert "compat.v1.nn.convolution" not in MAP  # `tf.nn.atrous_conv2d` computes around it


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    ops = sorted(set(DELEGATING.values()))
    return sweep.run(ops, tmp_path_factory.mktemp("tf1_sweep"), forms=["positional"])


def test_every_delegating_pair_loads_as_its_tf2_op_with_keras2s_results(cases):
    problems = [f"{c['op']} {c['call']}: {c['problem']}" for c in cases if c["problem"]]
    assert problems == []
    tf1_names_of = {}
    for tf1, tf2 in DELEGATING.items():
        tf1_names_of.setdefault(tf2, set()).add(tf1)
    loaded = [c for c in cases if c["class"] == sweep.FAITHFUL]
    recorded = {c["op"]: {name for _, name in c["op_layers"]} for c in loaded}
    # Keras 2 recorded the pair's own TF 1 name, and the file loaded as its TF 2 op with
    # Keras 2's results. The others Keras 2 recorded as the ops inside (`tf.nn.moments`
    # as `math.reduce_mean`...), or could not save (functions as arguments, ...).
    exercised = sorted(op for op, names in recorded.items() if names & tf1_names_of[op])
    assert len(exercised) >= 15, exercised


def forge(source, target, function):
    """A copy of the Keras 2 file `source` whose first op layer names `function`."""
    shutil.copy(source, target)
    with h5py.File(target, "r+") as file:
        config = json.loads(file.attrs["model_config"])
        layer = next(l for l in config["config"]["layers"] if l["class_name"] == "TFOpLambda")
        layer["config"]["function"] = function
        file.attrs["model_config"] = json.dumps(config).encode()
    return target


@pytest.mark.parametrize(
    "tf1_name",
    [
        "compat.v1.ones_like",
        "compat.v1.strings.substr",
        "compat.v1.nn.convolution",
        "compat.v1.layers.dense",
        "compat.v1.py_func",
        "compat.v1.placeholder",
    ],
)
def test_tf1_names_without_a_tf2_twin_stay_refused(keras2_files, tmp_path, tf1_name):
    assert tf1_name not in MAP
    forged = forge(keras2_files / "shared_op.h5", tmp_path / "forged.h5", tf1_name)
    with pytest.raises(
        keras_graft.UnsafeOpError, match=rf"Refusing op `tf.{tf1_name}`.*TF 1 name.*no allowed TF 2 op"
    ) as refused:
        keras.models.load_model(forged, compile=False)
    assert "tf.math.multiply" in str(refused.value)  # the layer
    assert "keras_graft.keras2.files.load_weights(model, path)" in str(refused.value)  # what still works


def test_a_tf1_name_loads_as_the_tf2_op_it_maps_to(keras2_files, tmp_path):
    forged = forge(keras2_files / "shared_op.h5", tmp_path / "forged.h5", "compat.v1.math.multiply")
    model = keras.models.load_model(forged, compile=False)
    assert {layer.op_name for layer in model.layers if isinstance(layer, keras_graft.TFOp)} >= {
        "tf.math.multiply"
    }
    assert float(model(tf.ones((1, 4)))[0][0, 0]) == 2.0
