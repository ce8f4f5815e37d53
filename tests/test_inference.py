"""Shapes, dtypes and static values come from TensorFlow's own inference."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_graft
from keras_graft.core import inference


def test_top_k_keeps_namedtuple_and_int32_indices():
    x = keras.Input((10,))
    result = tf.math.top_k(x, k=3)
    assert type(result).__name__ == "TopKV2"
    assert result.values.dtype == "float32" and result.indices.dtype == "int32"
    assert result.indices.shape == (None, 3)
    model = keras.Model(x, [result.values, result.indices])
    data = np.random.default_rng(0).normal(size=(4, 10)).astype("float32")
    values, indices = model(data)
    expected = tf.math.top_k(data, k=3)
    np.testing.assert_array_equal(values, expected.values)
    np.testing.assert_array_equal(indices, expected.indices)


def test_string_ops_have_string_and_int_outputs():
    text = keras.Input((), dtype="string")
    length = tf.strings.length(text)
    upper = tf.strings.upper(text)
    assert (length.dtype, length.shape) == ("int32", (None,))
    assert (upper.dtype, upper.shape) == ("string", (None,))
    model = keras.Model(text, [length, upper])
    lengths, uppers = model(tf.constant(["ab", "keras"]))
    assert lengths.numpy().tolist() == [2, 5]
    assert uppers.numpy().tolist() == [b"AB", b"KERAS"]


def test_stft_frames_are_counted():
    audio = keras.Input((16000,))
    spectrogram = tf.signal.stft(audio, 400, 160)
    assert spectrogram.shape == (None, 98, 257) and spectrogram.dtype == "complex64"
    magnitude = tf.abs(spectrogram)
    assert magnitude.dtype == "float32"


def test_shape_arithmetic_with_known_batch_is_static():
    x = keras.Input(batch_size=2, shape=(10,))
    assert tf.ones(tf.shape(x)).shape == (2, 10)
    assert tf.range(tf.shape(x)[0] * 3).shape == (6,)
    assert tf.zeros([tf.shape(x)[0], 4]).shape == (2, 4)
    assert tf.reshape(x, [tf.shape(x)[0], 5, 2]).shape == (2, 5, 2)


def test_shape_arithmetic_with_unknown_batch_keeps_known_dims():
    x = keras.Input((10,))
    assert tf.ones(tf.shape(x)).shape == (None, 10)
    assert tf.reshape(x, [-1, 5, 2]).shape == (None, 5, 2)
    ones = tf.ones(tf.shape(x))
    model = keras.Model(x, ones)
    assert model(np.zeros((3, 10), "float32")).shape == (3, 10)


def test_shape_values_flow_through_keras_ops():
    x = keras.Input(batch_size=4, shape=(6,))
    half = keras.ops.floor_divide(tf.shape(x)[1], 2)
    assert tf.zeros([half]).shape == (3,)


def test_ragged_output_becomes_ragged_keras_tensor():
    text = keras.Input((), dtype="string")
    # tf.strings.split reads `.shape.ndims` before converting its input, which
    # a Keras tensor (tuple shape) has not; the explicit layer always works.
    words = keras_graft.Op(tf.strings.split)(text)
    assert words.ragged and words.dtype == "string" and words.shape == (None, None)
    letters = tf.math.reduce_sum(tf.strings.length(words), axis=1)
    assert not letters.ragged and letters.shape == (None,)
    model = keras.Model(text, letters)
    assert model(tf.constant(["a bb ccc", "dddd"])).numpy().tolist() == [6, 4]


def test_sparse_output_becomes_sparse_keras_tensor():
    x = keras.Input((4,))
    sparse = keras_graft.Op(tf.sparse.from_dense)(x)
    assert sparse.sparse and sparse.shape == (None, 4)
    dense = keras_graft.Op(tf.sparse.to_dense)(sparse)
    model = keras.Model(x, dense)
    data = np.array([[0, 1, 0, 2]], "float32")
    np.testing.assert_array_equal(model(data), data)


def test_unknown_rank_output_is_a_clear_error_at_wrap_time():
    x = keras.Input((4,))
    dims = keras.Input((None,), dtype="int32", batch_size=1)
    with pytest.raises(keras_graft.OpTraceError, match="rank of the output of tf.reshape"):
        tf.reshape(x, dims[0])


def test_tf_errors_name_the_op_and_inputs():
    a, b = keras.Input((3,)), keras.Input((4,))
    with pytest.raises(keras_graft.OpTraceError, match=r"tf.math.add.*float32\(None, 3\)"):
        tf.math.add(a, b)


def test_symbolic_rank_probe_gives_rank_for_dynamic_slicing():
    x = keras.Input((8,))
    step = keras.Input((), dtype="int32")
    y = x[..., :: step[0]]
    assert y.shape == (None, None)
    model = keras.Model([x, step], y)
    data = np.arange(16, dtype="float32").reshape(2, 8)
    np.testing.assert_array_equal(model([data, np.array([3, 3], "int32")]), data[..., ::3])


def counting_traces(monkeypatch) -> list:
    traced = []
    original = inference.trace
    monkeypatch.setattr(inference, "trace", lambda *a, **k: traced.append(1) or original(*a, **k))
    return traced


def test_construction_traces_each_signature_once(monkeypatch):
    """Repeated ops come from the signature cache; distinct ones are traced
    once each, adding O(N) graph nodes."""
    traced = counting_traces(monkeypatch)

    def build(n, *, distinct):
        inference.signatures.clear()
        graph_before = inference.scratch_graph().version
        traced.clear()
        x = keras.Input((8,))
        y = x
        for i in range(n):
            y = tf.math.sin(tf.math.multiply(y, 2.0 + i if distinct else 2.0))
        keras.Model(x, y)
        return len(traced), inference.scratch_graph().version - graph_before

    assert build(20, distinct=False)[0] == 2
    assert build(80, distinct=False)[0] == 2
    traces_small, nodes_small = build(20, distinct=True)
    traces_large, nodes_large = build(80, distinct=True)
    assert (traces_small, traces_large) == (21, 81)
    assert nodes_large <= 4 * nodes_small + 8


def test_repeated_signatures_give_the_same_outputs(monkeypatch):
    traced = counting_traces(monkeypatch)
    inference.signatures.clear()
    x = keras.Input((10,))
    first, second = tf.math.top_k(x, k=3), tf.math.top_k(x, k=3)
    assert len(traced) == 1
    assert type(second).__name__ == "TopKV2" and second.indices is not first.indices
    assert [(t.shape, t.dtype) for t in second] == [((None, 3), "float32"), ((None, 3), "int32")]
    model = keras.Model(x, [second.indices, tf.math.top_k(x, k=4).indices])
    assert len(traced) == 2
    data = np.random.default_rng(0).normal(size=(2, 10)).astype("float32")
    np.testing.assert_array_equal(model(data)[0], tf.math.top_k(data, k=3).indices)


def test_values_known_to_the_graph_are_never_answered_from_the_cache():
    inference.signatures.clear()
    for width in (10, 5):
        # Same signature, int32 (2,), different values: never the same answer.
        rows_of = tf.stack([-1, tf.shape(keras.Input(batch_size=2, shape=(width,)))[1]])
        assert tf.reshape(keras.Input((20,)), rows_of).shape == (None, width)
    for _ in range(2):
        x = keras.Input(batch_size=2, shape=(10,))
        assert tf.ones(tf.shape(x)).shape == (2, 10)
        assert tf.reshape(x, tf.reverse(tf.shape(x), [0])).shape == (10, 2)
        assert tf.range(tf.cast(tf.shape(x)[1], "float32") * 0.5).shape == (5,)
        unknown_batch = keras.Input((6,))
        assert tf.reshape(unknown_batch, [-1, 3]).shape == (None, 3)
        assert tf.reshape(unknown_batch, [-1, 2]).shape == (None, 2)
    # Only ops with an unknown output dimension were kept.
    assert len(inference.signatures) == 2


def test_repeats_feed_constant_folding_downstream():
    inference.signatures.clear()
    for _ in range(2):
        x = keras.Input((4, 6))
        flat = tf.reshape(x, [-1, tf.shape(x)[1] * tf.shape(x)[2]])
        assert flat.shape == (None, 24)


def test_scratch_graph_is_replaced_when_full(monkeypatch):
    x = keras.Input((3,))
    y = tf.math.sin(x)
    old_graph = inference.scratch_graph()
    monkeypatch.setattr(inference, "MAX_GRAPH_VERSION", 0)
    z = tf.math.cos(y)
    assert inference.scratch_graph() is not old_graph
    assert z.shape == (None, 3)


def test_shape_values_are_rebuilt_in_a_fresh_graph(monkeypatch):
    x = keras.Input(batch_size=2, shape=(10,))
    shape = tf.math.multiply(tf.shape(x), tf.constant([1, 2]))
    old_graph = inference.scratch_graph()
    monkeypatch.setattr(inference, "MAX_GRAPH_VERSION", 0)
    assert tf.ones(shape).shape == (2, 20)
    assert inference.scratch_graph() is not old_graph


def test_loading_from_a_file_traces_again_what_building_traced(monkeypatch, tmp_path):
    """Ops from a file are traced as untrusted: never answered by a trusted trace."""
    inference.signatures.clear()
    x = keras.Input((8,))
    keras.Model(x, tf.math.sin(x)).save(tmp_path / "sin.keras")
    traced = counting_traces(monkeypatch)
    keras.models.load_model(tmp_path / "sin.keras")
    keras.models.load_model(tmp_path / "sin.keras")
    assert len(traced) == 1


@keras_graft.op(package="tests")
def first_leaf_doubled(inputs):
    if isinstance(inputs, dict):
        return tf.concat([inputs["a"], inputs["b"]], axis=-1)
    return inputs[0] * 2.0


def test_the_input_structure_is_part_of_the_signature():
    inference.signatures.clear()
    a, b = keras.Input((3,)), keras.Input((3,))
    assert keras_graft.Op(first_leaf_doubled)([a, b]).shape == (None, 3)
    assert keras_graft.Op(first_leaf_doubled)({"a": a, "b": b}).shape == (None, 6)


def test_the_signature_cache_keeps_a_bounded_number_of_the_newest_entries():
    cache = inference.SignatureCache(capacity=3)
    x = keras.Input((4,))
    outputs = tf.math.sin(x)
    for i in range(5):
        cache.put(("key", i), outputs, None)
    assert len(cache) == 3
    assert cache.get(("key", 0)) is None and cache.get(("key", 4)) is not None
    fresh, ranks = cache.get(("key", 4))
    assert fresh is not outputs and (fresh.shape, fresh.dtype, ranks) == ((None, 4), "float32", None)


def test_values_tensorflow_knows_through_unknown_dimensions_are_never_cached():
    """`tf.unique` of a constant has shape (None,), but TensorFlow knows its value."""
    inference.signatures.clear()
    for width in (3, 2):
        shape = tf.unique(tf.shape(keras.Input((3,), batch_size=2)) * 0 + tf.constant([-1, width])).y
        assert tf.reshape(keras.Input((6,)), shape).shape == (None, width)


def test_a_function_registered_again_under_its_name_is_not_answered_by_the_old_one():
    def define(times):
        @keras_graft.op(package="tests_notebook")
        def tiled(row):
            return tf.tile(row, [times])

        return tiled

    inference.signatures.clear()
    assert tf.map_fn(define(1), keras.Input((3,))).shape == (None, 3)
    assert tf.map_fn(define(2), keras.Input((3,))).shape == (None, 6)


def test_ops_on_many_inputs_are_not_cached():
    inference.signatures.clear()
    inputs = [keras.Input((2,)) for _ in range(100)]
    assert keras_graft.Op(tf.add_n)(inputs).shape == (None, 2)
    assert len(inference.signatures) == 0


def test_values_tensorflow_knows_in_part_are_never_answered_from_the_cache():
    """`tf.reshape(y, tf.stack([n, K]))` with `n` read from an input: TensorFlow
    knows the K, so two such reshapes in one model are two answers."""
    inference.signatures.clear()
    y = keras.Input((24,))
    n = tf.cast(tf.math.reduce_sum(y * 0.0), "int32")  # a value only running tells
    outputs = [tf.reshape(y, tf.stack([n + 24 // k, k])) for k in (4, 8)]
    assert [tuple(o.shape) for o in outputs] == [(None, 4), (None, 8)]
    computed = keras.Model(y, outputs)(np.zeros((1, 24), "float32"))
    assert [tuple(c.shape) for c in computed] == [(6, 4), (3, 8)]
    filled = [tf.fill(tf.concat([tf.reshape(n, [1]), [k]], 0), 1.0) for k in (2, 5)]
    assert [tuple(f.shape) for f in filled] == [(None, 2), (None, 5)]


def test_a_cache_that_keeps_nothing_traces_every_op(monkeypatch):
    traced = counting_traces(monkeypatch)
    monkeypatch.setattr(inference, "signatures", inference.SignatureCache(capacity=0))
    x = keras.Input((4,))
    tf.math.sin(x), tf.math.sin(x)
    assert len(traced) == 2 and len(inference.signatures) == 0


def test_a_cache_hit_always_equals_a_fresh_trace_over_random_shape_programs():
    """The property of `shape_programs.py`: programs of shape arithmetic built
    with the cache, in turns with two sets of constants, against fresh traces.
    (More: `python tests/helpers/shape_programs.py --examples 2000 --seed 7`.)"""
    import shape_programs

    result = shape_programs.run(examples=30, seed=0)
    assert result["cache_hits"] > 0  # the property was tested on hits, not only misses
