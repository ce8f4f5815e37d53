"""`keras.ops` equivalents of common TensorFlow ops, in one table.

An op layer with an equivalent could be rewritten with `keras.ops`, which
every Keras backend runs natively (no TensorFlow bridge on JAX or torch).
Keys are TensorFlow's canonical public names, as op layers store them
(`tf.matmul` is stored as `linalg.matmul`); values are paths in `keras.ops`.

>>> keras_ops_equivalent("tf.clip_by_value")
'keras.ops.clip'
>>> keras_ops_equivalent("tf.image.rgb_to_hsv")
'keras.ops.image.rgb_to_hsv'
>>> keras_ops_equivalent("tf.histogram_fixed_width") is None
True
"""

from __future__ import annotations

import types

import keras

KERAS_OPS = types.MappingProxyType(
    {
        "clip_by_value": "clip",
        "nn.relu": "relu",
        "nn.relu6": "relu6",
        "nn.gelu": "gelu",
        "nn.silu": "silu",
        "nn.elu": "elu",
        "nn.selu": "selu",
        "nn.softmax": "softmax",
        "nn.log_softmax": "log_softmax",
        "nn.conv2d": "conv",
        "math.sigmoid": "sigmoid",
        "math.softplus": "softplus",
        "math.top_k": "top_k",
        "math.in_top_k": "in_top_k",
        "linalg.matmul": "matmul",
        "linalg.inv": "inv",
        "linalg.det": "det",
        "norm": "norm",
        "einsum": "einsum",
        "signal.stft": "stft",
        "signal.inverse_stft": "istft",
        "signal.rfft": "rfft",
        "image.resize": "image.resize",
        "image.rgb_to_hsv": "image.rgb_to_hsv",
        "image.hsv_to_rgb": "image.hsv_to_rgb",
        "image.rgb_to_grayscale": "image.rgb_to_grayscale",
        "image.sobel_edges": "image.sobel_edges",
        "image.extract_patches": "image.extract_patches",
        "math.reduce_sum": "sum",
        "math.reduce_mean": "mean",
        "math.reduce_max": "max",
        "math.reduce_min": "min",
        "math.reduce_prod": "prod",
        "math.reduce_std": "std",
        "math.reduce_variance": "var",
        "math.reduce_logsumexp": "logsumexp",
        "math.reduce_all": "all",
        "math.reduce_any": "any",
        "math.cumsum": "cumsum",
        "math.cumprod": "cumprod",
        "math.argmax": "argmax",
        "math.argmin": "argmin",
        "math.abs": "abs",
        "math.exp": "exp",
        "math.log": "log",
        "math.sqrt": "sqrt",
        "math.rsqrt": "rsqrt",
        "math.square": "square",
        "math.pow": "power",
        "math.tanh": "tanh",
        "math.sin": "sin",
        "math.cos": "cos",
        "math.erf": "erf",
        "math.floor": "floor",
        "math.ceil": "ceil",
        "math.round": "round",
        "math.sign": "sign",
        "math.maximum": "maximum",
        "math.minimum": "minimum",
        "math.add": "add",
        "math.subtract": "subtract",
        "math.multiply": "multiply",
        "math.divide": "divide",
        "math.bincount": "bincount",
        "math.segment_sum": "segment_sum",
        "math.segment_max": "segment_max",
        "cast": "cast",
        "concat": "concatenate",
        "stack": "stack",
        "reshape": "reshape",
        "transpose": "transpose",
        "expand_dims": "expand_dims",
        "squeeze": "squeeze",
        "tile": "tile",
        "pad": "pad",
        "gather": "take",
        "where": "where",
        "sort": "sort",
        "argsort": "argsort",
        "one_hot": "one_hot",
        "unique": "unique",
    }
)


def keras_ops_equivalent(op_name: str) -> str | None:
    """`keras.ops.<path>` for a stored TF op name (`tf.clip_by_value`), or None.

    None too when the installed Keras lacks it: the table is written for the
    newest Keras keras-graft supports (`keras.ops.image.sobel_edges` is not in
    Keras 3.12).
    """
    name = op_name[3:] if op_name.startswith("tf.") else op_name
    path = KERAS_OPS.get(name)
    return f"keras.ops.{path}" if path and _in_keras_ops(path) else None


def _in_keras_ops(path: str) -> bool:
    target = keras.ops
    for part in path.split("."):
        target = getattr(target, part, None)
    return callable(target)
