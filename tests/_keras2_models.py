"""Keras 2 model files for the tests, written by tf_keras in a child process.

Run as a script with `TF_USE_LEGACY_KERAS=1`, it builds every model below with
tf_keras (Keras 2), saves each as `NAME.h5`, and stores its inputs and
tf_keras's predictions in `NAME.npz`. `generate(directory)` runs it once per
test session (shared by pytest-xdist workers) and returns the directory.

`MODELS` are op-heavy models and real architectures; `LAYERS` holds one model
per built-in layer with non-default arguments, the systematic source of the
Keras 2 -> 3 config-difference table (`keras_graft.keras2.layer_configs`).
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
    a = tf.math.multiply(h, y=2.0)                 # keyword constant
    b = tf.clip_by_value(a, -1.0, 1.0)             # positional constants
    joined = tf.concat([a, b], 1)                  # tensors in a list
    chosen = tf.where(c, x, a)                     # tensors in kwargs
    inverted = tf.math.subtract(1.0, x)            # a constant first argument
    columns = x[:, 1:3]                            # slices
    expanded = x[..., tf.newaxis]                  # Ellipsis and tf.newaxis
    prefix = x[:, : n[0]]                          # a tensor inside a slice
    top = tf.math.top_k(h, k=2)                    # two outputs
    shifted = x + 3.0                              # tf.__operators__.add
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
    return keras.Model(x, tf.math.reduce_sum(joined, axis=-1)), [
        _rng().normal(size=(3, 4)).astype("float32")
    ]


def sequential(keras, tf):
    """A Sequential model holding a functional model with op layers."""
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(4),
        _inner(keras, tf, "inner_ops"),
        keras.layers.Dense(2),
    ])
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


def write_all(directory: Path) -> None:
    """Builds every model with tf_keras and writes its files (in the child)."""
    import tensorflow as tf
    import tf_keras as keras

    for name, build in MODELS.items():
        keras.backend.clear_session()
        model, inputs = build(keras, tf)
        model.save(directory / f"{name}.h5")
        outputs = model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        np.savez(
            directory / f"{name}.npz",
            **{f"input_{i}": v for i, v in enumerate(inputs)},
            **{f"output_{i}": np.asarray(v) for i, v in enumerate(outputs)},
        )


def read_arrays(path: Path) -> tuple[list, list]:
    """The inputs and tf_keras's outputs stored beside a model file."""
    arrays = np.load(path.with_suffix(".npz"))
    inputs = [arrays[k] for k in sorted(arrays.files) if k.startswith("input_")]
    outputs = [arrays[f"output_{i}"] for i in range(sum(k.startswith("output_") for k in arrays.files))]
    return inputs, outputs


def generate(directory: Path) -> Path:
    """Writes the Keras 2 files into `directory` once (other processes wait)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (directory / DONE).exists():
            env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
            completed = subprocess.run(
                [sys.executable, __file__, str(directory)],
                capture_output=True, text=True, env=env, timeout=900,
            )
            if completed.returncode != 0:
                raise RuntimeError(f"tf_keras could not write the Keras 2 files:\n{completed.stderr[-4000:]}")
            (directory / DONE).touch()
    return directory


if __name__ == "__main__":
    write_all(Path(sys.argv[1]))
