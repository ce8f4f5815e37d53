"""`@keras_graft.layer`, `ctx.weight` / `ctx.state`, `@keras_graft.loss/metric`.

In one process, without a distribution strategy: building, calling, saving
and loading (safe mode, no `custom_objects`), XLA, `predict`/`evaluate`,
`BackupAndRestore`, mixed precision, masks, losses, and the errors. The
`tf.distribute` behaviour is in `test_distribute.py` / `test_multi_worker.py`.
"""

import importlib
import json
import os
import sys
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_graft  # noqa: E402
from keras_graft.layers import decorators  # noqa: E402
from keras_graft.layers.state import StateVariable  # noqa: E402


# --------------------------------------------------------------------------
# Layers used across the tests (module level: registered once, importable)
# --------------------------------------------------------------------------
@keras_graft.layer
def custom_matmul(ctx, x, units=3):
    kernel = ctx.weight("kernel", (x.shape[-1], units), initializer="glorot_uniform")
    return tf.matmul(x, kernel)


@keras_graft.layer
def counter(ctx, x):
    calls = ctx.state("calls")
    training_calls = ctx.state("training_calls", dtype="int32")
    calls.assign_add(1.0)
    training_calls.assign_add(1 if ctx.training else 0)
    return x


@keras_graft.layer
def affine(ctx, x, units=2, use_bias=True, kernel_initializer="glorot_uniform"):
    kernel = ctx.weight("kernel", (x.shape[-1], units), initializer=kernel_initializer)
    y = tf.matmul(x, kernel)
    if use_bias:
        y = tf.nn.bias_add(y, ctx.weight("bias", (units,), initializer="zeros"))
    return y


@keras_graft.layer
def bilinear(ctx, x, y, units=2):
    """Two tensor inputs: `layer(x, y)`."""
    w = ctx.weight("w", (x.shape[-1], y.shape[-1] * units))
    z = tf.reshape(tf.matmul(x, w), (-1, y.shape[-1], units))
    return tf.einsum("bi,biu->bu", y, z)


@keras_graft.layer
def lookup(ctx, ids, vocabulary=10, dim=4):
    """Integer input: the build trace must see int32, not float32."""
    table = ctx.weight("table", (vocabulary, dim), initializer="uniform")
    return tf.gather(table, ids)


@keras_graft.layer
def shaped(ctx, x, kernel_size=(2, 1), init=None, scale=1.0):
    w = ctx.weight("w", kernel_size, initializer=init or "ones")
    return x * tf.reduce_sum(w) * scale


@keras_graft.layer(package="keras_graft_tests", name="renamed_scale")
def scale_by(ctx, x, factor=2.0):
    return x * factor


@keras_graft.loss
def log_cosh_loss(y_true, y_pred):
    error = y_pred - tf.cast(y_true, y_pred.dtype)
    return tf.reduce_mean(tf.math.log(tf.cosh(error)), axis=-1)


@keras_graft.metric
def within_half(y_true, y_pred):
    close = tf.abs(y_pred - tf.cast(y_true, y_pred.dtype)) <= 0.5
    return tf.reduce_mean(tf.cast(close, y_pred.dtype), axis=-1)


def _data(samples=16, features=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, features)).astype("float32")
    y = x.sum(axis=1, keepdims=True).astype("float32")
    return x, y


def _counter_model(features=5):
    inputs = keras.Input((features,))
    hidden = counter(name="counter")(inputs)
    hidden = custom_matmul(units=3, name="matmul")(hidden)
    outputs = keras.layers.Dense(1)(hidden)
    return keras.Model(inputs, outputs)


def _calls(model):
    return model.get_layer("counter").named_variables["calls"].numpy().item()


def _save_load(model, tmp_path, name="model.keras"):
    path = str(tmp_path / name)
    model.save(path)
    return keras.saving.load_model(path), path  # safe mode, no custom_objects


# --------------------------------------------------------------------------
# 1. The decorator and the generated class
# --------------------------------------------------------------------------
def test_decorator_makes_a_registered_layer_class():
    assert issubclass(custom_matmul, keras.layers.Layer)
    assert custom_matmul.__name__ == "custom_matmul"
    assert custom_matmul.__module__ == __name__
    assert custom_matmul.registered_name == "test_layers>custom_matmul"
    assert keras.saving.get_registered_object("test_layers>custom_matmul") is custom_matmul
    assert keras.saving.get_registered_name(custom_matmul) == "test_layers>custom_matmul"
    assert keras_graft.layer is decorators.layer
    assert str(__import__("inspect").signature(custom_matmul)).startswith("(units=3, *, name=None")


