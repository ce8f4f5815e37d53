"""Writes one Keras 2 release's corpus files. Runs INSIDE that release's environment.

`regenerate.py` runs this script once per Keras 2 release, with the Python of
a virtual environment that holds that release (the `keras` 2.x bundled with
TensorFlow 2.12-2.15, or `tf_keras` with `TF_USE_LEGACY_KERAS=1`):

    PYTHONPATH=tests/keras2_corpus [TF_USE_LEGACY_KERAS=1 for tf_keras] \\
        .../venv-tf2.13/bin/python tests/keras2_corpus/write_corpus.py OUT_DIR [--saved-model] [--yamnet DIR]

It must run unchanged on every one of those releases, so it uses only the API
they all have, and reaches Keras 2 as `tf.keras` (Keras 2 in all of them,
with the variable set for tf_keras only: TF 2.15 reads it too, and then looks
for tf_keras). It never imports Keras 3 or keras-graft.

For each model below it writes `NAME.h5`, `NAME.keras` and, with
`--saved-model NAME`, `NAME_savedmodel/`; `NAME.npz` holds the inputs (`input_0`...),
Keras 2's predictions (`output_0`...) and, for compiled models, the targets
(`target_0`); and `written.json` describes every file: what the model holds,
its compile setup, and whether Keras 2 itself reloads the file with the same
predictions. A format Keras 2 cannot write is listed under `unwritable` with
its error: that too is a fact about Keras 2.

Models are small (tiny widths: the corpus is committed) and deterministic: a
fixed seed for Keras, NumPy and TF, and every weight that starts constant
(biases, normalization parameters and statistics) is given small random values,
so that weights put into the wrong layer change the predictions.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
import traceback
import zipfile
from pathlib import Path

import corpus_objects
import numpy as np
import tensorflow as tf

keras = tf.keras
SEED = 1234
ATOL = 1e-4
LAMBDA = "Lambda"
OP_LAYERS = ("TFOpLambda", "SlicingOpLambda")


def _rng(offset=0):
    return np.random.default_rng(SEED + offset)


# ---------------------------------------------------------------------------
# The models. Each returns (model, inputs, targets or None).
# ---------------------------------------------------------------------------


def transformer():
    """A transformer encoder block: MultiHeadAttention, LayerNormalization, tf.einsum token mixing."""
    length, width = 6, 8
    tokens = keras.Input((length,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(32, width)(tokens)
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=width // 2)(x, x)
    x = keras.layers.LayerNormalization(epsilon=1e-6)(x + attended)
    scores = tf.einsum("bqd,bkd->bqk", x, x) / width**0.5
    mixed = tf.einsum("bqk,bkd->bqd", tf.nn.softmax(scores, axis=-1), x)
    x = keras.layers.LayerNormalization(epsilon=1e-6)(x + mixed)
    ffn = keras.layers.Dense(width)(keras.layers.Dense(16, activation="gelu")(x))
    x = keras.layers.LayerNormalization()(x + ffn)
    probabilities = keras.layers.Dense(3, activation="softmax")(tf.reduce_mean(x, axis=1))
    ids = _rng().integers(0, 32, size=(4, length)).astype("int32")
    return keras.Model(tokens, probabilities), [ids], None


def unet():
    """A small U-Net: tf.image.resize (to a static and to a tf.shape size) and Concatenate."""
    image = keras.Input((16, 16, 3), name="image")

    def conv(x, filters):
        return keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)

    down1 = conv(image, 4)
    down2 = conv(keras.layers.MaxPooling2D()(down1), 8)
    bottom = conv(keras.layers.MaxPooling2D()(down2), 8)
    up2 = tf.image.resize(bottom, tf.shape(down2)[1:3])
    up2 = conv(keras.layers.Concatenate()([up2, down2]), 8)
    up1 = tf.image.resize(up2, (16, 16), method="nearest")
    up1 = conv(keras.layers.Concatenate()([up1, down1]), 4)
    mask = keras.layers.Conv2D(1, 1, activation="sigmoid")(up1)
    return keras.Model(image, mask), [_rng().random((2, 16, 16, 3)).astype("float32")], None


def stft_audio():
    """An audio classifier: tf.signal.stft, tf.abs, a 129x40 mel tf.matmul, tf.math.log."""
    waveform = keras.Input((1024,), name="waveform")
    magnitude = tf.abs(tf.signal.stft(waveform, frame_length=256, frame_step=128))
    mel = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=40,
        num_spectrogram_bins=129,
        sample_rate=8000.0,
        lower_edge_hertz=80.0,
        upper_edge_hertz=3800.0,
    )
    log_mel = tf.math.log(tf.matmul(magnitude, mel) + 1e-6)
    x = keras.layers.Conv1D(8, 3, activation="relu")(log_mel)
    x = keras.layers.GlobalAveragePooling1D()(x)
    scores = keras.layers.Dense(4)(x)
    return keras.Model(waveform, scores), [_rng().normal(size=(2, 1024)).astype("float32")], None


def detection_head():
    """A detection head: tf.split, tf.sigmoid, tf.exp, slicing, tf.concat."""
    anchors, classes = 3, 4
    features = keras.Input((4, 4, 8), name="features")
    raw = keras.layers.Conv2D(anchors * (5 + classes), 1)(features)
    raw = keras.layers.Reshape((4 * 4 * anchors, 5 + classes))(raw)
    xy, wh, objectness, class_logits = tf.split(raw, [2, 2, 1, classes], axis=-1)
    boxes = tf.concat([tf.sigmoid(xy), tf.exp(wh)], axis=-1)
    centers, sizes = boxes[:, :, :2], boxes[:, :, 2:]
    corners = tf.concat([centers - sizes / 2, centers + sizes / 2], axis=-1)
    scores = tf.sigmoid(objectness) * tf.nn.softmax(class_logits, axis=-1)
    best = tf.reduce_max(scores, axis=-1)
    return (
        keras.Model(features, [corners, scores, best]),
        [_rng().normal(size=(2, 4, 4, 8)).astype("float32")],
        None,
    )


def mobilenet():
    """keras.applications.MobileNet (alpha=0.25, 32x32, weights=None, 10 classes)."""
    model = keras.applications.MobileNet(input_shape=(32, 32, 3), alpha=0.25, weights=None, classes=10)
    return model, [(_rng().random((2, 32, 32, 3)) * 255).astype("float32")], None


def nested_shared():
    """Nested and shared sub-models: a functional model called twice, a model holding a Sequential, a shared Dense."""
    inner_input = keras.Input((4,))
    inner_hidden = keras.layers.Dense(4)(inner_input)
    inner = keras.Model(inner_input, tf.nn.relu(inner_hidden) * 2.0, name="inner")
    squash = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, activation="tanh")], name="squash")
    # (A model nested both here and in `wrapper` would not reload in Keras 2 itself: KeyError.)
    wrapper_input = keras.Input((4,))
    wrapper = keras.Model(wrapper_input, squash(keras.layers.Dense(4)(wrapper_input)), name="wrapper")
    shared = keras.layers.Dense(3, name="shared_dense")
    x = keras.Input((4,), name="x")
    first = inner(x)
    second = inner(tf.math.negative(x))
    outputs = tf.concat([shared(first), shared(wrapper(second))], axis=-1)
    return keras.Model(x, outputs), [_rng().normal(size=(3, 4)).astype("float32")], None


def sequential():
    """A Sequential model: Dense, BatchNormalization, Dropout, Reshape, Conv1D, Flatten."""
    model = keras.Sequential(
        [
            keras.Input((10,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(8),
            keras.layers.Reshape((4, 2)),
            keras.layers.Conv1D(4, 2, padding="same"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    return model, [_rng().normal(size=(3, 10)).astype("float32")], None


def _regression_data(features, outputs, rows=8):
    rng = _rng(1)
    return rng.normal(size=(rows, features)).astype("float32"), rng.normal(size=(rows, outputs)).astype(
        "float32"
    )


def compiled_custom_loss():
    """Compiled with a registered custom loss, Adam(0.01) and a metric, after one fit step."""
    x = keras.Input((6,), name="x")
    hidden = tf.nn.relu(keras.layers.Dense(8)(x))
    model = keras.Model(x, keras.layers.Dense(2)(hidden))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=corpus_objects.scaled_mse, metrics=["mae"])
    inputs, targets = _regression_data(6, 2)
    model.fit(inputs, targets, batch_size=len(inputs), epochs=1, verbose=0)
    return model, [inputs], [targets]


def compiled_mse():
    """Compiled with loss="mse", metrics ["mae", RootMeanSquaredError] and "adam", after one fit step."""
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(optimizer="adam", loss="mse", metrics=["mae", keras.metrics.RootMeanSquaredError()])
    inputs, targets = _regression_data(5, 1)
    model.fit(inputs, targets, batch_size=len(inputs), epochs=1, verbose=0)
    return model, [inputs], [targets]


def custom_layer():
    """A registered custom layer (`keras_graft_corpus>ScaledDense`) between op layers."""
    x = keras.Input((5,), name="x")
    hidden = tf.nn.tanh(corpus_objects.ScaledDense(4, scale=0.5)(x))
    outputs = corpus_objects.ScaledDense(2, scale=2.0)(hidden)
    return keras.Model(x, outputs), [_rng().normal(size=(3, 5)).astype("float32")], None


def operators():
    """Python operators on Keras tensors as Keras 2 recorded them, on a square batch (8 x 8 features)."""
    x = keras.Input((8,), name="x")
    h = keras.layers.Dense(8)(x)
    outputs = [
        h // 2.0,  # compat.v1.floor_div
        h % 3.0,
        h**2,
        1.0 - h,
        -h,
        abs(h),
        h + tf.reduce_mean(h, axis=-1, keepdims=True),  # TF's add in Keras 2
        tf.cast(h > 0.0, "float32") * tf.cast(h <= 0.5, "float32"),
        h[:, ::2],
        h[:, ::-1],
        h @ np.eye(8, dtype="float32")[:, :3],
    ]
    return keras.Model(x, outputs), [_rng().normal(size=(8, 8)).astype("float32")], None


def ellipsis_slicing():
    """Slicing with `...` and tf.newaxis (Keras 2.13+ cannot write it to `.keras`: only `.h5`)."""
    x = keras.Input((4, 6), name="x")
    h = keras.layers.Dense(6)(x)
    outputs = [h[..., ::2], h[..., 1:3], h[..., tf.newaxis], h[:, tf.newaxis, ..., -1]]
    return keras.Model(x, outputs), [_rng().normal(size=(3, 4, 6)).astype("float32")], None


def lambdas():
    """Lambda layers of TF ops: two lambdas (one with `arguments`) and a named function."""
    x = keras.Input((8,), name="x")
    h = keras.layers.Dense(8)(x)
    clipped = keras.layers.Lambda(lambda t: tf.clip_by_value(t, -0.5, 0.5))(h)
    swished = keras.layers.Lambda(corpus_objects.hard_swish)(clipped)
    top = keras.layers.Lambda(lambda t, k: tf.math.top_k(t, k=k).values, arguments={"k": 3})(swished)
    return keras.Model(x, keras.layers.Dense(2)(top)), [_rng().normal(size=(3, 8)).astype("float32")], None


def yamnet_features(yamnet_dir: Path):
    """The official YAMNet feature code (tensorflow/models research/audioset/yamnet), unmodified."""
    sys.path.insert(0, str(yamnet_dir))
    features_lib, params_lib = importlib.import_module("features"), importlib.import_module("params")
    params = params_lib.Params()
    # As yamnet.py's yamnet_frames_model builds it: a 1-D waveform, padded, then features.
    waveform = keras.Input(batch_shape=(None,), dtype=tf.float32, name="waveform")
    padded = features_lib.pad_waveform(waveform, params)
    log_mel_spectrogram, patches = features_lib.waveform_to_log_mel_spectrogram_patches(padded, params)
    model = keras.Model(waveform, [log_mel_spectrogram, patches])
    return model, [_rng().uniform(-1.0, 1.0, size=(16000,)).astype("float32")], None


MODELS = {
    build.__name__: build
    for build in (
        transformer,
        unet,
        stft_audio,
        detection_head,
        mobilenet,
        nested_shared,
        sequential,
        compiled_custom_loss,
        compiled_mse,
        custom_layer,
        operators,
        ellipsis_slicing,
        lambdas,
    )
}
APPLICATION = "mobilenet"  # about 1 MB a file: written only in the formats `--application` names


# ---------------------------------------------------------------------------
# Describing and writing.
# ---------------------------------------------------------------------------


def _perturb_constant_weights(model) -> None:
    """Gives every weight that starts constant (zeros, ones) small random values."""
    rng = _rng(2)
    values = []
    for value in model.get_weights():
        if value.size and np.all(value == value.flat[0]) and value.dtype.kind == "f":
            value = value + rng.uniform(-0.1, 0.1, size=value.shape).astype(value.dtype)
        values.append(value)
    model.set_weights(values)


def _walk_layers(config: dict):
    """Every layer config in a model config, nested models included."""
    for layer in config.get("config", {}).get("layers", []) or []:
        yield layer
        yield from _walk_layers(layer)


def describe(model) -> dict:
    """What the model holds, from Keras 2's own config of it."""
    config = {"class_name": model.__class__.__name__, "config": model.get_config()}
    layers = list(_walk_layers(config))
    op_names = sorted({layer["config"]["function"] for layer in layers if layer["class_name"] in OP_LAYERS})
    lambdas = [layer for layer in layers if layer["class_name"] == LAMBDA]
    custom = {layer["class_name"] for layer in layers if ">" in layer["class_name"]}
    return {
        "model_class": config["class_name"],
        "layers": len(layers),
        "nested_models": sum("layers" in layer.get("config", {}) for layer in layers),
        "op_layers": op_names,
        "lambdas": [
            {key: layer["config"].get(key) for key in ("function_type", "module")} for layer in lambdas
        ],
        "custom_objects": sorted(custom),
        "weights": len(model.weights),
        "parameters": int(model.count_params()),
        "compiled": getattr(model, "optimizer", None) is not None,
    }


