"""What a model file may name, and what a traced op may contain.

A keras-graft op layer is stored as the *name* of a function plus constant
arguments. Loading resolves that name, so the name is the attack surface: a
forged file could name `io.write_file`, `py_function`, or a function that
flips a switch of the whole process. Four rules guard it.

1. **The allow-list of names** (`allowed_ops()`), checked before a file's name
   is looked up anywhere. It is built from what a user can reach, not from
   TensorFlow's export table (which also holds the tf2xla wrappers, RPC and
   preemption ops that no public namespace shows). A name is in when it is

   - a public attribute of one of the pure tensor namespaces
     (`ALLOWED_NAMESPACES`: `tf.*`, `tf.math`, `tf.nn`, `tf.linalg`,
     `tf.signal`, `tf.image`, `tf.strings`, `tf.random`, `tf.sparse`, ...),
     or one of the decoders, encoders and parsers of `tf.io`
     (`ALLOWED_IO_PREFIXES`), never its file functions;
   - a *tensor op*: a function with TensorFlow's op dispatch (TF gives it to
     the functions that build graph ops), or one of the reviewed pure ops
     that lack it (`NON_DISPATCHING_TENSOR_OPS`, mostly `tf.sparse`). Plain
     Python functions are out: `tf.debugging.enable_check_numerics`,
     `tf.random.set_global_generator` and their kind change the whole
     process when called, and create no op an audit could see;
   - not on `DENIED_NAMES`: Python callbacks, printing to streams, the
     clock, protocol-buffer descriptors read from files.

   Functions registered with `@keras_graft.op` are code the user imported and
   are resolved by their registered name.

2. **The graph audit** (`audit_graph_ops`). Every op is traced into a graph
   when it is wrapped or loaded; the op types it created, and those of every
   function its ops call (followed through function-valued attributes), may
   not touch files, checkpoints, summaries, readers, datasets, queues,
   Python callbacks, the network (RPC, send/receive, collectives), TPUs, the
   clock or preemption, nor run an embedded program (`XlaCallModule`,
   `MlirPassthroughOp`, custom calls). An attribute naming a function the
   graph does not define would call a function of the loading process by
   name, and is refused too.

3. **Loading runs nothing from the file** (`keras_graft.core.inference`): ops from
   a file are only traced into a graph, never run, and are traced on
   stand-ins for all but small inputs, so TensorFlow's constant folding
   cannot compute large values from a file's constants. An output whose rank
   only running the op would tell is refused on load, not probed.

4. **Tracing a file's op is bounded.** An op a file names checks its
   arguments on every call (`bounded`, `BOUNDED_ARGUMENTS`): as a layer's own
   op and as a function argument of another (`tf.ragged.map_flat_values(
   tf.einsum, ..., optimize="optimal")`), whatever forwards them. While a
   file's op is traced, a hook on TensorFlow's graph-op constructor
   (`trace_budget`) refuses, before TensorFlow builds it, an op of more than
   `MAX_OP_OUTPUTS` outputs or past `MAX_TRACE_OPS` ops per layer.

Rules 1 and 2 also run when an op is wrapped in user code, so a model that
could not be loaded safely fails where it is built, not after training. With
`keras.models.load_model(..., safe_mode=False)` (or
`keras.config.enable_unsafe_deserialization()`) they are skipped, as Keras
skips its own checks.

Extending the allow-list is scoped to the calling thread (and asyncio task):

>>> import keras_graft
>>> with keras_graft.allow("io.read_file"):
...     pass  # build or load models that read files here

For every thread of the process, and until revoked, say so explicitly with
`keras_graft.allow_process_wide("io.read_file")`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import threading
import types
import warnings
from collections.abc import Callable, Mapping

import tensorflow as tf

from keras_graft import _compat
from keras_graft.errors import TracingBudgetError, UnsafeOpError, malformed

ALLOWED_NAMESPACES = frozenset(
    {
        "",
        "__operators__",
        "audio",
        "bitwise",
        "debugging",
        "dtypes",
        "image",
        "linalg",
        "linalg.experimental",
        "math",
        "math.special",
        "nn",
        "nn.experimental",
        "quantization",
        "ragged",
        "random",
        "random.experimental",
        "sets",
        "signal",
        "sparse",
        "strings",
    }
)

ALLOWED_IO_PREFIXES = (
    "io.decode_",
    "io.encode_",
    "io.parse_",
    "io.serialize_",
    "io.deserialize_",
    "io.extract_jpeg_shape",
    "io.is_jpeg",
)

# Pure tensor ops whose public attribute lacks TensorFlow's op dispatch,
# reviewed one by one: each builds graph ops from its arguments and nothing
# else. (`tests/test_safety.py` traces each.)
NON_DISPATCHING_TENSOR_OPS = frozenset(
    {
        "image.is_jpeg",
        "io.decode_json_example",
        "io.is_jpeg",
        "io.serialize_tensor",
        "linalg.banded_triangular_solve",
        "linalg.logm",
        # Their function argument is stored by name and resolved through this
        # allow-list too; the audit follows the loop body they build.
        "map_fn",
        "vectorized_map",
        "linalg.slogdet",
        "required_space_to_batch_paddings",
        "signal.fftnd",
        "signal.ifftnd",
        "signal.irfft",
        "signal.irfft2d",
        "signal.irfft3d",
        "signal.irfftnd",
        "signal.rfft",
        "signal.rfft2d",
        "signal.rfft3d",
        "signal.rfftnd",
        "nn.all_candidate_sampler",
        "random.all_candidate_sampler",
        "random.stateless_parameterized_truncated_normal",
        "sparse.add",
        "sparse.concat",
        "sparse.cross",
        "sparse.cross_hashed",
        "sparse.expand_dims",
        "sparse.eye",
        "sparse.fill_empty_rows",
        "sparse.from_dense",
        "sparse.mask",
        "sparse.maximum",
        "sparse.minimum",
        "sparse.reduce_max",
        "sparse.reduce_sum",
        "sparse.reorder",
        "sparse.reset_shape",
        "sparse.retain",
        "sparse.sampled_addmm",
        "sparse.segment_mean",
        "sparse.segment_sqrt_n",
        "sparse.segment_sum",
        "sparse.slice",
        "sparse.softmax",
        "sparse.sparse_dense_matmul",
        "sparse.split",
        "sparse.to_dense",
        "sparse.to_indicator",
        "sparse.transpose",
    }
)

_CALLBACK = "it runs a Python function"
_NOT_PUBLIC = "it is not a public attribute of `tf`"
_PROCESS_STATE = "it changes the state of the whole process, not a tensor"

DENIED_NAMES: Mapping[str, str] = types.MappingProxyType(
    {
        "py_function": _CALLBACK,
        "numpy_function": _CALLBACK,
        "print": "it writes to any stream or file named in its arguments",
        "timestamp": "it reads the clock, so the model's result depends on when it runs",
        "check_pinned": "it is a DTensor op that checks device placement, not a tensor op",
        "io.decode_proto": "it reads protocol-buffer descriptors from files",
        "io.encode_proto": "it reads protocol-buffer descriptors from files",
        # Refused anyway as plain Python functions; named for a clear reason.
        "random.set_seed": _PROCESS_STATE,
        "random.set_global_generator": _PROCESS_STATE,
        "random.get_global_generator": _PROCESS_STATE,
        "random.experimental.set_global_generator": _PROCESS_STATE,
        "random.experimental.get_global_generator": _PROCESS_STATE,
        "debugging.enable_check_numerics": _PROCESS_STATE,
        "debugging.disable_check_numerics": _PROCESS_STATE,
        "debugging.enable_traceback_filtering": _PROCESS_STATE,
        "debugging.disable_traceback_filtering": _PROCESS_STATE,
        "debugging.set_log_device_placement": _PROCESS_STATE,
    }
)

UNSAFE_OP_TYPES = frozenset(
    {
        # Python callbacks, printing, descriptors read from files.
        "PyFunc",
        "PyFuncStateless",
        "EagerPyFunc",
        "PrintV2",
        "Print",
        "DecodeProtoV2",
        "EncodeProto",
        # Checkpoints and memory-mapped files.
        "ImmutableConst",
        "LoadAndRemapMatrix",
        "MergeV2Checkpoints",
        "Restore",
        "RestoreSlice",
        "RestoreV2",
        "Save",
        "SaveSlices",
        "SaveV2",
        "ShardedFilename",
        "ShardedFilespec",
        # Embedded programs and calls into the process by name.
        "MlirPassthroughOp",
        # The clock and preemption.
        "Timestamp",
        "CheckPreemption",
    }
)

# Substrings of op types that touch files, streams, other processes or
# machines, shared resources, or run compiled programs (`XlaCallModule`,
# `XlaCustomCall`, `XlaLaunch`...).
UNSAFE_OP_MARKERS = (
    "File",
    "Reader",
    "Summary",
    "Checkpoint",
    "Dataset",
    "Iterator",
    "Debug",
    "Queue",
    "Barrier",
    "Accumulator",
    "Rpc",
    "Remote",
    "Collective",
    "Nccl",
    "Send",
    "Recv",
    "TPU",
    "Tpu",
    "Xla",
    "Infeed",
    "Outfeed",
    "Preemption",
)

# Names allowed for this thread or asyncio task only (`with allow(...)`).
_scoped_allowed: contextvars.ContextVar[frozenset] = contextvars.ContextVar(
    "keras_graft_allowed", default=frozenset()
)
# Names allowed for every thread (`allow_process_wide`); replaced, never
# mutated, so readers need no lock.
_process_allowed: frozenset = frozenset()
_process_lock = threading.Lock()


class allow:
    """Allows TensorFlow op names beyond the default allow-list, in a `with` block.

    The names are allowed only in the calling thread (and asyncio task) and
    only inside the block: another thread loading an untrusted file at the
    same time gets the default list. Names are canonical TF names with or
    without the `tf.` prefix (`"io.read_file"`). Explicitly allowed names
    skip the graph audit: allowing them is the user's call.

    For every thread, until revoked, use `keras_graft.allow_process_wide`.

    Like every `contextvars` setting, an asyncio task created *inside* the
    block keeps the allowance it started with, also after the block ends:
    create tasks that load untrusted files outside it.
    """

    def __init__(self, *names: str):
        self.names = _normalized(names, "allow")
        self._token = None
        self._entered = False

    def __enter__(self):
        if self._token is not None:
            raise RuntimeError("This keras_graft.allow(...) block is already active.")
        self._entered = True
        self._token = _scoped_allowed.set(_scoped_allowed.get() | self.names)
        return self

    def __exit__(self, *exc_info):
        _scoped_allowed.reset(self._token)
        self._token = None

    def __del__(self):
        if not getattr(self, "_entered", True):
            warnings.warn(
                f"keras_graft.allow{tuple(self.names)!r} was never entered, so it "
                "allowed nothing. Use it as `with keras_graft.allow(...):`, or "
                "call keras_graft.allow_process_wide(...) to allow the names for "
                "every thread.",
                RuntimeWarning,
                stacklevel=2,
            )


def allow_process_wide(*names: str) -> None:
    """Allows op names for every thread of the process, until `revoke_process_wide`.

    Every model loaded afterwards, trusted or not, may use these names. Prefer
    `with keras_graft.allow(...)` around the loads that need them.
    """
    global _process_allowed
    normalized = _normalized(names, "allow_process_wide")
    with _process_lock:
        _process_allowed = _process_allowed | normalized


def revoke_process_wide(*names: str) -> None:
    """Takes back names given with `allow_process_wide`."""
    global _process_allowed
    normalized = _normalized(names, "revoke_process_wide")
    with _process_lock:
        _process_allowed = _process_allowed - normalized


def _normalized(names, caller: str) -> frozenset:
    if not names or not all(isinstance(n, str) and n for n in names):
        raise TypeError(
            f"keras_graft.{caller}() takes one or more op names such as 'io.read_file'; got {names!r}."
        )
    normalized = frozenset(_strip_prefix(n) for n in names)
    unknown = sorted(n for n in normalized if _compat.tf_symbol(n) is None)
    if unknown:
        warnings.warn(
            f"keras_graft.{caller}(): TensorFlow exports no {', '.join(map(repr, unknown))}, "
            "so allowing it changes nothing. Names are canonical TF names such as "
            "'io.read_file' (check the spelling).",
            RuntimeWarning,
            stacklevel=3,
        )
    return normalized


def _strip_prefix(name: str) -> str:
    return name[3:] if name.startswith("tf.") else name


def is_user_allowed(tf_name: str) -> bool:
    """Whether the user allowed the name for this thread or the process."""
    name = _strip_prefix(tf_name)
    return name in _scoped_allowed.get() or name in _process_allowed


@functools.cache
def allowed_ops() -> Mapping[str, Callable]:
    """Every name the default allow-list admits, with the function it names.

    Walks the public attributes of the allowed namespaces, so aliases
    (`tf.add` and `tf.math.add`) are both in.
    """
    admitted = {}
    for namespace in sorted(ALLOWED_NAMESPACES | {"io"}):
        module = _public_module(namespace)
        if module is None:
            continue
        for attribute in dir(module):
            name = f"{namespace}.{attribute}" if namespace else attribute
            function = getattr(module, attribute, None)
            if _classify(name, function) is None:
                admitted[name] = function
    return types.MappingProxyType(admitted)


def _public_module(namespace: str):
    """`tf.<namespace>` reached through attributes, as a user would, or None."""
    module = tf
    for part in namespace.split(".") if namespace else ():
        module = getattr(module, part, None)
        if not isinstance(module, types.ModuleType):
            return None
    return module


def _classify(name: str, function) -> str | None:
    """Why `function`, reached as `tf.<name>`, is not admitted; None if it is."""
    namespace, _, short = name.rpartition(".")
    if name in DENIED_NAMES:
        return f"it is on keras-graft's deny-list: {DENIED_NAMES[name]}"
    if namespace == "io" or namespace.startswith("io."):
        if not name.startswith(ALLOWED_IO_PREFIXES):
            return "`tf.io` functions other than decoders, encoders and parsers touch files"
    elif namespace not in ALLOWED_NAMESPACES:
        return f"namespace `tf.{namespace}` is not one of the pure tensor namespaces"
    if short.startswith("_") and namespace != "__operators__":
        return "it is private"
    if function is None:
        return _NOT_PUBLIC
    if inspect.isclass(function) or inspect.ismodule(function) or not callable(function):
        return f"it is a {type(function).__name__}, not an op function"
    if not _compat.has_op_dispatch(function) and name not in NON_DISPATCHING_TENSOR_OPS:
        return "it is a plain Python function, not a tensor op (it has no TensorFlow op dispatch)"
    return None


def refusal_reason(tf_name: str) -> str | None:
    """Why the TF name (without `tf.`) is not on the default allow-list, or None.

    Looks the name up only through public attributes of `tf`, never through
    TensorFlow's export table.
    """
    if tf_name in allowed_ops():
        return None
    namespace, _, short = tf_name.rpartition(".")
    module = _public_module(namespace)
    function = getattr(module, short, None) if module is not None and short else None
    return _classify(tf_name, function) or _NOT_PUBLIC


def check_tf_name(tf_name: str) -> None:
    """Refuses a TF name that is neither on the allow-list nor user-allowed.

    Runs before the name is resolved, so nothing a refused name points to runs.
    """
    if is_user_allowed(tf_name):
        return
    reason = refusal_reason(tf_name)
    if reason is None:
        return
    if reason == _NOT_PUBLIC:  # nothing a user could mean to allow
        raise UnsafeOpError(f"Refusing op `tf.{tf_name}`: {reason}.")
    raise UnsafeOpError(
        f"Refusing op `tf.{tf_name}`: {reason}. If you trust it, allow it "
        f"explicitly, where the model is built and where it is loaded, with "
        f"`with keras_graft.allow('{tf_name}'):`; a file you trust also loads with "
        "`keras.models.load_model(path, safe_mode=False)`."
    )


# The most outputs one graph op traced from a model file may have, and an
# op layer from a file may return: like the container bound
# (`arguments.MAX_STORED_ITEMS`), a bound on what one number in a file can
# make TensorFlow build (`num_partitions=1_000_000` is a graph op of a
# million outputs: 7 s and 440 MB to create, GBs once Keras wraps them).
MAX_OP_OUTPUTS = 4096

# The most graph ops, and outputs of all ops, tracing one op layer from a
# model file may create (in any graph: loop and function bodies too): about
# 2 s on a 2-core CPU. Single TF ops create at most a few hundred ops; more
# comes from a Python loop over a file's values.
MAX_TRACE_OPS = 4096
MAX_TRACE_OUTPUTS = 4 * MAX_OP_OUTPUTS

# TensorFlow's limit on the rank of a tensor that can run. Graph shapes can
# be longer (`tf.meshgrid` of 2000 arguments builds rank-2000 tensors, 5 ops
# per argument and a GB in all): an untrusted trace may not.
MAX_RANK = 254


def _greedy_path_search(arguments: Mapping) -> str | None:
    optimize = arguments.get("optimize")
    if optimize in ("greedy", False, None):
        return None
    return (
        f"optimize={optimize!r:.40} makes tracing search for a contraction path "
        "beyond the greedy one (the exhaustive search takes hours on 14 operands); "
        "a file may give only 'greedy', False or None"
    )


def _outputs(value) -> int | None:
    """How many outputs `value` asks for as a count or a list of sizes; None if unknown."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    shape = getattr(value, "shape", None)
    if shape is not None:
        dims = tuple(shape)
        return dims[0] if len(dims) == 1 and isinstance(dims[0], int) else None
    return len(value) if isinstance(value, (list, tuple)) else None


