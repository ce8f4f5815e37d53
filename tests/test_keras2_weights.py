"""A Keras 2 file no Keras can rebuild still gives its weights to the model rebuilt from code.

`keras2_models.einsum_attention` is saved by tf_keras without the operands
of its `tf.einsum` calls. Loading it is refused, naming the layer and the op;
`keras_graft.keras2.files.load_weights` loads its weights (and those of
other Keras 2 files) into the model built in Keras 3 from the same code,
matching layers by name, then by graph order, and refusing anything
ambiguous.
"""

import shutil

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras2_models
from keras2_models import read_arrays
from keras_graft.errors import LossyKeras2FileError, WeightMatchError
from keras_graft.keras2 import files, weights


def rebuilt(name):
    """The model of `keras2_models.<name>`, built by the same code in Keras 3."""
    builders = {**keras2_models.MODELS, **keras2_models.LOSSY}
    return builders[name](keras, tf)[0]


def assert_predicts_like_keras2(model, path):
    inputs, expected = read_arrays(path)
    actual = model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0)
    for got, want in zip(actual if isinstance(actual, list) else [actual], expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_the_einsum_file_is_refused_naming_the_layer_the_op_and_what_still_works(keras2_files):
    with pytest.raises(LossyKeras2FileError) as refused:
        keras.models.load_model(keras2_files / "einsum_attention.h5", compile=False)
    message = str(refused.value)
    assert "Layer `tf.einsum`" in message and "TFOpLambda" in message
    assert "Keras 2 dropped the operands passed through `*inputs`" in message
    assert "tf.einsum('bij,bkj->bik')" in message
    assert "keras_graft.keras2.files.load_weights(model, path)" in message


@pytest.mark.parametrize("file_name", ["einsum_attention.h5", "einsum_attention_weights.h5"])
def test_its_weights_load_into_the_model_rebuilt_from_code(keras2_files, file_name):
    model = rebuilt("einsum_attention")
    matched = files.load_weights(model, keras2_files / file_name)
    assert matched == {"dense": "dense", "dense_1": "dense_1", "dense_2": "dense_2"}
    assert_predicts_like_keras2(model, keras2_files / "einsum_attention.h5")


def test_layers_named_differently_are_matched_by_graph_order(keras2_files):
    for _ in range(3):
        keras.layers.Dense(1)  # the rebuilt model's Dense layers are dense_3, dense_4, dense_5
    model = rebuilt("einsum_attention")
    matched = files.load_weights(model, keras2_files / "einsum_attention.h5")
    assert matched == {"dense_3": "dense", "dense_4": "dense_1", "dense_5": "dense_2"}
    assert_predicts_like_keras2(model, keras2_files / "einsum_attention.h5")


def test_names_shifted_against_the_graph_order_are_refused_and_nothing_loads(keras2_files):
    keras.layers.Dense(1)  # the model's Dense layers are dense_1, dense_2, dense_3
    model = rebuilt("einsum_attention")
    before = [w.numpy().copy() for w in model.weights]
    # The file's dense_1 is its second layer, the model's its first: by name
    # alone, every weight would go one layer off.
    with pytest.raises(
        WeightMatchError, match=r"file holds 1 layer\(s\) with weights \(dense\), the model holds 0"
    ):
        files.load_weights(model, keras2_files / "einsum_attention.h5")
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))


def test_nested_models_and_their_op_layers_get_their_weights(keras2_files):
    model = rebuilt("nested")
    files.load_weights(model, keras2_files / "nested.h5")
    assert_predicts_like_keras2(model, keras2_files / "nested.h5")


def test_another_model_is_refused_saying_which_layers_differ(keras2_files):
    x = keras.Input((5, 8))
    hidden = keras.layers.Dense(8)(x)
    model = keras.Model(x, keras.layers.Dense(3)(hidden))
    with pytest.raises(
        WeightMatchError,
        match=r"file holds 1 layer\(s\) with weights \(dense_2\), the model holds 0 \(none\)",
    ):
        files.load_weights(model, keras2_files / "einsum_attention.h5")


def test_weights_of_other_shapes_are_refused_naming_both_layers(keras2_files):
    x = keras.Input((5, 8))
    query, key = keras.layers.Dense(8)(x), keras.layers.Dense(8)(x)
    outputs = keras.layers.Dense(4)(tf.einsum("bij,bkj->bik", query, key))
    with pytest.raises(
        WeightMatchError,
        match=r"layer `dense_2`.*\[\(8, 3\), \(3,\)\].*`dense_2` \(matched by name\) has \[\(5, 4\), \(4,\)\]",
    ):
        files.load_weights(keras.Model(x, outputs), keras2_files / "einsum_attention.h5")


def test_layer_names_keras2_split_into_several_attributes_are_read(keras2_files, tmp_path):
    """HDF5 limits an attribute's size: Keras 2 writes long name lists as `layer_names0`, `layer_names1`..."""
    path = shutil.copy(keras2_files / "einsum_attention_weights.h5", tmp_path / "split.weights.h5")
    with h5py.File(path, "r+") as file:
        names = list(file.attrs["layer_names"])
        del file.attrs["layer_names"]
        file.attrs["layer_names0"], file.attrs["layer_names1"] = names[:2], names[2:]
    model = rebuilt("einsum_attention")
    files.load_weights(model, path)
    assert_predicts_like_keras2(model, keras2_files / "einsum_attention.h5")


def test_a_file_without_keras2_weights_is_refused_saying_what_it_reads(keras2_files, tmp_path):
    (tmp_path / "not.h5").write_bytes(b"not an HDF5 file")
    with pytest.raises(WeightMatchError, match="holds no Keras 2 `.h5` weights.*save_weights"):
        files.load_weights(rebuilt("einsum_attention"), tmp_path / "not.h5")
    model = rebuilt("einsum_attention")
    model.save_weights(tmp_path / "keras3.weights.h5")  # the `.weights.h5` layout, by structure
    with pytest.raises(WeightMatchError, match=r"model.load_weights\(path\)"):
        files.load_weights(model, tmp_path / "keras3.weights.h5")


def test_pairs_refuse_names_in_another_order():
    with pytest.raises(
        WeightMatchError,
        match=r"file's layer `b` comes after its layer `a`.*the layer named `b` comes first.*contradict",
    ):
        weights.pairs([("a", [(1,)]), ("b", [(1,)])], [("b", [(1,)]), ("a", [(1,)])])


def test_pairs_match_by_name_first_then_fill_gaps_in_order():
    saved = [("a", [(1,)]), ("op", []), ("b", [(2,)]), ("c", [(3,)]), ("d", [(4,)])]
    model = [("x", [(1,)]), ("c", [(3,)]), ("y", [(4,)])]
    with pytest.raises(
        WeightMatchError, match=r"holds 2 layer\(s\) with weights \(a, b\), the model holds 1 \(x\)"
    ):
        weights.pairs(saved, model)
    model = [("x", [(1,)]), ("z", [(2,)]), ("c", [(3,)]), ("y", [(4,)])]
    assert weights.pairs(saved, model) == [
        (0, 0, "graph order"),
        (2, 1, "graph order"),
        (3, 2, "name"),
        (4, 3, "graph order"),
    ]
