"""`ctx`: what a `@keras_graft.layer` function uses to hold weights and state.

A layer function receives a `LayerContext` as its first argument. It asks the
context for the variables it needs, *where it needs them*, and the context
creates them once, when the layer is built, and hands back the same variables
on every later call:

```python
import tensorflow as tf
import keras_graft

@keras_graft.layer
def scaled_counter(ctx, x, scale=2.0):
    gain = ctx.weight("gain", (x.shape[-1],), initializer="ones")
    calls = ctx.state("calls")                    # float32 scalar, "sum"
    calls.assign_add(1.0)
    return x * gain * scale

layer = scaled_counter(scale=3.0)
y = layer(tf.ones((2, 4)))
layer.named_variables["calls"].numpy()            # 1.0
```

`ctx.state(...)` returns a `StateVariable`: a non-trainable `keras.Variable`
whose `assign_add` / `assign_sub` / `assign` keep their plain meaning under
`tf.distribute` (see `StateVariable`).
"""

from __future__ import annotations

import numbers
import threading

import keras
import tensorflow as tf

__all__ = ["AGGREGATIONS", "LayerContext", "StateVariable"]

#: The values `ctx.state(..., aggregation=...)` accepts.
AGGREGATIONS = ("sum", "mean", "only_first_replica")

_AGGREGATION_MEANING = {
    "sum": "the increments of all replicas are added up",
    "mean": "the replicas' increments (or assigned values) are averaged",
    "only_first_replica": "only the first replica's update is applied",
}

_local = threading.local()


def _building() -> bool:
    """Whether the current thread is tracing a layer function to build it."""
    return getattr(_local, "building", False)


class _BuildingScope:
    """While active, `StateVariable` updates are traced but never applied."""

    def __enter__(self):
        self._previous = _building()
        _local.building = True
        return self

    def __exit__(self, *exc):
        _local.building = self._previous
        return False


def _creating_variable() -> bool:
    """Whether ctx.weight / ctx.state is creating a variable right now."""
    return getattr(_local, "creating", False)


