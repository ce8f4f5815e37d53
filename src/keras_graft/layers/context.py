"""`ctx`: what a `@keras_graft.layer` function uses to hold weights and state.

A layer function receives a `LayerContext` as its first argument. It asks the
context for the variables it needs, *where it needs them*, and the context
creates them once, when the layer is built, and hands back the same variables
on every later call:

>>> import tensorflow as tf, keras_graft
>>> @keras_graft.layer(package="docs")
... def scaled_counter(ctx, x, scale=2.0):
...     gain = ctx.weight("gain", (x.shape[-1],), initializer="ones")
...     calls = ctx.state("calls")                    # float32 scalar, "sum"
...     calls.assign_add(1.0)
...     return x * gain * scale
>>> layer = scaled_counter(scale=3.0)
>>> layer(tf.ones((2, 4))).shape
TensorShape([2, 4])
>>> float(layer.named_variables["calls"].numpy())
1.0

`ctx.state(...)` returns a `StateVariable` (`keras_graft.layers.state`): a
non-trainable `keras.Variable` whose `assign_add` / `assign_sub` / `assign`
keep their plain meaning under `tf.distribute`.
"""

from __future__ import annotations

import numbers

import keras
import tensorflow as tf

from keras_graft.layers.state import (
    AGGREGATION_MEANING,
    AGGREGATIONS,
    BridgedState,
    StateVariable,
    creating_variable,
)
from keras_graft.layers.variables import LayerVariables, VariableSpec

__all__ = ["LayerContext"]


def _standardize_shape(shape, what: str) -> tuple:
    if isinstance(shape, tf.TensorShape):
        if shape.rank is None:
            raise ValueError(f"{what}: shape must have a known rank, got {shape}.")
        shape = shape.as_list()
    elif isinstance(shape, numbers.Integral):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"{what}: shape must be a tuple of ints, got {shape!r}.") from None
    out = []
    for dim in dims:
        if dim is None:
            out.append(None)
            continue
        if tf.is_tensor(dim):
            static = tf.get_static_value(dim)
            if static is None:
                raise ValueError(
                    f"{what}: shape {shape!r} holds a dimension known only when "
                    "the graph runs; weights need static shapes: use "
                    "`x.shape[-1]`, not `tf.shape(x)[-1]`."
                )
            dim = static
        if isinstance(dim, numbers.Integral) or (
            hasattr(dim, "dtype")
            and getattr(dim, "ndim", None) == 0
            and str(dim.dtype).startswith(("int", "uint"))
        ):
            out.append(int(dim))
        else:
            raise TypeError(
                f"{what}: shape must be a tuple of ints, got {shape!r} "
                f"(dimension {dim!r} is a {type(dim).__name__})."
            )
    return tuple(out)


def _validate_name(name, what: str) -> str:
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"{what} name must be a non-empty string without '/', got {name!r}.")
    return name


