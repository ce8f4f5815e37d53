"""The TensorFlow/Keras internals keras-graft depends on still behave as assumed."""

import keras
import pytest
import tensorflow as tf

from keras_graft import _compat


def test_canonical_names_round_trip():
    assert _compat.canonical_tf_name(tf.math.top_k) == "math.top_k"
    assert _compat.tf_symbol("math.top_k") is tf.math.top_k
    assert _compat.canonical_tf_name(lambda: 0) is None
    assert _compat.tf_symbol("no.such.symbol") is None


def test_unique_layer_names_count_up_and_reset_with_the_session():
    assert _compat.unique_layer_name("tf.x") == "tf.x"
    assert _compat.unique_layer_name("tf.x") == "tf.x_1"
    keras.backend.clear_session()
    assert _compat.unique_layer_name("tf.x") == "tf.x"


def test_safe_mode_flag_follows_keras():
    from keras.src.saving.serialization_lib import SafeModeScope

    assert _compat.in_keras_safe_mode()
    with SafeModeScope(False):
        assert not _compat.in_keras_safe_mode()
    with SafeModeScope(True):
        assert _compat.in_keras_safe_mode()


def test_producing_operation_finds_the_node():
    x = keras.Input((2,))
    layer = keras.layers.Dense(3)
    y = layer(x)
    operation, node = _compat.producing_operation(y)
    assert operation is layer and node.outputs == [y]
    assert _compat.producing_operation(tf.constant(1)) == (None, None)


def test_marks_bracket_exactly_the_ops_created_between_them():
    graph = tf.Graph()
    with graph.as_default():
        tf.constant(1.0, name="old")
        for _ in range(3):  # failed creations use up ids without adding ops
            try:
                tf.linalg.matmul(tf.constant([[1.0]]), tf.constant([1.0, 2.0]))
            except ValueError:
                pass
        first = _compat.op_id_mark(graph)
        tf.math.sin(tf.constant(2.0, name="new"), name="sine")
        last = _compat.op_id_mark(graph)
        tf.constant(3.0, name="later")
    names = [op.name for op in _compat.ops_created_between(graph, first, last)]
    assert names == ["new", "sine"]


def test_op_types_called_follows_function_attributes_transitively():
    graph = tf.Graph()

    @tf.function(autograph=False)
    def inner(x):
        return tf.math.cos(x)

    @tf.function(autograph=False)
    def outer(x):
        return inner(x) + 1.0

    with graph.as_default():
        first = _compat.op_id_mark(graph)
        outer(tf.constant(1.0))
        created = _compat.ops_created_between(graph, first, _compat.op_id_mark(graph))
    op_types, undefined = _compat.op_types_called(graph, created)
    assert {"Cos", "AddV2"} <= op_types and not undefined


def test_op_types_called_reports_functions_the_graph_does_not_define():
    from tensorflow.core.framework import attr_value_pb2 as attr

    graph = tf.Graph()
    empty = attr.AttrValue(list=attr.AttrValue.ListValue())
    by_name = attr.AttrValue(func=attr.NameAttrList(name="defined_elsewhere"))
    with graph.as_default():
        first = _compat.op_id_mark(graph)
        graph.create_op("PartitionedCall", [], [], attrs={"f": by_name, "Tin": empty, "Tout": empty})
        created = _compat.ops_created_between(graph, first, _compat.op_id_mark(graph))
    op_types, undefined = _compat.op_types_called(graph, created)
    assert "PartitionedCall" in op_types and undefined == {"defined_elsewhere"}


def test_global_dispatcher_receives_calls_whose_arguments_fail_to_convert():
    from tensorflow.python.util import dispatch

    class Unconvertible:
        def __tf_tensor__(self, dtype=None, name=None):
            raise ValueError("no tensor here")

    marker = Unconvertible()
    seen = []

    class Recorder(_compat.GlobalOpDispatcher):
        def handle(self, op, args, kwargs):
            if args and args[0] is marker:
                seen.append(op)
                return "handled"
            return self.NOT_SUPPORTED

    recorder = Recorder()
    recorder.register()
    try:
        assert tf.clip_by_value(marker, 0.0, 1.0) == "handled"
    finally:
        dispatch._GLOBAL_DISPATCHERS.remove(recorder)
    assert len(seen) == 1