def _synchronizing_replica_context():
    """The replica context when updates must be synchronized, else None.

    None outside `strategy.run` (cross-replica context: an update is applied
    once, to every copy) and under the default strategy (one replica).
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


class StateVariable(keras.Variable):
    """A non-trainable variable whose updates mean the same on any strategy.

    Made by `ctx.state(...)`, not directly. It is a `keras.Variable`: read it,
    do arithmetic with it, pass it to TF ops. Its updates mean what they say:

    - `assign_add(delta)` / `assign_sub(delta)`: under a strategy with several
      replicas, every replica's `delta` is combined by the state's
      `aggregation` ("sum": added up; "mean": averaged; "only_first_replica":
      the first replica's), and the combined increment is applied once, to
      every copy. A "sum" counter incremented by 1 per call reads
      steps x replicas; a "mean" or "only_first_replica" one reads steps.
    - `assign(value)`: "mean" stores the replicas' average value,
      "only_first_replica" the first replica's. "sum" cannot add up absolute
      values, so it accepts only a value known when the step is traced (a
      Python number, a NumPy array, `tf.constant`), which is the same on every
      replica: `counter.assign(0)` resets a counter anywhere.

    Without a strategy (or outside `strategy.run`) they are ordinary updates.
    The underlying variable is mirrored with `"only_first_replica"`, so all
    copies receive the same, already combined, value; it is never autocast
    (a float32 counter stays float32 under `mixed_float16`).

    Keep updates out of `tf.cond` branches that replicas may take differently
    (every replica must reach the same updates); write
    `counter.assign_add(tf.where(condition, 1.0, 0.0))` instead.
    """

    def __init__(self, *args, state_aggregation="sum", owner=None, **kwargs):
        if state_aggregation not in AGGREGATIONS:
            raise ValueError(
                f"aggregation={state_aggregation!r} is not one of "
                f"{', '.join(map(repr, AGGREGATIONS))}."
            )
        self._state_aggregation = state_aggregation
        self._owner_name = owner
        kwargs.update(trainable=False, autocast=False)
        kwargs["aggregation"] = "only_first_replica"
        super().__init__(*args, **kwargs)

    @property
    def state_aggregation(self) -> str:
        """How replicas' updates combine: "sum", "mean" or "only_first_replica"."""
        return self._state_aggregation

    def _describe(self) -> str:
        owner = f"{self._owner_name}: " if self._owner_name else ""
        return f"{owner}state {self.name!r} (aggregation={self._state_aggregation!r})"

    def _as_tensor(self, value):
        return tf.convert_to_tensor(value, dtype=self._dtype)

    def _combine(self, context, value):
        """`value` combined across replicas by this state's aggregation."""
        if self._state_aggregation == "sum":
            return context.all_reduce(tf.distribute.ReduceOp.SUM, value)
        if self._state_aggregation == "mean":
            return context.all_reduce(tf.distribute.ReduceOp.MEAN, value)
        # only_first_replica: broadcast replica 0's value to every replica
        # (an all-reduce, so it holds across workers too).
        first = tf.equal(context.replica_id_in_sync_group, 0)
        return context.all_reduce(
            tf.distribute.ReduceOp.SUM,
            tf.where(first, value, tf.zeros_like(value)),
        )

    def _increment(self, delta):
        delta = self._as_tensor(delta)
        context = None if _building() else _synchronizing_replica_context()
        if context is not None:
            delta = self._combine(context, delta)
        return delta

    def _apply(self, new_value):
        if _building():
            # Building only traces the layer function to create its variables;
            # the traced graph is thrown away, so nothing is assigned.
            return self._as_tensor(new_value)
        return super().assign(new_value)

    def assign(self, value):
        value = self._as_tensor(value)
        context = None if _building() else _synchronizing_replica_context()
        if context is not None:
            if self._state_aggregation == "sum":
                if tf.get_static_value(value) is None:
                    raise ValueError(
                        f"{self._describe()}: `assign` of a value computed in "
                        f"the step cannot be expressed with aggregation='sum' "
                        f"on {context.num_replicas_in_sync} replicas (each "
                        "replica may assign a different value, and absolute "
                        "values cannot be added up). Use assign_add/assign_sub "
                        "(increments are summed), assign a constant "
                        "(`assign(0)`), or declare the state with "
                        "aggregation='mean' (stores the replicas' average) or "
                        "aggregation='only_first_replica' (stores the first "
                        "replica's value)."
                    )
            else:
                value = self._combine(context, value)
        return self._apply(value)

    def assign_add(self, value):
        return self._apply(self.value + self._increment(value))

    def assign_sub(self, value):
        return self._apply(self.value - self._increment(value))


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
        raise TypeError(
            f"{what}: shape must be a tuple of ints, got {shape!r}."
        ) from None
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
            hasattr(dim, "dtype") and getattr(dim, "ndim", None) == 0
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
        raise ValueError(
            f"{what} name must be a non-empty string without '/', got {name!r}."
        )
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

    ```python
    @keras_graft.layer
    def noisy_dense(ctx, x, units=8, noise=0.1, l2=1e-4):
        kernel = ctx.weight("kernel", (x.shape[-1], units),
                            regularizer=keras.regularizers.L2(l2))
        y = tf.matmul(x, kernel)
        if ctx.training:
            y += tf.random.normal(tf.shape(y), stddev=noise, dtype=y.dtype)
        ctx.add_loss(1e-3 * tf.reduce_mean(tf.square(y)))
        return y
    ```
    """

    __slots__ = ("_layer", "_training", "_masks", "_building", "_stand_ins", "_losses",
                 "building_was_read")

    def __init__(self, layer, *, training=False, masks=None, building=False, stand_ins=None):
        self._layer = layer
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

    def __repr__(self):
        phase = "building" if self._building else (
            "training" if self._training is True else "inference"
            if self._training is False else f"training={self._training}"
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
        spec = {"kind": "weight", "shape": shape, "dtype": dtype,
                "trainable": bool(trainable)}
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

        ```python
        @keras_graft.layer
        def examples_seen(ctx, x):
            seen = ctx.state("seen", dtype="int64")
            seen.assign_add(tf.shape(x, out_type=tf.int64)[0])
            return x

        layer = examples_seen()
        layer(tf.ones((3, 2)))
        layer.named_variables["seen"].numpy()  # 3
        ```
        """
        what = f"{self._layer.name}: state {name!r}"
        _validate_name(name, "state")
        shape = _standardize_shape(shape, what)
        dtype = keras.backend.standardize_dtype(dtype)
        if aggregation not in AGGREGATIONS:
            raise ValueError(
                f"{what}: aggregation={aggregation!r} is not one of "
                + ", ".join(f"{a!r} ({_AGGREGATION_MEANING[a]})" for a in AGGREGATIONS)
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
        spec = {"kind": "state", "shape": shape, "dtype": dtype,
                "aggregation": aggregation}
        existing = self._existing(name, spec)
        if existing is not None:
            return existing

        layer = self._layer

        def create():
            if any(d is None for d in shape):
                raise ValueError(
                    f"{what}: shape {shape} must be fully known when the layer "
                    "is built."
                )
            with keras.name_scope(layer.name, caller=layer):
                variable = StateVariable(
                    initializer=initializer,
                    shape=shape,
                    dtype=dtype,
                    name=name,
                    state_aggregation=aggregation,
                    owner=layer.name,
                )
            layer._graft_track_state(variable)
            return variable

        return self._create(name, spec, create)

    # -- internals -----------------------------------------------------------
    def _existing(self, name, spec):
        """The variable `name` if it exists and matches `spec`, else None."""
        registry = self._layer._graft_registry
        entry = registry.get(name)
        if entry is None:
            if self._building:
                return None
            kind = spec["kind"]
            raise ValueError(
                f"{self._layer.name}: {kind} {name!r} was not created when the "
                f"layer was built, so it cannot be created now. Variables are "
                f"created by tracing the function once at build time "
                f"(ctx.building=True, ctx.training=False): request "
                f"ctx.{kind}({name!r}, ...) on every call, outside any "
                f"`if ctx.training:` or other branch that the build trace "
                f"does not take."
            )
        old_spec, variable = entry
        if self._stand_ins is not None:
            variable = self._stand_ins[name]
        if old_spec == spec:
            return variable
        if old_spec["kind"] != spec["kind"]:
            raise ValueError(
                f"{self._layer.name}: {name!r} is already a "
                f"{old_spec['kind']} of this layer; give the {spec['kind']} "
                "another name."
            )
        if self._building:
            raise ValueError(
                f"{self._layer.name}: {spec['kind']} {name!r} is requested "
                f"twice with different arguments ({_diff(old_spec, spec)}); "
                "give each variable its own name."
            )
        shape_ok = tf.TensorShape(old_spec["shape"]).is_compatible_with(
            tf.TensorShape(spec["shape"])
        )
        rest_ok = {k: v for k, v in old_spec.items() if k != "shape"} == {
            k: v for k, v in spec.items() if k != "shape"
        }
        if shape_ok and rest_ok:
            return variable
        built_on = self._layer._graft_built_on()
        raise ValueError(
            f"{self._layer.name}: {spec['kind']} {name!r} was created with "
            f"{_describe_spec(old_spec)} when the layer was built{built_on}, "
            f"but this call requests {_describe_spec(spec)}. A layer's "
            "variables are created once: call it on inputs like those it was "
            "built on, or make a new layer for the new inputs."
        )

    def _create(self, name, spec, create):
        if not self._building:  # pragma: no cover - _existing raised already
            raise AssertionError("variables are only created while building")
        # Lift creation out of the build trace's graph into the eager (or
        # outermost) context, where the layer's other variables live.
        previous = _creating_variable()
        _local.creating = True
        try:
            with tf.init_scope():
                variable = create()
        finally:
            _local.creating = previous
        self._layer._graft_registry[name] = (spec, variable)
        if keras.backend.backend() != "tensorflow":
            # The build trace is TensorFlow's; hand it a TF stand-in.
            value = tf.compat.v1.placeholder(tf.as_dtype(spec["dtype"]), spec["shape"])
            return BridgedState(value) if spec["kind"] == "state" else value
        return variable


class BridgedState:
    """A state variable inside a TF function run for another Keras backend.

    Reads as its current value (a TF tensor); `assign`, `assign_add` and
    `assign_sub` replace that value, and the layer assigns the final one to
    the real variable after the call. There is no `tf.distribute` here, so
    updates are plain.
    """

    def __init__(self, value):
        self.value = value

    def __tf_tensor__(self, dtype=None, name=None):
        return tf.convert_to_tensor(self.value, dtype=dtype, name=name)

    @property
    def dtype(self):
        return self.value.dtype

    @property
    def shape(self):
        return self.value.shape

    def assign(self, value):
        self.value = tf.convert_to_tensor(value, dtype=self.value.dtype)
        return self.value

    def assign_add(self, value):
        return self.assign(self.value + tf.cast(value, self.value.dtype))

    def assign_sub(self, value):
        return self.assign(self.value - tf.cast(value, self.value.dtype))


def _delegate(operator):
    def method(self, *others):
        return getattr(self.value, operator)(*others)

    method.__name__ = operator
    return method


for _operator in (
    "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
    "__truediv__", "__rtruediv__", "__floordiv__", "__mod__", "__pow__",
    "__neg__", "__abs__", "__lt__", "__le__", "__gt__", "__ge__", "__getitem__",
):
    setattr(BridgedState, _operator, _delegate(_operator))


def _describe_spec(spec) -> str:
    text = f"shape {spec['shape']}, dtype {spec['dtype']}"
    if spec["kind"] == "weight" and not spec["trainable"]:
        text += ", trainable=False"
    if spec["kind"] == "state":
        text += f", aggregation={spec['aggregation']!r}"
    return text


def _diff(old, new) -> str:
    keys = [k for k in new if old.get(k) != new.get(k)]
    return "; ".join(f"{k}: {old.get(k)!r} then {new.get(k)!r}" for k in keys)
