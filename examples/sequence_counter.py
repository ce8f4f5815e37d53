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

import os
import tempfile

import keras
import numpy as np

import keras_graft


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


def main() -> None:
    keras.utils.set_random_seed(0)
    model = build_model()
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert count(model) == 8, count(model)  # 2 epochs x 4 batches

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "sequence_counter.keras")
        model.save(path)
        reloaded = keras.models.load_model(path)  # safe mode (the default)
    assert count(reloaded) == 8, count(reloaded)  # the state was saved

    np.testing.assert_array_equal(
        model.predict(x, batch_size=32, verbose=0),
        reloaded.predict(x, batch_size=32, verbose=0),
    )
    assert count(model) == count(reloaded) == 10  # + 2 predict batches each
    print(
        f"sequence_counter: counted {count(model)} batches (8 training + 2 "
        "predict); reloaded in safe mode with the count and identical "
        "predictions."
    )


if __name__ == "__main__":
    main()
