"""Example 3 of the seed article: a layer with state, a call counter.

The article keeps an int32 counter in a Keras subclass
(`add_weight(trainable=False)` in `build`, `assign_add(1)` in `call`). Besides the boilerplate and the
missing registration, that counter is wrong under `tf.distribute`: with
`aggregation="sum"` on 2 replicas Keras sums the *new values*, so it reads 30
after 4 steps instead of 8; with the default aggregation each replica counts
alone and the model reports one replica's count.

With `@keras_graft.layer` the counter is `ctx.state("count")`, whose
`assign_add` means what it says on any strategy (a "sum" counter reads
steps x replicas), and which is saved and restored with the model.

Run it with `python examples/sequence_counter.py`, or all examples with
`keras-graft demo`.
"""

import sys

import keras
import numpy as np

import keras_graft
import keras_graft_tools.demo


@keras_graft.layer
def sequence_counter(ctx, x):
    """Pass `x` through unchanged, counting the calls (batches) seen."""
    count = ctx.state("count", dtype="int32")
    count.assign_add(1)
    return x


def build_model() -> keras.Model:
    """Input((5,)) -> sequence_counter() -> Dense(1), uncompiled."""
    inputs = keras.Input((5,))
    counted = sequence_counter(name="counter")(inputs)
    outputs = keras.layers.Dense(1)(counted)
    return keras.Model(inputs, outputs, name="sequence_counter")


def count(model: keras.Model) -> int:
    """How many batches the model's counter has seen."""
    return int(model.get_layer("counter").named_variables["count"].numpy())


def synthetic_data(samples: int = 64, seed: int = 0):
    """Features (samples, 5) and their sum as the target."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, 5)).astype("float32")
    return x, x.sum(axis=1, keepdims=True)


def check_reloaded(model: keras.Model, reloaded: keras.Model) -> str:
    """The count was saved with the model and restored with it."""
    assert count(reloaded) == count(model) > 0, (count(model), count(reloaded))
    return f"counter saved at {count(model)} batches and restored at {count(reloaded)}"


def main() -> None:
    """Trains, saves, reloads in safe mode and compares (see `keras_graft_tools.demo`)."""
    keras_graft_tools.demo.run_checked(sys.modules[__name__])


if __name__ == "__main__":
    main()
