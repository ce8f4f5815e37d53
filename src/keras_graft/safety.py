"""What a model file may name, and what a traced op may contain.

A keras-graft op layer is stored as the *name* of a function plus constant
arguments. Loading resolves that name, so the name is the attack surface: a
forged file could name `io.write_file`, `py_function`, or a function that
flips a switch of the whole process. Three rules guard it.

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

3. **Loading runs nothing from the file** (`keras_graft.inference`): ops from
   a file are only traced into a graph, never run, and are traced on
   stand-ins for all but small inputs, so TensorFlow's constant folding
   cannot compute large values from a file's constants. An output whose rank
   only running the op would tell is refused on load, not probed.

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

import contextvars
import functools
import inspect
import threading
import types
import warnings
from typing import Callable, Mapping

import tensorflow as tf

from keras_graft import _compat
from keras_graft.errors import UnsafeOpError

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

# Keyword arguments that make an allowed op's *Python* code search
# exponentially while it is traced (opt_einsum's "optimal" path for 14
# operands takes hours); a model file may give them only these values.
BOUNDED_KEYWORDS: Mapping[str, Mapping[str, tuple]] = types.MappingProxyType(
    {
        name: {"optimize": ("greedy", False, None)}
        for name in ("einsum", "linalg.einsum")
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
            f"keras_graft.{caller}() takes one or more op names such as "
            f"'io.read_file'; got {names!r}."
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


@functools.lru_cache(maxsize=None)
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
    if not hasattr(function, "_tf_fallback_dispatchers") and name not in NON_DISPATCHING_TENSOR_OPS:
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


def check_bounded_keywords(tf_name: str, keywords: dict) -> None:
    """Refuses keyword values on `BOUNDED_KEYWORDS` that a file may not give."""
    for keyword, allowed in BOUNDED_KEYWORDS.get(tf_name, {}).items():
        if keyword in keywords and keywords[keyword] not in allowed:
            raise UnsafeOpError(
                f"Refusing `tf.{tf_name}` with {keyword}={keywords[keyword]!r:.40} from a "
                f"model file: tracing it can search for hours. A file may give "
                f"{keyword} only {', '.join(map(repr, allowed))}; load a file you trust "
                "with `keras.models.load_model(path, safe_mode=False)`."
            )


def unsafe_op_types(op_types) -> list[str]:
    """The op types among `op_types` that touch the system or run programs."""
    return sorted(
        t
        for t in set(op_types)
        if t in UNSAFE_OP_TYPES or any(marker in t for marker in UNSAFE_OP_MARKERS)
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
