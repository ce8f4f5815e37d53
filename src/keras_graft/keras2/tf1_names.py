"""The TF 1 names Keras 2 recorded for TF 2 ops, and their calls, found by asking TensorFlow.

Keras 2 stored an op layer under the public name of the function whose op
dispatch caught its Keras tensors: the innermost public function the call
reached. Many TF 2 ops hand their arguments on to a TF 1 function that
TensorFlow exports only as `tf.compat.v1.<name>`: `tf.shape(x)` calls
`tf.compat.v1.shape`, `x // 2` and `tf.math.floordiv` call
`tf.compat.v1.floor_div`, `tf.nn.conv2d(x, k, 1, "SAME")` calls
`tf.compat.v1.nn.conv2d(x, filter=k, ..., use_cudnn_on_gpu=True)`. Keras 2
files name those, with the TF 1 function's arguments, and keras-graft's
allow-list refuses the `tf.compat.v1` namespace. `tf2_name` gives the TF 2
op to load instead, which the allow-list then checks like any, and
`tf2_arguments` the arguments of the same call to it.

The map is derived from TensorFlow, not listed by hand:

- **the same function**: the TF 1 names of an allowed TF 2 op in TensorFlow's
  export table (`compat.v1.floordiv` is `tf.math.floordiv` itself);
- **the function it hands its arguments to**: each allowed TF 2 op is called
  on stand-ins (one per required parameter; for parameters with defaults,
  one at a time), which fail conversion as a Keras tensor does, and
  TensorFlow's op dispatch reports which function caught them, with what.
  When that function's public name is a `compat.v1` one, every stand-in
  arrived, and the TF 2 op returned that function's result as it is (not
  computed further, as `tf.image.grayscale_to_rgb` does with the
  `compat.v1.shape` of its input), the TF 1 name maps to the TF 2 op
  (`Delegation`): each TF 1
  parameter that received a TF 2 parameter's stand-in is that parameter
  (`filter` is `filters`), one the TF 2 op also has passes through, and one
  it filled with its own value (`use_cudnn_on_gpu=True`) is dropped when the
  file holds that value. Any other stored value has no TF 2 form and is
  refused.

A `compat.v1` name neither finds (`compat.v1.ones_like`, `compat.v1.py_func`)
stays refused.

>>> tf2_name("compat.v1.floor_div"), tf2_name("compat.v1.shape"), tf2_name("math.sin")
('math.floordiv', 'shape', 'math.sin')
>>> tf2_arguments("compat.v1.nn.conv2d", "x", {"filter": "k", "use_cudnn_on_gpu": True, "padding": "SAME"})
(('x',), {'filters': 'k', 'padding': 'SAME'})
"""

from __future__ import annotations

import functools
import inspect
import logging
import types
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import tensorflow as tf

from keras_graft import _compat
from keras_graft.core import safety
from keras_graft.errors import UntranslatableConfigError

TF1_PREFIX = "compat.v1."


@dataclass(frozen=True)
class Delegation:
    """How a TF 1 function's call is its TF 2 op's call."""

    tf2_name: str
    renamed: Mapping[str, str] = field(default_factory=dict)  # TF 1 parameter -> TF 2 parameter
    filled: Mapping[str, Any] = field(default_factory=dict)  # TF 1 parameter -> the TF 2 op's own value


def tf2_name(keras2_name: str) -> str:
    """The TF 2 op name that a name Keras 2 recorded stands for (unchanged when not a TF 1 name)."""
    delegation = _delegation(keras2_name)
    return keras2_name if delegation is None else delegation.tf2_name


def keras2_function(keras2_name: str):
    """The function Keras 2 called for a name it recorded that `tf2_name` maps (or keeps)."""
    if _delegation(keras2_name) is None:
        return None if keras2_name.startswith(TF1_PREFIX) else _compat.tf_symbol(keras2_name)
    return _compat.tf_symbol(keras2_name)


