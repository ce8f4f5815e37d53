"""Constant arguments are stored as data, keep their values and dtypes, and fail early."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_graft
from keras_graft.core.arguments import ArgumentTemplate, TensorSlot


def round_trip(value):
    x = keras.Input((3,))
    template, tensors = ArgumentTemplate.capture((x, value), {"k": value}, where="test")
    config = json.loads(json.dumps(template.get_config()))
    args, kwargs = ArgumentTemplate(config).fill([x])
    assert args[0] is x and tensors == [x]
    return args[1], kwargs["k"]


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        7,
        -2.5,
        "text",
        b"\x00bytes\xff",
        [1, [2, 3]],
        (1, (2.0, "a")),
        {"a": 1, 2: [3]},
        slice(1, None, 2),
        Ellipsis,
        (Ellipsis, slice(None, 2), None),
        tf.float16,
        tf.string,
        tf.TensorShape([None, 4]),
        tf.TensorShape(None),
    ],
    ids=repr,
)
def test_plain_constants_round_trip_exactly(value):
    for restored in round_trip(value):
        assert restored == value
        assert type(restored) is type(value)


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_infinite_floats_round_trip(value):
    assert round_trip(value) == (value, value)


def test_nan_round_trips():
    assert all(np.isnan(v) for v in round_trip(float("nan")))


@pytest.mark.parametrize(
    "array",
    [
        np.arange(6, dtype=np.int64).reshape(2, 3),
        np.array([[0.5, -1.25]], dtype=np.float16),
        np.array([True, False]),
        np.array([b"a", b"\xffb"], dtype=object),
        np.array([], dtype=np.float32).reshape(0, 2),
    ],
    ids=lambda a: f"{a.dtype}{a.shape}",
)
def test_numpy_arrays_keep_values_dtype_and_shape(array):
    for restored in round_trip(array):
        assert isinstance(restored, np.ndarray)
        assert restored.shape == array.shape
        assert restored.dtype == array.dtype
        np.testing.assert_array_equal(restored, array)


def test_numpy_scalars_keep_their_dtype():
    for restored in round_trip(np.float16(1.5)):
        assert restored == np.float16(1.5) and restored.dtype == np.float16


@pytest.mark.parametrize(
    "tensor",
    [tf.constant([[1, 2]], dtype=tf.int8), tf.constant(3.5, tf.bfloat16), tf.constant(["x", "yz"])],
    ids=lambda t: t.dtype.name,
)
def test_eager_tensors_come_back_as_tensors_with_values_and_dtype(tensor):
    for restored in round_trip(tensor):
        assert tf.is_tensor(restored)
        assert restored.dtype == tensor.dtype and restored.shape == tensor.shape
        np.testing.assert_array_equal(restored.numpy(), tensor.numpy())


def test_repeated_keras_tensor_becomes_one_input():
    x, y = keras.Input((3,)), keras.Input((3,))
    template, tensors = ArgumentTemplate.capture(([x, y, x],), {"z": slice(y, None)}, where="t")
    assert tensors == [x, y]
    assert template.get_config()["args"][0][2] == {"__graft__": "input", "index": 0}
    args, kwargs = template.fill(["X", "Y"])
    assert args == [["X", "Y", "X"]] and kwargs == {"z": slice("Y", None)}
    decoded = ArgumentTemplate(template.get_config())._args[0][1]
    assert decoded[1] == TensorSlot(1)


def test_unstorable_argument_fails_when_the_op_is_wrapped_and_names_it():
    x = keras.Input((3,))
    with pytest.raises(
        keras_graft.UnstorableArgumentError, match=r"argument 'clip_value_max'.*not functions"
    ):
        tf.clip_by_value(x, 0.0, clip_value_max=lambda: 1.0)


def test_a_function_where_the_op_takes_tensors_says_to_call_it_first():
    x = keras.Input((3,))
    with pytest.raises(keras_graft.UnstorableArgumentError) as raised:
        tf.math.add(x, lambda: 1.0)
    message = str(raised.value)
    assert "argument 'y', which takes tensors or constants, not functions" in message
    assert "row_fn" not in message


def test_unstorable_object_in_nested_position_is_named_by_path():
    x = keras.Input((3,))
    with pytest.raises(keras_graft.UnstorableArgumentError, match=r"argument 'values'\[1\]"):
        tf.concat([x, object()], axis=0)


def test_untracked_variable_argument_points_to_writing_a_layer():
    x = keras.Input((3,))
    variable = tf.Variable(2.0)
    with pytest.raises(keras_graft.UnstorableArgumentError, match=r"keras_graft.layer"):
        tf.multiply(x, variable)


def test_constants_survive_a_model_file(tmp_path):
    x = keras.Input((4,))
    y = tf.reshape(x, (-1, 2, 2))
    y = tf.ensure_shape(y, tf.TensorShape([None, 2, 2]))
    y = tf.pad(y, [[0, 0], [1, 0], [0, 1]], constant_values=np.float32(0.5))
    y = tf.cast(y, tf.float64) * tf.constant(2.0, tf.float64)
    y = tf.math.add(y, np.full((3, 3), 0.25))
    model = keras.Model(x, y)
    data = np.arange(8, dtype=np.float32).reshape(2, 4)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.output.dtype == "float64" and tuple(loaded.output.shape) == (None, 3, 3)
    np.testing.assert_array_equal(loaded.predict(data, verbose=0), model.predict(data, verbose=0))


def test_hand_edited_unknown_tag_is_refused_clearly():
    with pytest.raises(ValueError, match="Unknown stored op argument kind 'code'"):
        ArgumentTemplate({"args": [{"__graft__": "code", "source": "import os"}], "kwargs": {}})


def test_key_is_equal_for_equal_arguments_and_absent_for_large_ones():
    def template(*args, **kwargs):
        return ArgumentTemplate.capture((keras.Input((3,)), *args), kwargs, where="tf.op")[0]

    assert template(1.0, axis=-1).key == template(1.0, axis=-1).key
    assert template(1.0, axis=-1).key != template(1.0, axis=0).key
    assert template(True).key != template(1).key
    assert template(np.arange(100)).key is not None
    assert template(np.zeros(5000, "float32")).key is None
    assert template("x" * 100_000).key is None
    assert template("x" * 5_000).key is None  # every key is at most 4096 characters
    assert template([[0] * 40] * 40).key is None