def test_custom_matmul_computes_matmul_with_its_kernel():
    layer = custom_matmul(units=3)
    x = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    y = layer(x)
    kernel = layer.named_variables["kernel"]
    assert y.shape == (4, 3)
    assert layer.trainable_weights == [kernel]
    assert kernel.path == f"{layer.name}/kernel"
    np.testing.assert_allclose(y, x @ kernel.numpy(), rtol=1e-5, atol=1e-6)


def test_package_and_name_can_be_chosen():
    assert scale_by.registered_name == "keras_graft_tests>renamed_scale"
    assert keras.saving.get_registered_object("keras_graft_tests>renamed_scale") is scale_by
    np.testing.assert_allclose(scale_by(factor=3.0)(np.ones((1, 2), "float32")), [[3.0, 3.0]])


def test_get_config_holds_hyperparameters_and_round_trips():
    layer = affine(units=4, use_bias=False, name="aff")
    config = layer.get_config()
    assert config["units"] == 4 and config["use_bias"] is False
    assert config["kernel_initializer"] == "glorot_uniform"
    assert config["name"] == "aff"
    clone = affine.from_config(config)
    assert clone.hyperparameters == layer.hyperparameters
    assert clone.get_config() == config
    # Hyperparameters are validated and positional ones allowed, like Dense(3).
    assert affine(5).hyperparameters["units"] == 5


def test_hyperparameters_keep_tuples_and_keras_objects(tmp_path):
    layer = shaped(kernel_size=(3, 2), init=keras.initializers.Constant(0.5), scale=2.0)
    inputs = keras.Input((2,))
    model = keras.Model(inputs, layer(inputs))
    x = np.ones((2, 2), "float32")
    expected = x * (3 * 2 * 0.5) * 2.0
    np.testing.assert_allclose(model(x), expected)

    reloaded, _ = _save_load(model, tmp_path)
    loaded = reloaded.layers[1]
    assert loaded.hyperparameters["kernel_size"] == (3, 2)
    assert isinstance(loaded.hyperparameters["init"], keras.initializers.Constant)
    np.testing.assert_allclose(reloaded(x), expected)


def test_unknown_hyperparameter_is_a_type_error_naming_the_valid_ones():
    with pytest.raises(TypeError) as excinfo:
        custom_matmul(unit=3)
    message = str(excinfo.value)
    assert "custom_matmul() got an unexpected hyperparameter 'unit'" in message
    assert "Did you mean 'units'?" in message
    assert "units=3" in message and "name, dtype, trainable" in message


def test_missing_and_extra_positional_hyperparameters_are_type_errors():
    @keras_graft.layer
    def needs_rate(ctx, x, *, rate):
        return x * rate

    with pytest.raises(TypeError, match=r"needs_rate\(\): missing a required argument: 'rate'"):
        needs_rate()
    with pytest.raises(TypeError, match=r"custom_matmul\(\): too many positional"):
        custom_matmul(3, 4)
    assert needs_rate(rate=0.5).get_config()["rate"] == 0.5


def test_keras_layer_arguments_are_accepted():
    layer = custom_matmul(units=2, name="mm", trainable=False, dtype="float64")
    assert layer.name == "mm" and not layer.trainable
    y = layer(np.ones((1, 3)))
    assert y.dtype == tf.float64
    assert layer.non_trainable_weights == [layer.named_variables["kernel"]]


def test_lambda_hyperparameters_are_refused_at_construction():
    @keras_graft.layer
    def apply(ctx, x, fn="relu"):
        return keras.activations.get(fn)(x)

    with pytest.raises(TypeError, match="hyperparameter 'fn' is a lambda"):
        apply(fn=lambda t: t)


@pytest.mark.parametrize(
    "source, message",
    [
        ("def f(): pass", "the first parameter must be the context"),
        ("def f(ctx): pass", "no tensor input after `ctx`"),
        ("def f(ctx, x, *args): pass", r"\*args / \*\*args are not supported"),
        ("def f(ctx, x, **kw): pass", r"\*kw / \*\*kw are not supported"),
        ("def f(ctx, x, training=False): pass", "'training' is reserved .read ctx.training"),
        ("def f(ctx, x, mask=None): pass", "'mask' is reserved .read ctx.mask"),
        ("def f(ctx, x, name='a'): pass", "'name' is reserved"),
    ],
)
def test_bad_layer_functions_are_refused_at_decoration(source, message):
    namespace = {}
    exec(source, namespace)
    with pytest.raises(TypeError, match=message):
        keras_graft.layer(namespace["f"])