def tf2_arguments(keras2_name: str, first, kwargs: dict) -> tuple[tuple, dict]:
    """(positional args, keyword args) for `tf2_name(keras2_name)` of the call Keras 2
    stored as `keras2_name(first, **kwargs)`; unchanged unless it names a mapped
    TF 1 function."""
    delegation = _delegation(keras2_name)
    if delegation is None:
        return (first,), kwargs
    tf1_parameters = list(_parameters(_compat.tf_symbol(keras2_name)) or ())
    translated = {}
    for name, value in kwargs.items():
        if name in delegation.renamed:
            translated[delegation.renamed[name]] = value
        elif name in delegation.filled:
            if not _same_value(value, delegation.filled[name]):
                raise UntranslatableConfigError(
                    f"Keras 2 recorded `tf.{keras2_name}` with `{name}={value!r:.40}`; its TF 2 "
                    f"op `tf.{delegation.tf2_name}` always passes `{name}="
                    f"{delegation.filled[name]!r:.40}`, so no TF 2 call means the same; rebuild "
                    "the model from its code and load the file's weights with "
                    "`keras_graft.keras2.files.load_weights(model, path)`."
                )
        else:
            translated[name] = value
    first_parameter = tf1_parameters[0] if tf1_parameters else None
    if first_parameter in delegation.renamed:
        return (), {delegation.renamed[first_parameter]: first, **translated}
    return (first,), translated


def _same_value(stored, filled) -> bool:
    if isinstance(filled, tf.DType):
        return stored in (filled, filled.name)
    return stored == filled and type(stored) is type(filled)


def _delegation(keras2_name: str) -> Delegation | None:
    if not keras2_name.startswith(TF1_PREFIX):
        return None
    return delegations().get(keras2_name)


@functools.cache
def delegations() -> Mapping[str, Delegation]:
    """{TF 1 name: its `Delegation`} for every allowed TF 2 op that has one."""
    mapping: dict[str, Delegation] = {}
    seen = set()
    with _quiet():
        for name, function in sorted(safety.allowed_ops().items()):
            if id(function) in seen:
                continue
            seen.add(id(function))
            canonical = _compat.canonical_tf_name(function) or name
            for tf1 in _compat.tf1_names(function):
                mapping.setdefault(TF1_PREFIX + tf1, Delegation(canonical))
            found = _delegate(function, canonical)
            if found is not None:
                mapping.setdefault(*found)
    return types.MappingProxyType(mapping)


class _StandIn:
    """Stands for one argument of a probed op: like a Keras 2 Keras tensor, it
    has a dtype and a shape but converts to no tensor."""

    dtype = tf.float32
    shape = tf.TensorShape(None)

    def __init__(self, parameter: str):
        self.parameter = parameter

    def get_shape(self):
        return self.shape

    def __tf_tensor__(self, dtype=None, name=None):
        raise ValueError("a stand-in argument")


class _Caught:
    """What a dispatching function returns for stand-ins: which function it was, and
    its arguments. TF code that goes on computing with it fails with `TypeError`, so
    the function around it dispatches instead, as one that could not use a Keras 2
    op layer's output did."""

    def __init__(self, function, args, kwargs):
        self.function, self.args, self.kwargs = function, args, kwargs

    def __getattr__(self, name):
        raise TypeError(f"a probed op's result has no {name!r}")

    def __tf_tensor__(self, dtype=None, name=None):
        raise ValueError("a probed op's result")

    def __bool__(self):
        raise TypeError("a probed op's result")

    __iter__ = __len__ = __bool__


class _StandInDispatcher(_compat.GlobalOpDispatcher):
    """Answers the call of a dispatching function on stand-ins with a `_Caught`."""

    def handle(self, op, args, kwargs):
        if _stand_ins((args, kwargs)):
            return _Caught(op, args, kwargs)
        return self.NOT_SUPPORTED


@functools.cache
def _dispatcher() -> _StandInDispatcher:
    dispatcher = _StandInDispatcher()
    dispatcher.register()
    return dispatcher


