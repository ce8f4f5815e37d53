"""The TensorFlow/Keras internals keras-graft depends on still behave as assumed."""

import functools
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_graft import _compat


def test_canonical_names_round_trip():
    assert _compat.canonical_tf_name(tf.math.top_k) == "math.top_k"
    assert _compat.tf_symbol("math.top_k") is tf.math.top_k
    assert _compat.canonical_tf_name(lambda: 0) is None
    assert _compat.tf_symbol("no.such.symbol") is None


def test_tf_api_symbols_hold_every_exported_symbol_once():
    symbols = _compat.tf_api_symbols()
    assert len(symbols) == len({id(s) for s in symbols}) > 1000
    held = {id(s) for s in symbols}
    names = ("signal.rfft2d", "math.top_k", "compat.v1.placeholder")
    assert {id(_compat.tf_symbol(name)) for name in names} <= held


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


def test_op_type_is_stateful_reads_the_registered_op_def():
    graph = tf.Graph()
    assert _compat.op_type_is_stateful(graph, "RandomUniform") is True
    assert _compat.op_type_is_stateful(graph, "MatMul") is False
    assert _compat.op_type_is_stateful(graph, "a_function_called_by_name") is None


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


def test_model_operations_hold_keras_ops_and_edges_stay_within_the_model():
    x = keras.Input((3,), name="x")
    dense = keras.layers.Dense(3, name="dense")
    total = dense(x) + x  # a `keras.ops` operation, not a layer
    model = keras.Model(x, total)
    keras.Model(x, dense(x) * 2)  # the same layer called in another model
    plus = total._keras_history.operation.name
    assert [op.name for op in _compat.model_operations(model)] == ["x", "dense", plus]
    assert plus not in [layer.name for layer in model.layers]
    assert _compat.layer_edges(model) == [["x", "dense"], ["dense", plus], ["x", plus]]
    sequential = keras.Sequential([keras.Input((3,), name="s"), keras.layers.Dense(2, name="last")])
    assert [op.name for op in _compat.model_operations(sequential)] == ["s", "last"]
    assert _compat.layer_edges(sequential) == [["s", "last"]]


def test_op_creation_is_watched_before_and_after_in_every_graph_of_the_block():
    before, after = [], []
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 6])
        with _compat.watching_op_creation(lambda t, n: before.append((t, n)), after.append):
            tf.split(x, 3, axis=1)
            tf.unstack(x, axis=1)
            tf.identity_n([x, x])
            tf.map_fn(tf.math.sin, x)  # its loop body is a function graph
        tf.math.cos(x)  # after the block: not watched
    counts = dict(before)
    assert (counts["Split"], counts["Unpack"], counts["IdentityN"]) == (3, 6, 2)
    assert "Sin" in counts and "Cos" not in counts
    assert [op.type for op in after] == [t for t, _ in before]
    assert after[-1].graph is graph


def test_an_exception_before_creation_leaves_no_op_behind():
    def refuse(op_type, outputs):
        if op_type == "DynamicPartition":
            raise OverflowError(f"{outputs} outputs")

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None])
        with _compat.watching_op_creation(refuse, lambda op: None):
            with pytest.raises(OverflowError, match="1000000 outputs"):
                tf.dynamic_partition(x, tf.zeros([1], tf.int32), num_partitions=1_000_000)
    assert "DynamicPartition" not in {op.type for op in graph.get_operations()}


def test_op_creation_is_watched_only_in_the_thread_that_asked():
    import threading

    seen = []
    other_graph = tf.Graph()

    def elsewhere():
        with other_graph.as_default():
            tf.constant(1.0, name="in_another_thread")

    with _compat.watching_op_creation(lambda t, n: seen.append(t), lambda op: None):
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
    assert seen == [] and other_graph.get_operations()


def test_load_legacy_h5_weights_loads_an_h5_files_weights_in_layer_order(tmp_path):
    import h5py
    import numpy as np

    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(3), keras.layers.ReLU(), keras.layers.Dense(1)]
    )
    model.save(tmp_path / "m.h5")
    other = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3), keras.layers.Dense(1)])
    with h5py.File(tmp_path / "m.h5", "r") as file:
        _compat.load_legacy_h5_weights(file["model_weights"], other)
    for got, want in zip(other.weights, model.weights, strict=True):
        np.testing.assert_array_equal(got, want)