def test_lambdas_and_classes_cannot_be_decorated():
    with pytest.raises(TypeError, match="named function"):
        keras_graft.layer(lambda ctx, x: x)
    with pytest.raises(TypeError, match="decorates a function"):
        keras_graft.layer(dict)


def test_registering_two_definitions_under_one_name_is_an_error():
    def first(ctx, x):
        return x

    keras_graft.layer(package="keras_graft_tests", name="clash")(first)

    def second(ctx, x):
        return x + 1

    with pytest.raises(ValueError) as excinfo:
        keras_graft.layer(package="keras_graft_tests", name="clash")(second)
    message = str(excinfo.value)
    assert "'keras_graft_tests>clash'" in message
    assert "test_registering_two_definitions_under_one_name_is_an_error.<locals>.first" in message
    assert "pass name=... or package=..." in message


def test_redefining_the_same_function_replaces_its_registration():
    # What re-running a notebook cell or importlib.reload does.
    def make():
        def redefined(ctx, x):
            return x

        return keras_graft.layer(package="keras_graft_tests")(redefined)

    old, new = make(), make()
    assert old is not new
    assert keras.saving.get_registered_object("keras_graft_tests>redefined") is new


# --------------------------------------------------------------------------
# 2. Building: variables created once, where used
# --------------------------------------------------------------------------
def test_build_creates_variables_without_applying_state_updates():
    layer = counter()
    layer.build((None, 5))
    assert layer.built
    assert set(layer.named_variables) == {"calls", "training_calls"}
    assert all(isinstance(v, StateVariable) for v in layer.non_trainable_weights)
    assert layer.named_variables["calls"].numpy() == 0.0  # the trace is discarded
    layer(np.ones((2, 5), "float32"))
    assert layer.named_variables["calls"].numpy() == 1.0


def test_state_variables_are_tracked_by_keras_and_not_trainable():
    model = _counter_model()
    layer = model.get_layer("counter")
    calls = layer.named_variables["calls"]
    assert any(v is calls for v in model.non_trainable_weights)
    assert not any(v is calls for v in model.trainable_weights)
    assert calls.path == "counter/calls"
    assert calls.state_aggregation == "sum"
    assert calls.dtype == "float32"
    assert layer.named_variables["training_calls"].dtype == "int32"


def test_weights_and_state_persist_across_calls_and_count_eager_calls():
    layer = counter()
    x = np.ones((2, 5), "float32")
    for _ in range(3):
        np.testing.assert_array_equal(layer(x), x)
    assert layer.named_variables["calls"].numpy() == 3.0
    assert layer.named_variables["training_calls"].numpy() == 0
    layer(x, training=True)
    assert layer.named_variables["training_calls"].numpy() == 1
    assert len(layer.weights) == 2


def test_tf_function_calls_update_state_each_call():
    layer = counter()
    step = tf.function(lambda t: layer(t, training=True))
    for _ in range(4):
        step(tf.ones((3, 5)))
    assert layer.named_variables["calls"].numpy() == 4.0
    assert layer.named_variables["training_calls"].numpy() == 4


def test_built_variables_are_ordinary_and_building_works_off_the_main_thread():
    import threading

    layers, errors = [], []

    def build():
        try:
            layer = custom_matmul(units=2)
            layer(np.ones((1, 3), "float32"))
            layers.append(layer)
        except Exception as error:  # reported below
            errors.append(error)

    thread = threading.Thread(target=build)
    thread.start()
    thread.join()
    assert not errors, errors
    kernel = layers[0].named_variables["kernel"]
    assert type(kernel.value) is tf.Variable(1.0).__class__  # not a tf.function capture


def test_sequential_without_input_builds_on_first_batch(tmp_path):
    model = keras.Sequential([custom_matmul(units=4), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    x, y = _data()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert model.layers[0].named_variables["kernel"].shape == (5, 4)
    reloaded, _ = _save_load(model, tmp_path)
    np.testing.assert_array_equal(model.predict(x, verbose=0), reloaded.predict(x, verbose=0))


def test_multiple_tensor_inputs(tmp_path):
    x_in, y_in = keras.Input((4,)), keras.Input((3,))
    out = bilinear(units=2)(x_in, y_in)
    model = keras.Model([x_in, y_in], out)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 4)).astype("float32")
    y = rng.normal(size=(6, 3)).astype("float32")
    w = model.layers[-1].named_variables["w"].numpy().reshape(4, 3, 2)
    expected = np.einsum("bi,bj,jiu->bu", y, x, w)
    np.testing.assert_allclose(model([x, y]), expected, rtol=1e-5, atol=1e-5)

    reloaded, _ = _save_load(model, tmp_path)
    np.testing.assert_allclose(reloaded([x, y]), expected, rtol=1e-5, atol=1e-5)


