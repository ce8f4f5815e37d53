"""Keras 2 model files for the tests, written by tf_keras in a child process.

Run as a script with `TF_USE_LEGACY_KERAS=1`, it builds every model below with
tf_keras (Keras 2), saves each as `NAME.h5` (some also as a tf_keras
`NAME.keras` and a SavedModel directory `NAME_savedmodel`), and stores its inputs and
tf_keras's predictions in `NAME.npz`. `generate(directory)` runs it once per
test session (shared by pytest-xdist workers) and returns the directory.

`MODELS` are op-heavy models and real architectures; `LAYERS` holds one model
per built-in layer with non-default arguments, the systematic source of the
Keras 2 -> 3 config-difference table (`keras_graft.keras2.layer_configs`).
`FEATURES` are front ends on a 1-D waveform (predicted in one batch), and
`LOSSY` models Keras 2 saves without part of an op call (their weights also
alone, with `save_weights` to the `.h5` layout, as `NAME_weights.h5`).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

DONE = "done"


def _rng():
    return np.random.default_rng(7)


# --------------------------------------------------------------------------
# Op-heavy models. Each takes the tf_keras module and TensorFlow and returns
# (model, inputs).
# --------------------------------------------------------------------------


def ops(keras, tf):
    """Constants, tensors in lists and kwargs, slicing, operators, multi-output ops."""
    x = keras.Input((6,), name="x")
    c = keras.Input((6,), dtype="bool", name="c")
    n = keras.Input((), dtype="int32", name="n")
    h = keras.layers.Dense(6)(x)
    a = tf.math.multiply(h, y=2.0)  # keyword constant
    b = tf.clip_by_value(a, -1.0, 1.0)  # positional constants
    joined = tf.concat([a, b], 1)  # tensors in a list
    chosen = tf.where(c, x, a)  # tensors in kwargs
    inverted = tf.math.subtract(1.0, x)  # a constant first argument
    columns = x[:, 1:3]  # slices
    expanded = x[..., tf.newaxis]  # Ellipsis and tf.newaxis
    prefix = x[:, : n[0]]  # a tensor inside a slice
    top = tf.math.top_k(h, k=2)  # two outputs
    shifted = x + 3.0  # tf.__operators__.add
    mean = tf.reduce_mean(tf.nn.softmax(joined, axis=-1), axis=[1], keepdims=True)
    indices = tf.cast(top.indices, tf.float32)
    outputs = [joined, chosen, inverted, columns, expanded, prefix, top.values, indices, shifted, mean]
    model = keras.Model([x, c, n], outputs)
    rng = _rng()
    inputs = [
        rng.normal(size=(3, 6)).astype("float32"),
        rng.random((3, 6)) > 0.5,
        np.full((3,), 4, "int32"),
    ]
    return model, inputs


def shared_op(keras, tf):
    """One op layer called twice, with different constants."""
    x = keras.Input((4,))
    doubled = tf.math.multiply(x, 2.0)
    layer = doubled._keras_history.layer
    tripled = layer(doubled, y=3.0)
    return keras.Model(x, [doubled, tripled, tf.math.add(doubled, tripled)]), [
        _rng().normal(size=(2, 4)).astype("float32")
    ]


def _inner(keras, tf, name):
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(4)(inputs)
    return keras.Model(inputs, tf.nn.relu(hidden) * 2.0, name=name)


def nested(keras, tf):
    """A model with op layers, called twice inside a model with op layers."""
    inner = _inner(keras, tf, "inner")
    x = keras.Input((4,))
    joined = tf.concat([inner(x), inner(tf.math.negative(x))], axis=-1)
    return keras.Model(x, tf.math.reduce_sum(joined, axis=-1)), [_rng().normal(size=(3, 4)).astype("float32")]


def sequential(keras, tf):
    """A Sequential model holding a functional model with op layers."""
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(4),
            _inner(keras, tf, "inner_ops"),
            keras.layers.Dense(2),
        ]
    )
    return model, [_rng().normal(size=(3, 4)).astype("float32")]


def transformer(keras, tf):
    """The encoder block of "Attention Is All You Need" (Vaswani et al., 2017).

    Written, as TensorFlow's Keras 2 Transformer tutorial did, with TF ops on
    Keras tensors: `tf.shape`, `tf.reshape`, `tf.transpose`, `tf.matmul`,
    `tf.nn.softmax`, and a padding mask.
    """
    d_model, heads, length = 16, 4, 8
    tokens = keras.Input((length,), dtype="int32")
    x = keras.layers.Embedding(50, d_model)(tokens)
    x = x * tf.math.sqrt(tf.cast(d_model, tf.float32))
    x = x + keras.layers.Embedding(length, d_model)(tf.range(tf.shape(tokens)[1]))

    def split_heads(t):
        t = tf.reshape(t, (tf.shape(t)[0], -1, heads, d_model // heads))
        return tf.transpose(t, perm=[0, 2, 1, 3])

    q, k, v = (split_heads(keras.layers.Dense(d_model)(x)) for _ in range(3))
    logits = tf.matmul(q, k, transpose_b=True) / tf.math.sqrt(tf.cast(tf.shape(k)[-1], tf.float32))
    padding = tf.cast(tf.math.equal(tokens, 0), tf.float32)[:, tf.newaxis, tf.newaxis, :]
    weights = tf.nn.softmax(logits + padding * -1e9, axis=-1)
    attended = tf.transpose(tf.matmul(weights, v), perm=[0, 2, 1, 3])
    attended = tf.reshape(attended, (tf.shape(x)[0], -1, d_model))
    x = keras.layers.LayerNormalization(epsilon=1e-6)(x + keras.layers.Dense(d_model)(attended))
    ffn = keras.layers.Dense(d_model)(keras.layers.Dense(32, activation="relu")(x))
    x = keras.layers.LayerNormalization(epsilon=1e-6)(x + ffn)
    probabilities = keras.layers.Dense(3, activation="softmax")(tf.reduce_mean(x, axis=1))
    model = keras.Model(tokens, probabilities)
    ids = _rng().integers(1, 50, size=(4, length)).astype("int32")
    ids[:, -2:] = 0
    return model, [ids]


def mobilenet_v3(keras, tf):
    """`MobileNetV3Small` (Howard et al., 2019) from tf_keras.applications.

    Its hard-swish is `x + 3.0` and `* (1 / 6)` on Keras tensors (op layers);
    its depthwise convolutions carry Keras 2's `groups: 1`; its layer names
    hold `/`.
    """
    model = keras.applications.MobileNetV3Small(weights=None, input_shape=(64, 64, 3))
    return model, [(_rng().random((2, 64, 64, 3)) * 255).astype("float32")]


MODELS = {f.__name__: f for f in (ops, shared_op, nested, sequential, transformer, mobilenet_v3)}


def audio_features(keras, tf):
    """The log-mel patch front end of YAMNet (Plakal and Ellis, 2020), the way its
    Keras 2 feature code builds it on a 1-D waveform input.

    The waveform is padded to whole patches with shape arithmetic on Keras
    tensors (`tf.shape`, constant tensors minus Keras tensors, a Keras tensor
    inside the `tf.pad` list), turned into an STFT magnitude twice (`tf.signal.stft`,
    and TFLite's way: framing, a Hann window and DFT matmuls with 512x257 NumPy
    matrices), mapped to 64 mel bands by a 257x64 matrix and framed into
    patches. Keras 2 stores each constant matrix as nested lists of floats.
    """
    import numpy as np

    rate, window, hop, fft_length = 16000, 400, 160, 512
    patch_window, patch_hop = 96, 48
    waveform = keras.Input(batch_shape=(None,), dtype="float32")
    minimum = tf.cast((0.96 + 0.025 - 0.010) * rate, tf.int32)
    samples = tf.shape(waveform)[-1]
    padding = tf.maximum(0, minimum - samples)
    after_first = tf.maximum(samples, minimum) - minimum
    hop_samples = tf.cast(0.48 * rate, tf.int32)
    hops = tf.cast(
        tf.math.ceil(tf.cast(after_first, tf.float32) / tf.cast(hop_samples, tf.float32)), tf.int32
    )
    padding += hop_samples * hops - after_first
    pads = [[0, 0] for _ in range(len(waveform.shape))]
    pads[-1][-1] = padding
    padded = tf.pad(waveform, pads, mode="CONSTANT", constant_values=0.0)

    magnitude = tf.abs(tf.signal.stft(padded, frame_length=window, frame_step=hop, fft_length=fft_length))
    frames = tf.signal.frame(padded, window, hop)
    hann = np.float32(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(0, 1.0, 1.0 / window)))
    windowed = frames * tf.reshape(tf.constant(hann), [1, window])
    dft = np.exp(2j * np.pi / fft_length * np.outer(np.arange(fft_length), np.arange(fft_length)))
    kept = dft[: fft_length // 2 + 1, :].transpose()
    half = (fft_length - tf.shape(windowed)[-1]) // 2
    framed = tf.pad(windowed, [[0, 0], [half, fft_length - tf.shape(windowed)[-1] - half]])
    real = tf.matmul(framed, np.real(kept).astype("float32"))
    imaginary = tf.matmul(framed, np.imag(kept).astype("float32"))
    tflite_magnitude = tf.sqrt(tf.add(real * real, imaginary * imaginary))

    mel_matrix = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=64,
        num_spectrogram_bins=fft_length // 2 + 1,
        sample_rate=rate,
        lower_edge_hertz=125.0,
        upper_edge_hertz=7500.0,
    )
    outputs = []
    for spectrum in (magnitude, tflite_magnitude):
        log_mel = tf.math.log(tf.matmul(spectrum, mel_matrix) + 0.001)
        outputs += [log_mel, tf.signal.frame(log_mel, patch_window, patch_hop, axis=-2)]
    model = keras.Model(waveform, outputs)
    return model, [np.sin(np.arange(17000) / 7.0).astype("float32") * 0.3]


FEATURES = {f.__name__: f for f in (audio_features,)}


def einsum_attention(keras, tf):
    """Attention scores with `tf.einsum`, which Keras 2 saves without its operands."""
    x = keras.Input((5, 8))
    query, key = keras.layers.Dense(8)(x), keras.layers.Dense(8)(x)
    weights = tf.nn.softmax(tf.einsum("bij,bkj->bik", query, key) / 8**0.5)
    outputs = keras.layers.Dense(3)(tf.einsum("bik,bkj->bij", weights, x))
    return keras.Model(x, outputs), [_rng().normal(size=(2, 5, 8)).astype("float32")]


LOSSY = {f.__name__: f for f in (einsum_attention,)}

# Models also written as tf_keras `.keras` files (which cannot hold `ops`:
# tf_keras refuses to serialize its Ellipsis) and as SavedModel directories.
KERAS_ZIP_MODELS = ("nested", "sequential", "transformer")
SAVED_MODELS = ("ops", "nested", "sequential", "transformer")


def subclassed(keras, tf):
    """A subclassed model: its SavedModel keeps no config to rebuild it from."""

    class Doubler(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x) * 2.0

    model = Doubler()
    inputs = [_rng().normal(size=(2, 3)).astype("float32")]
    model(inputs[0])
    return model, inputs


# --------------------------------------------------------------------------
# One model per built-in layer, with non-default arguments: (input shape,
# input dtype, function of the tf_keras layers module returning the layer).
# --------------------------------------------------------------------------

LAYERS = {
    "Dense": ((4,), "float32", lambda L: L.Dense(3, activation="relu", use_bias=False)),
    "EinsumDense": ((4,), "float32", lambda L: L.EinsumDense("ab,bc->ac", output_shape=3, bias_axes="c")),
    "Conv1D": ((8, 2), "float32", lambda L: L.Conv1D(4, 3, strides=2, padding="causal", groups=2)),
    "Conv2D": ((8, 8, 2), "float32", lambda L: L.Conv2D(4, 3, groups=2, padding="same")),
    "Conv3D": ((4, 4, 4, 2), "float32", lambda L: L.Conv3D(2, 2, groups=2)),
    "Conv1DTranspose": ((8, 2), "float32", lambda L: L.Conv1DTranspose(3, 3, strides=2, output_padding=1)),
    "Conv2DTranspose": ((8, 8, 2), "float32", lambda L: L.Conv2DTranspose(3, 3, strides=2, output_padding=1)),
    "Conv3DTranspose": ((4, 4, 4, 2), "float32", lambda L: L.Conv3DTranspose(3, 2, strides=2)),
    "DepthwiseConv1D": ((8, 2), "float32", lambda L: L.DepthwiseConv1D(3, depth_multiplier=2)),
    "DepthwiseConv2D": ((8, 8, 2), "float32", lambda L: L.DepthwiseConv2D(3, depth_multiplier=2)),
    "SeparableConv1D": ((8, 2), "float32", lambda L: L.SeparableConv1D(3, 3, depth_multiplier=2)),
    "SeparableConv2D": ((8, 8, 2), "float32", lambda L: L.SeparableConv2D(3, 3, depth_multiplier=2)),
    "BatchNormalization": (
        (4,),
        "float32",
        lambda L: L.BatchNormalization(momentum=0.9, epsilon=1e-2, center=False),
    ),
    "BatchNormalizationRenorm": ((4,), "float32", lambda L: L.BatchNormalization(renorm=True)),
    "BatchNormalizationGhost": ((4,), "float32", lambda L: L.BatchNormalization(virtual_batch_size=2)),
    "LayerNormalization": ((2, 3, 4), "float32", lambda L: L.LayerNormalization(axis=[1, 3], epsilon=1e-4)),
    "GroupNormalization": ((8, 4), "float32", lambda L: L.GroupNormalization(groups=2)),
    "UnitNormalization": ((4,), "float32", lambda L: L.UnitNormalization()),
    "Embedding": ((5,), "int32", lambda L: L.Embedding(10, 3, mask_zero=True, input_length=5)),
    "LSTM": ((5, 3), "float32", lambda L: L.LSTM(4, return_sequences=True)),
    "GRU": ((5, 3), "float32", lambda L: L.GRU(4, reset_after=False)),
    "SimpleRNN": ((5, 3), "float32", lambda L: L.SimpleRNN(4, go_backwards=True)),
    "Bidirectional": (
        (5, 3),
        "float32",
        lambda L: L.Bidirectional(L.LSTM(2, return_sequences=True), merge_mode="sum"),
    ),
    "ConvLSTM1D": ((3, 5, 2), "float32", lambda L: L.ConvLSTM1D(2, 3)),
    "TimeDistributed": ((5, 3), "float32", lambda L: L.TimeDistributed(L.Dense(2))),
    "Dropout": ((4,), "float32", lambda L: L.Dropout(0.3, noise_shape=(None, 1), seed=1)),
    "SpatialDropout1D": ((5, 4), "float32", lambda L: L.SpatialDropout1D(0.2)),
    "GaussianNoise": ((4,), "float32", lambda L: L.GaussianNoise(0.1, seed=1)),
    "AlphaDropout": ((4,), "float32", lambda L: L.AlphaDropout(0.1)),
    "ActivityRegularization": ((4,), "float32", lambda L: L.ActivityRegularization(l1=0.1)),
    "Activation": ((4,), "float32", lambda L: L.Activation("gelu")),
    "ReLU": ((4,), "float32", lambda L: L.ReLU(max_value=6.0, negative_slope=0.1, threshold=0.5)),
    "LeakyReLU": ((4,), "float32", lambda L: L.LeakyReLU(alpha=0.2)),
    "PReLU": ((4,), "float32", lambda L: L.PReLU()),
    "ELU": ((4,), "float32", lambda L: L.ELU(alpha=0.5)),
    "ThresholdedReLU": ((4,), "float32", lambda L: L.ThresholdedReLU(theta=0.5)),
    "Softmax": ((4,), "float32", lambda L: L.Softmax(axis=-1)),
    "Reshape": ((4,), "float32", lambda L: L.Reshape((2, 2))),
    "Permute": ((2, 3), "float32", lambda L: L.Permute((2, 1))),
    "Cropping2D": ((6, 6, 2), "float32", lambda L: L.Cropping2D(((1, 2), (0, 1)))),
    "UpSampling2D": ((4, 4, 2), "float32", lambda L: L.UpSampling2D(2, interpolation="bilinear")),
    "MaxPooling2D": ((6, 6, 2), "float32", lambda L: L.MaxPooling2D(2, strides=1)),
    "AveragePooling2D": ((6, 6, 2), "float32", lambda L: L.AveragePooling2D(3, padding="same")),
    "GlobalAveragePooling1D": ((6, 2), "float32", lambda L: L.GlobalAveragePooling1D(keepdims=True)),
    "MultiHeadAttention": ((5, 4), "float32", None),
    "Attention": ((5, 4), "float32", None),
    "Rescaling": ((4,), "float32", lambda L: L.Rescaling(0.5, offset=1.0)),
    "Normalization": (
        (4,),
        "float32",
        lambda L: L.Normalization(mean=[1.0, 2, 3, 4], variance=[1.0, 2, 3, 4]),
    ),
    "Resizing": (
        (8, 8, 3),
        "float32",
        lambda L: L.Resizing(4, 4, interpolation="nearest", crop_to_aspect_ratio=True),
    ),
    "RandomFlip": ((8, 8, 3), "float32", lambda L: L.RandomFlip("horizontal", seed=1)),
    "RandomRotation": ((8, 8, 3), "float32", lambda L: L.RandomRotation(0.1, seed=1)),
    "CategoryEncoding": ((3,), "int32", lambda L: L.CategoryEncoding(num_tokens=5, output_mode="count")),
    "Hashing": ((3,), "int32", lambda L: L.Hashing(num_bins=4, salt=7)),
    "Discretization": ((3,), "float32", lambda L: L.Discretization(bin_boundaries=[0.0, 1.0])),
    "Masking": ((5, 3), "float32", lambda L: L.Masking(mask_value=1.0)),
    "Lambda": ((4,), "float32", lambda L: L.Lambda(lambda x: x * 2)),
}


def _layer_model(keras, name):
    shape, dtype, make = LAYERS[name]
    x = keras.Input(shape, dtype=dtype)
    if name == "MultiHeadAttention":
        y = keras.layers.MultiHeadAttention(2, 3, value_dim=2, dropout=0.1)(x, x)
    elif name == "Attention":
        y = keras.layers.Attention(use_scale=True, dropout=0.1)([x, x])
    else:
        y = make(keras.layers)(x)
    rng = _rng()
    if dtype == "int32":
        value = rng.integers(0, 4, size=(3, *shape)).astype(dtype)
    else:
        value = rng.normal(size=(3, *shape)).astype(dtype)
    return keras.Model(x, y), [value]


def write_all(directory: Path) -> None:
    """Builds every model with tf_keras and writes its files (in the child)."""
    import tensorflow as tf
    import tf_keras as keras

    builds = {
        name: lambda build=build: build(keras, tf) for name, build in {**MODELS, **FEATURES, **LOSSY}.items()
    }
    (directory / "layers").mkdir(parents=True, exist_ok=True)
    for name in LAYERS:
        builds[f"layers/{name}"] = lambda name=name: _layer_model(keras, name)
    for name, build in builds.items():
        keras.backend.clear_session()
        model, inputs = build()
        model.save(directory / f"{name}.h5")
        if name in KERAS_ZIP_MODELS:
            model.save(directory / f"{name}.keras")
        if name in SAVED_MODELS:
            model.save(directory / f"{name}_savedmodel", save_format="tf")
        if name in LOSSY:
            model.save_weights(directory / f"{name}_weights.h5")
        # One batch: a waveform's samples are its first axis.
        outputs = model.predict(
            inputs if len(inputs) > 1 else inputs[0], batch_size=len(inputs[0]), verbose=0
        )
        outputs = outputs if isinstance(outputs, list) else [outputs]
        np.savez(
            directory / f"{name}.npz",
            **{f"input_{i}": v for i, v in enumerate(inputs)},
            **{f"output_{i}": np.asarray(v) for i, v in enumerate(outputs)},
        )
    keras.backend.clear_session()
    model, _ = subclassed(keras, tf)
    model.save(directory / "subclassed_savedmodel", save_format="tf")


def read_arrays(path: Path) -> tuple[list, list]:
    """The inputs and tf_keras's outputs stored beside a model file."""
    arrays = np.load(path.with_suffix(".npz"))
    inputs = [arrays[k] for k in sorted(arrays.files) if k.startswith("input_")]
    outputs = [arrays[f"output_{i}"] for i in range(sum(k.startswith("output_") for k in arrays.files))]
    return inputs, outputs


def generate(directory: Path, script: str = __file__, what: str = "the Keras 2 files") -> Path:
    """Runs the tf_keras `script` (this one: every model above) once to write `what` into
    `directory`; other processes wait for it."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (directory / DONE).exists():
            env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
            completed = subprocess.run(
                [sys.executable, script, str(directory)],
                capture_output=True,
                text=True,
                env=env,
                timeout=900,
                check=False,
            )
            if completed.returncode != 0:
                raise RuntimeError(f"tf_keras could not write {what}:\n{completed.stderr[-4000:]}")
            (directory / DONE).touch()
    return directory


if __name__ == "__main__":
    write_all(Path(sys.argv[1]))