def test_decode_legacy_json_reads_keras_tagged_values():
    assert _compat.decode_legacy_json(b'{"shape": {"class_name": "__tuple__", "items": [1, 2]}}') == {
        "shape": (1, 2)
    }


def test_route_load_model_replaces_every_export_and_passes_keras_own(tmp_path, monkeypatch):
    from keras.src.saving import saving_api

    calls = []

    def load(filepath, custom_objects, compile, safe_mode, keras_load):
        calls.append((filepath, compile, keras_load))
        return "routed"

    for module in (keras.models, keras.saving, saving_api):
        monkeypatch.setattr(module, "load_model", module.load_model)  # restored after the test
    _compat.route_load_model(load)
    assert keras.models.load_model("x.keras", compile=False) == "routed"
    assert keras.saving.load_model is keras.models.load_model is saving_api.load_model
    assert calls == [("x.keras", False, _compat.keras_load_model)]
    assert _compat.keras_load_model.__module__ == "keras.src.saving.saving_api"


def test_legacy_model_from_config_finds_custom_objects():
    class Doubling(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    config = {
        "class_name": "Sequential",
        "config": {
            "name": "s",
            "layers": [
                {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 2], "name": "x"}},
                {"class_name": "Doubling", "config": {"name": "d"}},
            ],
        },
    }
    model = _compat.legacy_model_from_config(config, True, {"Doubling": Doubling})
    assert isinstance(model.layers[-1], Doubling)


@pytest.mark.parametrize("on_calling_thread", [False, True])
def test_concrete_functions_called_flat_give_the_public_call_with_captures(on_calling_thread):
    offset = tf.constant([10.0, 20.0])  # captured by the traced function
    concrete = tf.function(lambda x, y: [x * y + offset, x - y]).get_concrete_function(
        tf.TensorSpec((2,)), tf.TensorSpec((2,))
    )
    x, y = tf.constant([1.0, 2.0]), tf.constant([3.0, 4.0])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        flat = _compat.call_concrete_flat(concrete, [x, y], on_calling_thread=on_calling_thread)
    assert [t.numpy().tolist() for t in flat] == [[13.0, 28.0], [-2.0, -2.0]]
    assert [t.numpy().tolist() for t in concrete(x, y)] == [[13.0, 28.0], [-2.0, -2.0]]
    assert tape.gradient(flat[0], x) is None  # not recorded, as the public call is not


@pytest.mark.parametrize("stateful", [False, True])
def test_concrete_functions_called_flat_on_the_calling_thread_run_there(stateful):
    import threading

    def function(x):
        thread = tf.numpy_function(
            lambda v: np.int64(threading.get_ident()), [x], tf.int64, stateful=stateful
        )
        return [x + 1.0, thread]

    concrete = tf.function(function).get_concrete_function(tf.TensorSpec((2,)))
    x = tf.constant([1.0, 2.0])
    result, thread = _compat.call_concrete_flat(concrete, [x], on_calling_thread=True)
    assert result.numpy().tolist() == [2.0, 3.0]
    assert thread.numpy() == threading.get_ident()
    # Why the option exists: the public call runs the function on TF's inter-op pool.
    assert _compat.call_concrete_flat(concrete, [x])[1].numpy() != threading.get_ident()


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


@pytest.mark.parametrize(
    "keras_history",
    [["dense", 0, 0], ["features", 5, 0]],
    ids=["layer_is_its_own_input", "node_index_past_the_layers_nodes"],
)
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


def test_tf1_names_are_the_export_table_names_of_the_same_function():
    assert sorted(_compat.tf1_names(tf.math.floordiv)) == ["floordiv", "math.floordiv"]
    assert _compat.tf_symbol("compat.v1.floordiv") is tf.math.floordiv
    assert _compat.tf1_names(tf.shape) == []  # TF 2's shape_v2; TF 1's shape is another function
    assert _compat.tf1_names(lambda: 0) == []


