"""One training step on JAX and torch equals TensorFlow's, op by op and chain by chain.

For every allowed op with a float path (called on a float recipe of
`op_arguments`), a model `Dense -> op -> Dense`: where `keras-graft inspect`
finds a gradient, and where it finds an op without one (TensorFlow's step
then raises, and each backend must raise naming the layer, or it trains
and each backend must match it); and
the chains where dtypes mix (complex intermediates, integer outputs next to
float ones, unused outputs, `@keras_graft.layer` between op layers, a TF-op
loss, JAX's callback path), built on each backend and loaded from the file
TensorFlow saved. TensorFlow takes one SGD step from fixed weights and data;
each backend takes the same step from the same weights, and every weight's
update must equal TensorFlow's.

    python tests/helpers/gradient_sweep.py            # the CI sample (every chain, a few ops)
    python tests/helpers/gradient_sweep.py --all      # every op in scope
    python tests/helpers/gradient_sweep.py --ops math.erf,nn.conv2d   # these ops

Each backend runs in its own process (Keras fixes the backend per process):
`python gradient_sweep.py reference DIR [--all | --ops ...]` on TensorFlow writes the
cases, the weights and the updates to DIR; `KERAS_BACKEND=jax python
gradient_sweep.py compare DIR` prints one JSON line of findings per case.

A backend may also refuse a case where the model is built, or raise at the
training step, as long as the error names the layer: what it may never do is
train without a gradient TensorFlow has.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_graft  # noqa: E402
import op_arguments  # noqa: E402
from keras_graft import _compat, safety  # noqa: E402
from keras_graft.backends import tracing  # noqa: E402
from keras_graft.errors import KerasGraftError, NoDispatchError  # noqa: E402
from keras_graft.layers.function_layer import FunctionLayer  # noqa: E402

LEARNING_RATE = 0.1
FEATURES = 48
# An update matches TensorFlow's within RTOL of itself, or ATOL_OF_SCALE of
# the largest element of that weight's update: float32 gradients summed in
# another order differ by about 1e-7 of their largest term, so elements far
# below the largest (or exactly zero in TF) cannot be compared relatively.
RTOL = 1e-3
ATOL_OF_SCALE = 1e-5

# The relative perturbation of the initial weights (about float32's rounding)
# under which TensorFlow's own step must stay within the tolerance for a case
# to be compared.
PERTURBATION = 1e-7

# Op inputs are `offset + width * sigmoid(Dense(x))`: the first domain where
# TensorFlow's own step is finite is used (log, sqrt and acos want (0, 1);
# acosh and zeta want more than 1).
DOMAINS = ((0.05, 0.9), (1.1, 0.9), (-0.9, 1.8))

# The CI sample, besides every chain: elementwise and reduction ops, linear
# algebra, complex outputs, several outputs, ops XLA does not compile.
# Two ops `inspect` finds an op without a gradient in: one TensorFlow's step
# raises on (`AdjustContrastv2`), one it trains (`IsFinite` is off the path).
SAMPLE_OPS = (
    "math.softplus",
    "math.lgamma",
    "math.reduce_logsumexp",
    "math.cumprod",
    "linalg.matmul",
    "linalg.det",
    "linalg.qr",
    "signal.rfft",
    "math.top_k",
    "nn.moments",
    "nn.conv2d",
    "image.adjust_contrast",
    "gather",  # a gradient as IndexedSlices
    "nn.isotonic_regression",  # a gradient TF shapes unlike the op's input
    "image.rot90",  # branches (`If`), which draw no random numbers
    "linalg.eigh",  # JAX: XLA's eigenvectors are not TF's, so the callback path
    "linalg.svd",
    "linalg.expm",  # JAX: XLA compiles the op but not its gradient, which is called back
)


# -- The models -------------------------------------------------------------------


@keras_graft.layer(package="gradient_sweep")
def scaled_tanh(ctx, x, units=4):
    """A weight, a TF-op loss on it, and state between op layers: the
    gradient reads the scale as it was before the call doubled it."""
    kernel = ctx.weight("kernel", (x.shape[-1], units), initializer="glorot_uniform")
    scale = ctx.state("scale", initializer="ones")
    outputs = tf.math.tanh(tf.matmul(x, kernel)) * scale
    scale.assign(scale * 2.0)
    ctx.add_loss(0.01 * tf.reduce_sum(tf.square(kernel)))
    return outputs


@keras_graft.layer(package="gradient_sweep")
def magnitude(ctx, spectrum):
    """Complex in, float out, with a weight: a layer between complex op layers."""
    gain = ctx.weight("gain", (spectrum.shape[-1],), initializer="ones")
    return tf.abs(spectrum) * gain


@keras_graft.loss(package="gradient_sweep")
def log_cosh(y_true, y_pred):
    return tf.reduce_mean(tf.math.log(tf.cosh(y_pred - tf.cast(y_true, y_pred.dtype))), axis=-1)


def _dense_to_op_input(x, slot, domain, shape):
    offset, width = DOMAINS[domain]
    hidden = keras.layers.Dense(int(np.prod(shape)), name=f"before_{slot}")(x)
    return keras.ops.reshape(offset + width * keras.ops.sigmoid(hidden), shape)


def _head(tensors):
    """Every float output (complex ones as real and imaginary parts), flattened,
    into one `Dense(1)`: integer outputs stay unused."""
    parts = []
    for tensor in tensors:
        if "complex" in tensor.dtype:
            # Keras 3.15 gives keras.ops.real/imag results the complex dtype.
            parts += [
                keras.ops.cast(keras.ops.real(tensor), "float32"),
                keras.ops.cast(keras.ops.imag(tensor), "float32"),
            ]
        elif "float" in tensor.dtype:
            parts.append(tensor)
    flat = [keras.ops.reshape(part, (1, -1)) for part in parts]
    joined = flat[0] if len(flat) == 1 else keras.ops.concatenate(flat, axis=-1)
    return keras.layers.Dense(1, name="after")(joined)


def call_op(function, arguments):
    """`function(*arguments)` on Keras tensors, as a user calls it; the few ops
    without TF's dispatch through the explicit layer."""
    try:
        return function(*arguments)
    except NoDispatchError:
        return keras_graft.TFOp.wrap(function, arguments, {})