class LayerContext:
    """The first argument of a `@keras_graft.layer` function.

    Attributes:
        layer: the `keras.layers.Layer` running the function.
        training: True in a training step (`fit`, `layer(x, training=True)`),
            False otherwise (`predict`, `evaluate`, plain calls).
        mask: the Keras mask of the (first) input, or None.
        masks: `{input name: mask}` for every tensor input.
        compute_dtype: the dtype inputs are cast to and outputs come out in
            (`"float16"` under `mixed_float16`).
        variable_dtype: the dtype floating weights are stored in.
        building: True while the layer is being built: the function is then
            traced once, symbolically, to create its variables; the result is
            discarded and state updates are not applied.

    Example:

    >>> import keras, tensorflow as tf, keras_graft
    >>> @keras_graft.layer(package="docs")
    ... def noisy_dense(ctx, x, units=8, noise=0.1, l2=1e-4):
    ...     kernel = ctx.weight("kernel", (x.shape[-1], units),
    ...                         regularizer=keras.regularizers.L2(l2))
    ...     y = tf.matmul(x, kernel)
    ...     if ctx.training:
    ...         y += tf.random.normal(tf.shape(y), stddev=noise, dtype=y.dtype)
    ...     ctx.add_loss(1e-3 * tf.reduce_mean(tf.square(y)))
    ...     return y
    >>> noisy_dense(units=2)(keras.Input((3,))).shape
    (None, 2)
    """

    __slots__ = (
        "_layer",
        "_variables",
        "_training",
        "_masks",
        "_building",
        "_stand_ins",
        "_losses",
        "building_was_read",
    )

    def __init__(
        self, layer, variables: LayerVariables, *, training=False, masks=None, building=False, stand_ins=None
    ):
        self._layer = layer
        self._variables = variables
        self._training = training
        self._masks = dict(masks or {})
        self._building = building
        # On the JAX and torch backends the function runs in TensorFlow on
        # stand-ins for the variables: tensors for weights, `BridgedState`
        # for state, whose updates come back as values Keras assigns.
        self._stand_ins = stand_ins
        self._losses = []
        # Whether the function asked `ctx.building`: then the build trace's
        # outputs may differ from the call's (`FunctionLayer`).
        self.building_was_read = False

    @property
    def losses(self) -> list:
        """The losses `add_loss` collected for the layer to add on its backend
        (JAX, torch: the function ran in TensorFlow on stand-ins)."""
        return list(self._losses)

    def __repr__(self):
        phase = (
            "building"
            if self._building
            else (
                "training"
                if self._training is True
                else "inference"
                if self._training is False
                else f"training={self._training}"
            )
        )
        return f"<LayerContext of {self._layer.name!r}, {phase}>"

    # -- the call --------------------------------------------------------
    @property
    def layer(self):
        return self._layer

    @property
    def training(self):
        return self._training

    @property
    def mask(self):
        return next(iter(self._masks.values()), None)

    @property
    def masks(self) -> dict:
        return dict(self._masks)

    @property
    def compute_dtype(self) -> str:
        return self._layer.compute_dtype

    @property
    def variable_dtype(self) -> str:
        return self._layer.variable_dtype

    @property
    def building(self) -> bool:
        self.building_was_read = True
        return self._building

    def add_loss(self, loss):
        """Add a scalar tensor to the model's loss (Keras `Layer.add_loss`)."""
        if self._building:
            return  # the build trace is discarded; the real call adds it
        if self._stand_ins is not None:
            self._losses.append(loss)  # a TF tensor: added by the layer on its backend
            return
        self._layer.add_loss(loss)

    # -- variables ---------------------------------------------------------
    def weight(
        self,
        name,
        shape,
        initializer=None,
        dtype=None,
        trainable=True,
        regularizer=None,
        constraint=None,
    ):
        """The layer's weight `name`, created when the layer is built.

        Args:
            name: unique within the layer; also the variable's name.
            shape: a tuple of ints, fully known when the layer is built
                (typically computed from the input: `(x.shape[-1], units)`).
            initializer: a Keras initializer or its name. Default
                `"glorot_uniform"` for floating weights, `"zeros"` otherwise.
            dtype: default: the layer's variable dtype (float32 under mixed
                precision, where the weight is read in the compute dtype).
            trainable: False for a weight the optimizer must not change. A
                non-trainable variable that the layer *updates* belongs in
                `ctx.state` instead.
            regularizer, constraint: as for `Layer.add_weight`.

        Returns:
            The `keras.Variable` (the same one on every call). Pass it to TF
            ops directly: `tf.matmul(x, kernel)`.
        """
        what = f"{self._layer.name}: weight {name!r}"
        _validate_name(name, "weight")
        shape = _standardize_shape(shape, what)
        dtype = keras.backend.standardize_dtype(dtype or self._layer.variable_dtype)
        spec = VariableSpec("weight", shape, dtype, trainable=bool(trainable))
        existing = self._existing(name, spec)
        if existing is not None:
            return existing

        def create():
            return self._layer.add_weight(
                name=name,
                shape=shape,
                initializer=initializer,
                dtype=dtype,
                trainable=trainable,
                regularizer=regularizer,
                constraint=constraint,
            )

        return self._create(name, spec, create)

    def state(
        self,
        name,
        shape=(),
        dtype="float32",
        initializer="zeros",
        aggregation="sum",
    ):
        """A non-trainable `StateVariable` the layer updates, created once.

        Its `assign_add` / `assign_sub` / `assign` mean what they say under
        any `tf.distribute` strategy (see `StateVariable`); it is saved and
        restored with the model.

        Args:
            name: unique within the layer; also the variable's name.
            shape: default `()`, a scalar.
            dtype: default `"float32"`; never autocast. Integer dtypes count
                exactly.
            initializer: default `"zeros"`.
            aggregation: how the replicas' updates combine under a strategy:
                `"sum"` (default; a counter incremented once per replica
                per step reads steps x replicas), `"mean"` (floating dtypes
                only) or `"only_first_replica"` (reads steps).

        Example:

        >>> import tensorflow as tf, keras_graft
        >>> @keras_graft.layer(package="docs")
        ... def examples_seen(ctx, x):
        ...     seen = ctx.state("seen", dtype="int64")
        ...     seen.assign_add(tf.shape(x, out_type=tf.int64)[0])
        ...     return x
        >>> layer = examples_seen()
        >>> _ = layer(tf.ones((3, 2)))
        >>> int(layer.named_variables["seen"].numpy())
        3
        """
        what = f"{self._layer.name}: state {name!r}"
        _validate_name(name, "state")
        shape = _standardize_shape(shape, what)
        dtype = keras.backend.standardize_dtype(dtype)
        if aggregation not in AGGREGATIONS:
            raise ValueError(
                f"{what}: aggregation={aggregation!r} is not one of "
                + ", ".join(f"{a!r} ({AGGREGATION_MEANING[a]})" for a in AGGREGATIONS)
                + "."
            )
        if aggregation == "mean" and not dtype.startswith(("float", "bfloat", "complex")):
            raise ValueError(
                f"{what}: aggregation='mean' needs a floating dtype (the "
                f"average of integers is not an integer), got dtype={dtype!r}. "
                "Use dtype='float32', or aggregation='sum' / 'only_first_replica'."
            )
        if dtype == "bool" or dtype == "string":
            raise ValueError(
                f"{what}: dtype={dtype!r} cannot be combined across replicas; "
                "use a numeric dtype (e.g. 'int32' holding 0/1)."
            )
        spec = VariableSpec("state", shape, dtype, aggregation=aggregation)
        existing = self._existing(name, spec)
        if existing is not None:
            return existing

        layer = self._layer

        def create():
            if any(d is None for d in shape):
                raise ValueError(f"{what}: shape {shape} must be fully known when the layer is built.")
            with keras.name_scope(layer.name, caller=layer):
                variable = StateVariable(
                    initializer=initializer,
                    shape=shape,
                    dtype=dtype,
                    name=name,
                    state_aggregation=aggregation,
                    owner=layer.name,
                )
            return variable

        return self._create(name, spec, create)

    # -- internals -----------------------------------------------------------
    def _existing(self, name, spec: VariableSpec):
        """The variable `name` if it exists and matches `spec`, else None."""
        entry = self._variables.get(name)
        if entry is None:
            if self._building:
                return None
            raise ValueError(
                f"{self._layer.name}: {spec.kind} {name!r} was not created when the "
                f"layer was built, so it cannot be created now. Variables are "
                f"created by tracing the function once at build time "
                f"(ctx.building=True, ctx.training=False): request "
                f"ctx.{spec.kind}({name!r}, ...) on every call, outside any "
                f"`if ctx.training:` or other branch that the build trace "
                f"does not take."
            )
        old_spec, variable = entry
        if self._stand_ins is not None:
            variable = self._stand_ins[name]
        if old_spec == spec:
            return variable
        if old_spec.kind != spec.kind:
            raise ValueError(
                f"{self._layer.name}: {name!r} is already a "
                f"{old_spec.kind} of this layer; give the {spec.kind} "
                "another name."
            )
        if self._building:
            raise ValueError(
                f"{self._layer.name}: {spec.kind} {name!r} is requested "
                f"twice with different arguments ({old_spec.differences(spec)}); "
                "give each variable its own name."
            )
        if old_spec.accepts(spec):
            return variable
        raise ValueError(
            f"{self._layer.name}: {spec.kind} {name!r} was created with "
            f"{old_spec.describe()} when the layer was built{self._variables.built_on}, "
            f"but this call requests {spec.describe()}. A layer's "
            "variables are created once: call it on inputs like those it was "
            "built on, or make a new layer for the new inputs."
        )

    def _create(self, name, spec: VariableSpec, create):
        with creating_variable():
            variable = create()
        self._variables.add(name, spec, variable)
        if keras.backend.backend() != "tensorflow":
            # The build trace is TensorFlow's; hand it a TF stand-in.
            return BridgedState(spec.placeholder()) if spec.kind == "state" else spec.placeholder()
        return variable