def test_integer_inputs_are_traced_with_their_dtype_on_build_and_load(tmp_path):
    inputs = keras.Input((3,), dtype="int32")
    model = keras.Model(inputs, lookup(vocabulary=10, dim=4)(inputs))
    ids = np.array([[1, 2, 3], [0, 9, 9]], "int32")
    table = model.layers[1].named_variables["table"].numpy()
    np.testing.assert_allclose(model(ids), table[ids])

    build_config = model.layers[1].get_build_config()
    assert build_config["input_dtypes"] == ["int32"]
    reloaded, _ = _save_load(model, tmp_path)
    np.testing.assert_allclose(reloaded(ids), table[ids])


def test_nested_input_structures():
    @keras_graft.layer
    def pair_sum(ctx, pair, units=2):
        a, b = pair
        w = ctx.weight("w", (a.shape[-1] + b.shape[-1], units), initializer="ones")
        return tf.matmul(tf.concat([a, b], axis=-1), w)

    layer = pair_sum()
    out = layer([np.ones((2, 3), "float32"), np.ones((2, 1), "float32")])
    np.testing.assert_allclose(out, np.full((2, 2), 4.0))
    assert layer.named_variables["w"].shape == (4, 2)


# --------------------------------------------------------------------------
# 3. Saving and loading
# --------------------------------------------------------------------------
def test_save_load_safe_mode_without_custom_objects(tmp_path):
    model = _counter_model()
    model.compile("adam", "mse")
    x, y = _data()
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    reloaded, path = _save_load(model, tmp_path)
    np.testing.assert_array_equal(model.predict(x, verbose=0), reloaded.predict(x, verbose=0))
    assert type(reloaded.get_layer("matmul")) is custom_matmul
    assert reloaded.get_layer("matmul").hyperparameters == {"units": 3}
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json").decode()
    assert "__lambda__" not in config  # nothing is stored as bytecode
    registered = {layer["registered_name"] for layer in json.loads(config)["config"]["layers"]}
    assert {"test_layers>custom_matmul", "test_layers>counter"} <= registered


def test_a_counter_at_11_reloads_at_11(tmp_path):
    model = _counter_model()
    x = np.ones((1, 5), "float32")
    for _ in range(11):
        model(x)
    assert _calls(model) == 11.0
    reloaded, _ = _save_load(model, tmp_path)
    assert _calls(reloaded) == 11.0
    reloaded(x)
    assert _calls(reloaded) == 12.0


def test_layer_whose_module_is_not_imported_is_refused_by_name(tmp_path, monkeypatch):
    module_name = "keras_graft_tmp_layers"
    (tmp_path / f"{module_name}.py").write_text(
        "import keras_graft\n@keras_graft.layer\ndef doubled(ctx, x):\n    return x * 2.0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(module_name)
    inputs = keras.Input((2,))
    model = keras.Model(inputs, module.doubled()(inputs))
    path = str(tmp_path / "doubled.keras")
    model.save(path)

    # As in a fresh process that never imported the module:
    del keras.saving.get_custom_objects()[f"{module_name}>doubled"]
    del sys.modules[module_name]
    with pytest.raises(keras_graft.errors.UnregisteredNameError) as excinfo:
        keras.saving.load_model(path)
    message = str(excinfo.value)
    assert f"@keras_graft.layer '{module_name}>doubled', which is not registered" in message
    assert f"Import `{module_name}`, the module that defines it" in message

    importlib.import_module(module_name)  # importing it is all it takes
    np.testing.assert_allclose(keras.saving.load_model(path)(np.ones((1, 2), "float32")), [[2.0, 2.0]])


def test_backup_and_restore_resumes_state_after_interrupted_fit(tmp_path):
    x, y = _data(samples=12)  # 3 batches of 4 per epoch

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("interrupted")

    def fit(model, callbacks):
        model.compile("sgd", "mse")
        model.fit(
            x,
            y,
            batch_size=4,
            epochs=4,
            verbose=0,
            shuffle=False,
            callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))] + callbacks,
        )

    first = _counter_model()
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(first, [Interrupt()])
    assert _calls(first) == 6.0  # epochs 0 and 1

    # A new process: a fresh model, restored from the backup of epoch 1.
    keras.backend.clear_session()
    second = _counter_model()
    assert _calls(second) == 0.0
    fit(second, [])
    assert _calls(second) == 12.0  # 6 restored + epochs 2 and 3
    trained = second.get_layer("counter").named_variables["training_calls"]
    assert trained.numpy() == 12