def _at_most_outputs(*parameters: str):
    """A check that the op's count or sizes arguments ask for at most `MAX_OP_OUTPUTS` outputs."""

    def check(arguments: Mapping) -> str | None:
        for parameter in parameters:
            count = _outputs(arguments.get(parameter))
            if count is not None and count > MAX_OP_OUTPUTS:
                return (
                    f"{parameter}={count} asks for {count} outputs; a file may make "
                    f"an op build at most {MAX_OP_OUTPUTS}"
                )
        return None

    return check


def _unstacked_outputs(arguments: Mapping) -> str | None:
    """`tf.unstack` makes `num` outputs, or one per element along `axis`."""
    problem = _at_most_outputs("num")(arguments)
    if problem or arguments.get("num") is not None:
        return problem
    shape = getattr(arguments.get("value"), "shape", None)
    axis = arguments.get("axis", 0)
    if shape is None or not isinstance(axis, int) or getattr(shape, "rank", 0) is None:
        return None
    dims = tuple(shape)
    count = dims[axis] if -len(dims) <= axis < len(dims) else None
    if isinstance(count, int) and count > MAX_OP_OUTPUTS:
        return (
            f"the value has {count} elements along axis {axis}, one output each; a "
            f"file may make an op build at most {MAX_OP_OUTPUTS}"
        )
    return None


