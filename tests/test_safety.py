"""Model files may only name allowed ops; forged files are refused before anything runs."""

import gc
import inspect
import json
import os
import subprocess
import sys
import textwrap
import threading
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import hostile
import keras_graft
import op_calls
from keras_graft import _compat
from keras_graft.core import inference, safety


def save_sin_model(path):
    x = keras.Input((3,), dtype="string")
    model = keras.Model(x, tf.strings.length(x))
    model.save(path)
    return model


def forge(source, target, op_name, arguments=None):
    """Copies a .keras file, naming `op_name` (and `arguments`) in its op layer."""

    def rename(config):
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "TFOp":
                layer["config"]["op"] = op_name
                if arguments is not None:
                    layer["config"]["arguments"] = arguments

    return hostile.edited_keras(source, target, rename)


def forged_arguments(marker):
    """Arguments that would leave `marker` on disk if the named op ever ran."""
    return {
        "args": [str(marker), {"__graft__": "input", "index": 0}],
        "kwargs": {},
    }


FORGED_NAMES = [
    "os.system",
    "builtins.eval",
    "builtins.exec",
    "subprocess.run",
    "tf.io.write_file",
    "tf.io.read_file",
    "tf.io.gfile.remove",
    "tf.py_function",
    "tf.numpy_function",
    "tf.print",
    "tf.compat.v1.py_func",
    "tf.raw_ops.WriteFile",
    "tf.saved_model.save",
    "tf.summary.write",
    "tf.debugging.experimental.enable_dump_debug_info",
    "tf.function",
    "tf.Variable",
    "io.write_file",
    "Custom>never_registered",
]


@pytest.mark.parametrize("op_name", FORGED_NAMES)
def test_forged_op_names_are_refused_and_nothing_runs(tmp_path, op_name, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(("os.system", a)))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(("run", a)))
    source = tmp_path / "good.keras"
    save_sin_model(source)
    marker = tmp_path / "marker.txt"
    forged = forge(source, tmp_path / "forged.keras", op_name, forged_arguments(marker))

    with pytest.raises(Exception) as caught:
        keras.models.load_model(forged)

    message = str(caught.value)
    assert op_name.split(">")[-1].split(".")[-1] in message
    assert "Refusing" in message or "not registered" in message
    assert not marker.exists() and not calls


def test_refusal_happens_before_the_name_is_resolved(tmp_path, monkeypatch):
    resolved = []
    from keras_graft import _compat

    monkeypatch.setattr(_compat, "tf_symbol", lambda name: resolved.append(name))
    source = tmp_path / "good.keras"
    save_sin_model(source)
    forged = forge(source, tmp_path / "f.keras", "tf.io.write_file")
    with pytest.raises(Exception, match="Refusing op `tf.io.write_file`"):
        keras.models.load_model(forged)
    assert resolved == []


def test_unforged_file_still_loads(tmp_path):
    model = save_sin_model(tmp_path / "good.keras")
    loaded = keras.models.load_model(tmp_path / "good.keras")
    data = tf.constant([["a"], ["abc"]])
    np.testing.assert_array_equal(loaded(data), model(data))
    assert loaded(data).numpy().tolist() == [[1], [3]]


def test_forged_file_cannot_express_code_in_arguments(tmp_path):
    source = tmp_path / "good.keras"
    save_sin_model(source)
    arguments = {"args": [{"class_name": "function", "config": "lambda: 0"}], "kwargs": {}}
    forged = forge(source, tmp_path / "f.keras", "tf.strings.length", arguments)
    with pytest.raises(Exception, match="Unrecognized stored op argument"):
        keras.models.load_model(forged)


def writes_a_file(inputs):
    """An op body that would write a file if its graph ever ran."""
    tf.io.write_file("never-written.txt", inputs)
    return tf.identity(inputs)


def test_graph_audit_refuses_file_and_callback_ops():
    x = keras.Input(batch_shape=(), dtype="string")
    with pytest.raises(keras_graft.UnsafeOpError, match="WriteFile"):
        inference.trace(writes_a_file, x, display_name="tf.sneaky", audit=True)
    assert not os.path.exists("never-written.txt")


