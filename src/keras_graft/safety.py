"""What a model file may name, and what a traced op may contain.

A keras-graft op layer is stored as the *name* of a function plus constant
arguments. Loading resolves that name, so the name is the attack surface: a
forged file could name `io.write_file` or `py_function`. Two checks guard it.

1. **The allow-list of names**, checked before anything is resolved or called.
   A name is allowed when it is

   - a public TensorFlow function in one of the pure tensor namespaces
     (`ALLOWED_NAMESPACES`: `tf.math`, `tf.nn`, `tf.linalg`, `tf.signal`,
     `tf.image`, `tf.strings`, ...), that is a function and not a class, and
     not on `DENIED_NAMES`; top-level `tf.*` functions count only when they
     support TF's op dispatch (the mark of a tensor op), which leaves out
     `tf.function`, `tf.device`, `tf.load_library` and their kind;
   - one of the pure decoders, encoders and parsers of `tf.io`
     (`ALLOWED_IO_PREFIXES`), never its file functions;
   - a function registered with `@keras_graft.op` (code the user imported);
   - a name the user allowed explicitly with `keras_graft.allow(...)`.

2. **The graph audit.** Every TensorFlow op is traced into a graph when it is
   wrapped or loaded; the ops it created (and the bodies of functions it
   calls) are checked against `UNSAFE_OP_TYPES` and `UNSAFE_OP_MARKERS`:
   files, checkpoints, summaries, readers, datasets and Python callbacks.
   Explicitly allowed names skip the audit: allowing them is the user's call.

Both checks run when an op is wrapped too, so a model that could not be
loaded safely fails where it is built, not after training. With
`keras.models.load_model(..., safe_mode=False)` (or
`keras.config.enable_unsafe_deserialization()`) they are skipped on load, as
Keras skips its own checks; names must still be TensorFlow's or registered.

Extending the allow-list:

>>> import keras_graft
>>> with keras_graft.allow("io.read_file"):
...     pass  # build or load models that read files here

or, for the rest of the process, `keras_graft.allow("io.read_file")`.
"""

from __future__ import annotations

import inspect

from keras_graft import _compat

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

DENIED_NAMES = frozenset(
    {
        # Python callbacks run arbitrary code.
        "py_function",
        "numpy_function",
        # Writes to any file or stream named in its arguments.
        "print",
        # File and device access.
        "d_tensor_restore_v2",
        "d_tensor_set_global_tpu_array",
        "configure_and_initialize_global_tpu",
        "shutdown_tpu_system",
        "check_pinned",
        "copy_to_mesh",
        "copy_to_mesh_grad",
        "relayout",
        "relayout_like",
        # Read protocol descriptors from files.
        "io.decode_proto",
        "io.encode_proto",
        # Mutates global state of the process.
        "random.set_seed",
    }
)

UNSAFE_OP_TYPES = frozenset(
    {
        "ImmutableConst",
        "LoadAndRemapMatrix",
        "MergeV2Checkpoints",
        "PrintV2",
        "Print",
        "PyFunc",
        "PyFuncStateless",
        "EagerPyFunc",
        "Restore",
        "RestoreSlice",
        "RestoreV2",
        "Save",
        "SaveSlices",
        "SaveV2",
        "ShardedFilename",
        "ShardedFilespec",
        "DecodeProtoV2",
        "EncodeProto",
    }
)

UNSAFE_OP_MARKERS = ("File", "Reader", "Summary", "Checkpoint", "Dataset", "Iterator", "Debug")

_user_allowed: dict[str, int] = {}


class UnsafeOpError(ValueError):
    """A model names, or an op builds, something that could touch the system."""


class allow:
    """Allows TensorFlow op names beyond the default allow-list.

    Called plainly, the names stay allowed for the rest of the process; used
    as a context manager, only inside the `with` block. Names are canonical TF
    names with or without the `tf.` prefix (`"io.read_file"`).
    """

    def __init__(self, *names: str):
        if not names or not all(isinstance(n, str) and n for n in names):
            raise TypeError(
                "keras_graft.allow() takes one or more op names such as "
                f"'io.read_file'; got {names!r}."
            )
        self.names = tuple(_strip_prefix(n) for n in names)
        for name in self.names:
            _user_allowed[name] = _user_allowed.get(name, 0) + 1

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        for name in self.names:
            _user_allowed[name] -= 1
            if not _user_allowed[name]:
                del _user_allowed[name]


def _strip_prefix(name: str) -> str:
    return name[3:] if name.startswith("tf.") else name


def is_user_allowed(tf_name: str) -> bool:
    return _user_allowed.get(_strip_prefix(tf_name), 0) > 0


def refusal_reason(tf_name: str) -> str | None:
    """Why the TF name (without `tf.`) is not on the default allow-list, or None."""
    namespace, _, short = tf_name.rpartition(".")
    if tf_name in DENIED_NAMES:
        return "it is on keras-graft's deny-list (files, processes, Python callbacks or global state)"
    if tf_name.startswith("io."):
        if tf_name.startswith(ALLOWED_IO_PREFIXES):
            return None
        return "`tf.io` functions other than decoders, encoders and parsers touch files"
    if namespace not in ALLOWED_NAMESPACES:
        return f"namespace `tf.{namespace}` is not one of the pure tensor namespaces"
    if short.startswith("_") and namespace != "__operators__":
        return "it is private"
    return None


def check_tf_name(tf_name: str) -> None:
    """Refuses a TF name that is neither on the allow-list nor user-allowed.

    Runs before the name is resolved, so nothing a refused name points to runs.
    """
    if is_user_allowed(tf_name):
        return
    reason = refusal_reason(tf_name)
    if reason is not None:
        raise UnsafeOpError(
            f"Refusing op `tf.{tf_name}`: {reason}. If you trust this model, "
            f"allow it explicitly with `keras_graft.allow('{tf_name}')`, or load "
            "with `keras.models.load_model(path, safe_mode=False)`."
        )


def check_tf_symbol(tf_name: str, symbol) -> None:
    """Refuses what a name resolved to when it is no tensor function."""
    if is_user_allowed(tf_name):
        return
    if inspect.isclass(symbol) or not callable(symbol):
        raise UnsafeOpError(
            f"Refusing `tf.{tf_name}`: it is a {type(symbol).__name__}, not an op "
            "function. Only TensorFlow op functions can be op layers."
        )
    namespace = tf_name.rpartition(".")[0]
    if namespace == "" and not hasattr(symbol, "_tf_fallback_dispatchers"):
        raise UnsafeOpError(
            f"Refusing `tf.{tf_name}`: it is not a tensor op (it does not support "
            "TensorFlow's op dispatch). Allow it explicitly with "
            f"`keras_graft.allow('{tf_name}')` if it is one."
        )


def unsafe_op_types(op_types) -> list[str]:
    """The op types among `op_types` that touch files, processes or Python."""
    return sorted(
        t
        for t in set(op_types)
        if t in UNSAFE_OP_TYPES or any(marker in t for marker in UNSAFE_OP_MARKERS)
    )


def audit_graph_ops(display_name: str, op_types) -> None:
    """Refuses a traced op whose graph holds unsafe op types."""
    found = unsafe_op_types(op_types)
    if found:
        raise UnsafeOpError(
            f"Refusing `{display_name}`: its TensorFlow graph contains "
            f"{', '.join(found)}, which can touch files, processes or Python "
            "callbacks. If you trust it, allow it with "
            f"`keras_graft.allow('{display_name}')`."
        )


def enforced() -> bool:
    """Whether the checks apply now (always, except in Keras' unsafe mode)."""
    return _compat.in_keras_safe_mode()
