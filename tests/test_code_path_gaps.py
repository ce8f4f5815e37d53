"""Keras 2 code paths that failed on Keras 3 tensors: ragged/sparse methods,
higher-order functions, `tf.print`, and the no-dispatch error."""

import gc
import json
import sys
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_graft

STRINGS = np.array(["a,b,c", "d"], dtype=object)


@keras_graft.op(package="tests")
def row_norm(row):
    return tf.norm(row)


def reload(model, tmp_path, name="model.keras"):
    model.save(tmp_path / name)
    return keras.models.load_model(tmp_path / name)


def stored_ops(path):
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    return [layer["config"].get("op") for layer in config["config"]["layers"]]


def test_ragged_and_sparse_methods_are_op_layers_stored_by_safe_names(tmp_path):
    text = keras.Input((), dtype="string")
    ids = tf.strings.split(text, ",")
    sparse = ids.to_sparse()
    outputs = [
        ids.to_tensor("-"),
        ids.row_lengths(),
        ids.values,
        keras_graft.Op(tf.RaggedTensor.to_tensor, "?")(ids),
        sparse.indices,
        sparse.dense_shape,
    ]
    model = keras.Model(text, outputs)
    expected = [
        [[b"a", b"b", b"c"], [b"d", b"-", b"-"]],
        [3, 1],
        [b"a", b"b", b"c", b"d"],
        [[b"a", b"b", b"c"], [b"d", b"?", b"?"]],
        [[0, 0], [0, 1], [0, 2], [1, 0]],
        [2, 3],
    ]
    reloaded = reload(model, tmp_path)  # safe mode
    for got, want in zip(reloaded.predict(STRINGS, verbose=0), expected, strict=True):
        assert np.asarray(got).tolist() == want
    assert {
        "keras_graft>RaggedTensor.to_tensor",
        "keras_graft>RaggedTensor.row_lengths",
        "keras_graft>RaggedTensor.values",
        "keras_graft>SparseTensor.indices",
    } <= set(stored_ops(tmp_path / "model.keras"))


def test_dense_keras_tensors_do_not_pretend_to_be_ragged():
    x = keras.Input((3,))
    assert not hasattr(x, "to_tensor") and not hasattr(x, "row_lengths")
    with pytest.raises(AttributeError, match="dense KerasTensor has no attribute 'values'"):
        x.values


def test_map_fn_vectorized_map_and_scan_take_public_ops_and_registered_functions(tmp_path):
    x = keras.Input((3,))
    model = keras.Model(
        x,
        [
            tf.map_fn(tf.math.sin, x),
            tf.vectorized_map(row_norm, x),
            tf.scan(tf.math.add, x),
        ],
    )
    data = np.arange(6, dtype="float32").reshape(2, 3)
    expected = [np.sin(data), np.linalg.norm(data, axis=1), np.cumsum(data, axis=0)]
    for got, want in zip(model.predict(data, verbose=0), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5)
    reloaded = reload(model, tmp_path)
    for got, want in zip(reloaded.predict(data, verbose=0), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5)


def test_scan_with_a_public_op_reloads_in_safe_mode(tmp_path):
    x = keras.Input((3,))
    reloaded = reload(keras.Model(x, tf.scan(tf.math.multiply, x)), tmp_path)
    data = np.arange(1, 7, dtype="float32").reshape(2, 3)
    np.testing.assert_allclose(reloaded.predict(data, verbose=0), np.cumprod(data, axis=0))


@pytest.mark.parametrize("higher_order", [tf.map_fn, tf.vectorized_map])
def test_a_lambda_is_refused_naming_the_argument_and_the_fix(higher_order):
    with pytest.raises(keras_graft.UnstorableArgumentError) as raised:
        higher_order(lambda row: row * 2.0, keras.Input((3,)))
    message = str(raised.value)
    assert "<lambda> as argument 'fn'" in message and "@keras_graft.op" in message


def test_function_arguments_in_files_go_through_the_allow_list(tmp_path):
    x = keras.Input((3,))
    keras.Model(x, tf.scan(tf.math.add, x)).save(tmp_path / "model.keras")
    forged = tmp_path / "forged.keras"
    with zipfile.ZipFile(tmp_path / "model.keras") as source, zipfile.ZipFile(forged, "w") as target:
        for item in source.namelist():
            data = source.read(item)
            if item == "config.json":
                data = data.replace(b'"tf.math.add"', b'"tf.io.write_file"')
            target.writestr(item, data)
    with pytest.raises(keras_graft.UnsafeOpError, match="tf.io.write_file"):
        keras.models.load_model(forged)


