"""The Keras 2 -> Keras 3 config differences of the built-in layers, as one table.

Found systematically: a tf_keras model of each built-in layer, built with
non-default arguments, saved to `.h5` and loaded in Keras 3
(`tests/helpers/keras2_models.py` builds them, `tests/test_keras2_layer_configs.py`
checks each row, predictions included). Every row either translates a key
whose meaning Keras 3 keeps, or refuses, naming the layer, the key and what to
do, a value that has no Keras 3 equivalent.

A key is dropped only when it holds plain data (numbers, strings, None,
lists of them) or its default: Keras 2 itself reads the keys keras-graft
drops (tf_keras builds a `SeparableConv1D`'s unused `kernel_initializer`),
so an object config there would be built by Keras 2 but never seen by the
audit. Such a value is refused (`HiddenConfigObjectError`), naming the layer,
the key and why.

| Layers | Key | Translation |
| --- | --- | --- |
| DepthwiseConv1D/2D, Conv1D/2D/3DTranspose, SeparableConv1D/2D | `groups` | dropped when 1; other values refused |
| SeparableConv1D/2D | `kernel_initializer`, `kernel_regularizer`, `kernel_constraint` | dropped (unused in Keras 2) |
| SimpleRNN, LSTM, GRU, RNN, ConvLSTM1D/2D/3D | `time_major` | dropped when false; true refused |
| BatchNormalization | `virtual_batch_size` | dropped when null; ghost batches refused |
| MultiHeadAttention | `query_shape`, `key_shape`, `value_shape` | dropped (Keras 3 builds on the first call) |
| MultiHeadAttention | `softmax_robust_masking` | dropped when false; true refused |
| Random* augmentation layers | `rng_type` | dropped (no effect in inference) |
| Attention | `score_mode: "dot"` | dropped: Keras 3's default, which its legacy loader would turn into the function `keras.layers.dot` |
| Discretization, SpatialDropout1D/2D/3D | `trainable` | dropped (no weights; Keras 3 refuses the key) |
| SpatialDropout1D/2D/3D | `noise_shape` | dropped when null; other values refused |
| Discretization | `dtype` | dropped when an int dtype: it was the output dtype, in Keras 3 it casts the inputs (outputs int32) |
| any layer | `activation`, `recurrent_activation`: `"hard_sigmoid"` | `keras_graft>keras2_hard_sigmoid` (slope 0.2; Keras 3's has 1/6) |
| ThresholdedReLU | (class) | `ReLU(threshold=theta)`; differs only at x == theta exactly |
| LayerNormalization | `axis` list of 2+ axes | restored after loading (Keras 3's legacy loader drops it) |
| Bidirectional, TimeDistributed | `layer`, `backward_layer` | the wrapped layer's config translated by this table |

>>> translate({"class_name": "DepthwiseConv2D", "config": {"name": "dw", "groups": 1}})[0]
{'class_name': 'DepthwiseConv2D', 'config': {'name': 'dw'}}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras

from keras_graft.errors import HiddenConfigObjectError, UntranslatableConfigError
from keras_graft.keras2 import report


def _always(value: Any) -> bool:
    return True


def plain_data(value: Any) -> bool:
    """Whether `value` is numbers, strings, booleans, None, or lists of them:
    nothing that any Keras deserializes into an object.

    >>> plain_data([None, 3, "same"]), plain_data({"class_name": "GlorotUniform", "config": {}})
    (True, False)
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, (list, tuple)) and all(plain_data(item) for item in value)


# How Keras 2 stores a built-in object config: `module` and `registered_name`
# are written by newer tf_keras versions only.
_BUILTIN_OBJECT_KEYS = {
    "module": (None, "keras.initializers", "keras.regularizers", "keras.constraints"),
    "registered_name": (None,),
}


def same_object_config(value: Any, default: dict) -> bool:
    """Whether `value` is the object config `default` (`{"class_name", "config"}`),
    as any Keras 2 version writes it.

    >>> same_object_config({"module": "keras.initializers", "class_name": "GlorotUniform",
    ...                     "config": {"seed": None}, "registered_name": None}, GLOROT_UNIFORM)
    True
    """
    if not isinstance(value, dict) or set(value) - {"class_name", "config", *_BUILTIN_OBJECT_KEYS}:
        return False
    extras_builtin = all(value.get(key) in allowed for key, allowed in _BUILTIN_OBJECT_KEYS.items())
    return (
        extras_builtin
        and value.get("class_name") == default["class_name"]
        and (value.get("config") == default["config"])
    )


