"""Compiled Keras 2 files of every loss, metric and optimizer, written by tf_keras in a child process.

Run as a script with `TF_USE_LEGACY_KERAS=1`, it compiles small models with
each of tf_keras's losses (by every name it accepts, and as objects), its
metrics (names and objects) and its optimizers (the current ones and two
legacy ones), trains each one step so that optimizer state exists, saves
`.h5` and `.keras` files, and stores what Keras 2 computed beside them in
`NAME.json`: `evaluate()` on the stored data, and, for the optimizers, the
predictions after one more training step. `functions.json` holds the values
of every public loss and metric function of tf_keras, by name. `generate(directory)` runs it once
per test session (shared by pytest-xdist workers).

Every model's outputs are heads `o0`, `o1`... each with the activation its
loss needs (softmax for categorical losses, sigmoid for binary ones), on the
same input; the targets are stored per head.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

BATCH, FEATURES, CLASSES = 8, 4, 3

# Loss names as Keras 2 accepts them in `compile(loss=...)`, with the kind of head.
LOSS_NAMES = {
    "mse": "linear",
    "mean_squared_error": "linear",
    "mae": "linear",
    "mean_absolute_error": "linear",
    "mape": "positive",
    "mean_absolute_percentage_error": "positive",
    "msle": "positive",
    "mean_squared_logarithmic_error": "positive",
    "huber": "linear",
    "log_cosh": "linear",
    "logcosh": "linear",
    "cosine_similarity": "linear",
    "poisson": "positive",
    "hinge": "signs",
    "squared_hinge": "signs",
    "categorical_hinge": "categorical",
    "binary_crossentropy": "binary",
    "binary_focal_crossentropy": "binary",
    "categorical_crossentropy": "categorical",
    "categorical_focal_crossentropy": "categorical",
    "sparse_categorical_crossentropy": "sparse",
    "kld": "categorical",
    "kl_divergence": "categorical",
    "kullback_leibler_divergence": "categorical",
}
# Loss objects with non-default arguments: (class name, kwargs, head kind).
LOSS_OBJECTS = [
    ("MeanSquaredError", {}, "linear"),
    ("MeanAbsoluteError", {"reduction": "sum"}, "linear"),
    ("Huber", {"delta": 0.5}, "linear"),
    ("LogCosh", {}, "linear"),
    ("CosineSimilarity", {"axis": -1}, "linear"),
    ("MeanSquaredLogarithmicError", {}, "positive"),
    ("Poisson", {}, "positive"),
    ("Hinge", {}, "signs"),
    ("SquaredHinge", {}, "signs"),
    ("BinaryCrossentropy", {"label_smoothing": 0.1}, "binary"),
    ("BinaryFocalCrossentropy", {"gamma": 1.5}, "binary"),
    ("CategoricalCrossentropy", {"label_smoothing": 0.2}, "categorical"),
    ("CategoricalFocalCrossentropy", {"alpha": 0.5}, "categorical"),
    ("SparseCategoricalCrossentropy", {}, "sparse"),
    ("KLDivergence", {}, "categorical"),
    ("CategoricalHinge", {}, "categorical"),
]
# Metrics per head kind, as names and as objects (class name, kwargs).
METRIC_NAMES = {
    "linear": [
        "mae",
        "mse",
        "mean_absolute_error",
        "mean_squared_error",
        "cosine_similarity",
        "logcosh",
        "log_cosh",
    ],
    "positive": ["mape", "msle", "poisson"],
    "binary": ["accuracy", "binary_accuracy", "binary_crossentropy"],
    "categorical": [
        "accuracy",
        "categorical_accuracy",
        "top_k_categorical_accuracy",
        "kullback_leibler_divergence",
        "categorical_crossentropy",
    ],
    "sparse": [
        "accuracy",
        "sparse_categorical_accuracy",
        "sparse_top_k_categorical_accuracy",
        "sparse_categorical_crossentropy",
    ],
}
METRIC_OBJECTS = {
    "linear": [
        ("RootMeanSquaredError", {}),
        ("MeanAbsoluteError", {}),
        ("CosineSimilarity", {}),
        ("LogCoshError", {}),
        ("R2Score", {}),
    ],
    "positive": [("MeanAbsolutePercentageError", {}), ("Poisson", {})],
    "binary": [
        ("BinaryAccuracy", {"threshold": 0.4}),
        ("AUC", {"num_thresholds": 50}),
        ("Precision", {}),
        ("Recall", {}),
        ("BinaryCrossentropy", {"label_smoothing": 0.1}),
        ("TruePositives", {}),
    ],
    "categorical": [
        ("CategoricalAccuracy", {}),
        ("TopKCategoricalAccuracy", {"k": 2}),
        ("KLDivergence", {}),
        ("CategoricalCrossentropy", {}),
    ],
    "sparse": [("SparseCategoricalAccuracy", {}), ("SparseTopKCategoricalAccuracy", {"k": 2})],
}
# The current tf_keras optimizers with non-default arguments, and two legacy ones.
OPTIMIZERS = [
    ("SGD", {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True}),
    ("RMSprop", {"learning_rate": 0.01, "momentum": 0.5, "centered": True}),
    ("Adam", {"learning_rate": 0.02, "amsgrad": True}),
    ("AdamW", {"learning_rate": 0.02, "weight_decay": 0.01}),
    ("Adadelta", {"learning_rate": 0.5}),
    ("Adagrad", {"learning_rate": 0.1}),
    ("Adamax", {"learning_rate": 0.02}),
    ("Adafactor", {"learning_rate": 0.05}),
    ("Nadam", {"learning_rate": 0.02}),
    ("Ftrl", {"learning_rate": 0.1, "l1_regularization_strength": 0.01}),
    ("Lion", {"learning_rate": 0.01}),
    ("Adam", {"learning_rate": 0.02, "clipnorm": 0.5, "name": "clipped"}),
    (
        "Adam",
        {
            "learning_rate": {
                "class_name": "ExponentialDecay",
                "config": {"initial_learning_rate": 0.02, "decay_steps": 2, "decay_rate": 0.5},
            },
            "name": "scheduled",
        },
    ),
    ("legacy.Adam", {"learning_rate": 0.02}),
    ("legacy.SGD", {"learning_rate": 0.05, "momentum": 0.9}),
]


def file_name(kind: str, name: str) -> str:
    return f"{kind}_{name.replace('.', '_')}"


def data(kinds: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(11)
    x = rng.normal(size=(BATCH, FEATURES)).astype("float32")
    targets = {
        "linear": rng.normal(size=(BATCH, CLASSES)),
        "positive": rng.uniform(0.5, 2.0, size=(BATCH, CLASSES)),
        "signs": np.sign(rng.normal(size=(BATCH, CLASSES))),
        "binary": (rng.random((BATCH, CLASSES)) > 0.5).astype("float64"),
        "categorical": np.eye(CLASSES)[rng.integers(0, CLASSES, BATCH)],
        "sparse": rng.integers(0, CLASSES, (BATCH, 1)),
    }
    return x, [targets[kind].astype("float32") for kind in kinds]


def function_data(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(y_true, y_pred) any Keras 2 loss or metric function named `name` takes."""
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(BATCH, CLASSES))
    y_pred = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype("float32")
    if "sparse" in name:
        return rng.integers(0, CLASSES, (BATCH, 1)).astype("float32"), y_pred
    return np.eye(CLASSES)[rng.integers(0, CLASSES, BATCH)].astype("float32"), y_pred