# Arguments a model file may give an op only within bounds: those that make
# its Python code search exponentially, or choose how many graph outputs it
# builds, while it is traced. Each check takes the call's arguments by
# parameter name and returns the problem, or None. They run on every call of
# the op a file names (`bounded`): as a layer's own op, and as a function
# passed to another op (`tf.ragged.map_flat_values(tf.einsum, ...,
# optimize="optimal")`), whatever forwards the arguments. Output counts that
# no argument names are bounded while tracing (`trace_budget`).
BOUNDED_ARGUMENTS: Mapping[str, Callable[[Mapping], str | None]] = types.MappingProxyType(
    {
        "einsum": _greedy_path_search,
        "linalg.einsum": _greedy_path_search,
        "dynamic_partition": _at_most_outputs("num_partitions"),
        "split": _at_most_outputs("num_or_size_splits", "num"),
        "unstack": _unstacked_outputs,
        "sparse.split": _at_most_outputs("num_split"),
        "nn.ctc_beam_search_decoder": _at_most_outputs("top_paths"),
    }
)


def bounded(tf_name: str, function: Callable) -> Callable:
    """`function` (the op `tf.<tf_name>` from a model file), refusing arguments
    out of `BOUNDED_ARGUMENTS`' bounds on every call; `function` itself for
    ops without bounds.

    The result carries the op's name (`graft_tf_name`), so it is stored, and
    keyed in the signature cache, as the op itself.

    >>> import tensorflow as tf
    >>> split = bounded("split", tf.split)
    >>> [part.shape.as_list() for part in split(tf.zeros([4]), 2)]
    [[2], [2]]
    >>> split(tf.zeros([4]), 10_000)
    Traceback (most recent call last):
    ...
    keras_graft.errors.TracingBudgetError: Refusing `tf.split` from a model file: num_or_size_splits=10000 asks for 10000 outputs; ...
    """
    if tf_name not in BOUNDED_ARGUMENTS:
        return function
    return _bounded(tf_name, function)