def refuse_hidden_object(layer: str, class_name: str, key: str, value: Any, defaults=()) -> None:
    """Refuses to drop `key` unless it holds plain data or one of `defaults`."""
    if plain_data(value) or any(same_object_config(value, default) for default in defaults):
        return
    shown = value.get("class_name") if isinstance(value, dict) else type(value).__name__
    raise HiddenConfigObjectError(
        f"Keras 2 layer {layer!r} ({class_name}) has `{key}` = an object config ({shown!r}). "
        f"keras-graft does not use `{key}` on this layer and would drop it, but Keras 2 "
        "itself builds the object, so dropping it would hide from the audit what Keras 2 "
        "runs. Only plain data or the default is dropped: re-save the model with this "
        f"argument left out (or remove `{key}` from the file) if you trust it."
    )


GLOROT_UNIFORM = {"class_name": "GlorotUniform", "config": {"seed": None}}


@dataclass(frozen=True)
class Drop:
    """A key Keras 3 does not take; dropping it keeps the meaning for `equivalent` values."""

    layers: tuple[str, ...]
    keys: tuple[str, ...]
    why: str
    equivalent: Callable[[Any], bool] = _always
    # Why other values are refused; None: Keras 3 reads them as they are.
    otherwise: str | None = ""
    # Object configs that are the keys' defaults (dropped like plain data).
    defaults: tuple = ()

    def applies_to(self, class_name: str) -> bool:
        return class_name in self.layers

    def apply(self, class_name: str, config: dict) -> tuple[dict, Callable | None]:
        for key in self.keys:
            if key not in config:
                continue
            if not self.equivalent(config[key]):
                if self.otherwise is None:
                    continue
                raise UntranslatableConfigError(
                    f"Keras 2 layer {config.get('name')!r} ({class_name}) has "
                    f"`{key}={config[key]!r}`, which Keras 3 cannot express: "
                    f"{self.otherwise}"
                )
            refuse_hidden_object(config.get("name"), class_name, key, config[key], self.defaults)
            report.note(config.get("name", "?"), class_name, f"dropped `{key}={config[key]!r}` ({self.why})")
            config = {k: v for k, v in config.items() if k != key}
        return config, None


@dataclass(frozen=True)
class RestoreAfterLoad:
    """A value Keras 3's legacy loader would lose: taken out, then set on the built layer."""

    layers: tuple[str, ...]
    key: str
    needed: Callable[[Any], bool]
    why: str

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.key,)

    def applies_to(self, class_name: str) -> bool:
        return class_name in self.layers

    def apply(self, class_name: str, config: dict) -> tuple[dict, Callable | None]:
        if self.key not in config or not self.needed(config[self.key]):
            return config, None
        value = config[self.key]
        refuse_hidden_object(config.get("name"), class_name, self.key, value)
        report.note(config.get("name", "?"), class_name, f"restored `{self.key}={value!r}` ({self.why})")

        def restore(layer):
            setattr(layer, self.key, value)

        return {k: v for k, v in config.items() if k != self.key}, restore


@keras.saving.register_keras_serializable(package="keras_graft")
def keras2_hard_sigmoid(x):
    """Keras 2's `hard_sigmoid`: `clip(0.2 * x + 0.5, 0, 1)`.

    Keras 3's function of that name is `relu6(x + 3) / 6`, of slope 1/6, so
    the name `"hard_sigmoid"` means another function in each.

    >>> round(float(keras2_hard_sigmoid(keras.ops.convert_to_tensor(1.0))), 4)
    0.7
    """
    return keras.ops.clip(0.2 * x + 0.5, 0.0, 1.0)


@dataclass(frozen=True)
class Replace:
    """A value that means something else in Keras 3, replaced by one that means the same.

    `layers` empty: any layer.
    """

    layers: tuple[str, ...]
    keys: tuple[str, ...]
    value: Any
    replacement: Any
    why: str

    def applies_to(self, class_name: str) -> bool:
        return not self.layers or class_name in self.layers

    def apply(self, class_name: str, config: dict) -> tuple[dict, Callable | None]:
        for key in self.keys:
            if config.get(key) == self.value:
                report.note(
                    config.get("name", "?"),
                    class_name,
                    f"`{key}={self.value!r}` became {self.replacement!r} ({self.why})",
                )
                config = {**config, key: self.replacement}
        return config, None


def _thresholded_relu(config: dict) -> tuple[str, dict]:
    kept = ("name", "trainable", "dtype", "batch_input_shape")
    for key, value in config.items():
        if key not in (*kept, "theta"):
            refuse_hidden_object(config.get("name"), "ThresholdedReLU", key, value)
    return "ReLU", {
        **{k: v for k, v in config.items() if k in kept},
        "threshold": float(config.get("theta", 1.0)),
    }


RENAMED_CLASSES = {
    # Keras 2: x if x > theta else 0. Keras 3 ReLU: x if x >= threshold else 0.
    "ThresholdedReLU": _thresholded_relu,
}

