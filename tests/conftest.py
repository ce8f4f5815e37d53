import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402

import keras_graft  # noqa: E402,F401  (installs auto-wrapping for every test)


@pytest.fixture(autouse=True)
def fresh_keras_session():
    """Each test starts with fresh layer names and the default dtype policy."""
    keras.backend.clear_session()
    keras.config.set_dtype_policy("float32")
    yield