@functools.cache
def _bounded(tf_name: str, function: Callable) -> Callable:
    signature = inspect.signature(function)
    check = BOUNDED_ARGUMENTS[tf_name]
    keywords = [p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD]

    @functools.wraps(function, updated=())
    def checked(*args, **kwargs):
        try:
            arguments = signature.bind(*args, **kwargs).arguments
        except TypeError:  # The op raises its own error for these.
            return function(*args, **kwargs)
        for name in keywords:
            arguments.update(arguments.pop(name, {}))
        problem = check(arguments)
        if problem:
            raise TracingBudgetError(
                f"Refusing `tf.{tf_name}` from a model file: {problem}. Load a file "
                "you trust with `keras.models.load_model(path, safe_mode=False)`."
            )
        return function(*args, **kwargs)

    checked.graft_tf_name = tf_name
    return checked


@contextlib.contextmanager
def trace_budget(where: str):
    """Refuses, before TensorFlow builds it, each graph op past an untrusted
    trace's budget: an op of more than `MAX_OP_OUTPUTS` outputs, more than
    `MAX_TRACE_OPS` ops or `MAX_TRACE_OUTPUTS` outputs in all (in any graph,
    loop and function bodies too); and right after it is built, an op with
    an output of rank above `MAX_RANK`.

    `where` names the op layer in the error. Once refused, every later op of
    the block is too, and the block ends in the refusal even if TensorFlow
    caught it and raised something else.
    """
    ops = outputs_in_all = 0
    refusal: list[TracingBudgetError] = []

    def refuse(problem: str):
        refusal.append(
            TracingBudgetError(
                f"Refusing {where} from a model file: tracing it would {problem}. A "
                f"file may make an op layer build at most {MAX_TRACE_OPS} graph ops, "
                f"{MAX_TRACE_OUTPUTS} outputs in all and {MAX_OP_OUTPUTS} per op; load a "
                "file you trust with `keras.models.load_model(path, safe_mode=False)`."
            )
        )
        raise refusal[0]

    def before(op_type: str, outputs: int) -> None:
        nonlocal ops, outputs_in_all
        if refusal:
            raise refusal[0]
        ops, outputs_in_all = ops + 1, outputs_in_all + outputs
        if outputs > MAX_OP_OUTPUTS:
            refuse(f"create a {op_type} op with {outputs} outputs")
        if ops > MAX_TRACE_OPS:
            refuse(f"create more than {MAX_TRACE_OPS} graph ops")
        if outputs_in_all > MAX_TRACE_OUTPUTS:
            refuse(f"create more than {MAX_TRACE_OUTPUTS} graph op outputs")

    def after(operation) -> None:
        rank = max((t.shape.rank or 0 for t in operation.outputs), default=0)
        if rank > MAX_RANK:
            refuse(
                f"create a {operation.type} op with an output of rank {rank} "
                f"(TensorFlow runs tensors of rank {MAX_RANK} at most)"
            )

    try:
        with _compat.watching_op_creation(before, after):
            yield
    except Exception:
        if refusal:
            raise refusal[0] from None
        raise
    if refusal:
        raise refusal[0]


