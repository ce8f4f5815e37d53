"""Object configs that Keras 2 and keras-graft would look up alike pass; the others are refused."""

import pytest

from keras_graft.errors import MalformedModelFileError
from keras_graft.keras2 import consistency


@pytest.mark.parametrize(
    "config",
    [
        {
            "module": "keras.initializers",
            "class_name": "GlorotUniform",
            "config": {},
            "registered_name": None,
        },
        # A class registered by the user's module: both look it up by its registered name.
        {
            "module": "my_project",
            "class_name": "ScaledDense",
            "config": {},
            "registered_name": "my_project>ScaledDense",
        },
        # A function (a registered loss) by its name.
        {
            "module": "builtins",
            "class_name": "function",
            "config": "squared_error",
            "registered_name": "function",
        },
    ],
    ids=["keras_own", "user_registered_class", "function_by_name"],
)
def test_configs_read_alike_pass(config):
    consistency.check_object_configs({"layers": [{"config": {"kernel_initializer": config}}]})


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (
            {"module": "os", "class_name": "GlorotUniform", "config": {}, "registered_name": None},
            "names module 'os'",
        ),
        (
            {
                "module": "keras.initializers",
                "class_name": "GlorotUniform",
                "config": {},
                "registered_name": "keras_graft>TFOp",
            },
            "is registered as 'keras_graft>TFOp'",
        ),
        (
            {
                "module": "keras_hub.src.evil",
                "class_name": "Evil",
                "config": {},
                "registered_name": "keras_hub>Evil",
            },
            "is registered as 'keras_hub>Evil'",
        ),
        (
            {"module": "builtins", "class_name": "eval", "config": "1", "registered_name": None},
            "names module 'builtins'",
        ),
    ],
    ids=["foreign_module", "other_registered_name", "keras_hub_registered", "builtins_not_a_function"],
)
def test_configs_read_differently_are_refused(config, problem):
    with pytest.raises(MalformedModelFileError, match=problem):
        consistency.check_object_configs([{"nested": config}])
