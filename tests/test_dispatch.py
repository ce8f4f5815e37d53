"""Auto-wrapping: which calls become op layers, and how whole ops are kept whole."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_graft
from keras_graft import _compat
from keras_graft.core import safety


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


def test_iterating_a_keras_tensor_of_unknown_first_dimension_says_what_to_do():
    with pytest.raises(keras_graft.errors.SymbolicIterationError, match=r"\(None, 3\).*unknown.*tf.unstack"):
        iter(keras.Input((3,)))
    with pytest.raises(TypeError, match="scalar"):
        iter(keras.Input(batch_shape=()))


def test_unpacking_a_keras_tensor_of_known_first_dimension_is_one_unstack_layer(tmp_path):
    qkv = keras.Input((5, 3, 4))
    q, k, v = tf.transpose(qkv, [2, 0, 1, 3])  # Keras 2's multi-head attention idiom
    assert op_layer(q) is op_layer(v) and op_layer(q).op_name == "tf.unstack"
    assert q.shape == (None, 5, 4)
    model = keras.Model(qkv, tf.matmul(q, k, transpose_b=True) + v[..., :1])
    data = np.random.default_rng(0).normal(size=(2, 5, 3, 4)).astype("float32")
    real_q, real_k, real_v = tf.unstack(tf.transpose(data, [2, 0, 1, 3]))
    want = tf.matmul(real_q, real_k, transpose_b=True) + real_v[..., :1]
    np.testing.assert_allclose(model.predict(data, verbose=0), want, atol=1e-5)
    model.save(tmp_path / "unpacked.keras")
    reloaded = keras.models.load_model(tmp_path / "unpacked.keras")  # safe mode
    np.testing.assert_allclose(reloaded.predict(data, verbose=0), want, atol=1e-5)


def test_len_stays_unsupported_as_in_keras_2_and_3():
    with pytest.raises(TypeError):
        len(keras.Input(batch_size=2, shape=(3,)))


def test_tensorflow_probing_a_shape_argument_does_not_iterate_it():
    x = keras.Input(batch_size=2, shape=(3,))
    shape = tf.shape(x)  # known first dimension: (2,)
    assert tf.ones(shape).shape == (2, 3) and tf.zeros(shape).shape == (2, 3)
    # No `tf.unstack` layer was made on the way (its name would be taken).
    assert _compat.unique_layer_name("tf.unstack") == "tf.unstack"


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


def test_unknown_keyword_on_keras_tensors_names_the_op_and_the_closest_parameter():
    with pytest.raises(keras_graft.errors.UnexpectedKeywordError) as raised:
        tf.signal.stft(keras.Input((1000,)), frame_lenght=256, frame_step=128)
    assert isinstance(raised.value, TypeError)  # `except TypeError` still catches it
    assert str(raised.value) == (
        "tf.signal.stft got an unexpected keyword argument 'frame_lenght'. Did you mean "
        "'frame_length'? Its parameters are: signals, frame_length, frame_step, fft_length, "
        "window_fn, pad_end, name."
    )
    # Functions without TF's dispatch (routed to op layers) say the same.
    with pytest.raises(
        TypeError,
        match=r"^tf.map_fn got an unexpected keyword argument 'fn_output_signatur'. Did you mean 'fn_output_signature'\?",
    ):
        tf.map_fn(tf.abs, keras.Input((3,)), fn_output_signatur=tf.float32)


def test_unknown_keyword_on_real_tensors_keeps_tensorflows_error():
    with pytest.raises(TypeError, match="frame_lenght") as raised:
        tf.signal.stft(tf.zeros((1, 1000)), frame_lenght=256, frame_step=128)
    assert not isinstance(raised.value, keras_graft.errors.KerasGraftError)
