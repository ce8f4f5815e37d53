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


@pytest.fixture(scope="session")
def keras2_files(tmp_path_factory):
    """A folder of Keras 2 model files written by tf_keras (`tests/_keras2_models.py`).

    Written once per test run, by a child process; pytest-xdist workers share it.
    """
    import _keras2_models

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    return _keras2_models.generate(root / "keras2_models")


def pytest_ignore_collect(collection_path, config):
    """Under tests/, only test files are collected (with their doctests): the
    helpers and child-process scripts are imported or run by the tests, never
    collected as modules of their own (`--doctest-modules` would import them)."""
    tests = os.path.dirname(os.path.abspath(__file__))
    path = str(collection_path)
    if path.startswith(tests) and path.endswith(".py"):
        return not os.path.basename(path).startswith(("test_", "conftest"))
    return None