def check_output_count(where: str, count: int) -> None:
    """Refuses an op layer from a model file that returns more than `MAX_OP_OUTPUTS` tensors."""
    if count > MAX_OP_OUTPUTS:
        raise TracingBudgetError(
            f"Refusing {where} from a model file: it returns {count} tensors, and a "
            f"file may make an op layer return at most {MAX_OP_OUTPUTS}; load a file "
            "you trust with `keras.models.load_model(path, safe_mode=False)`."
        )


def check_called_on_keras_tensors(layer_name: str, args, kwargs) -> None:
    """Refuses a keras-graft layer call of a model file being loaded whose
    arguments hold anything but Keras tensors and plain data.

    Keras calls each layer of a file on the arguments its node stores; a
    node may store a tensor (`{"class_name": "__tensor__", ...}`) in place
    of a Keras tensor, and a layer called on a real tensor runs: the file's
    `tf.fill` would allocate gigabytes at load, its `Print` would print.
    Outside a load (`_compat.deserializing_untrusted()` false) this checks
    nothing.
    """
    if not _compat.deserializing_untrusted():
        return
    plain = (type(None), bool, int, float, str)
    odd = [leaf for leaf in tf.nest.flatten(args) if not isinstance(leaf, _compat.KerasTensor)]
    odd += [leaf for leaf in tf.nest.flatten(kwargs) if not isinstance(leaf, (_compat.KerasTensor, *plain))]
    if odd:
        raise malformed(
            f"The layer {layer_name!r:.80} is called on {type(odd[0]).__name__} "
            f"{odd[0]!r:.60} in the model file's node arguments; a model file calls its "
            "layers on Keras tensors only"
        )