def test_keras_autocast_scope_and_masks_are_reachable():
    variable = keras.Variable(1.0, dtype="float32")
    with _compat.AutocastScope("float16"):
        assert keras.ops.convert_to_tensor(variable).dtype == "float16"
    tensor = tf.ones((2, 3))
    assert _compat.get_keras_mask(tensor) is None


def test_call_signature_is_the_call_methods():
    layer = keras.layers.Dense(2)
    assert list(_compat.call_signature(layer).parameters)[0] == "inputs"


def test_registered_gradient_tells_registered_not_differentiable_and_missing():
    assert callable(_compat.registered_gradient("TopKV2"))
    assert _compat.registered_gradient("Shape") is None  # tf.no_gradient
    with pytest.raises(LookupError):
        _compat.registered_gradient("HistogramFixedWidth")


def test_layer_edges_lists_each_connection_once():
    x = keras.Input((3,), name="x")
    shared = keras.layers.Dense(2, name="shared")
    model = keras.Model(x, keras.layers.Add(name="add")([shared(x), shared(x)]))
    assert _compat.layer_edges(model) == [["x", "shared"], ["shared", "add"]]


def test_keras2_savedmodel_metadata_and_object_graph_are_read_as_tf_keras_reads_them(keras2_files):
    directory = keras2_files / "nested_savedmodel"
    nodes = _compat.keras2_metadata_nodes((directory / "keras_metadata.pb").read_bytes())
    root = nodes[0]
    assert (root["node_id"], root["node_path"], root["identifier"]) == (0, "root", "_tf_keras_network")
    assert root["metadata"]["class_name"] == "Functional"
    assert isinstance(root["metadata"]["config"]["layers"], list)
    by_path = {node["node_path"]: node for node in nodes}
    children = _compat.saved_model_children((directory / "saved_model.pb").read_bytes())
    layer_one = dict(children[0])["layer-1"]  # the root's second layer, as tf_keras finds it
    assert next(n for n in nodes if n["node_id"] == layer_one)["metadata"]["name"] == "tf.math.negative"
    assert by_path["root.layer-1"]["node_id"] == layer_one


def test_pure_callback_sequential_calls_back_once_per_element_under_vmap():
    import jax
    import numpy as np

    calls = []

    def double(x):
        calls.append(x.shape)
        return np.asarray(x) * 2

    def run(x):
        return _compat.pure_callback_sequential(double, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    batch = np.arange(6, dtype="float32").reshape(3, 2)
    np.testing.assert_array_equal(jax.jit(jax.vmap(run))(batch), batch * 2)
    assert calls == [(2,)] * 3


def _functional_config(keras_history):
    x = keras.Input((2,), name="features")
    config = keras.Model(x, keras.layers.Dense(2, name="dense")(x)).get_config()
    dense = next(layer for layer in config["layers"] if layer["name"] == "dense")
    dense["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = keras_history
    return config


@pytest.mark.parametrize("keras_history", [["dense", 0, 0], ["features", 5, 0]],
                         ids=["layer_is_its_own_input", "node_index_past_the_layers_nodes"])
def test_unresolvable_functional_nodes_are_refused_not_looped_over(keras_history):
    import keras_graft  # noqa: F401  (installs the bound)

    with pytest.raises(ValueError, match="Invalid Functional model configuration"):
        keras.Model.from_config(_functional_config(keras_history))


def test_the_functional_loader_bound_passes_models_with_shared_layers():
    import keras_graft  # noqa: F401

    x = keras.Input((3,))
    shared = keras.layers.Dense(3)
    model = keras.Model(x, shared(shared(shared(x))))
    assert len(keras.Model.from_config(model.get_config()).layers) == 2