def op_model(name: str, recipe: int, domain: int) -> keras.Model:
    """`Dense -> tf.<name>(*recipe) -> Dense` with batch 1 (the op sees `FLOATS`)."""
    x = keras.Input(batch_shape=(1, FEATURES))
    arguments = [
        _dense_to_op_input(x, slot, domain, kind.shape) if op_arguments.is_float_kind(kind) else kind
        for slot, kind in enumerate(op_arguments.RECIPES[recipe])
    ]
    outputs = call_op(_compat.tf_symbol(name), arguments)
    return keras.Model(x, _head(keras.tree.flatten(outputs)))


def _audio(x):
    return _dense_to_op_input(x, 0, 0, (1, 64))  # a batch of one 64-sample "audio"


def chain_stft(x):
    """The issue's model: the Dense before stft never trained on torch."""
    spectrum = tf.abs(tf.signal.stft(_audio(x), frame_length=16, frame_step=8))
    return _head([spectrum])


def chain_fft_real(x):
    spectrum = tf.signal.fft(tf.cast(_audio(x), tf.complex64))
    return _head([tf.math.real(spectrum), tf.math.imag(spectrum) ** 2])


def chain_complex_into_keras_ops(x):
    """A complex op output read by native keras.ops (each backend's own
    complex gradient convention meets TF's)."""
    spectrum = keras_graft.Op(tf.signal.rfft)(_audio(x))
    product = keras.ops.real(spectrum) * keras.ops.imag(spectrum)
    return _head([keras.ops.cast(product, "float32")])


def chain_complex_layer_between(x):
    spectrum = tf.signal.stft(_audio(x), frame_length=16, frame_step=8)
    return _head([tf.math.log1p(magnitude(name="magnitude")(spectrum))])


def chain_top_k(x):
    """Integer indices next to float values; the indices feed the head as floats."""
    values, indices = tf.math.top_k(_audio(x), k=5)
    return _head([values, tf.cast(indices, tf.float32) * values])