# --------------------------------------------------------------------------
# 4. fit / predict / evaluate, XLA
# --------------------------------------------------------------------------
@pytest.mark.parametrize("jit_compile", [False, True])
def test_state_counts_steps_in_fit_predict_evaluate(jit_compile):
    model = _counter_model()
    model.compile("sgd", "mse", jit_compile=jit_compile)
    x, y = _data(samples=16)
    kernel_before = model.get_layer("matmul").named_variables["kernel"].numpy()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert _calls(model) == 4.0
    counter_layer = model.get_layer("counter")
    assert counter_layer.named_variables["training_calls"].numpy() == 4
    model.predict(x, batch_size=8, verbose=0)
    assert _calls(model) == 6.0
    model.evaluate(x, y, batch_size=16, verbose=0)
    assert _calls(model) == 7.0
    assert counter_layer.named_variables["training_calls"].numpy() == 4
    kernel_after = model.get_layer("matmul").named_variables["kernel"].numpy()
    assert not np.allclose(kernel_before, kernel_after)  # the weight trains


# --------------------------------------------------------------------------
# 5. Mixed precision
# --------------------------------------------------------------------------
@keras_graft.layer
def dtype_probe(ctx, x, units=2):
    kernel = ctx.weight("kernel", (x.shape[-1], units), initializer="ones")
    steps = ctx.state("steps")
    steps.assign_add(1.0)
    if not ctx.building:
        seen = ctx.layer.seen_dtypes
        seen["input"] = x.dtype.name
        seen["kernel_read"] = tf.convert_to_tensor(kernel).dtype.name
        seen["steps_read"] = tf.convert_to_tensor(steps).dtype.name
        seen["ctx"] = (ctx.compute_dtype, ctx.variable_dtype)
    # A float32 constant: the output is still cast to the compute dtype.
    return tf.cast(tf.matmul(x, kernel), "float32") + tf.constant(0.5)


@pytest.fixture
def global_policy():
    def set_policy(name):
        keras.config.set_dtype_policy(name)

    yield set_policy
    keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("policy, compute", [("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")])
@pytest.mark.parametrize("how", ["global", "layer"])
def test_mixed_precision_casts_inputs_weights_and_outputs(policy, compute, how, global_policy):
    if how == "global":
        global_policy(policy)
        layer = dtype_probe()
    else:
        layer = dtype_probe(dtype=policy)
    layer.seen_dtypes = {}
    y = layer(np.ones((3, 4), "float32"))
    assert layer.seen_dtypes == {
        "input": compute,
        "kernel_read": compute,
        "steps_read": "float32",  # state is never autocast
        "ctx": (compute, "float32"),
    }
    assert y.dtype == compute
    np.testing.assert_allclose(np.asarray(y, "float32"), np.full((3, 2), 4.5))
    assert layer.named_variables["kernel"].dtype == "float32"  # stored in float32
    assert layer.named_variables["steps"].numpy() == 1.0


def test_mixed_precision_training_and_reload(global_policy, tmp_path):
    global_policy("mixed_float16")
    model = _counter_model()
    model.compile("adam", "mse")  # Keras adds loss scaling for float16
    x, y = _data()
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert model.get_layer("matmul").compute_dtype == "float16"
    assert model.get_layer("matmul").named_variables["kernel"].dtype == "float32"
    assert _calls(model) == 8.0
    predictions = model.predict(x, verbose=0)
    assert predictions.dtype == np.float16
    reloaded, _ = _save_load(model, tmp_path)
    assert reloaded.get_layer("matmul").dtype_policy.name == "mixed_float16"
    np.testing.assert_array_equal(predictions, reloaded.predict(x, verbose=0))


# --------------------------------------------------------------------------
# 6. The rest of the context: training, masks, losses, regularizers
# --------------------------------------------------------------------------
def test_ctx_training_follows_the_phase():
    phases = []

    @keras_graft.layer
    def phase(ctx, x):
        if not ctx.building:
            phases.append(ctx.training)
        return x

    layer = phase()
    x = np.ones((1, 2), "float32")
    layer(x)
    layer(x, training=True)
    layer(x, training=False)
    assert phases == [False, True, False]


def test_masks_reach_ctx_and_propagate_with_supports_masking():
    @keras_graft.layer(supports_masking=True)
    def masked_sum(ctx, x, scale=1.0):
        mask = tf.cast(ctx.mask, x.dtype)[..., None]
        assert ctx.masks == {"x": ctx.mask}
        return x * mask * scale

    ids = np.array([[1, 2, 0, 0]], "int32")
    embedded = keras.layers.Embedding(5, 3, mask_zero=True)(ids)
    out = masked_sum(scale=2.0)(embedded)
    np.testing.assert_array_equal(out[0, 2:], np.zeros((2, 3)))
    np.testing.assert_allclose(out[0, :2], 2.0 * np.asarray(embedded)[0, :2])
    np.testing.assert_array_equal(out._keras_mask, ids != 0)