def test_a_layers_nodes_give_its_calls_inputs_outputs_and_arguments():
    x, mask = keras.Input((2,)), keras.Input((2,))
    layer = keras.layers.Add()
    assert _compat.layer_nodes(layer) == []
    y = layer([x, mask])
    (node,) = _compat.layer_nodes(layer)
    assert _compat.node_inputs(node) == [x, mask]
    assert _compat.node_outputs(node) == [y]
    args, kwargs = _compat.node_call_arguments(node)
    assert args == ([x, mask],) and kwargs == {}
    a, b = tf.ones((1, 2)), tf.zeros((1, 2))
    args, kwargs = _compat.fill_in_call(node, {id(x): a, id(mask): b})
    assert args[0][0] is a and args[0][1] is b and kwargs == {}


def test_skip_input_conversion_keeps_inputs_as_given():
    class Echo(keras.layers.Layer):
        def call(self, x):
            return x

    plain, kept = Echo(dtype="float16"), Echo(dtype="float16")
    _compat.skip_input_conversion(kept)
    x = tf.ones((2,), dtype="float32")
    assert plain(x).dtype == tf.float16
    assert kept(x).dtype == tf.float32


def test_composite_tensors_and_op_dispatch():
    assert _compat.is_composite_tensor(tf.ragged.constant([[1], [2, 3]]))
    assert _compat.is_composite_tensor(tf.sparse.from_dense([[1, 0]]))
    assert not _compat.is_composite_tensor(tf.constant(1.0))
    assert _compat.has_op_dispatch(tf.math.top_k)
    assert not _compat.has_op_dispatch(tf.function)


def _under(*modules: str, probe):
    """`probe(frame)` called under a frame of each of `modules` (outermost
    first), `frame` being the innermost one's: a stack as TensorFlow's code makes."""

    def then():
        return probe(sys._getframe(1))

    for module in reversed(modules):
        namespace = {"__name__": module}
        exec("def call(then):\n    return then()\n", namespace)
        then = functools.partial(namespace["call"], then)
    return then()


def test_called_from_tensorflow_looks_past_the_dispatch_machinery():
    dispatch, array_ops = "tensorflow.python.util.dispatch", "tensorflow.python.ops.array_ops"
    assert not _under(dispatch, probe=_compat.called_from_tensorflow)  # user code, then dispatch
    assert _under(array_ops, dispatch, probe=_compat.called_from_tensorflow)
    assert _under(array_ops, probe=_compat.called_from_tensorflow)
    assert not _compat.called_from_tensorflow(sys._getframe(0))


def test_called_tensorflow_frame_is_the_outermost_tf_frame_below_user_code():
    stack = ("tensorflow.python.ops.map_fn", "tensorflow.python.ops.array_ops")
    wrappers = ("tensorflow.python.framework.ops", "tensorflow.python.util.dispatch")
    found = _under(*stack, *wrappers, probe=_compat.called_tensorflow_frame)
    assert found.f_globals["__name__"] == "tensorflow.python.ops.map_fn"
    found = _under(stack[1], *wrappers, probe=_compat.called_tensorflow_frame)
    assert found.f_globals["__name__"] == "tensorflow.python.ops.array_ops"
    assert _under(*wrappers, probe=_compat.called_tensorflow_frame) is None
    assert _compat.called_tensorflow_frame(sys._getframe(0)) is None


def test_explain_refused_calls_replaces_the_error_of_a_dispatching_api():
    from tensorflow.python.util import dispatch

    @dispatch.add_dispatch_support
    def double(x, name=None):
        return x * 2

    with pytest.raises(TypeError, match="^Got an unexpected keyword argument 'nam'$"):
        double(1, nam="a")  # TensorFlow's refusal, before the function runs
    better = ValueError("explained")
    _compat.explain_refused_calls(lambda api, args, kwargs: better if kwargs.get("nam") == "b" else None)
    with pytest.raises(ValueError, match="^explained$"):
        double(1, nam="b")
    with pytest.raises(TypeError, match="^Got an unexpected keyword argument 'nam'$"):
        double(1, nam="a")  # `explain` gave None: TF's own error
    assert double(3) == 6
    assert isinstance(_compat._dispatcher_cell(tf.signal.stft).cell_contents, _compat._ExplainingDispatcher)
