"""A `keras.layers.Lambda` built with keras-graft imported warns, showing the direct form."""

import warnings

import keras
import pytest
import tensorflow as tf

from keras_graft.errors import LambdaLayerWarning
from keras_graft.patches.lambda_warning import direct_form


def clip(x):
    return tf.clip_by_value(x, -1.0, 1.0)


def test_a_lambda_warns_where_it_is_called_on_keras_tensors_with_its_direct_form():
    x = keras.Input((3,))
    with pytest.warns(LambdaLayerWarning) as caught:
        keras.layers.Lambda(lambda t: tf.clip_by_value(t, -1.0, 1.0))(x)
    message = str(caught[0].message)
    assert "will not load in safe mode" in message
    assert "write `tf.clip_by_value(t, -1.0, 1.0)` directly, with `t` the Keras tensor" in message
    assert caught[0].filename == __file__  # points at the line that built it


def test_a_named_function_is_shown_called_directly_or_as_an_op():
    x = keras.Input((3,))
    with pytest.warns(LambdaLayerWarning, match=r"call `clip\(x\)`.*`@keras_graft.op`"):
        keras.layers.Lambda(clip)(x)


def test_the_lambda_is_found_among_others_on_its_line():
    first, second = (lambda a: a * 2), (lambda b, c: tf.concat([b, c], 0))
    assert direct_form(second) == (
        "write `tf.concat([b, c], 0)` directly, with `b, c` the Keras tensor the Lambda is called on"
    )
    assert "a * 2" in direct_form(first)


def test_two_lambdas_alike_on_one_line_get_the_general_advice():
    pair = (lambda t: t * 2, lambda t: t * 3)
    assert "call the TF ops the lambda calls directly" in direct_form(pair[0])


def test_eager_calls_and_loading_do_not_warn(tmp_path):
    layer = keras.layers.Lambda(lambda t: t * 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LambdaLayerWarning)
        layer(tf.ones((1, 3)))
    x = keras.Input((3,))
    with pytest.warns(LambdaLayerWarning):
        model = keras.Model(x, layer(x))
    model.save(tmp_path / "lambda.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error", LambdaLayerWarning)
        keras.models.load_model(tmp_path / "lambda.keras", safe_mode=False)
        with pytest.raises(ValueError, match="Lambda"):
            keras.models.load_model(tmp_path / "lambda.keras")  # safe mode refuses it, as the warning said
