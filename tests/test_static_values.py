"""`static_values.is_opaque`: TensorFlow knows nothing of the value, or the answer is False."""

import pytest
import tensorflow as tf

from keras_graft.core import static_values


def _build(make):
    graph = tf.Graph()
    with graph.as_default():
        n = tf.compat.v1.placeholder(tf.int32, [2], name="n")  # a stand-in: no value
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        return make(n, x)


CASES = {
    # Opaque: TensorFlow's evaluators cannot reach any element.
    "placeholder": (lambda n, x: n, True),
    "computed from a stand-in": (lambda n, x: n * 4 + 1, True),
    "element of a stand-in": (lambda n, x: n[0], True),
    "stack of unknowns": (lambda n, x: tf.stack([n[0], n[1] * 2]), True),
    "concat of unknowns": (lambda n, x: tf.concat([n, n * 2], 0), True),
    "cast of an unknown": (lambda n, x: tf.cast(n, tf.int64), True),
    "reduction of the input's value": (lambda n, x: tf.cast(tf.reduce_sum(x), tf.int32), True),
    "fill with an unknown value": (lambda n, x: tf.fill([2, 2], n[0]), True),
    "reshape of an unknown": (lambda n, x: tf.reshape(n, [2, 1]), True),
    # Known in part, or known: never opaque.
    "stack with a constant": (lambda n, x: tf.stack([n[0], 4]), False),
    "concat with a constant": (lambda n, x: tf.concat([n[:1], [4]], 0), False),
    "shape of a partly known shape": (lambda n, x: tf.shape(x), False),
    "element of a shape": (lambda n, x: tf.shape(x)[1], False),
    "size": (lambda n, x: tf.size(x), False),
    "constant": (lambda n, x: tf.constant([1, 2]), False),
    "fill with a constant": (lambda n, x: tf.fill(n, 1), False),
    "tile of a constant": (lambda n, x: tf.tile([4], n[:1]), False),
    "select between constants": (lambda n, x: tf.where(n > 0, [1, 1], [2, 2]), False),
    "zeros like an unknown": (lambda n, x: tf.zeros_like(n), False),
    "pad of an unknown": (lambda n, x: tf.pad(n, [[1, 0]]), False),
    "range": (lambda n, x: tf.range(n[0]), False),
    "a function call": (lambda n, x: tf.function(lambda v: v * 2, autograph=False)(n), False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_opacity_follows_what_tensorflow_can_evaluate(case):
    make, opaque = CASES[case]
    assert static_values.is_opaque(_build(make)) is opaque


def test_known_parts_are_what_tensorflow_reads_through():
    """The cases called not opaque above are read by TensorFlow itself: the
    shape function of `tf.reshape` sees their known part."""
    graph = tf.Graph()
    with graph.as_default():
        n = tf.compat.v1.placeholder(tf.int32, [2])
        y = tf.compat.v1.placeholder(tf.float32, [None])
        assert tf.reshape(y, tf.stack([n[0], 4])).shape.as_list() == [None, 4]
        assert tf.reshape(y, tf.concat([n[:1], [4]], 0)).shape.as_list() == [None, 4]
        assert tf.reshape(y, n * 4 + 1).shape.as_list() == [None, None]


def test_a_placeholder_in_a_function_body_may_stand_for_a_capture():
    graph = tf.Graph()
    seen = []
    with graph.as_default():
        outer = tf.constant([2, 4])

        @tf.function(autograph=False)
        def body():
            captured = tf.identity(outer)  # a placeholder in the body, fed `outer`
            seen.append(static_values.is_opaque(captured.op.inputs[0]))
            return captured

        body.get_concrete_function()
    assert seen == [False]


def test_deep_graphs_are_answered_not_walked_without_end():
    graph = tf.Graph()
    with graph.as_default():
        value = tf.compat.v1.placeholder(tf.float32, [3])
        for _ in range(static_values._MAX_NEW_OPS + 10):
            value = tf.math.sin(value)
        # Too many new ops at once to look at: unsure, so not opaque.
        assert static_values.is_opaque(value) is False
        stepwise = tf.compat.v1.placeholder(tf.float32, [3])
        for _ in range(static_values._MAX_NEW_OPS + 10):  # decided op by op, as traced ops are
            stepwise = tf.math.sin(stepwise)
            assert static_values.is_opaque(stepwise)
