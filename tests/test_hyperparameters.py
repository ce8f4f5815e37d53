"""A model file may give a `@keras_graft.layer` hyperparameter only a value of its default's kind."""

import inspect

import keras
import pytest

from keras_graft.layers.hyperparameters import validate_stored

DENSE = {"module": "keras.layers", "class_name": "Dense", "config": {"units": 2}, "registered_name": None}
ONES = keras.saving.serialize_keras_object(keras.initializers.Ones())
L2 = keras.saving.serialize_keras_object(keras.regularizers.L2(0.1))
SET_EPSILON = {
    "module": "keras.config",
    "class_name": "function",
    "config": "set_epsilon",
    "registered_name": "function",
}
RELU = keras.saving.serialize_keras_object(keras.activations.relu)
MISSING = inspect.Parameter.empty


@pytest.mark.parametrize(
    "default, stored, expected",
    [
        (True, False, False),
        (2.0, 3, 3),
        (3, 0.5, 0.5),
        ("same", "valid", "valid"),
        ((2, 1), [3, 2], (3, 2)),
        ([1], [1, "a", None], [1, "a", None]),
        ({"a": 1}, {"b": [1, 2]}, {"b": [1, 2]}),
        (None, {"any": ["plain", 1.5]}, {"any": ["plain", 1.5]}),
        (MISSING, 0.25, 0.25),
        (keras.initializers.Zeros(), "glorot_uniform", "glorot_uniform"),
        (keras.initializers.Zeros(), None, None),
        (keras.activations.relu, "tanh", "tanh"),
    ],
)
def test_values_of_the_defaults_kind_are_accepted(default, stored, expected):
    assert validate_stored("layer", "h", default, stored) == expected


@pytest.mark.parametrize(
    "default, stored",
    [(None, ONES), (None, L2), (keras.initializers.Zeros(), ONES)],
)
def test_keras_objects_of_the_allowed_family_are_deserialized(default, stored):
    value = validate_stored("layer", "h", default, stored)
    assert type(value).__name__ == stored["class_name"]


def test_activation_for_a_function_default_is_deserialized():
    assert validate_stored("layer", "h", keras.activations.linear, RELU) is keras.activations.relu


@pytest.mark.parametrize(
    "default, stored, wanted",
    [
        (True, 1, "a bool"),
        (2.0, True, "a number"),
        (2.0, DENSE, "a number"),
        (2.0, "2.0", "a number"),
        ("same", 3, "a string"),
        ((2, 1), "2,1", "a tuple of plain data"),
        ((2, 1), [DENSE], "a tuple of plain data"),
        (None, DENSE, "plain data, or a Keras initializer"),
        (None, SET_EPSILON, "plain data, or a Keras initializer"),
        (keras.initializers.Zeros(), L2, "a Keras initializer"),
        (keras.initializers.Zeros(), DENSE, "a Keras initializer"),
        (keras.activations.relu, SET_EPSILON, "a string, a Keras activation or a registered function"),
        (keras.activations.relu, 3, "a string, a Keras activation or a registered function"),
    ],
)
def test_other_values_are_refused_naming_the_hyperparameter(default, stored, wanted):
    with pytest.raises(
        TypeError, match=rf"scaled: the model file gives hyperparameter 'factor' .*it takes {wanted}"
    ):
        validate_stored("scaled", "factor", default, stored)


def test_a_keras_object_inside_plain_data_is_refused():
    with pytest.raises(TypeError, match="plain data"):
        validate_stored("scaled", "sizes", None, {"nested": DENSE})