def test_graph_audit_holds_after_ops_failed_to_build():
    x = keras.Input((3,))
    for _ in range(3):
        with pytest.raises(keras_graft.OpTraceError):
            tf.linalg.matmul(x, tf.constant([1.0, 2.0]))
    text = keras.Input(batch_shape=(), dtype="string")
    with pytest.raises(keras_graft.UnsafeOpError, match="WriteFile"):
        inference.trace(writes_a_file, text, display_name="tf.sneaky", audit=True)
    assert tf.math.sin(keras.Input((2,))).shape == (None, 2)


def test_graph_audit_looks_inside_called_functions():
    x = keras.Input(batch_shape=(), dtype="string")

    @tf.function(autograph=False)
    def body(value):
        return tf.io.read_file(value)

    with pytest.raises(keras_graft.UnsafeOpError, match="ReadFile"):
        inference.trace(lambda inputs: body(inputs), x, display_name="tf.sneaky", audit=True)


def test_unsafe_op_types_cover_python_callbacks_and_checkpoints():
    found = safety.unsafe_op_types(["PyFunc", "EagerPyFunc", "SaveV2", "RestoreV2", "Sin", "MatMul"])
    assert found == ["EagerPyFunc", "PyFunc", "RestoreV2", "SaveV2"]


def test_wrapping_a_refused_op_fails_where_the_model_is_built():
    with pytest.raises(keras_graft.UnsafeOpError, match=r"keras_graft.allow\('io.read_file'\)"):
        keras_graft.Op(tf.io.read_file)
    x = keras.Input((2,))
    with pytest.raises(keras_graft.UnsafeOpError, match="tf.numpy_function"):
        tf.numpy_function(np.sin, [x], tf.float32)


def test_allow_extends_the_list_for_building_and_loading(tmp_path):
    x = keras.Input(batch_shape=(), dtype="string")
    path = tmp_path / "reader.keras"
    (tmp_path / "data.txt").write_text("hello")
    with keras_graft.allow("io.read_file"):
        model = keras.Model(x, tf.strings.length(keras_graft.Op(tf.io.read_file)(x)))
        model.save(path)
        loaded = keras.models.load_model(path)
        assert int(loaded(tf.constant(str(tmp_path / "data.txt")))) == 5
    with pytest.raises(keras_graft.UnsafeOpError, match="tf.io.read_file"):
        keras.models.load_model(path)


def test_allow_outside_a_with_block_allows_nothing_and_says_so():
    with pytest.warns(RuntimeWarning, match="never entered.*allow_process_wide"):
        keras_graft.allow("tf.io.read_file")
        gc.collect()
    assert not safety.is_user_allowed("io.read_file")


def test_allow_process_wide_lasts_for_every_thread_until_revoked():
    keras_graft.allow_process_wide("tf.io.read_file")
    try:
        seen = []
        worker = threading.Thread(target=lambda: seen.append(safety.is_user_allowed("io.read_file")))
        worker.start()
        worker.join()
        assert seen == [True] and safety.is_user_allowed("io.read_file")
    finally:
        keras_graft.revoke_process_wide("io.read_file")
    assert not safety.is_user_allowed("io.read_file")


def test_allow_rejects_non_names():
    with pytest.raises(TypeError, match="op names"):
        keras_graft.allow()


def test_keras_unsafe_mode_skips_the_allow_list(tmp_path):
    x = keras.Input(batch_shape=(), dtype="string")
    path = tmp_path / "reader.keras"
    with keras_graft.allow("io.read_file"):
        keras.Model(x, keras_graft.Op(tf.io.read_file)(x)).save(path)
    loaded = keras.models.load_model(path, safe_mode=False)
    assert loaded.layers[-1].op_name == "tf.io.read_file"


def test_unregistered_function_names_its_module(tmp_path):
    script = textwrap.dedent(
        f"""
        import keras, tensorflow as tf, keras_graft

        @keras_graft.op(package="mine")
        def twice(x):
            return x * 2.0

        x = keras.Input((2,))
        keras.Model(x, twice(x)).save({str(tmp_path / "m.keras")!r})
        """
    )
    subprocess.run(
        [sys.executable, "-c", script], check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    )
    with pytest.raises(ValueError, match=r"@keras_graft.op 'mine>twice', which is not registered"):
        keras.models.load_model(tmp_path / "m.keras")