def chain_unique(x):
    """A value-dependent shape (JAX refuses it where the model is built)."""
    unique = tf.unique(tf.reshape(tf.round(_audio(x) * 4.0), [-1]))
    return _head([tf.reduce_sum(unique.y * unique.y)])


def chain_unused_outputs(x):
    first, _, third = tf.split(_audio(x), [20, 20, 24], axis=-1)
    mean, _ = tf.nn.moments(third, axes=[-1])
    return _head([first, mean])


def chain_layer_between_ops(x):
    hidden = scaled_tanh(units=6, name="scaled_tanh")(tf.math.softplus(_audio(x)))
    return _head([tf.math.cumsum(hidden, axis=-1)])


def chain_relu_clip(x):
    """The benchmark's model."""
    return _head([tf.clip_by_value(tf.nn.relu(_audio(x)), 0.0, 6.0)])


def chain_no_xla_kernel(x):
    """Bicubic resize: JAX's callback path."""
    image = tf.reshape(_audio(x), [1, 8, 8, 1])
    return _head([tf.image.resize(image, [11, 9], method="bicubic")])


def chain_tf_op_loss(x):
    """Trained with a `@keras_graft.loss` of TF ops."""
    return _head([tf.math.softplus(_audio(x))])


CHAINS = {
    "stft_abs": chain_stft,
    "fft_real": chain_fft_real,
    "complex_into_keras_ops": chain_complex_into_keras_ops,
    "complex_layer_between": chain_complex_layer_between,
    "top_k": chain_top_k,
    "unique": chain_unique,
    "unused_outputs": chain_unused_outputs,
    "layer_between_ops": chain_layer_between_ops,
    "relu_clip": chain_relu_clip,
    "no_xla_kernel": chain_no_xla_kernel,
    "tf_op_loss": chain_tf_op_loss,
}


def chain_model(name: str) -> keras.Model:
    x = keras.Input(batch_shape=(1, FEATURES))
    return keras.Model(x, CHAINS[name](x))


def build(case: dict) -> keras.Model:
    # The same layer names on every backend (Python's garbage collection,
    # seconds in a long sweep, is not needed for that).
    keras.backend.clear_session(free_memory=False)
    if case["kind"] == "op":
        return op_model(case["op"], case["recipe"], case.get("domain", 0))
    return chain_model(case["chain"])


def compile_model(model, case):
    loss = log_cosh if case.get("chain") == "tf_op_loss" else "mse"
    model.compile(keras.optimizers.SGD(LEARNING_RATE), loss)


def data(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(1, FEATURES)).astype("float32"), rng.normal(size=(1, 1)).astype("float32"))


def op_layer_names(model) -> list[str]:
    return [layer.name for layer in model.layers if isinstance(layer, (keras_graft.TFOp, FunctionLayer))]


def weights_of(model) -> list[np.ndarray]:
    return [np.array(keras.ops.convert_to_numpy(w)) for w in model.trainable_weights]


def one_step(model, case) -> list[np.ndarray]:
    """The trainable weights' updates after one SGD step on `data()`."""
    compile_model(model, case)
    before = weights_of(model)
    model.train_on_batch(*data())
    return [after - start for after, start in zip(weights_of(model), before)]


# -- TensorFlow: the reference --------------------------------------------------------


def op_cases(names=None) -> tuple[list[dict], dict]:
    """Cases for the allowed ops (`names`: only these): the first float
    recipe each op builds on, when `inspect` finds a gradient there; and why
    each other op is out of scope, {canonical name: reason}."""
    functions = {}
    for function in safety.allowed_ops().values():
        name = _compat.canonical_tf_name(function)
        if name and not name.startswith("io.") and (names is None or name in names):
            functions.setdefault(name, function)
    cases, skipped = [], {}
    for name in sorted(functions):
        found = _first_float_recipe(functions[name])
        if isinstance(found, str):
            skipped[name] = found
        else:
            recipe, gradient, random = found
            cases.append(
                {
                    "id": f"op {name}",
                    "kind": "op",
                    "op": name,
                    "recipe": recipe,
                    "inspect_gradient": gradient,
                    "random": random,
                }
            )
    return cases, skipped


