"""Checks of TF ops in Keras models on the JAX and torch backends.

Run by `test_backends.py` in a child process per backend (Keras fixes the
backend per process): `KERAS_BACKEND=jax python backend_checks.py DIR CHECK`.
`DIR` holds `model.keras` and `expected.npz`, saved on the TensorFlow backend
by `save_reference`; each CHECK prints one JSON line of findings.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import weakref

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_graft  # noqa: E402


@keras_graft.layer(package="backend_checks")
def scaled_matmul(ctx, x, units=4):
    kernel = ctx.weight("kernel", (x.shape[-1], units), initializer="glorot_uniform")
    calls = ctx.state("calls", dtype="int32")
    calls.assign_add(1)
    return tf.matmul(x, kernel)


@keras_graft.loss(package="backend_checks")
def log_cosh(y_true, y_pred):
    return tf.reduce_mean(tf.math.log(tf.cosh(y_pred - tf.cast(y_true, y_pred.dtype))), axis=-1)


def reference_model() -> keras.Model:
    """stft, abs, top_k, clip, bilinear resize and a weighted layer, Dense on top."""
    audio = keras.Input((400,), name="audio")
    spectrum = tf.abs(tf.signal.stft(audio, frame_length=64, frame_step=32))  # (None, 11, 33)
    values, indices = tf.math.top_k(spectrum, k=4)
    image = tf.image.resize(spectrum[..., tf.newaxis], [8, 16])  # bilinear
    features = tf.concat([tf.reshape(image, [-1, 128]), tf.reshape(values, [-1, 44])], axis=1)
    hidden = scaled_matmul(units=8, name="scaled")(tf.clip_by_value(features, -3.0, 3.0))
    output = keras.layers.Dense(1, name="head")(hidden)
    return keras.Model(audio, [output, indices])


def data(samples=6):
    return np.random.default_rng(0).normal(size=(samples, 400)).astype("float32")


def save_reference(directory) -> None:
    """On the TensorFlow backend: the model file and its predictions."""
    model = reference_model()
    model.save(os.path.join(directory, "model.keras"))
    output, indices = model.predict(data(), verbose=0)
    np.savez(os.path.join(directory, "expected.npz"), output=output, indices=indices)


def to_numpy(value):
    return np.asarray(keras.ops.convert_to_numpy(value))


class _MovedWeights(keras.callbacks.Callback):
    """The trainable weights that no training step changed. Compared per step, not
    over the whole fit: the sign of a saturated gradient (log_cosh's) can flip after
    an overshoot, and two steps of +lr and -lr bring a bias back to where it was."""

    def on_train_begin(self, logs=None):
        self._last = {w.path: to_numpy(w).copy() for w in self.model.trainable_weights}
        self._moved = set()

    def on_train_batch_end(self, batch, logs=None):
        for w in self.model.trainable_weights:  # `self.model` syncs JAX's state first
            now = to_numpy(w)
            if not np.array_equal(self._last[w.path], now):
                self._moved.add(w.path)
            self._last[w.path] = now.copy()

    def unchanged(self) -> list[str]:
        return [path for path in self._last if path not in self._moved]


def check_load_predict_fit(directory) -> dict:
    model = keras.models.load_model(os.path.join(directory, "model.keras"))
    expected = np.load(os.path.join(directory, "expected.npz"))
    output, indices = model.predict(data(), verbose=0)
    findings = {
        "max_abs_error": float(np.abs(to_numpy(output) - expected["output"]).max()),
        "indices_dtype": str(to_numpy(indices).dtype),
        "indices_equal": bool((to_numpy(indices) == expected["indices"]).all()),
    }
    trainable = keras.Model(model.input, model.outputs[0])
    trainable.compile("sgd", log_cosh)  # a @keras_graft.loss of TF ops
    moved = _MovedWeights()
    calls_before = int(to_numpy(model.get_layer("scaled").named_variables["calls"]))
    trainable.fit(data(), np.ones((6, 1)), batch_size=3, epochs=1, verbose=0, callbacks=[moved])
    findings["unchanged_weights"] = moved.unchanged()
    findings["calls_counted"] = (
        int(to_numpy(model.get_layer("scaled").named_variables["calls"])) - calls_before
    )
    return findings


GRADIENT_CASES = {
    # XLA compiles it: inlined into the JAX program.
    "xla": lambda v: tf.math.cumsum(tf.math.softplus(v), axis=1),
    # No XLA kernel (ResizeBicubic): JAX's callback path.
    "no_xla_kernel": lambda v: tf.image.resize(v, [9, 7], method="bicubic"),
    # XLA's kernels choose other signs of singular vectors and eigenvectors
    # than TF's: JAX's callback path too, so that the values are TF's.
    "xla_differs": lambda v: (
        tf.linalg.svd(v[..., 0])[1]
        + tf.linalg.eigh(v[..., 0] + tf.linalg.matrix_transpose(v[..., 0]))[1]
        + 1.0
    ),
}


def check_gradients(directory) -> dict:
    """Input gradients through both kinds of op, against TensorFlow's own."""
    images = np.random.default_rng(1).normal(size=(2, 5, 5, 1)).astype("float32")
    findings = {}
    for name, function in GRADIENT_CASES.items():
        x = keras.Input((5, 5, 1))
        model = keras.Model(x, function(x))
        with tf.GradientTape() as tape:
            source = tf.constant(images)
            tape.watch(source)
            loss = tf.reduce_sum(tf.square(function(source)))
        expected = tape.gradient(loss, source).numpy()
        findings[name] = float(np.abs(_backend_gradient(model, images) - expected).max())
    return findings


def _backend_gradient(model, images):
    if keras.backend.backend() == "jax":
        import jax

        return np.asarray(jax.jit(jax.grad(lambda v: (model(v) ** 2).sum()))(images))
    import torch

    source = torch.tensor(images, requires_grad=True)
    (model(source) ** 2).sum().backward()
    return source.grad.numpy()


def check_lowering(directory) -> dict:
    """JAX: which ops compile into the program, which go through a callback."""
    import jax

    findings = {}
    for name, function in (
        ("clip", lambda v: tf.clip_by_value(v, -0.5, 0.5)),
        ("bicubic", lambda v: tf.image.resize(v, [9, 7], method="bicubic")),
        ("svd", lambda v: tf.linalg.svd(v[..., 0])[1]),
    ):
        x = keras.Input((5, 5, 1))
        model = keras.Model(x, function(x))
        text = jax.jit(model).lower(np.zeros((2, 5, 5, 1), "float32")).as_text()
        findings[name] = "callback" in text
    return findings


_CALLBACK_THREADS: list[str] = []


def _record_thread(value):
    # The kernel's OS thread name (Linux): TensorFlow names its pools' threads "tf_...".
    with open("/proc/thread-self/comm") as comm:
        _CALLBACK_THREADS.append(comm.read().strip())
    return value


@keras_graft.op(package="backend_checks")
def thread_recording_identity(x):
    """`x`, noting the thread TF runs the op on: `tf.numpy_function` has no XLA
    kernel, so on JAX it takes the callback path."""
    y = tf.numpy_function(_record_thread, [x], x.dtype, stateful=False)
    y.set_shape(x.shape)
    return y


def check_callback_thread(directory) -> dict:
    """JAX: which thread runs the callback path's TF function (not TF's own
    inter-op pool: handing each call to it cost most of a crossing)."""
    x = keras.Input((3,))
    model = keras.Model(x, thread_recording_identity(x))
    values = np.arange(6, dtype="float32").reshape(2, 3)
    same = bool(np.array_equal(model.predict_on_batch(values), values))
    return {"same_values": same, "threads": sorted(set(_CALLBACK_THREADS))}


def check_refusals(directory) -> dict:
    """Each op a backend cannot run is refused where the model is built."""
    cases = {
        "string": lambda: tf.strings.length(keras.Input((), dtype="string")),
        "ragged": lambda: tf.ragged.range(keras.Input(batch_shape=(3,), dtype="int32")),
        "int64": lambda: tf.math.argmax(keras.Input((4,)), axis=-1),
        "value_dependent_shape": lambda: tf.unique(keras.Input(batch_shape=(5,))).y,
        # Keras marks `x * 4.0` sparse; it is not, and builds.
        "keras_marked_sparse": lambda: tf.math.round(keras.Input((4,)) * 4.0),
    }
    if keras.backend.backend() == "jax":  # torch has no sparse Keras inputs at all
        cases["sparse"] = lambda: tf.math.round(keras.Input((4,), sparse=True))
    findings = {}
    for name, build in cases.items():
        try:
            build()
            findings[name] = "built"
        except keras_graft.OpTraceError as error:
            findings[name] = str(error)
    return findings


def check_torch_memory_layout(directory) -> dict:
    """torch: views that are not contiguous or not 64-byte aligned cross safely."""
    import torch

    x = keras.Input((3,))
    model = keras.Model(x, tf.math.cumsum(x, axis=-1))
    base = torch.arange(40, dtype=torch.float32).reshape(10, 4)
    unaligned = base[1:, 1:]  # offset by 5 floats: neither contiguous nor aligned
    result = model(unaligned)
    expected = np.cumsum(unaligned.numpy(), axis=-1)
    flags = keras.Input((3,), dtype="bool")
    flag_model = keras.Model(flags, tf.math.logical_not(flags))
    flipped = flag_model(torch.tensor([[True, False, True]]))
    return {
        "max_abs_error": float(np.abs(result.detach().numpy() - expected).max()),
        "bool": flipped.numpy().tolist(),
    }


def check_unsupported_differentiation(directory) -> dict:
    """What differentiation cannot go through TF ops says so."""
    x = keras.Input((4,))
    model = keras.Model(x, tf.math.softplus(x))
    findings = {"layer": model.layers[-1].name}
    if keras.backend.backend() == "torch":
        import torch

        source = torch.randn(2, 4, requires_grad=True)
        findings["double_backward"] = _error_of(
            lambda: torch.autograd.grad(model(source).sum(), source, create_graph=True)
        )
        output = model(source).sum()
        output.backward(retain_graph=True)
        first = source.grad.clone()
        findings["second_backward"] = _error_of(lambda: output.backward())
        findings["second_backward_adds_the_same_gradient"] = bool(torch.allclose(source.grad, 2 * first))
    else:
        import jax
        import jax.numpy as jnp

        images = keras.Input((4, 4, 1))
        callback_model = keras.Model(images, tf.image.resize(images, [6, 6], method="bicubic"))
        value = jnp.ones((1, 4, 4, 1))
        findings["jvp"] = _error_of(lambda: jax.jvp(callback_model, (value,), (value,)))
        findings["vmap_callback"] = _error_of(lambda: jax.vmap(callback_model)(jnp.ones((2, 1, 4, 4, 1))))
        findings["vmap_xla"] = _error_of(lambda: jax.vmap(model)(jnp.ones((2, 3, 4))))
    return findings


@keras_graft.layer(package="backend_checks")
def tanh_matmul(ctx, x, units=8):
    kernel = ctx.weight("kernel", (x.shape[-1], units), initializer="glorot_uniform")
    return tf.math.tanh(tf.matmul(x, kernel))


def distributed_model() -> keras.Model:
    """TF ops on JAX's XLA path, one on its callback path, and a
    `@keras_graft.layer` weight, between Dense layers."""
    keras.utils.set_random_seed(1)
    x = keras.Input((16,))
    hidden = tf.clip_by_value(tf.math.softplus(keras.layers.Dense(32, name="first")(x)), 0.0, 3.0)
    image = tf.image.resize(tf.reshape(hidden, [-1, 4, 8, 1]), [6, 8], method="bicubic")
    hidden = tanh_matmul(units=8, name="tanh_matmul")(tf.reshape(image, [-1, 48]))
    model = keras.Model(x, keras.layers.Dense(1, name="head")(hidden))
    model.compile(keras.optimizers.SGD(0.1), "mse")
    return model


def _distributions():
    import jax

    devices = jax.devices()
    mesh = keras.distribution.DeviceMesh((1, len(devices)), ("batch", "model"), devices=devices)
    layouts = keras.distribution.LayoutMap(mesh)
    layouts["first/kernel"] = (None, "model")
    layouts["first/bias"] = ("model",)
    layouts["tanh_matmul/kernel"] = (None, "model")
    return {
        "data_parallel": keras.distribution.DataParallel(devices=devices),
        "model_parallel": keras.distribution.ModelParallel(layout_map=layouts, batch_dim_name="batch"),
    }


def check_keras_distribution(directory) -> dict:
    """JAX over 2 CPU devices (`XLA_FLAGS`): the same training steps under
    DataParallel and ModelParallel as on one device; ctx.state refused."""
    import jax

    rng = np.random.default_rng(0)
    features = rng.normal(size=(32, 16)).astype("float32")
    targets = rng.normal(size=(32, 1)).astype("float32")
    single = distributed_model()
    initial = single.get_weights()
    single.fit(features, targets, batch_size=8, epochs=1, shuffle=False, verbose=0)
    expected = single.get_weights()
    scale = max(float(np.abs(a - b).max()) for a, b in zip(expected, initial))
    findings = {"devices": len(jax.devices())}
    for name, distribution in _distributions().items():
        keras.distribution.set_distribution(distribution)
        try:
            model = distributed_model()
            model.set_weights(initial)
            model.fit(features, targets, batch_size=8, epochs=1, shuffle=False, verbose=0)
            found = model.get_weights()
            findings[name] = {
                "error_of_update": max(float(np.abs(a - b).max()) for a, b in zip(found, expected)) / scale,
                "devices_holding_weights": sorted(
                    {len(w.value.sharding.device_set) for w in model.trainable_weights}
                ),
                "sharded": sorted(
                    w.path for w in model.trainable_weights if not w.value.sharding.is_fully_replicated
                ),
            }
            findings[f"state_at_build_{name}"] = _error_of(lambda: scaled_matmul(units=2)(keras.Input((4,))))
        finally:
            keras.distribution.set_distribution(None)
    # A model built before the distribution was set: refused where it is called.
    loaded = keras.models.load_model(os.path.join(directory, "model.keras"))
    keras.distribution.set_distribution(_distributions()["data_parallel"])
    try:
        findings["state_at_call"] = _error_of(lambda: loaded.predict(data(), verbose=0))
    finally:
        keras.distribution.set_distribution(None)
    return findings


def check_random_ops(directory) -> dict:
    """A gradient through TF's random ops: from the forward pass's own draws
    (torch), or refused naming the layer (JAX, which would draw again)."""
    x = keras.Input((64,))
    dropped = tf.nn.dropout(x, rate=0.5)
    model = keras.Model(x, dropped)
    values = np.ones((2, 64), "float32")
    if keras.backend.backend() == "jax":
        import jax

        return {"error": _error_of(lambda: jax.grad(lambda v: model(v).sum())(values))}
    import torch

    source = torch.tensor(values, requires_grad=True)
    output = model(source)
    output.sum().backward()
    return {
        "gradient_is_the_forward_mask": bool(torch.equal(source.grad, output.detach())),
        "kept": int((output != 0).sum()),
    }


def check_torch_compile(directory) -> dict:
    """torch: `jit_compile=True` (torch.compile) trains through the bridge,
    which dynamo skips, and does not recompile on later steps."""
    import torch._dynamo

    x = keras.Input((8,))
    model = keras.Model(x, keras.layers.Dense(1)(tf.math.softplus(keras.layers.Dense(4)(x))))
    model.compile("sgd", "mse", jit_compile=True)
    features = np.random.default_rng(2).normal(size=(16, 8)).astype("float32")
    model.fit(features, np.ones((16, 1)), batch_size=8, epochs=1, verbose=0)
    compiled = dict(torch._dynamo.utils.counters["stats"]).get("unique_graphs", 0)
    history = model.fit(features, np.ones((16, 1)), batch_size=8, epochs=3, verbose=0)
    return {
        "graphs_after_first_epoch": compiled,
        "graphs_after_three_more": dict(torch._dynamo.utils.counters["stats"]).get("unique_graphs", 0),
        "loss_finite": bool(np.isfinite(history.history["loss"]).all()),
    }


class _DoubleInPlace(keras.layers.Layer):
    """torch: doubles its input in place (the tensor an op layer returned)."""

    def call(self, x):
        return x.mul_(2.0)


def check_torch_fused_chains(directory) -> dict:
    """torch: consecutive op layers take one TF gradient call per chain (an
    op layer whose output also leaves the chain keeps its own), with the
    gradients of one call per op layer; an op layer's output changed in
    place since is not fused past."""
    import torch

    from keras_graft.backends import torch_bridge

    x = keras.Input((8,))
    a = tf.nn.relu(keras.layers.Dense(8)(x))
    chain = tf.clip_by_value(tf.add(tf.sin(a), tf.square(a)), -1.0, 1.0)
    model = keras.Model(x, keras.layers.Dense(1)(keras.layers.Concatenate()([chain, a])))
    inputs = torch.tensor(np.random.default_rng(0).normal(size=(4, 8)).astype("float32"))
    calls = []  # whether each TF gradient call ran in the calling thread
    call_concrete_flat = torch_bridge._compat.call_concrete_flat

    def counted(concrete, tensors, on_calling_thread=False):
        calls.append(on_calling_thread)
        return call_concrete_flat(concrete, tensors, on_calling_thread=on_calling_thread)

    def gradients(max_chain, model=model):
        torch_bridge._MAX_CHAIN = max_chain
        inputs.grad = None
        for v in model.trainable_variables:
            v.value.grad = None
        calls.clear()
        model(inputs).sum().backward()
        return [v.value.grad.numpy().copy() for v in model.trainable_variables], len(calls)

    def freed_without_the_cycle_collector() -> bool:
        """Whether an op layer's call (its node) goes with its last tensor."""
        gc.disable()
        try:
            out = model.layers[2](model.layers[1](inputs))  # Dense, then relu: one node
            node = weakref.ref(getattr(out, torch_bridge._LINK)[0])
            out.sum().backward()
            del out
            return node() is None
        finally:
            gc.enable()

    matrices = keras.Input((3, 3))  # expm's loops and branches, on the calling thread too
    loops = keras.Model(matrices, tf.linalg.expm(keras.layers.Dense(3)(matrices)))

    v = keras.Input((8,))
    in_place = keras.Model(v, tf.sin(_DoubleInPlace()(tf.nn.relu(keras.layers.Dense(8)(v)))))
    torch_bridge._compat.call_concrete_flat = counted
    try:
        (fused, fused_calls), (one_each, one_each_calls) = gradients(16), gradients(1)
        (in_place_grads, in_place_calls), (in_place_one_each, _) = (
            gradients(16, in_place),
            gradients(1, in_place),
        )
        gradients(16)
        in_caller_thread = list(calls)
        freed = freed_without_the_cycle_collector()
        inputs = torch.tensor(np.random.default_rng(1).normal(size=(2, 3, 3)).astype("float32") / 4)
        loop_grads, _ = gradients(16, loops)
        loops_in_caller_thread = list(calls)
    finally:
        torch_bridge._compat.call_concrete_flat = call_concrete_flat
        torch_bridge._MAX_CHAIN = 16
    return {
        "fused_calls": fused_calls,
        "one_each_calls": one_each_calls,
        "max_difference": max(float(np.abs(f - o).max()) for f, o in zip(fused, one_each)),
        "in_caller_thread": in_caller_thread,
        "loops_in_caller_thread": loops_in_caller_thread,
        "loop_gradients_finite": all(bool(np.isfinite(g).all()) for g in loop_grads),
        "freed_without_the_cycle_collector": freed,
        "in_place_calls": in_place_calls,
        "in_place_max_difference": max(
            float(np.abs(f - o).max()) for f, o in zip(in_place_grads, in_place_one_each)
        ),
    }


def _error_of(function) -> str:
    try:
        function()
    except Exception as error:  # The message is the finding.
        return f"{type(error).__name__}: {error}"
    return "no error"


CHECKS = {
    "load_predict_fit": check_load_predict_fit,
    "gradients": check_gradients,
    "lowering": check_lowering,
    "callback_thread": check_callback_thread,
    "refusals": check_refusals,
    "torch_memory_layout": check_torch_memory_layout,
    "unsupported_differentiation": check_unsupported_differentiation,
    "keras_distribution": check_keras_distribution,
    "torch_compile": check_torch_compile,
    "random_ops": check_random_ops,
    "torch_fused_chains": check_torch_fused_chains,
}


if __name__ == "__main__":
    directory, *names = sys.argv[1:]
    if names == ["save_reference"]:
        save_reference(directory)
    else:
        print(json.dumps({name: CHECKS[name](directory) for name in names}))