def _model(keras, kinds: list[str]):
    activation = {
        "linear": None,
        "positive": "softplus",
        "signs": "tanh",
        "binary": "sigmoid",
        "categorical": "softmax",
        "sparse": "softmax",
    }
    keras.utils.set_random_seed(3)
    x = keras.Input((FEATURES,), name="x")
    hidden = keras.layers.Dense(6, activation="relu", name="hidden")(x)
    heads = [
        keras.layers.Dense(CLASSES, activation=activation[kind], name=f"o{i}")(hidden)
        for i, kind in enumerate(kinds)
    ]
    return keras.Model(x, heads)


def _write(keras, directory: Path, name: str, kinds, compile_arguments: dict, trained_step: bool):
    keras.backend.clear_session()
    model = _model(keras, kinds)
    model.compile(**compile_arguments)
    x, targets = data(kinds)
    model.fit(x, targets, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    model.save(directory / f"{name}.h5")
    model.save(directory / f"{name}.keras")
    record = {
        "evaluate": model.evaluate(x, targets, batch_size=BATCH, verbose=0, return_dict=True),
        "kinds": kinds,
        "iterations": int(model.optimizer.iterations.numpy()),
        # None for a schedule: Keras 2 reports the rate of the last step, Keras 3 of the next.
        "learning_rate": None
        if isinstance(
            getattr(model.optimizer, "_learning_rate", None), keras.optimizers.schedules.LearningRateSchedule
        )
        else float(keras.backend.get_value(model.optimizer.learning_rate)),
    }
    if trained_step:
        model.fit(x, targets, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
        outputs = model.predict(x, verbose=0)
        record["trained_outputs"] = [
            np.asarray(o).tolist() for o in (outputs if isinstance(outputs, list) else [outputs])
        ]
    (directory / f"{name}.json").write_text(json.dumps(record))


def _function_values(keras) -> dict:
    """Every public loss and metric function of tf_keras, by `kind:name`: its values."""
    import inspect

    values = {}
    for kind, module in (("loss", keras.losses), ("metric", keras.metrics)):
        for name in dir(module):
            function = getattr(module, name)
            if inspect.isfunction(function) and name not in ("get", "serialize", "deserialize"):
                values[f"{kind}:{name}"] = np.asarray(function(*function_data(name))).tolist()
    return values


def write_all(directory: Path) -> None:
    import tf_keras as keras

    (directory / "functions.json").write_text(json.dumps(_function_values(keras)))
    names = list(LOSS_NAMES)
    _write(
        keras,
        directory,
        "losses_by_name",
        [LOSS_NAMES[n] for n in names],
        {"optimizer": "adam", "loss": names},
        trained_step=False,
    )
    losses = [getattr(keras.losses, cls)(**kwargs) for cls, kwargs, _ in LOSS_OBJECTS]
    _write(
        keras,
        directory,
        "loss_objects",
        [kind for *_, kind in LOSS_OBJECTS],
        {"optimizer": "adam", "loss": losses},
        trained_step=False,
    )
    kinds = list(METRIC_NAMES)
    # Objects get names of their own: Keras refuses two metrics of one name.
    metrics = [
        METRIC_NAMES[kind]
        + [
            getattr(keras.metrics, cls)(name=f"{cls}_object", **kwargs)
            for cls, kwargs in METRIC_OBJECTS[kind]
        ]
        for kind in kinds
    ]
    loss_of = {
        "linear": "mse",
        "positive": "msle",
        "binary": "binary_crossentropy",
        "categorical": "categorical_crossentropy",
        "sparse": "sparse_categorical_crossentropy",
    }
    _write(
        keras,
        directory,
        "metrics",
        kinds,
        {"optimizer": "adam", "loss": [loss_of[k] for k in kinds], "metrics": metrics},
        trained_step=False,
    )
    for name, kwargs in OPTIMIZERS:
        kwargs = dict(kwargs)
        if isinstance(kwargs["learning_rate"], dict):
            kwargs["learning_rate"] = keras.optimizers.schedules.deserialize(kwargs["learning_rate"])
        namespace, _, cls = name.rpartition(".")
        module = keras.optimizers.legacy if namespace else keras.optimizers
        optimizer = getattr(module, cls)(**kwargs)
        _write(
            keras,
            directory,
            file_name("optimizer", kwargs.get("name", name)),
            ["linear"],
            {"optimizer": optimizer, "loss": "mse"},
            trained_step=True,
        )


def generate(directory: Path) -> Path:
    """Writes the compiled Keras 2 files into `directory` once (other processes wait)."""
    import keras2_models

    return keras2_models.generate(directory, __file__, "the compiled files")


if __name__ == "__main__":
    write_all(Path(sys.argv[1]))
