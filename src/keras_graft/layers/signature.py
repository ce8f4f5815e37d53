"""A layer function's signature: `f(ctx, x, [y, ...], hyperparameter=default, ...)`.

`LayerSignature` splits it into the tensor inputs (the parameters after `ctx`
without defaults) and the hyperparameters (with defaults, or keyword-only),
refusing what a saved layer could not restore, and writes the `call` and
`build` methods whose parameter names Keras matches on.

>>> def scale(ctx, x, factor=2.0): ...
>>> signature = LayerSignature(scale)
>>> signature.inputs, signature.names
(['x'], ['factor'])
"""

from __future__ import annotations

import inspect

__all__ = ["LAYER_ARGUMENTS", "LEGACY_ARGUMENTS", "LayerSignature"]

#: Keyword arguments of `keras.layers.Layer` a generated layer accepts too.
LAYER_ARGUMENTS = ("name", "dtype", "trainable", "autocast", "activity_regularizer")

# Accepted and passed on to Keras, which warns that `Input(shape)` is preferred.
LEGACY_ARGUMENTS = ("input_shape", "input_dim")

_RESERVED = frozenset(LAYER_ARGUMENTS + LEGACY_ARGUMENTS) | {"training", "mask", "self"}


class LayerSignature:
    """A layer function's signature, split into inputs and hyperparameters."""

    def __init__(self, function):
        name = getattr(function, "__name__", repr(function))
        if isinstance(function, type) or not callable(function):
            raise TypeError(f"@keras_graft.layer decorates a function, got {function!r}.")
        if name == "<lambda>":
            raise TypeError(
                "@keras_graft.layer needs a named function defined with `def`: "
                "a lambda has no name to register and save the layer under."
            )
        params = list(inspect.signature(function).parameters.values())
        usage = (
            f"A layer function looks like `def {name}(ctx, x, units=3): ...`: "
            "the context, then the tensor inputs (no defaults), then the "
            "hyperparameters (with defaults, or keyword-only)."
        )
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if not params or params[0].kind not in positional:
            raise TypeError(f"{name}: the first parameter must be the context `ctx`. {usage}")
        self.inputs: list[str] = []
        self.hyperparameters: list[inspect.Parameter] = []
        for param in params[1:]:
            if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                raise TypeError(
                    f"{name}: *{param.name} / **{param.name} are not supported: "
                    "every hyperparameter must be named so that get_config() "
                    f"can save it. {usage}"
                )
            if param.name in _RESERVED:
                hint = {"training": "read ctx.training", "mask": "read ctx.mask"}.get(
                    param.name, "it is a Keras layer argument"
                )
                raise TypeError(f"{name}: parameter {param.name!r} is reserved ({hint}); rename it.")
            if param.kind in positional and param.default is param.empty:
                self.inputs.append(param.name)
            else:
                if param.kind is inspect.Parameter.POSITIONAL_ONLY:
                    raise TypeError(
                        f"{name}: hyperparameter {param.name!r} is positional-only; "
                        "hyperparameters are passed by name."
                    )
                self.hyperparameters.append(param)
        if not self.inputs:
            raise TypeError(f"{name}: no tensor input after `ctx`. {usage}")
        if len(self.inputs) > 1:
            for input_name in self.inputs:
                if f"{input_name}_mask" in self.names + self.inputs:
                    raise TypeError(
                        f"{name}: parameter {input_name}_mask is reserved (the "
                        f"mask of input {input_name!r} is "
                        f"ctx.masks[{input_name!r}]); rename it."
                    )
        self.function_name = name

    @property
    def names(self):
        return [p.name for p in self.hyperparameters]

    def construction(self) -> inspect.Signature:
        """The generated class's constructor signature (for help() and IDEs)."""
        params = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            if p.kind is inspect.Parameter.KEYWORD_ONLY
            else p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD)
            for p in self.hyperparameters
        ]
        layer_args = [
            inspect.Parameter(arg, inspect.Parameter.KEYWORD_ONLY, default=default)
            for arg, default in (
                ("name", None),
                ("dtype", None),
                ("trainable", True),
                ("autocast", True),
                ("activity_regularizer", None),
            )
            if arg not in self.names
        ]
        return inspect.Signature(params + layer_args)

    def methods(self) -> dict:
        """`call` and `build` with the parameter names Keras matches on.

        Keras reads them from the signatures: `call(self, x, training=None,
        mask=None)` and `build(self, input_shape)` for one input;
        `call(self, x, y, training=None, x_mask=None, y_mask=None)` and
        `build(self, x_shape, y_shape)` for several. The names are the
        function's own parameter names (identifiers, checked by Python).
        """
        inputs = self.inputs
        if len(inputs) == 1:
            masks = ["mask"]
            shapes = ["input_shape"]
        else:
            masks = [f"{n}_mask" for n in inputs]
            shapes = [f"{n}_shape" for n in inputs]
        call_params = ", ".join(inputs + ["training=None"] + [f"{m}=None" for m in masks])
        source = (
            f"def call(self, {call_params}):\n"
            f"    return self._graft_call(({', '.join(inputs)},), training,"
            f" ({', '.join(masks)},))\n"
            f"def build(self, {', '.join(shapes)}):\n"
            f"    return self._graft_build(({', '.join(shapes)},))\n"
        )
        namespace = {}
        exec(compile(source, f"<keras_graft.layer {self.function_name}>", "exec"), namespace)
        return {"call": namespace["call"], "build": namespace["build"]}
