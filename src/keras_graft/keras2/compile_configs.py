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
>>> round(float(arguments["optimizer"].learning_rate), 4), arguments["loss"].__name__, problems
(0.01, 'mean_squared_error', [])
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import keras
import numpy as np

from keras_graft.errors import UntranslatedCompileWarning

# Keras 2 optimizer keys without a Keras 3 counterpart that change nothing:
# Keras 3 compiles the whole training step (`model.compile(jit_compile=)`),
# and has only the new optimizers.
DROPPED_OPTIMIZER_KEYS = ("is_legacy_optimizer", "jit_compile")
# Keras 2's default reduction; Keras 3 calls it by what it does.
REDUCTIONS = {"auto": "sum_over_batch_size", "sum_over_batch_size": "sum_over_batch_size",
              "sum": "sum", "none": "none"}
# compile() arguments a `compile_config` may hold besides the objects.
PLAIN_ARGUMENTS = ("loss_weights", "run_eagerly", "steps_per_execution", "jit_compile")


class Untranslatable(Exception):
    """One part of the training setup that has no Keras 3 translation (internal)."""


def _registered(name: str, custom_objects: dict):
    if name in custom_objects:
        return custom_objects[name]
    registered = keras.saving.get_custom_objects()
    if name in registered:
        return registered[name]
    # `.keras` files of keras 2.13-2.16 dropped the package of a registered function.
    matches = [obj for key, obj in registered.items() if key.rpartition(">")[2] == name and ">" in key]
    if len(matches) > 1:
        raise Untranslatable(f"`{name}` names {len(matches)} registered objects; pass the one meant in custom_objects=")
    return matches[0] if matches else None


def _function(name: str, custom_objects: dict, kind: str):
    """The loss or metric function Keras 2 stored by name."""
    found = _registered(name, custom_objects)
    if found is not None:
        return found
    builtin = getattr(keras.metrics, name, None) if kind == "metric" else None
    if inspect.isfunction(builtin):
        return builtin
    try:
        found = keras.losses.get(name)
    except ValueError:
        found = None
    if found is None:
        raise Untranslatable(
            f"the {kind} `{name}` is neither a Keras function nor registered in this process: "
            "import the module that defines it first (`custom_objects=` for "
            "`keras_graft.keras2.files.load_model`, `--import MODULE` for the keras-graft command)"
        )
    return found


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
        return _function(config, custom_objects, kind)
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise Untranslatable(f"the {kind} config {config!r:.120} is not one Keras 2 writes")
    class_name, inner = config["class_name"], config.get("config")
    if class_name == "function" and isinstance(inner, str):
        return _function(inner, custom_objects, kind)
    if not isinstance(inner, dict):
        raise Untranslatable(f"the {kind} `{class_name}` has no config")
    inner = dict(inner)
    if "reduction" in inner:
        if inner["reduction"] not in REDUCTIONS:
            raise Untranslatable(f"the {kind} `{class_name}` has reduction {inner['reduction']!r}, which Keras 3 lacks")
        inner["reduction"] = REDUCTIONS[inner["reduction"]]
    if class_name == "MeanMetricWrapper" and isinstance(inner.get("fn"), str):
        # Keras 3's own keeps `fn` a string, which it then calls.
        function = _function(inner["fn"], custom_objects, "metric")
        return keras.metrics.MeanMetricWrapper(function, name=inner.get("name"), dtype=inner.get("dtype"))
    registered = _registered(class_name, custom_objects)
    if isinstance(registered, type):
        return registered.from_config(inner)
    deserialize = keras.metrics.deserialize if kind == "metric" else keras.losses.deserialize
    try:
        return deserialize({"class_name": class_name, "config": inner})
    except (TypeError, ValueError) as error:
        raise Untranslatable(f"the {kind} `{class_name}` does not load in Keras 3 ({error})") from error


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
    try:
        return keras.optimizers.schedules.deserialize(
            {"class_name": config.get("class_name"), "config": config.get("config")}
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
        return keras.optimizers.deserialize({"class_name": class_name, "config": inner})
    except (TypeError, ValueError) as error:
        raise Untranslatable(f"the optimizer `{class_name}` does not load in Keras 3 ({error})") from error


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


def _per_output(value, outputs: int):
    # `.h5` files list metrics per output even for one output.
    if outputs == 1 and isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        return value[0]
    return value


def _slots(optimizer) -> list:
    """The Keras 3 optimizer's variables in Keras 2's order: the learning rate left out."""
    learning_rate = optimizer.learning_rate
    return [variable for variable in optimizer.variables if variable is not learning_rate]


def restore_state(model: keras.Model, state: list[np.ndarray]) -> str | None:
    """Assigns Keras 2's optimizer state to `model.optimizer`; why not, when it cannot."""
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    slots = _slots(optimizer)
    saved = [tuple(np.shape(value)) for value in state]
    expected = [tuple(variable.shape) for variable in slots]
    if saved != expected:
        return (
            f"its state ({len(saved)} variables: {saved[:5]}...) does not match Keras 3's "
            f"`{type(optimizer).__name__}` ({len(expected)} variables: {expected[:5]}...)"
        )
    for variable, value in zip(slots, state):
        variable.assign(value)
    return None


def restore(model: keras.Model, setup: dict | None, state: list | None, source,
            custom_objects: dict | None = None) -> None:
    """Compiles `model` as the Keras 2 file `source` was, with the optimizer state
    where the file has it; warns (`UntranslatedCompileWarning`) about what it cannot."""
    if not setup:
        return
    arguments, problems = compile_arguments(setup, custom_objects)
    if problems:
        warnings.warn(UntranslatedCompileWarning(
            f"{source} was compiled, but {problems[0]}. The model is loaded uncompiled: "
            "compile it yourself to train it."
        ), stacklevel=3)
        return
    for key in ("metrics", "weighted_metrics"):
        if key in arguments:
            arguments[key] = _per_output(arguments[key], len(model.outputs))
    model.compile(**arguments)
    if state:
        problem = restore_state(model, state)
        if problem:
            warnings.warn(UntranslatedCompileWarning(
                f"{source}: the optimizer state was not restored: {problem}. Training "
                "continues with a freshly initialized optimizer."
            ), stacklevel=3)