def _delegate(function, tf2_name: str) -> tuple[str, Delegation] | None:
    """(TF 1 name, Delegation) of the `compat.v1` function `function` hands its
    arguments to, or None."""
    _dispatcher()
    parameters = _parameters(function)
    if parameters is None:
        return None
    named = [p for p in parameters.values() if p.kind is not p.VAR_POSITIONAL and p.kind is not p.VAR_KEYWORD]
    required = [p for p in named if p.default is p.empty]
    probed = required or [p for p in named if p.name != "name"]
    caught = _probe(function, probed)
    if caught is None:
        return None
    tf1_name = _compat.canonical_tf_name(caught.function)
    if not tf1_name or not tf1_name.startswith(TF1_PREFIX):
        return None
    received = _received(caught)
    if received is None or sum(len(_stand_ins(v)) for v in received.values()) != len(probed):
        return None
    renamed, filled = {}, {}
    for parameter, value in received.items():
        found = _stand_ins(value)
        if found:
            if len({s.parameter for s in found}) != 1:
                return None
            if found[0].parameter != parameter:
                renamed[parameter] = found[0].parameter
        elif parameter not in parameters:
            filled[parameter] = value
    # A parameter with a default may reach the TF 1 function under another name
    # (`tf.nn.depthwise_conv2d`'s `dilations` as `rate`): probe each alone.
    for parameter in named:
        if parameter in probed or parameter.name in renamed.values():
            continue
        again = _probe(function, [*probed, parameter])
        if again is None or again.function is not caught.function:
            continue
        for tf1_parameter, value in (_received(again) or {}).items():
            if (
                any(s.parameter == parameter.name for s in _stand_ins(value))
                and tf1_parameter != parameter.name
            ):
                renamed[tf1_parameter] = parameter.name
                filled.pop(tf1_parameter, None)
    if not all(_plain(value) for value in filled.values()):
        return None
    return tf1_name, Delegation(tf2_name, types.MappingProxyType(renamed), types.MappingProxyType(filled))


def _probe(function, parameters) -> _Caught | None:
    args, kwargs = [], {}
    for parameter in parameters:
        if parameter.kind is parameter.KEYWORD_ONLY or (args and parameter.default is not parameter.empty):
            kwargs[parameter.name] = _StandIn(parameter.name)
        else:
            args.append(_StandIn(parameter.name))
    if not args and not kwargs:
        return None
    try:
        result = function(*args, **kwargs)
    except Exception:  # The op checked its arguments, or computed on the result.
        return None
    # The TF 2 op's result must be the TF 1 function's, untouched.
    return result if isinstance(result, _Caught) else None


def _received(caught: _Caught) -> dict | None:
    """The caught function's arguments by parameter name."""
    parameters = _parameters(caught.function)
    if parameters is None:
        return None
    try:
        bound = inspect.Signature(list(parameters.values())).bind(*caught.args, **caught.kwargs)
    except TypeError:
        return None
    return dict(bound.arguments)


def _plain(value) -> bool:
    """Whether a value a file could hold, compared by `_same_value`."""
    return value is None or isinstance(value, (bool, int, float, str, tf.DType))


def _parameters(function) -> Mapping[str, inspect.Parameter] | None:
    try:
        return inspect.signature(function).parameters
    except (TypeError, ValueError):
        return None


def _stand_ins(value: Any) -> list[_StandIn]:
    if isinstance(value, _StandIn):
        return [value]
    if isinstance(value, (list, tuple)):
        return [found for item in value for found in _stand_ins(item)]
    if isinstance(value, dict):
        return [found for item in value.values() for found in _stand_ins(item)]
    return []


class _quiet:
    """TensorFlow's deprecation notices held back while ops are probed."""

    def __enter__(self):
        self._logger = tf.get_logger()
        self._level = self._logger.level
        self._logger.setLevel(logging.ERROR)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc_info):
        self._warnings.__exit__(*exc_info)
        self._logger.setLevel(self._level)