@keras_graft.layer(supports_masking=True)
def zero_masked(ctx, x):
    """Uses the mask unconditionally: the build trace must provide one."""
    return x * tf.cast(ctx.mask, x.dtype)[..., None]


def test_masked_layer_in_a_functional_model_saves_and_loads(tmp_path):
    ids_in = keras.Input((4,), dtype="int32")
    embedded = keras.layers.Embedding(5, 3, mask_zero=True)(ids_in)
    pooled = keras.layers.GlobalAveragePooling1D()(zero_masked()(embedded))
    model = keras.Model(ids_in, pooled)
    ids = np.array([[1, 2, 0, 0], [3, 0, 0, 0]], "int32")
    table = model.layers[1].embeddings.numpy()
    expected = np.stack([table[[1, 2]].mean(0), table[3]])  # pooling honours the mask
    np.testing.assert_allclose(model(ids), expected, rtol=1e-6)
    assert model.layers[2].get_build_config()["input_masks"] == [[None, 4]]

    reloaded, _ = _save_load(model, tmp_path)
    np.testing.assert_allclose(reloaded(ids), expected, rtol=1e-6)


def test_add_loss_and_regularizers_reach_model_losses():
    @keras_graft.layer
    def penalized(ctx, x, rate=0.5):
        w = ctx.weight("w", (x.shape[-1],), initializer="ones", regularizer=keras.regularizers.L2(0.25))
        y = x * w
        ctx.add_loss(rate * tf.reduce_sum(y))
        return y

    layer = penalized()
    layer(np.ones((2, 3), "float32"))
    losses = sorted(float(v) for v in layer.losses)
    assert losses == pytest.approx([0.75, 3.0])  # 0.25 * 3 ones; 0.5 * sum(6 ones)


def test_non_trainable_weight_and_explicit_dtypes():
    @keras_graft.layer
    def offsets(ctx, x):
        offset = ctx.weight("offset", (), initializer="ones", trainable=False)
        index = ctx.weight("index", (2,), dtype="int32", initializer="zeros", trainable=False)
        scale = ctx.weight("scale", (), initializer="ones", constraint=keras.constraints.NonNeg())
        return (x + offset + tf.cast(tf.reduce_sum(index), x.dtype)) * scale

    layer = offsets()
    np.testing.assert_allclose(layer(np.zeros((1, 2), "float32")), [[1.0, 1.0]])
    assert layer.trainable_weights == [layer.named_variables["scale"]]
    assert isinstance(layer.named_variables["scale"].constraint, keras.constraints.NonNeg)
    assert layer.named_variables["index"].dtype == "int32"
    assert layer.named_variables["offset"].trainable is False


def test_state_updates_assign_and_assign_sub_without_strategy():
    @keras_graft.layer
    def tracker(ctx, x):
        total = ctx.state("total", shape=(2,))
        last = ctx.state("last", aggregation="mean")
        total.assign_add(tf.reduce_sum(x, axis=0))
        total.assign_sub(tf.ones((2,)))
        last.assign(tf.reduce_mean(x))
        return x

    layer = tracker()
    layer(np.array([[1.0, 2.0], [3.0, 4.0]], "float32"))
    np.testing.assert_allclose(layer.named_variables["total"], [3.0, 5.0])
    assert layer.named_variables["last"].numpy() == 2.5


# --------------------------------------------------------------------------
# 7. Errors, raised at the line that caused them
# --------------------------------------------------------------------------
@keras_graft.layer
def strict_matmul(ctx, x, units=3):
    kernel = ctx.weight("kernel", (x.shape[-1], units))  # the line of the error
    return tf.matmul(x, kernel)


def _raising_line(excinfo, function_name):
    """The source line of the user function's frame in the traceback."""
    frames = [entry for entry in excinfo.traceback if entry.name == function_name]
    assert frames, [entry.name for entry in excinfo.traceback]
    return str(frames[-1].statement).strip()


def test_weight_requested_with_another_shape_later_is_a_clear_error():
    layer = strict_matmul(units=3)
    layer(np.ones((2, 5), "float32"))
    with pytest.raises(ValueError) as excinfo:
        layer(np.ones((2, 7), "float32"))
    message = str(excinfo.value)
    assert "weight 'kernel' was created with shape (5, 3), dtype float32" in message
    assert "built (on inputs of shape (2, 5))" in message
    assert "this call requests shape (7, 3)" in message
    assert "make a new layer for the new inputs" in message
    assert _raising_line(excinfo, "strict_matmul").startswith('kernel = ctx.weight("kernel"')