def describe_compile(model, inputs, targets) -> dict:
    """The compile setup and Keras 2's evaluation of the targets after training."""
    optimizer = model.optimizer
    loss = model.loss if isinstance(model.loss, str) else keras.utils.get_registered_name(model.loss)
    evaluation = model.evaluate(
        inputs if len(inputs) > 1 else inputs[0], targets[0], verbose=0, return_dict=True
    )
    return {
        "optimizer": type(optimizer).__name__,
        "optimizer_module": type(optimizer).__module__,
        "learning_rate": float(keras.backend.get_value(optimizer.learning_rate)),
        "iterations": int(keras.backend.get_value(optimizer.iterations)),
        "optimizer_variables": len(
            optimizer.variables() if callable(optimizer.variables) else optimizer.variables
        ),
        "loss": loss,
        "evaluate": {name: float(value) for name, value in evaluation.items()},
    }


def _predict(model, inputs) -> list:
    # One batch: YAMNet's model takes a whole waveform as its "batch".
    outputs = model.predict(inputs if len(inputs) > 1 else inputs[0], batch_size=len(inputs[0]), verbose=0)
    return [np.asarray(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]


def _first_and_last_line(error: BaseException) -> str:
    lines = [line for line in f"{type(error).__name__}: {error}".splitlines() if line.strip()]
    return lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"


def _max_difference(actual, expected) -> float | None:
    if len(actual) != len(expected) or any(a.shape != e.shape for a, e in zip(actual, expected)):
        return None
    return max(
        float(np.max(np.abs(a.astype("float64") - e.astype("float64")), initial=0.0))
        for a, e in zip(actual, expected)
    )


def _fit_step(model, inputs, targets) -> None:
    model.fit(
        inputs if len(inputs) > 1 else inputs[0],
        targets[0],
        batch_size=len(inputs[0]),
        epochs=1,
        shuffle=False,
        verbose=0,
    )


def keras2_reload(path: Path, inputs, expected, targets=None, trained=None) -> dict:
    """Whether Keras 2 itself reloads the file it wrote, with the same predictions.

    For a compiled model, also whether it comes back compiled, with its
    learning rate and optimizer state: one more training step must give the
    predictions that step gave the original model (`trained`).
    """
    options = {"custom_objects": {"hard_swish": corpus_objects.hard_swish}}
    if "safe_mode" in inspect.signature(keras.models.load_model).parameters:
        options["safe_mode"] = False  # our own file; Keras 2's safe mode refuses its lambdas
    result = {}
    try:
        keras.backend.clear_session()
        reloaded = keras.models.load_model(str(path), compile=False, **options)
        difference = _max_difference(_predict(reloaded, inputs), expected)
        result.update(ok=difference is not None and difference <= ATOL, max_difference=difference)
        if targets is not None:
            keras.backend.clear_session()
            reloaded = keras.models.load_model(str(path), **options)
            optimizer = reloaded.optimizer
            result["learning_rate"] = float(keras.backend.get_value(optimizer.learning_rate))
            result["iterations"] = int(keras.backend.get_value(optimizer.iterations))
            _fit_step(reloaded, inputs, targets)
            result["training_step_max_difference"] = _max_difference(_predict(reloaded, inputs), trained)
    except Exception as error:  # noqa: BLE001  (any failure is the finding)
        result.update(ok=result.get("ok", False), error=_first_and_last_line(error))
    return result


def container(path: Path) -> str:
    """What the file is, whatever its name says (Keras 2.12 writes HDF5 to `.keras` names)."""
    if path.is_dir():
        return "directory"
    return (
        "zip"
        if zipfile.is_zipfile(path)
        else "hdf5"
        if path.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
        else "?"
    )


def formats_of(name: str, saved_models, application_formats) -> dict:
    """The files to write for model `name`: format -> file name."""
    if name == APPLICATION:
        formats = {f: f"{name}.{f}" for f in application_formats}
    elif name == "yamnet_features":
        formats = {"h5": f"{name}.h5"}  # its 257x64 mel matrix is stored as JSON text
    else:
        formats = {"h5": f"{name}.h5", "keras": f"{name}.keras"}
    if name in saved_models:
        formats["saved_model"] = f"{name}_savedmodel"
    return formats


def write_model(name: str, build, out: Path, formats: dict) -> tuple[list, list, dict]:
    keras.backend.clear_session()
    keras.utils.set_random_seed(SEED)
    model, inputs, targets = build()
    if targets is None:  # trained models keep the weights training gave them
        _perturb_constant_weights(model)
    expected = _predict(model, inputs)
    record = {"kind": build.__doc__.strip().splitlines()[0], **describe(model)}
    if targets is not None:
        record["compile"] = describe_compile(model, inputs, targets)
        if ">" in record["compile"]["loss"]:
            record["custom_objects"] = sorted({*record["custom_objects"], record["compile"]["loss"]})
    written, unwritable = [], []
    for file_format, file_name in formats.items():
        try:
            model.save(
                str(out / file_name), **({"save_format": "tf"} if file_format == "saved_model" else {})
            )
        except Exception as error:  # noqa: BLE001  (Keras 2 refusing to write is the finding)
            unwritable.append({"model": name, "format": file_format, "error": _first_and_last_line(error)})
            continue
        written.append(
            {
                "path": file_name,
                "model": name,
                "format": file_format,
                "arrays": f"{name}.npz",
                "container": container(out / file_name),
            }
        )
    trained = None
    if targets is not None:  # the reference for "training continues": one more step
        _fit_step(model, inputs, targets)
        trained = _predict(model, inputs)
    for entry in written:
        entry["keras2_reload"] = keras2_reload(out / entry["path"], inputs, expected, targets, trained)

    arrays = {f"input_{i}": v for i, v in enumerate(inputs)}
    arrays.update({f"output_{i}": v for i, v in enumerate(expected)})
    arrays.update({f"target_{i}": v for i, v in enumerate(targets or [])})
    arrays.update({f"trained_output_{i}": v for i, v in enumerate(trained or [])})
    np.savez(out / f"{name}.npz", **arrays)
    return written, unwritable, record


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument(
        "--saved-model",
        nargs="*",
        default=[],
        metavar="MODEL",
        help="also write these models as SavedModel directories (100-300 KB each)",
    )
    parser.add_argument(
        "--application",
        nargs="*",
        default=[],
        choices=["h5", "keras"],
        help=f"the formats to write the applications model ({APPLICATION}) in",
    )
    parser.add_argument("--yamnet", type=Path, help="a folder holding YAMNet's features.py and params.py")
    parser.add_argument("--only", nargs="*", help="write only these models")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    builds = dict(MODELS)
    if args.yamnet:
        builds["yamnet_features"] = lambda: yamnet_features(args.yamnet)
        builds["yamnet_features"].__doc__ = yamnet_features.__doc__
    if not args.application:
        del builds[APPLICATION]
    if args.only:
        builds = {name: builds[name] for name in args.only}
    files, unwritable, models, failed = [], [], {}, {}
    for name, build in builds.items():
        print(f"writing {name}", flush=True)
        try:
            formats = formats_of(name, args.saved_model, args.application)
            written, refused, record = write_model(name, build, args.out, formats)
        except Exception as error:  # noqa: BLE001  (a model this release cannot build is reported)
            traceback.print_exc()
            failed[name] = _first_and_last_line(error)
            continue
        files += written
        unwritable += refused
        models[name] = record
    package = keras.Model.__module__.split(".")[0]  # "keras" (2.12-2.15) or "tf_keras"
    site_packages = Path(importlib.import_module(package).__file__).parent.parent
    summary = {
        "keras_package": package,
        # Where this release keeps its engine, under site-packages (keras/engine, keras/src/engine...).
        "keras_path": str(Path(inspect.getfile(keras.Model)).parent.relative_to(site_packages)),
        "keras_version": importlib.import_module(package).__version__,
        "tensorflow_version": tf.__version__,
        "python": sys.version.split()[0],
        "models": models,
        "files": files,
        "unwritable": unwritable,
        "not_built": failed,
    }
    (args.out / "written.json").write_text(json.dumps(summary, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