def _first_float_recipe(function) -> tuple[int, str, bool] | str:
    """The index of the first float recipe `function` builds an op layer with
    a float output on, what `inspect` says of its gradient ('yes', or 'no'
    detailing the ops without one: TensorFlow's step then either raises,
    and so must every backend, or trains, and every backend must match), and
    whether its graph draws random numbers; or why the op is out of scope
    ('n/a': no float path)."""
    from keras_graft.inspection import checks

    reason = "no float recipe builds it"
    for index, recipe in enumerate(op_arguments.RECIPES):
        if not op_arguments.is_float_recipe(recipe):
            continue
        arguments = [
            keras.Input(batch_shape=kind.shape) if op_arguments.is_float_kind(kind) else kind
            for kind in recipe
        ]
        try:
            outputs = keras.tree.flatten(call_op(function, arguments))
        except Exception as error:  # Not a way this op is called; try the next recipe.
            reason = f"no float recipe builds it ({type(error).__name__})"
            continue
        layers = {
            id(o._keras_history.operation): o._keras_history.operation
            for o in outputs
            if isinstance(o, _compat.KerasTensor) and isinstance(o._keras_history.operation, keras_graft.TFOp)
        }
        if len(layers) != 1:  # Returned its input, or nothing a model keeps.
            return "makes no op layer"
        if not any("float" in o.dtype or "complex" in o.dtype for o in outputs):
            return "no float output"
        probe = checks.probe(next(iter(layers.values())))
        verdict = checks.gradient(probe)
        if verdict.status not in ("yes", "no"):
            return f"inspect: gradient {verdict.status} ({verdict.detail})"
        graph = probe.concrete.graph
        random = tracing.draws_random(graph, tracing.called_op_types(graph))
        return index, verdict.status if verdict.status == "yes" else f"no ({verdict.detail})", random
    return reason


def reference(directory: Path, names=SAMPLE_OPS) -> dict:
    """On TensorFlow: each case's initial weights, its model file and its
    one-step updates, in `directory`, for the ops `names` (None: every op)
    and every chain; returns the manifest (also written)."""
    ops, skipped = op_cases(names)
    chains = [{"id": f"chain {name}", "kind": "chain", "chain": name, "domain": 0} for name in CHAINS]
    cases = []
    for index, case in enumerate(ops + chains):
        found = _reference_case(directory, {**case, "file": f"case_{index}"})
        if isinstance(found, str) and case["kind"] == "chain":
            raise AssertionError(f"{case['id']}: {found}")
        if isinstance(found, str):
            skipped[case["op"]] = found
        else:
            cases.append(found)
    manifest = {"cases": cases, "skipped": skipped}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def _reference_case(directory: Path, case: dict) -> dict | str:
    """`case` with what the comparison needs, its files written; or why it
    cannot be compared (an op that is random, or whose TF step is not finite,
    or not stable under rounding, on any domain)."""
    unstable = None  # TF's own sensitivity on the last domain where it was too high
    for domain in range(len(DOMAINS)) if case["kind"] == "op" else (0,):
        case = {**case, "domain": domain}
        try:
            model = build(case)
        except ValueError as error:
            if case["kind"] == "chain":
                raise
            # An output size only running the op tells: no Dense can follow it.
            return f"no model around it builds ({_describe(error).splitlines()[-1][:120]})"
        try:
            if case.get("random"):
                # The backends' draws are not TensorFlow's (`tests/test_backends.py`
                # checks that a gradient uses the forward pass's own draws).
                return "random: its TF ops draw random numbers"
            initial = [np.array(w) for w in model.get_weights()]
            updates = one_step(model, case)
        except LookupError as error:  # TF has no gradient for an op on the path.
            case["tf_error"] = f"{type(error).__name__}: {error}"
            updates = []
        except (tf.errors.OpError, ValueError, TypeError) as error:
            # No kernel here (`tf.math.approx_min_k`), or the op refuses the
            # recipe's values once it runs (a truth value of an array).
            if case["kind"] == "chain":
                raise
            return f"TensorFlow cannot run it on this recipe ({type(error).__name__})"
        if not all(np.isfinite(u).all() for u in updates):
            continue
        if case["kind"] == "chain" or not updates:
            break
        case["tf_sensitivity"] = _sensitivity(case, initial, updates)
        if case["tf_sensitivity"] <= 1:
            break
        unstable = case["tf_sensitivity"]
    else:
        if unstable is not None:
            return (
                "TensorFlow's own step is not finite or unstable on every domain (rounding "
                f"the weights by {PERTURBATION:g} moves it up to {unstable:.3g}x the tolerance)"
            )
        return "TensorFlow's own step is not finite on any domain"
    model = build(case)
    np.savez(directory / f"{case['file']}_initial.npz", *initial)
    np.savez(directory / f"{case['file']}_updates.npz", *updates)
    model.set_weights(initial)
    model.save(directory / f"{case['file']}.keras")
    case["layers"] = op_layer_names(model)
    # The first weight is the Dense right before the op: its update crosses the bridge.
    case["before_trained"] = bool(updates) and bool(np.abs(updates[0]).max() > 0)
    return case


