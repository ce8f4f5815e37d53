"""Names of the functions op layers call, and the way back from name to function.

A TensorFlow op is stored as `"tf."` plus its canonical public name
(`"tf.math.top_k"`); a function registered with `@keras_graft.op` as
`"package>name"`, like Keras' own registered objects. Resolving a name runs
the safety checks (`keras_graft.core.safety`) before looking anything up.
"""

from __future__ import annotations

from collections.abc import Callable

from keras_graft import _compat
from keras_graft.core import safety
from keras_graft.core.unregistered import unregistered

TF_PREFIX = "tf."

_registered: dict[str, Callable] = {}
_name_of_registered: dict[int, str] = {}


def register(function: Callable, package: str, name: str | None) -> str:
    """Stores `function` under `"package>name"` (its own name by default); returns the key."""
    if ">" in package or (name is not None and ">" in name):
        raise ValueError(f"`package` and `name` cannot contain '>'; got {package!r}, {name!r}.")
    key = f"{package}>{name or function.__name__}"
    existing = _registered.get(key)
    if existing is not None and _qualified(existing) != _qualified(function):
        raise ValueError(
            f"The op name {key!r} is already registered for "
            f"{_qualified(existing)}. Pass another `name=` or `package=`."
        )
    _registered[key] = function
    _name_of_registered[id(function)] = key
    return key


def unwrap(function: Callable) -> Callable:
    """The user's function behind an `@keras_graft.op` wrapper (others unchanged).

    TensorFlow's own `__wrapped__` chains are kept: they carry op dispatch.
    """
    return function.__wrapped__ if hasattr(function, "graft_name") else function


def _qualified(function: Callable) -> str:
    return f"{function.__module__}.{function.__qualname__}"


def name_of(function: Callable) -> str | None:
    """The stored name of `function`, or None when it has none."""
    bounded_name = getattr(function, "graft_tf_name", None)  # `safety.bounded`
    if bounded_name is not None:
        return TF_PREFIX + bounded_name
    function = unwrap(function)
    registered = _name_of_registered.get(id(function))
    if registered is not None:
        return registered
    tf_name = _compat.canonical_tf_name(function)
    return TF_PREFIX + tf_name if tf_name else None


def display_name(function: Callable) -> str:
    """A readable name for messages and default layer names."""
    stored = name_of(function)
    if stored is None:
        return getattr(function, "__qualname__", repr(function))
    return stored.rpartition(">")[2] if ">" in stored else stored


def require_name(function: Callable) -> str:
    """`name_of(function)`, or an error saying how to give it a name."""
    stored = name_of(function)
    if stored is None:
        raise TypeError(
            f"{display_name(function)} is neither a public TensorFlow function "
            "nor registered with `@keras_graft.op`, so a model file could not "
            "name it. Decorate it with `@keras_graft.op` (and import its module "
            "before loading the model)."
        )
    return stored


def check_allowed(stored_name: str) -> None:
    """Refuses a TF name that the allow-list does not hold (registered names pass)."""
    if stored_name.startswith(TF_PREFIX) and safety.enforced():
        safety.check_tf_name(stored_name[len(TF_PREFIX) :])


def defining_module(stored_name: str) -> str | None:
    """The module that defines the registered op `stored_name` (None for TF ops)."""
    function = _registered.get(stored_name)
    return getattr(function, "__module__", None) if function is not None else None


def resolve(stored_name: str, module: str | None = None) -> Callable:
    """The function a stored name stands for, after the safety checks.

    While Keras deserializes in safe mode (a model file), a TF op comes with
    the argument bounds `safety.bounded` gives it, wherever it is called:
    this is where every op and function argument a file names is resolved.
    `module`, the defining module a model file recorded for a registered op,
    is only named in the error when the op is not registered.
    """
    if not isinstance(stored_name, str):
        raise TypeError(f"An op name must be a string; got {stored_name!r:.80}.")
    if ">" in stored_name:
        function = _registered.get(stored_name)
        if function is None:
            user_module = module if isinstance(module, str) and module != "__main__" else None
            raise unregistered(stored_name, user_module, "@keras_graft.op")
        return function
    if not stored_name.startswith(TF_PREFIX):
        raise safety.UnsafeOpError(
            f"Refusing op {stored_name!r}: op names are TensorFlow names "
            "('tf.math.sin') or registered names ('package>name')."
        )
    check_allowed(stored_name)
    tf_name = stored_name[len(TF_PREFIX) :]
    if safety.enforced() and not safety.is_user_allowed(tf_name):
        symbol = safety.allowed_ops()[tf_name]
    else:
        symbol = _compat.tf_symbol(tf_name)
    if symbol is None:
        raise ValueError(f"The model uses `{stored_name}`, which this TensorFlow version does not export.")
    return safety.bounded(tf_name, symbol) if _compat.deserializing_untrusted() else symbol


def needs_audit(stored_name: str) -> bool:
    """Whether the graph an op builds must pass the audit."""
    return stored_name.startswith(TF_PREFIX) and safety.enforced() and not safety.is_user_allowed(stored_name)
