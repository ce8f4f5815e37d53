"""The check process of `keras-graft inspect`: XLA and TFLite checks of traced graphs.

Started by `keras_graft.inspection.sandbox`, under a memory and time budget,
as a script that imports TensorFlow and nothing of keras-graft or Keras:

    python sandbox_child.py READY_MARKER

It warms up (one XLA compilation and one TFLite conversion, so that their
libraries and thread pools exist), prints READY_MARKER, then answers tasks
from standard input, one JSON line each on standard output:
`{"error": null}` when the graph compiles (XLA) or converts (TFLite, with the
ops sets asked for), `{"error": "..."}` with TensorFlow's reason when it does
not (an allocation that failed included: the parent tells those apart).

A task is four length-prefixed parts (8-byte big-endian lengths): a JSON
header, a serialized `GraphDef` of the function, then each captured value as
`tf.io.serialize_tensor` bytes. The header names the function's inputs
(`[name, shape, dtype]`), outputs and captures (`[kind, name, dtype]`, kind
"variable" or "constant"), the check (`"xla"` or `"tflite"`) and, for
TFLite, the ops sets.

>>> import io
>>> header = {"check": "xla", "inputs": [["x:0", [2], "float32"]], "outputs": [], "captures": []}
>>> _read_task(io.BytesIO(_frame(json.dumps(header).encode()) + _frame(b"")))[0]["check"]
'xla'
"""

from __future__ import annotations

import json
import os
import signal
import struct
import sys

# The longest a task may run if the parent that watches it is gone.
_ORPHAN_SECONDS = 600


def _frame(data: bytes) -> bytes:
    return struct.pack(">Q", len(data)) + data


def _read_exactly(stream, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _read_part(stream) -> bytes | None:
    length = _read_exactly(stream, 8)
    return None if length is None else _read_exactly(stream, struct.unpack(">Q", length)[0])


def _read_task(stream):
    """(header, graph bytes, capture bytes) of the next task, or None at the end of input."""
    header = _read_part(stream)
    if header is None:
        return None
    header = json.loads(header)
    graph = _read_part(stream)
    captures = [_read_part(stream) for _ in header["captures"]]
    return header, graph, captures


def _rebuild(tf, header: dict, graph_bytes: bytes, capture_bytes: list):
    """The traced function again: (tf.function, input specs, a module holding its variables).

    The graph's placeholders for inputs and captures are taken out and fed
    instead: inputs with the function's arguments, captures with variables
    and tensors made from the values sent (captured by the function as the
    original captured them, so TFLite freezes them the same way). An input
    no op reads (`tf.fill([2, 2], 1.0)` called on a tensor) is not fed.
    """
    graph = tf.compat.v1.GraphDef.FromString(graph_bytes)
    fed = {name.split(":")[0] for name, _, _ in header["inputs"]}
    fed |= {name.split(":")[0] for _, name, _ in header["captures"]}
    kept = [node for node in graph.node if node.name not in fed]
    del graph.node[:]
    graph.node.extend(kept)
    read = {source.lstrip("^") for node in kept for source in node.input}

    def is_read(name: str) -> bool:
        return name in read or (name.endswith(":0") and name[:-2] in read)

    values = []
    for (kind, _, dtype), data in zip(header["captures"], capture_bytes):
        value = tf.io.parse_tensor(data, dtype)
        values.append(tf.Variable(value) if kind == "variable" else value)

    def function(*arguments):
        feeds = {
            name: argument for (name, _, _), argument in zip(header["inputs"], arguments) if is_read(name)
        }
        for (kind, name, _), value in zip(header["captures"], values):
            if is_read(name):
                feeds[name] = tf.identity(value.handle if kind == "variable" else value)
        return tf.compat.v1.import_graph_def(
            graph, input_map=feeds, return_elements=header["outputs"], name="probe"
        )

    specs = [tf.TensorSpec(shape, dtype) for _, shape, dtype in header["inputs"]]
    holder = tf.Module()
    holder.values = values
    return tf.function(function, autograph=False), specs, holder


def _xla_error(tf, function, specs) -> str | None:
    try:
        compiled = tf.function(function, jit_compile=True, autograph=False)
        compiled.experimental_get_compiler_ir(*specs)(stage="hlo")
    except Exception as error:  # Any failure to compile means: not on the XLA path.
        return str(error) or type(error).__name__
    return None


def _tflite_error(tf, function, specs, holder, ops_sets) -> str | None:
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function(*specs)], holder
    )
    converter.target_spec.supported_ops = [getattr(tf.lite.OpsSet, name) for name in ops_sets]
    try:
        converter.convert()
    except Exception as error:  # Any failure means: does not convert this way.
        return str(error) or type(error).__name__
    return None


def _answer(tf, task) -> dict:
    header, graph, captures = task
    try:
        function, specs, holder = _rebuild(tf, header, graph, captures)
        if header["check"] == "xla":
            return {"error": _xla_error(tf, function, specs)}
        return {"error": _tflite_error(tf, function, specs, holder, header["ops_sets"])}
    except Exception as error:  # Rebuilding failed (MemoryError too): say why, as the check's error.
        return {"error": f"{type(error).__name__}: {error}"}


def _warm_up(tf) -> None:
    def add_one(x):
        return x + 1.0

    spec = tf.TensorSpec([2], tf.float32)
    _xla_error(tf, add_one, [spec])
    _tflite_error(tf, tf.function(add_one), [spec], None, ["TFLITE_BUILTINS"])


def main(ready_marker: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):  # compiling needs no reserved GPU memory
        tf.config.experimental.set_memory_growth(gpu, True)
    _warm_up(tf)
    print(ready_marker, flush=True)
    stdin = sys.stdin.buffer
    while (task := _read_task(stdin)) is not None:
        signal.alarm(_ORPHAN_SECONDS)
        reply = _answer(tf, task)
        signal.alarm(0)
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1])
