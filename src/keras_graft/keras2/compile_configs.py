"""A Keras 2 file's training setup (loss, metrics, optimizer and its state) in Keras 3.

Keras 2 files keep the arguments of `model.compile` in two forms:

- `.h5` and SavedModel: a `training_config` with `loss`, `metrics` (one list
  per output of `MeanMetricWrapper` or metric class configs), `optimizer_config`
  (`{"class_name": "Custom>Adam", "config": {...}}`: Keras 2.11+ registered
  its optimizers under the package `Custom`);
- `.keras` (2.13+): a `compile_config` with the arguments as given (`"adam"`,
  `"mse"`), objects as `{"module", "class_name", "config"}`, and a registered
  loss function as `{"class_name": "function", "config": "scaled_mse"}`, its
  package dropped until tf_keras 2.21 (which writes `"package>scaled_mse"`).

Keras 3 reads neither faithfully (`keras.losses.deserialize("mse")` fails;
`Custom>Adam` becomes a default Adam; `MeanMetricWrapper` keeps `fn` a string),
so each is translated here into Keras 3 objects: functions by name (the user's
`custom_objects`, then registered objects, then Keras' own), classes through
Keras 3's deserializers, Keras 2-only keys translated or refused. Whatever does
not translate leaves the model uncompiled, with an `UntranslatedCompileWarning`
that names it and the fix.

The optimizer state is Keras 2's list `[iteration, slot, slot, ...]` (for
Adam `m` and `v` of each trainable variable, interleaved). Keras 3's
optimizers keep the same order with the learning rate as a variable after
the iteration (`[iteration, learning_rate, m0, v0, ...]`); the learning rate
comes from the config. The state is restored when every slot matches its
Keras 3 counterpart's shape, else the optimizer starts fresh, with a warning.

>>> import keras_graft
>>> arguments, problems = compile_arguments({"loss": "mse", "optimizer_config":
...     {"class_name": "Custom>Adam", "config": {"learning_rate": 0.01, "is_legacy_optimizer": False}}})
>>> round(float(arguments["optimizer"].learning_rate), 4), arguments["loss"], problems
(0.01, 'mse', [])
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import keras
import numpy as np

from keras_graft import _compat
from keras_graft.errors import UntranslatedCompileWarning

# Keras 2 optimizer keys without a Keras 3 counterpart that change nothing:
# Keras 3 compiles the whole training step (`model.compile(jit_compile=)`),
# and has only the new optimizers.
DROPPED_OPTIMIZER_KEYS = ("is_legacy_optimizer", "jit_compile")
# Keras 2's default reduction; Keras 3 calls it by what it does.
REDUCTIONS = {
    "auto": "sum_over_batch_size",
    "sum_over_batch_size": "sum_over_batch_size",
    "sum": "sum",
    "none": "none",
}
# compile() arguments a `compile_config` may hold besides the objects.
PLAIN_ARGUMENTS = ("loss_weights", "run_eagerly", "steps_per_execution", "jit_compile")
# Names of Keras 2 loss and metric functions that Keras 3 dropped, and the
# function (its `__name__` in Keras 2, the same function in Keras 3) they named.
# Every public function name of tf_keras's `losses` and `metrics` is either
# known to Keras 3 or listed here (tests/test_keras2_training.py checks it).
KERAS2_FUNCTION_NAMES = {
    "kullback_leibler_divergence": "kl_divergence",
    "kld": "kl_divergence",
    "KLD": "kl_divergence",
    "logcosh": "log_cosh",
}


class Untranslatable(Exception):
    """One part of the training setup that has no Keras 3 translation (internal)."""


# How Keras serializes a Python function's bytecode (a lambda, or any function
# Keras 2 could not name), in a compile config as in a `Lambda` layer.
LAMBDA_CLASS = "__lambda__"


def _lambda_problem(kind: str) -> str:
    return (
        f"its {kind} is Python bytecode stored in the file, which keras-graft never runs "
        "(a lambda, or a function Keras 2 could not store by name)"
    )


def _registered(name: str, custom_objects: dict):
    # The user's `custom_objects` may name a registered `package>name` by its bare name.
    for key in (name, name.rpartition(">")[2]):
        if key in custom_objects:
            return custom_objects[key]
    registered = keras.saving.get_custom_objects()
    if name in registered:
        return registered[name]
    # `.keras` files of keras 2.13-2.16 dropped the package of a registered function.
    matches = [obj for key, obj in registered.items() if key.rpartition(">")[2] == name and ">" in key]
    if len(matches) > 1:
        raise Untranslatable(
            f"`{name}` names {len(matches)} registered objects; pass the one meant in custom_objects="
        )
    return matches[0] if matches else None


def _function(name: str, custom_objects: dict, kind: str):
    """The loss or metric function Keras 2 stored by name (for a metric Keras 3
    keeps only as a class, `"cosine_similarity"`, an instance of that class)."""
    found = _registered(name, custom_objects)
    if found is not None:
        return found
    canonical = KERAS2_FUNCTION_NAMES.get(name, name)
    if kind == "metric":
        if inspect.isfunction(getattr(keras.metrics, canonical, None)):
            return getattr(keras.metrics, canonical)
        if _known_to_keras3(canonical, kind):
            return keras.metrics.get(canonical)
    if inspect.isfunction(getattr(keras.losses, canonical, None)):
        return getattr(keras.losses, canonical)
    raise Untranslatable(
        f"the {kind} `{name}` is neither a Keras function nor registered in this process: "
        "import the module that defines it first (`custom_objects=` for "
        "`keras_graft.keras2.files.load_model`, `--import MODULE` for the keras-graft command)"
    )


def _named(metric, name: str | None):
    """A metric function or object under the name Keras 2 gave it."""
    if isinstance(metric, keras.metrics.Metric):
        return (
            metric
            if name in (None, metric.name)
            else type(metric).from_config({**metric.get_config(), "name": name})
        )
    return keras.metrics.MeanMetricWrapper(metric, name=name)


def _known_to_keras3(name: str, kind: str) -> bool:
    try:
        (keras.metrics.get if kind == "metric" else keras.losses.get)(name)
    except (ValueError, TypeError):
        return False
    return True


def _object(config: Any, custom_objects: dict, kind: str):
    """One loss or metric: a name, a function config, or a class config."""
    if isinstance(config, str):
        # A name Keras 3 knows stays a name: Keras names the metric after it
        # (`"mae"`, not `"mean_absolute_error"`), and picks the variant of
        # `"accuracy"` from the outputs, as Keras 2 did.
        if _registered(config, custom_objects) is None and _known_to_keras3(config, kind):
            return config
        function = _function(config, custom_objects, kind)
        if kind == "metric" and getattr(function, "__name__", None) != config:
            # Keras 3 would name it after the function; Keras 2 named it as written.
            return _named(function, config)
        return function
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise Untranslatable(f"the {kind} config {config!r:.120} is not one Keras 2 writes")
    class_name, inner = config["class_name"], config.get("config")
    if class_name == LAMBDA_CLASS:
        raise Untranslatable(_lambda_problem(kind))
    if class_name == "function" and isinstance(inner, str):
        return _function(inner, custom_objects, kind)
    if not isinstance(inner, dict):
        raise Untranslatable(f"the {kind} `{class_name}` has no config")
    inner = dict(inner)
    if kind == "loss":
        # Keras 2's loss classes stored the function they wrap; Keras 3's know it.
        inner.pop("fn", None)
    if "reduction" in inner:
        if inner["reduction"] not in REDUCTIONS:
            raise Untranslatable(
                f"the {kind} `{class_name}` has reduction {inner['reduction']!r}, which Keras 3 lacks"
            )
        inner["reduction"] = REDUCTIONS[inner["reduction"]]
    if class_name == "MeanMetricWrapper" and isinstance(inner.get("fn"), str):
        # Keras 3's own keeps `fn` a string, which it then calls.
        function = _function(inner["fn"], custom_objects, "metric")
        if isinstance(function, keras.metrics.Metric):
            return _named(function, inner.get("name"))
        return keras.metrics.MeanMetricWrapper(function, name=inner.get("name"), dtype=inner.get("dtype"))
    registered = _registered(class_name, custom_objects)
    if isinstance(registered, type):
        return registered.from_config(inner)
    deserialize = keras.metrics.deserialize if kind == "metric" else keras.losses.deserialize
    try:
        found = deserialize({"class_name": class_name, "config": inner})
    except (TypeError, ValueError) as error:
        raise Untranslatable(f"the {kind} `{class_name}` does not load in Keras 3 ({error})") from error
    if not callable(found):  # Keras hands back the name of a class it does not know
        raise Untranslatable(f"the {kind} `{class_name}` is not one Keras 3 has")
    return found


def _nested(config: Any, custom_objects: dict, kind: str):
    """Losses or metrics as Keras 2 nested them: per output, in lists or dicts."""
    if config is None:
        return None
    if isinstance(config, list):
        return [_nested(item, custom_objects, kind) for item in config]
    if isinstance(config, dict) and "class_name" not in config:
        return {key: _nested(item, custom_objects, kind) for key, item in config.items()}
    return _object(config, custom_objects, kind)


def _schedule(config: dict):
    inner = config.get("config")
    if isinstance(inner, dict) and inner.get("name") is None:
        inner = {key: value for key, value in inner.items() if key != "name"}  # Keras 3 wants a string
    try:
        return keras.optimizers.schedules.deserialize(
            {"class_name": config.get("class_name"), "config": inner}
        )
    except (TypeError, ValueError) as error:
        raise Untranslatable(
            f"the learning rate schedule `{config.get('class_name')}` does not load in Keras 3 ({error})"
        ) from error


def _optimizer(config: Any, custom_objects: dict):
    if isinstance(config, str):
        try:
            return keras.optimizers.get(config)
        except ValueError as error:
            raise Untranslatable(f"the optimizer {config!r} is not one Keras 3 has") from error
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise Untranslatable(f"the optimizer config {config!r:.120} is not one Keras 2 writes")
    class_name = str(config.get("class_name", "")).removeprefix("Custom>")
    if class_name == LAMBDA_CLASS:
        raise Untranslatable(_lambda_problem("optimizer"))
    inner = {key: value for key, value in config["config"].items() if key not in DROPPED_OPTIMIZER_KEYS}
    if "lr" in inner:  # Keras 2's legacy optimizers
        inner.setdefault("learning_rate", inner.pop("lr"))
    if inner.pop("decay", 0):
        raise Untranslatable(
            f"the optimizer `{class_name}` decays its learning rate with `decay`, which Keras 3 "
            "does not have: compile with a `keras.optimizers.schedules.InverseTimeDecay` instead"
        )
    if isinstance(inner.get("learning_rate"), dict):
        inner["learning_rate"] = _schedule(inner["learning_rate"])
    registered = _registered(config.get("class_name", ""), custom_objects)
    try:
        if isinstance(registered, type):
            return registered.from_config(inner)
        found = keras.optimizers.deserialize({"class_name": class_name, "config": inner})
    except (TypeError, ValueError) as error:
        raise Untranslatable(f"the optimizer `{class_name}` does not load in Keras 3 ({error})") from error
    if not isinstance(found, keras.optimizers.Optimizer):  # the name of a class Keras does not know
        raise Untranslatable(f"the optimizer `{class_name}` is not one Keras 3 has")
    return found


def compile_arguments(setup: dict, custom_objects: dict | None = None) -> tuple[dict, list[str]]:
    """`model.compile` arguments from a Keras 2 `training_config` or `compile_config`,
    and what could not be translated (then the arguments are `{}`)."""
    custom_objects = custom_objects or {}
    try:
        optimizer = setup.get("optimizer_config", setup.get("optimizer"))
        arguments = {
            "optimizer": _optimizer(optimizer if optimizer is not None else "rmsprop", custom_objects),
            "loss": _nested(setup.get("loss"), custom_objects, "loss"),
            "metrics": _nested(setup.get("metrics"), custom_objects, "metric"),
            "weighted_metrics": _nested(setup.get("weighted_metrics"), custom_objects, "metric"),
        }
    except Untranslatable as problem:
        return {}, [str(problem)]
    arguments.update({key: setup[key] for key in PLAIN_ARGUMENTS if setup.get(key) is not None})
    return {key: value for key, value in arguments.items() if value is not None}, []


def _per_output(metrics, output_names: list[str]):
    """Metric configs as Keras 3 names them: per output only for several outputs,
    and without the output's name Keras 2 put before each compiled metric's."""
    if not isinstance(metrics, list) or not all(isinstance(m, list) for m in metrics):
        return metrics
    if len(output_names) == 1 and len(metrics) == 1:
        return metrics[0]  # `.h5` files list metrics per output even for one
    if len(metrics) != len(output_names):
        return metrics
    return [
        [_without_prefix(metric, f"{output}_") for metric in per_output]
        for output, per_output in zip(output_names, metrics)
    ]


def _without_prefix(metric, prefix: str):
    if isinstance(metric, dict) and isinstance(metric.get("config"), dict):
        name = metric["config"].get("name")
        if isinstance(name, str) and name.startswith(prefix):
            return {**metric, "config": {**metric["config"], "name": name.removeprefix(prefix)}}
    return metric


def _slots(optimizer) -> tuple[list, dict]:
    """The Keras 3 optimizer's variables in Keras 2's saved order (the learning
    rate, a Keras 2 hyperparameter, left out), and those Keras 2 did not save."""
    learning_rate = optimizer.learning_rate
    unsaved = _compat.keras3_only_optimizer_variables(optimizer)
    left_out = {id(v) for variables in unsaved.values() for v in variables}
    saved = [v for v in optimizer.variables if v is not learning_rate and id(v) not in left_out]
    return saved, unsaved


def _nadam_u_product(optimizer, iterations: int) -> float:
    # What Keras 2's Nadam and Keras 3's both compute, one factor per step.
    beta_1 = float(optimizer.beta_1)
    return float(np.prod([beta_1 * (1.0 - 0.5 * 0.96**step) for step in range(1, iterations + 1)]))


def restore_state(model: keras.Model, state: list[np.ndarray]) -> str | None:
    """Assigns Keras 2's optimizer state to `model.optimizer`; why not, when it cannot."""
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    slots, unsaved = _slots(optimizer)
    saved = [tuple(np.shape(value)) for value in state]
    expected = [tuple(variable.shape) for variable in slots]
    if saved != expected:
        return (
            f"its state ({len(saved)} variables: {saved[:5]}...) does not match Keras 3's "
            f"`{type(optimizer).__name__}` ({len(expected)} variables: {expected[:5]}...)"
        )
    for variable, value in zip(slots, state):
        variable.assign(value)
    for variable in unsaved.get("u_product", []):
        variable.assign(_nadam_u_product(optimizer, int(optimizer.iterations)))
    return None


def restore(
    model: keras.Model, setup: dict | None, state: list | None, source, custom_objects: dict | None = None
) -> None:
    """Compiles `model` as the Keras 2 file `source` was, with the optimizer state
    where the file has it; warns (`UntranslatedCompileWarning`) about what it cannot."""
    if not setup:
        return
    setup = dict(setup)
    # A Sequential model has no `output_names`: one output, whose name is unused.
    output_names = list(getattr(model, "output_names", None) or [layer.name for layer in model.layers[-1:]])
    for key in ("metrics", "weighted_metrics"):
        setup[key] = _per_output(setup.get(key), output_names)
    arguments, problems = compile_arguments(setup, custom_objects)
    if problems:
        warnings.warn(
            UntranslatedCompileWarning(
                f"{source} was compiled, but {problems[0]}. The model is loaded uncompiled: "
                "compile it yourself to train it."
            ),
            stacklevel=3,
        )
        return
    model.compile(**arguments)
    if state:
        problem = restore_state(model, state)
        if problem:
            warnings.warn(
                UntranslatedCompileWarning(
                    f"{source}: the optimizer state was not restored: {problem}. Training "
                    "continues with a freshly initialized optimizer."
                ),
                stacklevel=3,
            )
