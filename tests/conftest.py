import gc
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TESTS = os.path.dirname(os.path.abspath(__file__))
# The test helpers (`tests/helpers/`) are imported by name: `import hostile`.
sys.path.insert(0, os.path.join(TESTS, "helpers"))

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
    """A folder of Keras 2 model files written by tf_keras (`helpers/keras2_models.py`).

    Written once per test run, by a child process; pytest-xdist workers share it.
    """
    import keras2_models

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    return keras2_models.generate(root / "keras2_models")


def pytest_collection_finish(session):
    """TensorFlow, Keras, the test modules and what they import are ~400,000
    objects that live as long as the process. Frozen out of the collector's
    reach, the full collection that each `keras.backend.clear_session()` runs
    (once per test, `fresh_keras_session`) takes a millisecond, not a quarter
    of a second."""
    gc.freeze()


def pytest_ignore_collect(collection_path, config):
    """Under tests/, only test files are collected (with their doctests): the
    helpers (`helpers/`) and child-process scripts (`children/`, `keras2_corpus/`)
    are imported or run by the tests, never collected as modules of their own
    (`--doctest-modules` would import them)."""
    path = str(collection_path)
    if path in (os.path.join(TESTS, "helpers"), os.path.join(TESTS, "children")):
        return True
    if path.startswith(TESTS) and path.endswith(".py"):
        return not os.path.basename(path).startswith(("test_", "conftest"))
    return None