_CONVOLUTIONS_WITHOUT_GROUPS = (
    "DepthwiseConv1D",
    "DepthwiseConv2D",
    "Conv1DTranspose",
    "Conv2DTranspose",
    "Conv3DTranspose",
    "SeparableConv1D",
    "SeparableConv2D",
)
_RECURRENT = ("SimpleRNN", "LSTM", "GRU", "RNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")
_RANDOM_AUGMENTATION = (
    "RandomFlip",
    "RandomRotation",
    "RandomZoom",
    "RandomTranslation",
    "RandomContrast",
    "RandomCrop",
    "RandomHeight",
    "RandomWidth",
    "RandomBrightness",
)

TABLE = (
    Drop(
        _CONVOLUTIONS_WITHOUT_GROUPS,
        ("groups",),
        "Keras 2 stored its base class's `groups` on layers that never group",
        equivalent=lambda v: v == 1,
        otherwise="these layers do not group in Keras 3; rebuild the model with groups=1.",
    ),
    Drop(
        ("SeparableConv1D", "SeparableConv2D"),
        ("kernel_initializer", "kernel_regularizer", "kernel_constraint"),
        "unused by Keras 2's separable convolutions, which use the depthwise_* and pointwise_* keys",
        defaults=(GLOROT_UNIFORM,),
    ),
    Drop(
        _RECURRENT,
        ("time_major",),
        "Keras 3 recurrent layers are batch-major, as this one was",
        equivalent=lambda v: not v,
        otherwise="Keras 3 recurrent layers are batch-major only; rebuild the model with "
        "time_major=False and `tf.transpose` around the layer.",
    ),
    Drop(
        ("BatchNormalization",),
        ("virtual_batch_size",),
        "no ghost batches were used",
        equivalent=lambda v: v is None,
        otherwise="Keras 3 has no ghost batch normalization; rebuild the model without "
        "virtual_batch_size (inference is unchanged, training is not).",
    ),
    Drop(
        ("MultiHeadAttention",),
        ("query_shape", "key_shape", "value_shape"),
        "build shapes; Keras 3 builds the layer on its first call",
    ),
    Drop(
        ("MultiHeadAttention",),
        ("softmax_robust_masking",),
        "Keras 2's default masking was used",
        equivalent=lambda v: not v,
        otherwise="Keras 3 has no robust-masking softmax; rebuild the model without it.",
    ),
    Drop(
        _RANDOM_AUGMENTATION,
        ("rng_type",),
        "the kind of random generator; augmentation is inactive at inference",
    ),
    Drop(
        ("Attention",),
        ("score_mode",),
        "'dot' is Keras 3's default, and its legacy loader would turn the string into "
        "the function `keras.layers.dot`",
        equivalent=lambda v: v == "dot",
        otherwise=None,
    ),
    Drop(
        ("Discretization", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D"),
        ("trainable",),
        "the layer has no weights, and Keras 3 refuses the key",
    ),
    Drop(
        ("SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D"),
        ("noise_shape",),
        "spatial dropout derives its noise shape from the input, as it did in Keras 2",
        equivalent=lambda v: v is None,
        otherwise="Keras 3 spatial dropout has a fixed noise shape; use Dropout(noise_shape=...).",
    ),
    Drop(
        ("Discretization",),
        ("dtype",),
        "Keras 2's output dtype; in Keras 3 a layer's dtype casts its inputs, which would "
        "bucketize -0.3 as 0. Keras 3 outputs int32 bucket indices",
        equivalent=lambda v: v is None or "int" in str(v),
        otherwise="a float output dtype; remove it from the model.",
    ),
    Replace(
        (),
        ("activation", "recurrent_activation"),
        "hard_sigmoid",
        "keras_graft>keras2_hard_sigmoid",
        "Keras 2's hard sigmoid has slope 0.2, Keras 3's 1/6",
    ),
    RestoreAfterLoad(
        ("LayerNormalization",),
        "axis",
        lambda v: isinstance(v, (list, tuple)) and len(v) > 1,
        "Keras 3's legacy loader drops axis lists of more than one axis",
    ),
)

WRAPPED_LAYER_KEYS = ("layer", "backward_layer")


def translate(config: dict) -> tuple[dict, list[Callable]]:
    """A layer config in its Keras 3 form, and fixes to apply to the loaded layer.

    Raises `UntranslatableConfigError` for values Keras 3 cannot express.
    """
    class_name = config.get("class_name")
    inner = config.get("config")
    if not isinstance(inner, dict):
        return config, []
    if class_name in RENAMED_CLASSES:
        new_class, inner = RENAMED_CLASSES[class_name](inner)
        report.note(inner.get("name", "?"), class_name, f"became `{new_class}` with the same meaning")
        return {**config, "class_name": new_class, "config": inner}, []
    fixes = []
    for row in TABLE:
        if row.applies_to(class_name):
            inner, fix = row.apply(class_name, inner)
            if fix is not None:
                fixes.append(fix)
    for key in WRAPPED_LAYER_KEYS:
        if isinstance(inner.get(key), dict):
            inner = {**inner, key: translate(inner[key])[0]}
    return {**config, "config": inner}, fixes