def _sensitivity(case: dict, initial: list, updates: list) -> float:
    """How far TensorFlow's own step moves, in units of the tolerance, when
    the initial weights are perturbed by float32 rounding (`PERTURBATION`,
    relative): another backend's Dense computes the op's input to about that
    precision, so where TF itself moves beyond the tolerance (an ill-posed op
    such as `tf.linalg.eig` on a matrix with near-equal eigenvalue moduli),
    no backend can be compared with it on that domain."""
    rng = np.random.default_rng(1)
    worst = 0.0
    for _ in range(2):
        model = build(case)
        model.set_weights(
            [(w * (1 + PERTURBATION * rng.standard_normal(w.shape))).astype(w.dtype) for w in initial]
        )
        worst = max(worst, compare_updates(updates, one_step(model, case)))
    return worst


# -- Other backends: the comparison ------------------------------------------------------


def compare_updates(expected: list, found: list) -> float:
    """The worst error of `found` against `expected`, in units of the
    tolerance (<= 1 matches)."""
    worst = 0.0
    for want, got in zip(expected, found, strict=True):
        scale = float(np.abs(want).max())
        tolerance = RTOL * np.abs(want) + ATOL_OF_SCALE * scale + 1e-30
        error = np.abs(got - want) / tolerance
        worst = max(worst, float(np.nan_to_num(error, nan=np.inf).max()))
    return worst


def _names_a_layer(error: Exception, layers: list[str]) -> bool:
    return isinstance(error, KerasGraftError) and any(name in str(error) for name in layers)


def compare_case(directory: Path, case: dict, mode: str) -> dict:
    """One case on the current backend: 'match', 'mismatch', 'refused' (at
    build, naming the layer), 'raised' (at the step, naming the layer),
    'silent' (trained where TensorFlow raised) or 'error' (anything else)."""
    initial = list(np.load(directory / f"{case['file']}_initial.npz").values())
    expected = list(np.load(directory / f"{case['file']}_updates.npz").values())
    try:
        if mode == "built":
            model = build(case)
            model.set_weights(initial)
        else:
            keras.backend.clear_session(free_memory=False)
            model = keras.models.load_model(directory / f"{case['file']}.keras", compile=False)
    except Exception as error:  # The finding: how it was refused.
        status = "refused" if _names_a_layer(error, case["layers"]) else "error"
        return {"status": status, "detail": _describe(error)}
    try:
        found = one_step(model, case)
    except Exception as error:  # The finding: how the step failed.
        status = "raised" if _names_a_layer(error, case["layers"]) else "error"
        return {"status": status, "detail": _describe(error)}
    if "tf_error" in case:
        return {"status": "silent", "detail": f"trained where TensorFlow raised {case['tf_error']}"}
    worst = compare_updates(expected, found)
    return {"status": "match" if worst <= 1 else "mismatch", "worst": worst}


def _describe(error: Exception) -> str:
    if isinstance(error, KerasGraftError):
        return f"{type(error).__name__}: {error}"[:600]
    return "".join(traceback.format_exception(error))[-1500:]


def compare(directory: Path) -> None:
    manifest = json.loads((directory / "manifest.json").read_text())
    for case in manifest["cases"]:
        modes = ("built", "loaded") if case["kind"] == "chain" else ("built",)
        for mode in modes:
            finding = {"id": case["id"], "mode": mode, **compare_case(directory, case, mode)}
            print(json.dumps(finding), flush=True)