def test_variable_first_requested_after_build_is_a_clear_error():
    @keras_graft.layer
    def late(ctx, x):
        if ctx.training:
            x = x * ctx.weight("noise_scale", (), initializer="ones")
        return x

    layer = late()
    layer(np.ones((1, 2), "float32"))
    with pytest.raises(ValueError) as excinfo:
        layer(np.ones((1, 2), "float32"), training=True)
    assert "weight 'noise_scale' was not created when the layer was built" in str(excinfo.value)
    assert "outside any `if ctx.training:`" in str(excinfo.value)
    assert "ctx.weight(" in _raising_line(excinfo, "late")


def test_conflicting_requests_and_bad_arguments_are_clear_errors():
    @keras_graft.layer
    def twice(ctx, x):
        ctx.weight("w", (2,))
        ctx.weight("w", (3,))
        return x

    with pytest.raises(
        ValueError,
        match=r"weight 'w' is requested twice with different "
        r"arguments \(shape: \(2,\) then \(3,\)\)",
    ):
        twice()(np.ones((1, 2), "float32"))

    @keras_graft.layer
    def kinds(ctx, x):
        ctx.weight("v", (2,))
        ctx.state("v")
        return x

    with pytest.raises(ValueError, match="'v' is already a weight of this layer"):
        kinds()(np.ones((1, 2), "float32"))

    @keras_graft.layer
    def bad_state(ctx, x, aggregation="max", state_dtype="float32"):
        ctx.state("s", dtype=state_dtype, aggregation=aggregation)
        return x

    with pytest.raises(ValueError, match=r"aggregation='max' is not one of 'sum' \(the "):
        bad_state()(np.ones((1, 2), "float32"))
    with pytest.raises(ValueError, match="aggregation='mean' needs a floating dtype"):
        bad_state(aggregation="mean", state_dtype="int32")(np.ones((1, 2), "float32"))

    @keras_graft.layer
    def dynamic_shape(ctx, x):
        return x * ctx.weight("w", (tf.shape(x)[-1],))

    with pytest.raises(ValueError, match=r"use `x.shape\[-1\]`, not `tf.shape\(x\)\[-1\]`"):
        dynamic_shape()(np.ones((1, 2), "float32"))

    @keras_graft.layer
    def unknown_dim(ctx, x):
        return x * ctx.weight("w", (x.shape[-1],))

    inputs = keras.Input((None,))
    with pytest.raises(ValueError, match="fully-defined"):
        unknown_dim()(inputs)


def test_variables_created_outside_ctx_are_refused():
    @keras_graft.layer
    def hidden_dense(ctx, x, units=2):
        return keras.layers.Dense(units)(x)  # a new, untracked layer each call

    with pytest.raises(ValueError) as excinfo:
        hidden_dense()(np.ones((1, 3), "float32"))
    assert "created a variable (kernel) other than with ctx.weight or ctx.state" in str(excinfo.value)
    assert "return keras.layers.Dense(units)(x)" in _raising_line(excinfo, "hidden_dense")


# --------------------------------------------------------------------------
# 8. @loss and @metric
# --------------------------------------------------------------------------
def test_compiled_model_with_registered_loss_and_metric_reloads_compiled(tmp_path):
    assert keras_graft.loss is decorators.loss and keras_graft.metric is decorators.metric
    assert keras.saving.get_registered_name(log_cosh_loss) == "test_layers>log_cosh_loss"
    model = _counter_model()
    model.compile(optimizer="adam", loss=log_cosh_loss, metrics=[within_half])
    x, y = _data()
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    reloaded, _ = _save_load(model, tmp_path)
    assert reloaded.compiled
    assert reloaded.loss is log_cosh_loss
    assert reloaded.optimizer.iterations.numpy() == model.optimizer.iterations.numpy()
    expected = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    result = reloaded.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert set(result) == {"loss", "within_half"}
    assert result == pytest.approx(expected)
    reloaded.fit(x, y, epochs=1, batch_size=4, verbose=0)  # and keeps training


