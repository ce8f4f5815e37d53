"""The variables behind `ctx.state`, and the build trace they live through.

`StateVariable` is what `ctx.state(...)` returns on TensorFlow: a non-trainable
`keras.Variable` whose updates keep their plain meaning under `tf.distribute`.
`BridgedState` stands in for it when the function runs in TensorFlow for the
JAX or torch backend. While a layer is built its function is traced once in a
scratch graph (`BuildingScope`): state updates are traced there but never
applied, and only `ctx.weight`/`ctx.state` may create variables
(`creating_variable`), which they lift out of the trace.

>>> import tensorflow as tf
>>> state = BridgedState(tf.constant(1.0))
>>> float(state.assign_add(2))
3.0
"""

from __future__ import annotations

import contextlib
import threading

import keras
import tensorflow as tf

__all__ = [
    "AGGREGATIONS",
    "AGGREGATION_MEANING",
    "BridgedState",
    "BuildingScope",
    "StateVariable",
    "building",
    "creating_variable",
    "is_creating_variable",
]

#: The values `ctx.state(..., aggregation=...)` accepts.
AGGREGATIONS = ("sum", "mean", "only_first_replica")

AGGREGATION_MEANING = {
    "sum": "the increments of all replicas are added up",
    "mean": "the replicas' increments (or assigned values) are averaged",
    "only_first_replica": "only the first replica's update is applied",
}

_local = threading.local()


def building() -> bool:
    """Whether the current thread is tracing a layer function to build it."""
    return getattr(_local, "building", False)


class BuildingScope:
    """While active, `StateVariable` updates are traced but never applied."""

    def __enter__(self):
        self._previous = building()
        _local.building = True
        return self

    def __exit__(self, *exc):
        _local.building = self._previous
        return False


def is_creating_variable() -> bool:
    """Whether ctx.weight / ctx.state is creating a variable right now."""
    return getattr(_local, "creating", False)


@contextlib.contextmanager
def creating_variable():
    """Marks the variable creation of ctx.weight / ctx.state (the build trace
    refuses any other), lifted out of the trace into the layer's context."""
    previous = is_creating_variable()
    _local.creating = True
    try:
        with tf.init_scope():
            yield
    finally:
        _local.creating = previous


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
                f"aggregation={state_aggregation!r} is not one of {', '.join(map(repr, AGGREGATIONS))}."
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
        return tf.convert_to_tensor(value, dtype=self.dtype)  # never autocast: its own dtype

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
        context = None if building() else _synchronizing_replica_context()
        if context is not None:
            delta = self._combine(context, delta)
        return delta

    def _apply(self, new_value):
        if building():
            # Building only traces the layer function to create its variables;
            # the traced graph is thrown away, so nothing is assigned.
            return self._as_tensor(new_value)
        return super().assign(new_value)

    def assign(self, value):
        value = self._as_tensor(value)
        context = None if building() else _synchronizing_replica_context()
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
    "__add__",
    "__radd__",
    "__sub__",
    "__rsub__",
    "__mul__",
    "__rmul__",
    "__truediv__",
    "__rtruediv__",
    "__floordiv__",
    "__mod__",
    "__pow__",
    "__neg__",
    "__abs__",
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
    "__getitem__",
):
    setattr(BridgedState, _operator, _delegate(_operator))