# -- Both sides, from the command line and from the tests ---------------------------------


def _child(backend: str, *arguments, timeout: float) -> str:
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the {backend} sweep failed:\n{completed.stderr[-4000:]}")
    return completed.stdout


def run(directory: Path, *, names=SAMPLE_OPS, backends=("jax", "torch"), timeout: float = 3600) -> dict:
    """The sweep of the ops `names` (None: every op) and every chain:
    {"manifest": ..., backend: {(case id, mode): finding}}."""
    _child(
        "tensorflow",
        "reference",
        str(directory),
        *(["--all"] if names is None else ["--ops", ",".join(names)]),
        timeout=timeout,
    )
    result = {"manifest": json.loads((directory / "manifest.json").read_text())}
    for backend in backends:
        lines = _child(backend, "compare", str(directory), timeout=timeout).splitlines()
        findings = [json.loads(line) for line in lines if line.startswith("{")]
        result[backend] = {(f["id"], f["mode"]): f for f in findings}
    return result


def summary(result: dict) -> int:
    """Prints the sweep's outcome; returns the number of failures (mismatches
    and errors that name no layer)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    manifest = result["manifest"]
    backends = [b for b in result if b != "manifest"]
    ops = [c for c in manifest["cases"] if c["kind"] == "op"]
    table = Table(
        title=f"{len(ops)} ops with a gradient, {len(CHAINS)} chains; "
        f"{len(manifest['skipped'])} ops out of scope"
    )
    for column in ("status", *backends):
        table.add_column(column)
    statuses = ("match", "refused", "raised", "mismatch", "silent", "error")
    for status in statuses:
        table.add_row(
            status, *(str(sum(f["status"] == status for f in result[b].values())) for b in backends)
        )
    console = Console(width=160)
    console.print(table)
    reasons = Table(title="ops out of scope, by reason")
    reasons.add_column("reason")
    reasons.add_column("ops", justify="right")
    reasons.add_column("for example")
    by_reason: dict[str, list[str]] = {}
    for name, reason in sorted(manifest["skipped"].items()):
        by_reason.setdefault(reason.split(" (")[0], []).append(name)
    for reason, names in sorted(by_reason.items(), key=lambda item: -len(item[1])):
        reasons.add_row(escape(reason), str(len(names)), escape(", ".join(names[:3])))
    console.print(reasons)
    failures = 0
    for backend in backends:
        for (case, mode), finding in sorted(result[backend].items()):
            if finding["status"] in ("match",):
                continue
            detail = finding.get("detail", f"worst error {finding.get('worst', 0):.3g}x tolerance")
            console.print(
                f"{backend} {escape(case)} ({mode}): {finding['status']}: "
                f"{escape(detail.strip().splitlines()[-1])[:300]}"
            )
            failures += finding["status"] in ("mismatch", "silent", "error")
    return failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", nargs="?", choices=("reference", "compare"))
    parser.add_argument("directory", nargs="?")
    parser.add_argument("--all", action="store_true", help="every op in scope, not the CI sample")
    parser.add_argument("--ops", help="these ops (canonical names, comma-separated), not the CI sample")
    parser.add_argument("--backends", default="jax,torch")
    parser.add_argument("--json", help="also write the findings to this file")
    arguments = parser.parse_args(argv)
    names = None if arguments.all else tuple(arguments.ops.split(",")) if arguments.ops else SAMPLE_OPS
    if arguments.role == "reference":
        reference(Path(arguments.directory), names)
        return 0
    if arguments.role == "compare":
        compare(Path(arguments.directory))
        return 0
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        result = run(Path(directory), names=names, backends=tuple(arguments.backends.split(",")))
    if arguments.json:
        Path(arguments.json).write_text(
            json.dumps(
                {
                    "manifest": result["manifest"],
                    **{b: list(f.values()) for b, f in result.items() if b != "manifest"},
                },
                indent=1,
            )
        )
    return 1 if summary(result) else 0


if __name__ == "__main__":
    sys.exit(main())