def test_loss_and_metric_decorators_check_the_signature():
    with pytest.raises(TypeError, match="decorates a function defined with `def`"):
        keras_graft.loss(lambda y_true, y_pred: y_pred)

    def one_argument(y):
        return y

    with pytest.raises(TypeError, match=r"one_argument must take \(y_true, y_pred\)"):
        keras_graft.metric(one_argument)

    def three_required(y_true, y_pred, weight):
        return y_pred

    with pytest.raises(TypeError, match="three_required must take"):
        keras_graft.loss(three_required)

    def with_option(y_true, y_pred, delta=1.0):
        return y_pred

    registered = keras_graft.loss(package="keras_graft_tests")(with_option)
    assert registered.__wrapped__ is with_option and registered.__name__ == "with_option"
    assert keras.saving.get_registered_object("keras_graft_tests>with_option") is registered


def test_unregistered_loss_in_a_loaded_file_is_a_clear_error(tmp_path):
    def squared_error(y_true, y_pred):  # not registered
        return tf.reduce_mean(tf.square(y_true - y_pred), axis=-1)

    model = _counter_model()
    model.compile(optimizer="adam", loss=squared_error)
    path = str(tmp_path / "unregistered.keras")
    model.save(path)
    with pytest.raises(
        keras_graft.errors.UnregisteredNameError,
        match="uses 'squared_error', which is not registered in this process",
    ):
        keras.saving.load_model(path)

    registered = keras_graft.loss(package="keras_graft_tests")(squared_error)
    assert keras.saving.load_model(path).loss is registered


# --------------------------------------------------------------------------
# 9. The examples
# --------------------------------------------------------------------------
def test_examples_build_models_from_the_seed_with_layer_functions():
    from keras_graft.examples import custom_matmul as example2
    from keras_graft.examples import sequence_counter as example3

    model = example2.build_model()
    assert [type(layer).__name__ for layer in model.layers] == ["InputLayer", "custom_matmul", "Dense"]
    assert model.layers[1].hyperparameters == {"units": 3}
    assert not model.compiled
    assert isinstance(model.layers[1], example2.custom_matmul)
    assert example2.custom_matmul.registered_name == "custom_matmul>custom_matmul"

    model = example3.build_model()
    assert [type(layer).__name__ for layer in model.layers] == ["InputLayer", "sequence_counter", "Dense"]
    assert model.input_shape == (None, 5)
    model(np.ones((2, 5), "float32"))
    assert example3.count(model) == 1
    assert example3.sequence_counter.registered_name == "sequence_counter>sequence_counter"


@pytest.mark.parametrize("name", ["custom_matmul", "sequence_counter"])
def test_example_main_trains_saves_and_reloads(name, capsys):
    module = importlib.import_module(f"keras_graft.examples.{name}")
    module.main()
    assert "reloaded in safe mode" in capsys.readouterr().out


# --------------------------------------------------------------------------
# Construction cost: the building call's output spec comes from the build trace
# --------------------------------------------------------------------------
@keras_graft.layer
def traced_scale(ctx, x, units=2):
    traced_scale.traces.append(ctx.training)
    kernel = ctx.weight("kernel", (x.shape[-1], units), initializer="ones")
    return tf.matmul(x, kernel)


traced_scale.traces = []


def test_building_call_traces_the_function_once():
    traced_scale.traces.clear()
    layer = traced_scale(units=3)
    y = layer(keras.Input((4,)))
    assert (y.shape, y.dtype) == ((None, 3), "float32")
    assert len(traced_scale.traces) == 1
    # Another call on other inputs, or in training, gets a trace of its own.
    assert layer(keras.Input((4,), batch_size=5)).shape == (5, 3)
    assert layer(keras.Input((4,)), training=True).shape == (None, 3)
    assert len(traced_scale.traces) == 3


def test_building_call_reuses_the_build_trace_with_the_call_s_dtypes(global_policy):
    global_policy("mixed_float16")
    traced_scale.traces.clear()
    y = traced_scale()(keras.Input((4,)))
    assert y.dtype == "float16" and len(traced_scale.traces) == 1
    integer = traced_scale(dtype="float32")
    with pytest.raises(Exception):  # matmul of int32 inputs and a float32 kernel
        integer(keras.Input((4,), dtype="int32"))


def test_masked_building_call_keeps_its_masks():
    ids = keras.Input((None,), dtype="int32")
    embedded = keras.layers.Embedding(5, 3, mask_zero=True)(ids)
    out = zero_masked()(embedded)
    assert out.shape == (None, None, 3)
    assert out._keras_mask is not None


@keras_graft.layer
def sums_unless_building(ctx, x):
    if ctx.building:
        return x
    return tf.reduce_sum(x, axis=-1, keepdims=True)


def test_a_function_that_reads_ctx_building_gets_the_call_s_own_output_spec():
    x = keras.Input((5,))
    y = sums_unless_building()(x)
    assert y.shape == (None, 1)
    assert keras.Model(x, y)(np.ones((2, 5), "float32")).shape == (2, 1)
