"""Errors for names a model file uses that this process has not registered.

A model file names each custom object it needs, and Keras finds it only once
the module defining it has been imported:

| object | how the file names it | module in the file |
|---|---|---|
| `@keras_graft.layer`, a registered Keras layer | `registered_name: "parts>custom_matmul"` | `module: "my_project.parts"` (`.keras`; Keras 2 `.keras` from 2.14) |
| `@keras_graft.op` | the op layer's `op: "my_project>soft_clip"` | the op layer's `op_module` (`registry.resolve` raises) |
| `@keras_graft.loss`, `@keras_graft.metric`, registered functions | `config: "parts>log_cosh"` | none: Keras writes `module: "builtins"` for functions |
| Keras 2 custom layers in `.h5` | `class_name: "package>ScaledDense"` | none |

Keras' own message for a missing one ("Could not locate class
'custom_matmul'") says neither what the object is nor which module to
import. `explain` finds the object in the file's config and raises
`UnregisteredNameError` naming the module, or, where the file keeps none, the
package it was registered under (keras-graft's decorators default to the
defining module's last name).

>>> str(unregistered("parts>log_cosh", None))  # doctest: +NORMALIZE_WHITESPACE
"The model file uses 'parts>log_cosh', which is not registered in this process. Import
the module that defines it before loading (it was registered under the package 'parts';
keras-graft's decorators name the package after the module's last name, e.g.
`my_project.parts`), or pass it in `custom_objects=`."
"""

from __future__ import annotations

import re
from typing import Any

from keras_graft.errors import UnregisteredNameError

# Keras 3's and its legacy loader's messages for a name nothing registered.
_MISSING = (
    re.compile(r"Could not locate (?:class|function) '([^']+)'"),
    re.compile(r"Unknown (?:layer|loss|metric|optimizer|object|activation)[^:']*: '([^']+)'"),
)
# Modules a file may name that are Keras' or Python's, not the user's.
_NOT_USER_MODULES = ("keras", "tf_keras", "builtins", "tensorflow")


def unregistered(name: str, module: str | None, what: str = "") -> UnregisteredNameError:
    """The error for `name` (registered name), defined in `module` when known."""
    subject = f"{what} {name!r}" if what else repr(name)
    if module:
        where = f"Import `{module}`, the module that defines it, before loading"
    else:
        package = name.partition(">")[0] if ">" in name else None
        where = "Import the module that defines it before loading"
        if package:
            where += (
                f" (it was registered under the package {package!r}; keras-graft's "
                f"decorators name the package after the module's last name, e.g. "
                f"`my_project.{package}`)"
            )
    return UnregisteredNameError(
        f"The model file uses {subject}, which is not registered in this process. "
        f"{where}, or pass it in `custom_objects=`.",
        name=name,
        module=module,
    )


def missing_name(error: BaseException) -> str | None:
    """The name Keras could not find, from `error` or the errors it was raised from."""
    while error is not None:
        if isinstance(error, UnregisteredNameError):
            return error.name
        for pattern in _MISSING:
            match = pattern.search(str(error))
            if match:
                return match.group(1)
        error = error.__cause__ or error.__context__
    return None


def _objects(config: Any):
    if isinstance(config, dict):
        yield config
        for value in config.values():
            yield from _objects(value)
    elif isinstance(config, list):
        for value in config:
            yield from _objects(value)


def _names_of(obj: dict) -> set:
    names = {obj.get("class_name"), obj.get("registered_name")}
    if obj.get("class_name") == "function":
        names.add(obj.get("config"))
    return {name for name in names if isinstance(name, str)}


def _user_module(module: Any) -> str | None:
    if not isinstance(module, str) or module == "__main__" or module.split(".")[0] in _NOT_USER_MODULES:
        return None
    return module


def explain(error: BaseException, config: Any) -> UnregisteredNameError | None:
    """An `UnregisteredNameError` for the name `error` says Keras could not find,
    looked up in the model file's `config`; None when `error` is about something else."""
    name = missing_name(error)
    if name is None:
        return None
    if isinstance(error, UnregisteredNameError):
        return error
    for obj in _objects(config):
        if name in _names_of(obj):
            registered = obj.get("registered_name")
            full_name = registered if isinstance(registered, str) and ">" in registered else name
            build = obj.get("build_config")
            what = "@keras_graft.layer" if isinstance(build, dict) and "input_dtypes" in build else ""
            return unregistered(full_name, _user_module(obj.get("module")), what)
    return unregistered(name, None)