def test_tf_print_prints_each_time_the_model_runs(capfd):
    x = keras.Input((2,))
    model = keras.Model(x, tf.print("row:", x) * 2.0)
    assert capfd.readouterr().err == ""  # nothing printed while building
    for value in (1.0, 5.0):
        np.testing.assert_array_equal(model(np.full((1, 2), value, "float32")), [[2 * value] * 2])
        assert f"row: [[{value:g} {value:g}]]" in capfd.readouterr().err


def test_print_layers_in_files_are_refused_in_safe_mode_unless_allowed(tmp_path):
    x = keras.Input((2,))
    keras.Model(x, tf.print(x)).save(tmp_path / "model.keras")
    with pytest.raises(keras_graft.UnsafeOpError, match="Print layer.*keras_graft.allow\\('print'\\)"):
        keras.models.load_model(tmp_path / "model.keras")
    with keras_graft.allow("print"):
        keras.models.load_model(tmp_path / "model.keras")
    keras.models.load_model(tmp_path / "model.keras", safe_mode=False)


def test_tf_print_refuses_choosing_where_it_prints_saying_why_and_what_to_do(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(keras_graft.UnstorableArgumentError) as refused:
        tf.print(keras.Input((2,)), output_stream=f"file://{target}")
    message = str(refused.value)
    assert "'output_stream'" in message and "always writes to standard error" in message
    assert "redirect standard error" in message
    with pytest.raises(keras_graft.UnstorableArgumentError, match="takes an int .* as summarize"):
        tf.print(keras.Input((2,)), summarize="all")
    with pytest.raises(keras_graft.UnstorableArgumentError, match="takes a string as sep"):
        tf.print(keras.Input((2,)), sep=keras.Input((2,)))
    assert not target.exists()


def test_print_takes_exactly_the_formatting_options_of_tf_print(capfd):
    """`FORMATTING_OPTIONS` are keywords `tf.print` accepts; it accepts no others
    than those, `output_stream` and `name`."""
    from keras_graft.patches import printing

    for option, value in {"summarize": -1, "sep": "|", "end": "\n"}.items():
        assert option in printing.FORMATTING_OPTIONS
        tf.print("a", "b", **{option: value})
    assert "a|b" in capfd.readouterr().err
    tf.print("a", output_stream=sys.stderr, name="n")
    with pytest.raises(ValueError, match="Unrecognized keyword arguments"):
        tf.print("a", color="red")


def test_tf_print_options_and_name_survive_a_model_file(tmp_path, capfd):
    x = keras.Input((3,))
    model = keras.Model(x, tf.print("row", x, sep="=", end="!\n", summarize=1, name="shown"))
    assert model.layers[-1].name == "shown"
    model.save(tmp_path / "model.keras")
    with keras_graft.allow("print"):
        reloaded = keras.models.load_model(tmp_path / "model.keras")
    capfd.readouterr()
    reloaded(np.arange(3, dtype="float32")[None])
    assert "row=[[0 ... 2]]!" in capfd.readouterr().err


def test_a_print_layer_from_a_file_takes_no_stream_even_where_printing_is_allowed(tmp_path):
    """A file that sets `output_stream` (or any option but formatting) is refused
    on load, also with `keras_graft.allow("print")`; nothing is written."""
    x = keras.Input((2,))
    keras.Model(x, tf.print("x:", x, sep=" ")).save(tmp_path / "model.keras")
    target = tmp_path / "appended.txt"
    for option, value in (
        ("output_stream", f"file://{target}"),
        ("output_stream", "stdout"),
        ("name", "renamed"),
    ):
        forged = tmp_path / "forged.keras"
        with zipfile.ZipFile(tmp_path / "model.keras") as source, zipfile.ZipFile(forged, "w") as out:
            for item in source.namelist():
                data = source.read(item)
                if item == "config.json":
                    config = json.loads(data)
                    printed = next(
                        layer for layer in config["config"]["layers"] if layer["class_name"] == "Print"
                    )
                    printed["config"]["arguments"]["kwargs"][option] = value
                    data = json.dumps(config).encode()
                out.writestr(item, data)
        with (
            keras_graft.allow("print"),
            pytest.raises(keras_graft.UnsafeOpError, match=rf"Print layer .*got '{option}'.*standard error"),
        ):
            keras.models.load_model(forged)
    assert not target.exists()


def test_the_no_dispatch_error_names_the_function_called():
    with pytest.raises(ValueError, match=r"input to tf.signal.rfft2d: .*keras_graft.Op\(tf.signal.rfft2d\)"):
        tf.signal.rfft2d(keras.Input((4, 4)))
    # With every object out of the collector's reach (the suite's conftest freezes
    # them, as a server does before it forks), the name is found all the same.
    assert gc.get_freeze_count() > 0
    with pytest.raises(ValueError, match=r"input to tf.signal.rfft: "):
        tf.signal.rfft(keras.Input((4,)))