def unsafe_op_types(op_types) -> list[str]:
    """The op types among `op_types` that touch the system or run programs."""
    return sorted(
        t for t in set(op_types) if t in UNSAFE_OP_TYPES or any(marker in t for marker in UNSAFE_OP_MARKERS)
    )


def audit_graph_ops(display_name: str, graph, operations) -> None:
    """Refuses a traced op whose graph holds unsafe op types.

    Follows function-valued attributes into the graph's function library;
    a function the graph does not define is refused (it would be looked up
    in the loading process by name).
    """
    op_types, undefined = _compat.op_types_called(graph, operations)
    if undefined:
        raise UnsafeOpError(
            f"Refusing `{display_name}`: its TensorFlow graph calls function(s) "
            f"{', '.join(sorted(undefined))} by name, which the graph does not "
            "define; they would be looked up in the loading process."
        )
    found = unsafe_op_types(op_types)
    if found:
        raise UnsafeOpError(
            f"Refusing `{display_name}`: its TensorFlow graph contains "
            f"{', '.join(found)}, which can touch files, the network, the "
            "process or Python, or run an embedded program. If you trust it, "
            f"allow it with `with keras_graft.allow('{display_name}'):`."
        )


def enforced() -> bool:
    """Whether the checks apply now (always, except in Keras' unsafe mode)."""
    return _compat.in_keras_safe_mode()