@pytest.mark.parametrize(
    "name",
    [
        "math.sin",
        "nn.relu",
        "signal.stft",
        "strings.length",
        "linalg.matmul",
        "image.resize",
        "io.decode_png",
        "__operators__.getitem",
        "clip_by_value",
        "concat",
    ],
)
def test_pure_tensor_ops_are_allowed(name):
    assert safety.refusal_reason(name) is None


def reader_model_file(tmp_path):
    path = tmp_path / "reader.keras"
    x = keras.Input(batch_shape=(), dtype="string")
    with keras_graft.allow("io.read_file"):
        keras.Model(x, keras_graft.Op(tf.io.read_file)(x)).save(path)
    return path


def test_allow_in_one_thread_does_not_change_what_another_thread_may_load(tmp_path):
    path = reader_model_file(tmp_path)
    inside, done = threading.Event(), threading.Event()
    outcomes = {}

    def trusting():
        with keras_graft.allow("io.read_file"):
            inside.set()
            done.wait(timeout=60)
            outcomes["trusting"] = type(keras.models.load_model(path)).__name__

    def untrusting():
        inside.wait(timeout=60)
        try:
            keras.models.load_model(path)
            outcomes["untrusting"] = "loaded"
        except keras_graft.UnsafeOpError as error:
            outcomes["untrusting"] = str(error)
        finally:
            done.set()

    threads = [threading.Thread(target=trusting), threading.Thread(target=untrusting)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert "Refusing op `tf.io.read_file`" in outcomes["untrusting"]
    assert outcomes["trusting"] == "Functional"


def test_allow_is_scoped_to_the_asyncio_task():
    import asyncio

    async def allowed_in_task(allowing):
        if allowing:
            with keras_graft.allow("io.read_file"):
                await asyncio.sleep(0.01)
                return safety.is_user_allowed("io.read_file")
        await asyncio.sleep(0.005)
        return safety.is_user_allowed("io.read_file")

    async def both():
        return await asyncio.gather(allowed_in_task(True), allowed_in_task(False))

    assert asyncio.run(both()) == [True, False]


def test_concurrent_allow_blocks_leave_nothing_allowed_and_raise_nothing():
    names = ["io.read_file", "io.write_file", "print", "io.matching_files"]
    errors = []

    def hammer(name):
        try:
            for _ in range(20_000):
                with keras_graft.allow(name, "io.read_file"):
                    if not safety.is_user_allowed(name):
                        raise AssertionError(f"{name} not allowed inside its own block")
        except Exception as error:  # Collected: a thread's exception would be lost.
            errors.append(error)

    threads = [threading.Thread(target=hammer, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert not any(safety.is_user_allowed(name) for name in names)


def test_nested_allow_blocks_restore_the_outer_allowance():
    with keras_graft.allow("io.read_file"):
        with keras_graft.allow("io.write_file"):
            assert safety.is_user_allowed("io.read_file") and safety.is_user_allowed("io.write_file")
        assert safety.is_user_allowed("io.read_file") and not safety.is_user_allowed("io.write_file")
    assert not safety.is_user_allowed("io.read_file")


def _reached_through_attributes(name):
    value = tf
    for part in name.split("."):
        value = getattr(value, part)
    return value


def _placeholder(spec):
    if spec.sparse:
        return tf.compat.v1.sparse_placeholder(spec.dtype, spec.shape)
    return tf.compat.v1.placeholder(spec.dtype, spec.shape)


def _candidate_arguments(graph):
    with graph.as_default():
        return [op_calls.materialize(call, _placeholder) for call in op_calls.CANDIDATES]


def test_every_admitted_name_is_a_public_tensor_op_that_only_builds_graph_ops(tmp_path, monkeypatch):
    """Each name on the allow-list is reachable as `tf.<name>`, and calling it
    (on graph placeholders, every way it accepts) adds audit-clean ops to the
    graph and changes nothing else: no process state, no files, no eager mode."""
    monkeypatch.chdir(tmp_path)
    state_before = hostile._state()
    graph = tf.Graph()
    candidates = _candidate_arguments(graph)
    built = []
    for name, function in sorted(safety.allowed_ops().items()):
        assert _reached_through_attributes(name) is function, name
        assert hasattr(function, "_tf_fallback_dispatchers") or name in safety.NON_DISPATCHING_TENSOR_OPS
        for arguments in candidates:
            first = _compat.op_id_mark(graph)
            try:
                with graph.as_default():
                    function(*arguments)
            except Exception:  # Not a way this op is called; try the next.
                continue
            created = _compat.ops_created_between(graph, first, _compat.op_id_mark(graph))
            safety.audit_graph_ops(name, graph, created)
            built.append(name)
            break
    assert len(built) > 500, "too few ops accepted any candidate arguments"
    assert tf.executing_eagerly()
    assert hostile._state() == state_before
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", sorted(safety.DENIED_NAMES))
def test_denied_names_are_refused_with_their_reason(name):
    assert safety.DENIED_NAMES[name] in safety.refusal_reason(name)


@pytest.mark.parametrize(
    "name",
    [
        "xla_call_module",
        "xla_custom_call_v2",
        "rpc_client",
        "rpc_server",
        "check_preemption",
        "audio_microfrontend",
        "xla_launch",
        "xla_recv",
        "xla_while",
    ],
)
def test_export_table_names_no_namespace_shows_are_refused(name):
    assert _compat.tf_symbol(name) is not None  # TensorFlow exports it...
    assert safety.refusal_reason(name) == "it is not a public attribute of `tf`"  # ...nobody reaches it


def _symbolic_slice_model(path):
    x, step = keras.Input((8,)), keras.Input((), dtype="int32")
    keras.Model([x, step], x[..., :: step[0]]).save(path)
    return path


def test_a_rank_found_by_running_the_op_is_stored_and_loaded_without_running_it(tmp_path, monkeypatch):
    path = _symbolic_slice_model(tmp_path / "slice.keras")
    with zipfile.ZipFile(path) as archive:
        layers = json.loads(archive.read("config.json"))["config"]["layers"]
    assert [layer["config"]["output_ranks"] for layer in layers if layer["class_name"] == "TFOp"] == [[2]]
    monkeypatch.setattr(inference, "_probe_ranks", lambda *a: pytest.fail("probed a file's op"))
    loaded = keras.models.load_model(path)
    assert loaded.output.shape == (None, None)


def test_an_unknown_rank_on_load_is_refused_naming_the_layer_and_the_fix(tmp_path):
    path = _symbolic_slice_model(tmp_path / "slice.keras")
    forged = tmp_path / "no_ranks.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(forged, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name == "config.json":
                config = json.loads(data)
                for layer in config["config"]["layers"]:
                    layer["config"].pop("output_ranks", None)
                data = json.dumps(config).encode()
            target.writestr(name, data)
    with pytest.raises(
        keras_graft.OpTraceError,
        match=r"tf.__operators__.getitem.*does not run ops from a model file.*tf.ensure_shape",
    ):
        keras.models.load_model(forged)
    assert keras.models.load_model(forged, safe_mode=False).output.shape == (None, None)


def test_constants_too_large_for_a_model_file_fail_where_the_op_is_called():
    x = keras.Input((3,))
    with pytest.raises(keras_graft.UnstorableArgumentError, match="at most 16777216.*ctx.weight"):
        tf.math.add(x, np.zeros((1 << 24) + 1, "float32"))


def test_allow_warns_about_names_tensorflow_does_not_export():
    with pytest.warns(RuntimeWarning, match="TensorFlow exports no 'io.readfile'.*check the spelling"):
        with keras_graft.allow("io.readfile"):
            pass


def test_a_name_that_does_not_exist_is_refused_without_advice_to_allow_it():
    with pytest.raises(keras_graft.UnsafeOpError) as refused:
        safety.check_tf_name("math.abs_nonexistent")
    assert "not a public attribute" in str(refused.value) and "allow" not in str(refused.value)


# -- Bounds that follow the function, and the trace budget ---------------------


def op_layer_configs(config):
    return [layer["config"] for layer in config["config"]["layers"] if layer["class_name"] == "TFOp"]


def set_keyword(name, value, layer=0):
    def edit(config):
        op_layer_configs(config)[layer]["arguments"]["kwargs"][name] = value

    return edit


def test_a_bounded_keyword_applies_to_a_function_argument_too(tmp_path):
    """`tf.ragged.map_flat_values(tf.einsum, ..., optimize=...)`: the keyword reaches
    `tf.einsum`, which gets the bound of `tf.einsum` whatever passes it on."""
    x = keras.Input((2,))
    matrix = np.array([[1.0, 2.0], [3.0, 4.0]], "float32")
    model = keras.Model(x, tf.ragged.map_flat_values(tf.einsum, "bi,ij->bj", x, matrix, optimize="greedy"))
    model.save(tmp_path / "greedy.keras")
    data = np.ones((3, 2), "float32")
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "greedy.keras")(data), data @ matrix)
    for name, forged_value in (("optimize", "optimal"), ("optimize", "branch-all")):
        forged = hostile.edited_keras(
            tmp_path / "greedy.keras", tmp_path / "forged.keras", set_keyword(name, forged_value)
        )
        with pytest.raises(
            keras_graft.errors.TracingBudgetError,
            match=rf"tf.einsum` from a model file: optimize='{forged_value}'",
        ):
            keras.models.load_model(forged)
        assert keras.models.load_model(forged, safe_mode=False).output.shape == (None, 2)


def test_output_counts_from_a_file_are_bounded_by_argument_and_by_dimension(tmp_path):
    x = keras.Input((4,))
    parts = keras.Input((), dtype="int32")
    model = keras.Model(
        [x, parts],
        [
            tf.dynamic_partition(x, parts, num_partitions=2)[0],
            tf.unstack(tf.reshape(x, [-1, 2]), axis=1)[0],
        ],
    )
    model.save(tmp_path / "model.keras")
    keras.models.load_model(tmp_path / "model.keras")
    too_many = safety.MAX_OP_OUTPUTS + 1

    def layer_of(config, op):
        return next(c for c in op_layer_configs(config) if c["op"] == op)

    def more_partitions(config):
        layer_of(config, "tf.dynamic_partition")["arguments"]["kwargs"]["num_partitions"] = too_many

    def wider_reshape(config):
        layer_of(config, "tf.reshape")["arguments"]["args"][1] = [-1, too_many]

    for edit, message in (
        (more_partitions, f"num_partitions={too_many} asks for {too_many} outputs"),
        (wider_reshape, f"{too_many} elements along axis 1, one output each"),
    ):
        forged = hostile.edited_keras(tmp_path / "model.keras", tmp_path / "forged.keras", edit)
        with pytest.raises(keras_graft.errors.TracingBudgetError, match=message):
            keras.models.load_model(forged)


@pytest.mark.parametrize("name", sorted(safety.BOUNDED_ARGUMENTS))
def test_bounded_arguments_name_parameters_the_op_has(name):
    """The checks read arguments by parameter name: a renamed parameter would go unchecked."""
    expected = {
        "einsum": {"equation"},
        "linalg.einsum": {"equation"},
        "dynamic_partition": {"num_partitions"},
        "split": {"num_or_size_splits", "num"},
        "unstack": {"value", "num", "axis"},
        "sparse.split": {"num_split"},
        "nn.ctc_beam_search_decoder": {"top_paths"},
    }[name]
    parameters = inspect.signature(safety.allowed_ops()[name]).parameters
    assert expected <= set(parameters)
    if "einsum" in name:  # `optimize` goes through **kwargs
        assert any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def test_a_bounded_op_keeps_its_name_and_runs_like_the_op(tmp_path):
    with _compat_safe_mode():
        bounded_split = keras_graft.core.op_names.resolve("tf.split")
    assert bounded_split is not tf.split and bounded_split.graft_tf_name == "split"
    assert keras_graft.core.op_names.name_of(bounded_split) == "tf.split"
    assert [t.numpy().tolist() for t in bounded_split(tf.range(4), 2)] == [[0, 1], [2, 3]]
    with pytest.raises(keras_graft.errors.TracingBudgetError, match="num_or_size_splits=5000"):
        bounded_split(tf.range(4), 5000)
    assert keras_graft.core.op_names.resolve("tf.split") is tf.split  # not while building in code


def _compat_safe_mode():
    from keras.src.saving.serialization_lib import SafeModeScope

    return SafeModeScope(True)


@keras_graft.op(package="tests_budget")
def repeated_sin(x, times=1):
    for _ in range(times):
        x = tf.math.sin(x)
    return x


def test_a_python_loop_over_a_file_value_stops_at_the_graph_op_budget(tmp_path):
    x = keras.Input((3,))
    keras.Model(x, repeated_sin(x, times=3)).save(tmp_path / "model.keras")
    assert len(keras.models.load_model(tmp_path / "model.keras").layers) == 2
    forged = hostile.edited_keras(
        tmp_path / "model.keras", tmp_path / "forged.keras", set_keyword("times", 10**7)
    )
    graph_before = inference.scratch_graph().version
    with pytest.raises(
        keras_graft.errors.TracingBudgetError,
        match=rf"repeated_sin \(layer .*more than {safety.MAX_TRACE_OPS} graph ops",
    ):
        keras.models.load_model(forged)
    assert inference.scratch_graph().version - graph_before <= 2 * safety.MAX_TRACE_OPS + 100


def test_the_trace_budget_holds_when_tensorflow_swallows_the_refusal():
    def stubborn(x):
        try:
            tf.unstack(x, num=safety.MAX_OP_OUTPUTS + 1)
        except Exception:  # TF code that catches and goes on
            pass
        return tf.math.sin(x)

    x = keras.Input((3,))
    with pytest.raises(keras_graft.errors.TracingBudgetError, match=r"stubborn.*Unpack op with 4097 outputs"):
        inference.trace(stubborn, x, display_name="stubborn", audit=False, untrusted=True)
    assert inference.trace(stubborn, x, display_name="stubborn", audit=False)[0].shape == (None, 3)


def test_the_trace_budget_refuses_outputs_in_all_and_ranks_no_tensor_can_have():
    def many_splits(x):
        return [tf.split(x, safety.MAX_OP_OUTPUTS, axis=0) for _ in range(5)][0][0]

    def high_rank(x):
        return tf.reshape(x, [-1] + [1] * safety.MAX_RANK)

    x = keras.Input((3,))
    for function, message in (
        (many_splits, "more than 16384 graph op outputs"),
        (high_rank, "output of rank 255"),
    ):
        with pytest.raises(keras_graft.errors.TracingBudgetError, match=message):
            inference.trace(function, x, display_name=function.__name__, audit=False, untrusted=True)


# -- A file's node calls its layers on Keras tensors only -----------------------


def test_a_file_node_that_calls_a_layer_on_a_stored_tensor_is_refused_before_it_runs(tmp_path, capfd):
    """Keras calls a layer on what its node stores; on a stored tensor the layer ran
    at load (a file's `tf.fill` of 20000x20000, a `Print` printing)."""
    x = keras.Input((3,))
    keras.Model(x, [tf.math.sin(x), tf.print("loaded:", x)]).save(tmp_path / "model.keras")
    stored = {"class_name": "__tensor__", "config": {"value": [1.0, 2.0, 3.0], "dtype": "float32"}}

    def on_stored(layer_class, where):
        def edit(config):
            layer = next(layer for layer in config["config"]["layers"] if layer["class_name"] == layer_class)
            node = layer["inbound_nodes"][0]
            node[where] = [stored] if where == "args" else {"training": stored}

        return edit

    with keras_graft.allow("print"):
        assert len(keras.models.load_model(tmp_path / "model.keras").outputs) == 2
        for layer_class, where in (("TFOp", "args"), ("TFOp", "kwargs"), ("Print", "args")):
            forged = hostile.edited_keras(
                tmp_path / "model.keras", tmp_path / "forged.keras", on_stored(layer_class, where)
            )
            with pytest.raises(
                keras_graft.errors.MalformedModelFileError,
                match="is called on EagerTensor .* a model file calls its layers on Keras tensors",
            ):
                keras.models.load_model(forged)
    assert "loaded:" not in capfd.readouterr().err


def test_a_layer_called_on_something_else_than_keras_tensors_in_code_says_so():
    x = keras.Input((3,))
    with pytest.raises(
        keras_graft.errors.OpTraceError,
        match=r"tf.math.add was called on None \(NoneType\), not on Keras tensors. Call it",
    ):
        keras_graft.Op(tf.math.add)([x, None])
    printer = tf.print("x:", x)._keras_history[0]
    with pytest.raises(TypeError, match="called on None, not on a Keras tensor. Print Keras tensors"):
        printer([None, x])
    eager = tf.constant([1.0, 2.0])  # outside a load, layers run on tensors as usual
    np.testing.assert_allclose(keras_graft.Op(tf.math.sin)(eager), np.sin([1.0, 2.0]), rtol=1e-6)
