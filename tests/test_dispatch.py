"""Auto-wrapping: which calls become op layers, and how whole ops are kept whole."""


import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_graft
from keras_graft import _compat, safety


def op_layer(tensor):
    return tensor._keras_history.operation


def test_op_calling_other_ops_internally_is_one_layer():
    images = keras.Input((8, 8, 3))
    edges = tf.image.sobel_edges(images)
    assert edges.shape == (None, 8, 8, 3, 2)
    assert op_layer(edges).op_name == "tf.image.sobel_edges"
    model = keras.Model(images, edges)
    assert [type(layer).__name__ for layer in model.layers] == ["InputLayer", "TFOp"]
    data = np.random.default_rng(0).normal(size=(1, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(model(data), tf.image.sobel_edges(tf.constant(data)), rtol=1e-6)


def test_op_converting_its_input_first_is_wrapped_whole():
    text = keras.Input((), dtype="string")
    words = tf.strings.split(text, ",")
    assert words.ragged and op_layer(words).op_name == "tf.strings.split"


def test_convert_to_tensor_called_by_the_user_is_wrapped():
    x = keras.Input((3,))
    assert op_layer(tf.convert_to_tensor(x)).op_name == "tf.convert_to_tensor"


def test_keras_tensors_have_keras2_get_shape():
    x = keras.Input((3, 4))
    assert x.get_shape() == tf.TensorShape([None, 3, 4])


def test_iterating_a_keras_tensor_is_a_type_error_that_says_what_to_do():
    with pytest.raises(TypeError, match="tf.unstack"):
        iter(keras.Input((3,)))


def test_plain_keras_indexing_stays_a_keras_op():
    x = keras.Input((4,))
    assert not isinstance(op_layer(x[:, 1:]), keras_graft.TFOp)


def test_ops_with_keras_tensors_inside_nested_arguments_are_wrapped():
    a, b = keras.Input((2,)), keras.Input((2,))
    y = tf.concat((a, b), axis=1)
    assert op_layer(y).get_config()["arguments"]["args"][0]["__graft__"] == "tuple"


def public_dispatch_ops():
    """The canonical names of every allowed op with TF's op dispatch."""
    names = {
        _compat.canonical_tf_name(function)
        for function in safety.allowed_ops().values()
        if hasattr(function, "_tf_fallback_dispatchers")
    }
    names = {name for name in names if name and not name.startswith("io.")}
    # Their first parameter is not a tensor (equation, stacking list).
    return sorted(names - {"parallel_stack", "einsum", "linalg.einsum"})


def test_every_allowed_dispatching_op_reaches_keras_graft():
    """No allowed op falls through to Keras' 'KerasTensor cannot be used' error."""
    unreached = []
    for name in public_dispatch_ops():
        function = _compat.tf_symbol(name)
        x = keras.Input((4, 4, 3), dtype="string" if name.startswith("strings") else "float32")
        try:
            function(x)
        except (TypeError, ValueError) as error:
            if "KerasTensor cannot be used" in str(error):
                unreached.append(name)
        except Exception as error:  # Anything else means TF never dispatched.
            unreached.append(f"{name}: {type(error).__name__}")
    assert unreached == []


def test_functions_without_dispatch_say_how_to_wrap_them():
    x = keras.Input((8,))
    with pytest.raises(ValueError, match=r"keras_graft.Op\(tf.signal.rfft\)"):
        tf.signal.rfft(x)
    spectrum = keras_graft.Op(tf.signal.rfft)(x)
    assert spectrum.shape == (None, 5) and spectrum.dtype == "complex64"
