"""Forged `.keras` files that attack keras-graft's safe loading, and a sandboxed loader.

keras-graft promises that `keras.models.load_model(path)` (safe mode, after
`import keras_graft`) never runs anything the file chooses, never hangs,
never allocates much and never changes the state of the process. Each
builder here writes one minimal file that breaks (or probes) that promise.

    import hostile                     # tests/helpers/ is on sys.path (conftest.py)
    for attack in hostile.ATTACKS:
        path = attack.build(tmp_path)
        result = hostile.load_in_child(path, timeout_s=60)
        # result["outcome"] in {"loaded", "refused", "timeout", "crashed"}

`ATTACKS` entries are `Attack(name, weakness, build, description)`, where
`weakness` is the class of weakness it shows:

1. an allowed name that is no pure tensor op (XLA, RPC, preemption, clock...);
2. an allowed Python function with process-wide side effects;
3. loading that executes file-supplied ops (the eager rank probe, or the
   constant folding of graph tracing), or makes tracing search or build
   without bound (path searches, output counts, graph ops): memory, time,
   programs;
4. anything else (argument decoding, hyperparameters, `Print` options,
   Keras structure);
5. a load that reports output shapes other than the model computes (the
   signature cache answering for a value TensorFlow knew part of).

An attack may also name `preload` entries for the child (a victim layer to
register, `allow("print")`), a file to load `before` it in the same process
(the signature cache outlives a load), and `run`: call the loaded model on
zeros, so that what it does when it runs (writing a file) shows too.

Hostile files must only ever be loaded with `load_in_child`: it loads in a
fresh interpreter (run as `python hostile.py --child PATH`), under a wall
clock timeout and an address-space limit, and reports peak RSS and which
pieces of process state the load changed. `load_batch_in_child` does the
same for many files in one such interpreter (`--batch JOBS`), and loads
again alone each file the batch did not report on.

Nothing in this module imports TensorFlow at import time. The builders write
`config.json` from scratch; they need a benign source file only for its
`metadata.json` and (weightless) `model.weights.h5`, which `benign_model`
saves in a child process, once per directory.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

GiB = 1 << 30
_MARKER = "@@HOSTILE_RESULT@@"
_HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------
# Building blocks of a forged file
# ---------------------------------------------------------------------------


def benign_model(directory) -> Path:
    """A real keras-graft model, `x -> tf.math.sin(x)`, saved in `directory`.

    Saved in a child process so that the caller need not import TensorFlow.
    The same file is the baseline for `load_in_child`.
    """
    path = Path(directory) / "benign.keras"
    if not path.exists():
        script = (
            "import sys, keras, tensorflow as tf, keras_graft\n"
            "x = keras.Input((3,))\n"
            "keras.Model(x, tf.math.sin(x)).save(sys.argv[1])\n"
        )
        subprocess.run(
            [sys.executable, "-c", script, str(path)],
            check=True,
            env=_child_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return path


def graft(kind: str, **fields) -> dict:
    """A tagged stored argument: `graft("input", index=0)`."""
    return {"__graft__": kind, **fields}


INPUT0 = graft("input", index=0)


def tensor(dtype: str, shape: list, values: list) -> dict:
    return graft("tensor", dtype=dtype, shape=shape, values=values)


def array(dtype: str, shape: list, values: list) -> dict:
    return graft("array", dtype=dtype, shape=shape, values=values)


def raw_bytes(data: bytes) -> dict:
    return graft("bytes", base64=base64.b64encode(data).decode("ascii"))


def op_layer(name: str, op: str, args=(), kwargs=None, inputs=("input",), class_name="TFOp") -> dict:
    """One op layer of a forged config, called on the layers named in `inputs`."""
    tensors = [
        {
            "class_name": "__keras_tensor__",
            "config": {"shape": [], "dtype": "float32", "keras_history": [source, 0, 0]},
        }
        for source in inputs
    ]
    return {
        "module": "keras_graft.core.op_layer",
        "class_name": class_name,
        "config": {
            "name": name,
            "trainable": True,
            "op": op,
            "arguments": {"args": list(args), "kwargs": dict(kwargs or {})},
        },
        "registered_name": f"keras_graft>{class_name}",
        "name": name,
        "inbound_nodes": [{"args": tensors if len(tensors) == 1 else [tensors], "kwargs": {}}],
    }


def print_layer(name: str, args=(), kwargs=None, inputs=("input",)) -> dict:
    """A `Print` layer (`tf.print` on Keras tensors) of a forged config."""
    layer = op_layer(name, "", args, kwargs, inputs, class_name="Print")
    layer["module"] = "keras_graft.patches.printing"
    del layer["config"]["op"]
    return layer


def input_layer(name="input", shape=(3,), dtype="float32") -> dict:
    return {
        "module": "keras.layers",
        "class_name": "InputLayer",
        "config": {
            "batch_shape": [None, *shape],
            "dtype": dtype,
            "sparse": False,
            "ragged": False,
            "name": name,
            "optional": False,
        },
        "registered_name": None,
        "name": name,
        "inbound_nodes": [],
    }


def model_config(layers: list, output: str | None = None, input_name="input") -> dict:
    """A Functional config; `input_name` may be a list of input layer names."""
    inputs = [[n, 0, 0] for n in input_name] if isinstance(input_name, list) else [input_name, 0, 0]
    return {
        "module": "keras.src.models.functional",
        "class_name": "Functional",
        "config": {
            "name": "functional",
            "trainable": True,
            "layers": layers,
            "input_layers": inputs,
            "output_layers": [output or layers[-1]["name"], 0, 0],
        },
        "registered_name": "Functional",
        "build_config": {"input_shape": None},
        "compile_config": {},
    }


def write_keras(directory, filename: str, config, *, raw_config: bytes | None = None) -> Path:
    """Writes `config` (or the bytes `raw_config`) as a `.keras` file in `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(benign_model(directory)) as source:
        files = {name: source.read(name) for name in source.namelist()}
    files["config.json"] = raw_config if raw_config is not None else json.dumps(config).encode()
    target = directory / filename
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return target


def edited_keras(source, target, edit) -> Path:
    """Copies the `.keras` file `source` to `target` with `edit(config)` applied to its config."""
    with zipfile.ZipFile(source) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    edit(config)
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return Path(target)


def single_op(directory, filename, op, args=(), kwargs=None, *, shape=(3,), dtype="float32") -> Path:
    """A model `input -> op(...)` with the op's arguments as given."""
    layers = [input_layer(shape=shape, dtype=dtype), op_layer("forged", op, args, kwargs)]
    return write_keras(directory, filename, model_config(layers))


def chain(directory, filename, steps, *, shape=(3,), dtype="float32") -> Path:
    """A model of op layers `steps = [(name, op, args, kwargs, inputs), ...]`."""
    layers = [input_layer(shape=shape, dtype=dtype)]
    for name, op, args, kwargs, inputs in steps:
        layers.append(op_layer(name, op, args, kwargs, inputs))
    return write_keras(directory, filename, model_config(layers))


# ---------------------------------------------------------------------------
# Payloads
# ---------------------------------------------------------------------------


def _png(width: int, height: int, *, bit_depth=8, color_type=0) -> bytes:
    """An all-zero PNG: a few hundred KB per GB of decoded pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    row = 1 + width * channels * bit_depth // 8
    compressor = zlib.compressobj(9)
    zero_row = bytes(row)
    idat = b"".join(compressor.compress(zero_row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _tensor_proto(dtype_enum: int, dims: list[int]) -> bytes:
    """A serialized TensorProto with a shape and no values (TF zero-fills it)."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            byte = n & 0x7F
            n >>= 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def field(number: int, payload: bytes) -> bytes:  # length-delimited
        return varint(number << 3 | 2) + varint(len(payload)) + payload

    shape = b"".join(field(2, varint(1 << 3 | 0) + varint(d)) for d in dims)  # Dim.size
    return varint(1 << 3 | 0) + varint(dtype_enum) + field(2, shape)


def _zlib_bomb(size: int) -> bytes:
    compressor = zlib.compressobj(9)
    block = bytes(1 << 20)
    data = b"".join(compressor.compress(block) for _ in range(size >> 20))
    return data + compressor.flush()


# ---------------------------------------------------------------------------
# Class 1: allowed names that are no pure tensor ops
# ---------------------------------------------------------------------------


_IDENTITY_MODULE = (
    b"module @jit_f attributes {jax.uses_shape_polymorphism = true} { func.func public "
    b"@main(%arg0: tensor<?x3xf32>) -> tensor<?x3xf32> { return %arg0 : tensor<?x3xf32> } }"
)

# while (i >= 0) { i += 1; x += x }: 2**63 iterations.
_ENDLESS_MODULE = b"""module @jit_f attributes {jax.uses_shape_polymorphism = true} {
  func.func public @main(%arg0: tensor<?x3xf32>) -> tensor<?x3xf32> {
    %c = stablehlo.constant dense<0> : tensor<i64>
    %r:2 = stablehlo.while(%i = %c, %x = %arg0) : tensor<i64>, tensor<?x3xf32>
      cond {
        %z = stablehlo.constant dense<0> : tensor<i64>
        %t = stablehlo.compare GE, %i, %z : (tensor<i64>, tensor<i64>) -> tensor<i1>
        stablehlo.return %t : tensor<i1>
      } do {
        %one = stablehlo.constant dense<1> : tensor<i64>
        %j = stablehlo.add %i, %one : tensor<i64>
        %y = stablehlo.add %x, %x : tensor<?x3xf32>
        stablehlo.return %j, %y : tensor<i64>, tensor<?x3xf32>
      }
    return %r#1 : tensor<?x3xf32>
  }
}"""


def _xla_call_module_kwargs(module: bytes, out_dims) -> dict:
    return {
        "args": [INPUT0],
        "version": 9,
        "module": raw_bytes(module),
        "Sout": [graft("shape", dims=out_dims)],
        "Tout": [graft("dtype", name="float32")],
        "dim_args_spec": [],
        "platforms": ["CPU"],
    }


def xla_call_module(directory) -> Path:
    """`tf.xla_call_module` (export table only) loads: the file ships a StableHLO program."""
    return single_op(
        directory,
        "xla_call_module.keras",
        "tf.xla_call_module",
        kwargs=_xla_call_module_kwargs(_IDENTITY_MODULE, [None, 3]),
    )


def xla_call_module_spin(directory) -> Path:
    """`tf.xla_call_module` with an endless StableHLO while loop and an output of unknown
    rank (`Sout` = `TensorShape(None)`): the rank probe runs it eagerly, load never returns."""
    return single_op(
        directory,
        "xla_call_module_spin.keras",
        "tf.xla_call_module",
        kwargs=_xla_call_module_kwargs(_ENDLESS_MODULE, None),
    )


def xla_call_module_spin_on_call(directory) -> Path:
    """The endless module with a static `Sout`: loads fine, the first call never returns."""
    return single_op(
        directory,
        "xla_call_module_spin_on_call.keras",
        "tf.xla_call_module",
        kwargs=_xla_call_module_kwargs(_ENDLESS_MODULE, [None, 3]),
    )


def rpc_server(directory) -> Path:
    """`tf.rpc_server("[::]:port")` (export table only): opens a gRPC server."""
    return single_op(directory, "rpc_server.keras", "tf.rpc_server", args=["localhost:47123"])


def rpc_client(directory) -> Path:
    """`tf.rpc_client(address, timeout)` (export table only): connects to a server."""
    return single_op(
        directory,
        "rpc_client.keras",
        "tf.rpc_client",
        kwargs={"server_address": "10.255.255.1:47124", "timeout_in_ms": 0},
    )


def check_preemption(directory) -> Path:
    """`tf.check_preemption(key)` (export table only): polls the coordination service."""
    return single_op(directory, "check_preemption.keras", "tf.check_preemption", args=["key"])


def audio_microfrontend(directory) -> Path:
    """`tf.audio_microfrontend` (export table only): a contrib op from a loaded .so."""
    return single_op(
        directory,
        "audio_microfrontend.keras",
        "tf.audio_microfrontend",
        args=[INPUT0],
        shape=(),
        dtype="int16",
    )


def xla_recv(directory) -> Path:
    """`tf.xla_recv` (export table only): waits for a cross-host transfer."""
    return single_op(
        directory,
        "xla_recv.keras",
        "tf.xla_recv",
        kwargs={
            "dtype": graft("dtype", name="float32"),
            "tensor_name": "t",
            "shape": graft("shape", dims=[3]),
        },
    )


def xla_send(directory) -> Path:
    """`tf.xla_send` (export table only): sends the input to another host."""
    return single_op(
        directory, "xla_send.keras", "tf.xla_send", kwargs={"tensor": INPUT0, "tensor_name": "t"}
    )


def timestamp(directory) -> Path:
    """`tf.timestamp()` (public): a clock read, nondeterministic by design."""
    return single_op(directory, "timestamp.keras", "tf.timestamp")


# ---------------------------------------------------------------------------
# Class 2: allowed Python functions with process-wide side effects
# ---------------------------------------------------------------------------


def enable_check_numerics(directory) -> Path:
    """Installs a process-wide op callback; load then fails, the callback stays."""
    return single_op(directory, "enable_check_numerics.keras", "tf.debugging.enable_check_numerics")


def set_log_device_placement(directory) -> Path:
    """Turns on device-placement logging of every later op, process-wide."""
    return single_op(
        directory, "set_log_device_placement.keras", "tf.debugging.set_log_device_placement", args=[True]
    )


def disable_traceback_filtering(directory) -> Path:
    """Turns TF's traceback filtering off for the whole process."""
    return single_op(
        directory, "disable_traceback_filtering.keras", "tf.debugging.disable_traceback_filtering"
    )


def set_global_generator(directory) -> Path:
    """Replaces the global RNG with an int: every later `get_global_generator()` breaks."""
    return single_op(directory, "set_global_generator.keras", "tf.random.set_global_generator", args=[7])


def get_global_generator(directory) -> Path:
    """Creates the global RNG (a variable seeded from the OS) as a side effect."""
    return single_op(directory, "get_global_generator.keras", "tf.random.get_global_generator")


def state_then_valid_op(directory) -> Path:
    """A side-effect layer before a legitimate one: load refused, filtering stays off."""
    return chain(
        directory,
        "state_then_valid_op.keras",
        [
            ("quiet", "tf.debugging.disable_traceback_filtering", [], {}, ["input"]),
            ("sin", "tf.math.sin", [INPUT0], {}, ["input"]),
        ],
    )


# ---------------------------------------------------------------------------
# Class 3: loading executes file-supplied ops
# ---------------------------------------------------------------------------


def parse_tensor_bomb(directory, gib: float = 4) -> Path:
    """A 20-byte TensorProto of `gib` GiB of float32 zeros, materialized by the rank probe."""
    elements = int(gib * GiB) // 4
    proto = _tensor_proto(1, [elements])  # DT_FLOAT
    return single_op(
        directory,
        "parse_tensor_bomb.keras",
        "tf.io.parse_tensor",
        args=[raw_bytes(proto), graft("dtype", name="float32")],
    )


def decode_image_bomb(directory, side: int = 16384) -> Path:
    """A 1 MB RGBA PNG of `side`² pixels (1 GiB decoded), decoded by the rank probe.

    (TF refuses PNGs whose byte size overflows an int, so 1-2 GiB per image.)"""
    return single_op(
        directory,
        "decode_image_bomb.keras",
        "tf.io.decode_image",
        args=[raw_bytes(_png(side, side, color_type=6))],
    )


def decode_png_bomb(directory, side: int = 16384) -> Path:
    """The same PNG through `tf.io.decode_png` (static rank: no probe, no decode)."""
    return single_op(
        directory,
        "decode_png_bomb.keras",
        "tf.io.decode_png",
        args=[raw_bytes(_png(side, side, color_type=6))],
    )


def decode_compressed_bomb(directory, size: int = 2 * GiB) -> Path:
    """A 2 MB zlib stream of 2 GiB, via `tf.io.decode_compressed` (static rank: no probe)."""
    return single_op(
        directory,
        "decode_compressed_bomb.keras",
        "tf.io.decode_compressed",
        args=[raw_bytes(_zlib_bomb(size)), "ZLIB"],
    )


def fill_huge(directory) -> Path:
    """`tf.fill([65536, 65536], 1.0)` alone: only a graph node, nothing is computed."""
    return single_op(directory, "fill_huge.keras", "tf.fill", args=[[65536, 65536], 1.0])


def probe_huge_input(directory, rows: int = 16384, columns: int = 65536) -> Path:
    """Input layer declared `(rows, columns)` (4 GiB of float32) and an op of unknown rank,
    `tf.reshape(x, s)` with `s` a second input: the probe allocates `tf.ones` of that shape."""
    x = input_layer("x", shape=(columns,))
    x["config"]["batch_shape"] = [rows, columns]
    layers = [
        x,
        input_layer("s", shape=(), dtype="int32"),
        op_layer("reshaped", "tf.reshape", [INPUT0, graft("input", index=1)], inputs=["x", "s"]),
    ]
    layers[1]["config"]["batch_shape"] = [None]
    return write_keras(directory, "probe_huge_input.keras", model_config(layers, input_name=["x", "s"]))


def range_constant_value(directory, elements: int = 2**31 - 1) -> Path:
    """Layer A `tf.range(n)` (rank known), layer B reduces over it with unknown output rank:
    the probe allocates `tf.ones` of A's shape, n int32 (8 GiB here: refused, after 20 s)."""
    return chain(
        directory,
        "range_constant_value.keras",
        [
            ("a", "tf.range", [elements], {}, ["input"]),
            ("b", "tf.math.reduce_sum", [INPUT0], {"axis": INPUT0}, ["a"]),
        ],
    )


def fill_constant_value(directory, elements: int = 1 << 29) -> Path:
    """Graph-only, Python: layer A `tf.fill([n], 0)`, layer B `tf.gather(x, [0], axis=A)`;
    `tf.gather` calls `tensor_util.constant_value(axis)`, which is `np.full(n, 0)`."""
    return chain(
        directory,
        "fill_constant_value.keras",
        [
            ("a", "tf.fill", [[elements], 0], {}, ["input"]),
            ("b", "tf.gather", [INPUT0, [0]], {"axis": graft("input", index=1)}, ["input", "a"]),
        ],
    )


def fill_shape_refiner(directory, elements: int = 1 << 29) -> Path:
    """Graph-only, C++: A = `tf.fill([n], 1)`, B = `reduce_sum(A)`, C = `tf.range(B)`.
    Range's shape function asks for B's value, so the shape refiner evaluates
    (EvaluateConstantTensor) the Fill and the Sum: n int32 allocated while tracing."""
    return chain(
        directory,
        "fill_shape_refiner.keras",
        [
            ("a", "tf.fill", [[elements], 1], {}, ["input"]),
            ("b", "tf.math.reduce_sum", [INPUT0], {}, ["a"]),
            ("c", "tf.range", [INPUT0], {}, ["b"]),
        ],
    )


def decompress_shape_refiner(directory, size: int = 1 * GiB) -> Path:
    """Graph-only, C++: A = `decode_compressed(1 MB zlib of 1 GiB)`, B = `strings.length(A)`,
    C = `tf.range(B)`: the refiner runs the decompression kernel while tracing."""
    return chain(
        directory,
        "decompress_shape_refiner.keras",
        [
            ("a", "tf.io.decode_compressed", [raw_bytes(_zlib_bomb(size)), "ZLIB"], {}, ["input"]),
            ("b", "tf.strings.length", [INPUT0], {}, ["a"]),
            ("c", "tf.range", [INPUT0], {}, ["b"]),
        ],
    )


def decode_image_shape_refiner(directory, side: int = 16384) -> Path:
    """Graph-only, C++: A = `decode_png(PNG bomb)` (static rank, no probe), B = `tf.size(A)`,
    C = `tf.range(B)`: the refiner decodes the 1 GiB image while tracing."""
    return chain(
        directory,
        "decode_image_shape_refiner.keras",
        [
            ("a", "tf.io.decode_png", [raw_bytes(_png(side, side, color_type=6))], {}, ["input"]),
            ("b", "tf.size", [INPUT0], {}, ["a"]),
            ("c", "tf.range", [INPUT0], {}, ["b"]),
        ],
    )


# ---------------------------------------------------------------------------
# Class 4: argument decoding, hyperparameters, structure
# ---------------------------------------------------------------------------


def deep_nesting(directory, depth: int = 900) -> Path:
    """Lists nested `depth` deep in an argument: RecursionError somewhere in loading."""
    value: object = 1.0
    for _ in range(depth):
        value = [value]
    return single_op(directory, "deep_nesting.keras", "tf.math.add", args=[INPUT0, value])


def resource_dtype(directory) -> Path:
    """An array of dtype `resource`: `_decode_array` fails with a bare KeyError."""
    return single_op(
        directory, "resource_dtype.keras", "tf.math.add", args=[INPUT0, array("resource", [1], [0])]
    )


def variant_dtype_tensor(directory) -> Path:
    """A `tensor` of dtype `variant`."""
    return single_op(directory, "variant_dtype.keras", "tf.identity", args=[tensor("variant", [1], [0])])


def huge_shape_argument(directory) -> Path:
    """A `tf.TensorShape` of 10 million dims, from a 100 KB file (zip deflates the JSON)."""
    dims = [1] * 10_000_000
    return single_op(
        directory, "huge_shape_argument.keras", "tf.ensure_shape", args=[INPUT0, graft("shape", dims=dims)]
    )


def negative_shape(directory) -> Path:
    """Negative and -1 array shapes (numpy infers -1; others error)."""
    return single_op(
        directory, "negative_shape.keras", "tf.math.add", args=[INPUT0, array("float32", [-1, 3], [0.0] * 3)]
    )


def config_zip_bomb(directory, elements: int = 100_000_000) -> Path:
    """`values` of 100M zeros: a ~200 KB .keras file, 200 MB of JSON, GBs as Python lists."""
    prefix = json.dumps(
        model_config(
            [
                input_layer(),
                op_layer("forged", "tf.math.add", [INPUT0, array("float32", [elements], ["@@"])]),
            ]
        )
    ).encode()
    head, _, tail = prefix.partition(b'"@@"')
    raw = b"".join((head, b"0," * (elements - 1), b"0", tail))  # no list of 100M items here
    return write_keras(directory, "config_zip_bomb.keras", None, raw_config=raw)


# ---------------------------------------------------------------------------
# The file formats themselves: HDF5 and zip (keras_graft/keras2/file_limits.py)
# ---------------------------------------------------------------------------

_KERNEL = "model_weights/dense/dense/kernel:0"
_DENSE_CONFIG = {
    "class_name": "Functional",
    "config": {
        "name": "model",
        "layers": [
            {
                "class_name": "InputLayer",
                "config": {"batch_input_shape": [None, 3], "dtype": "float32", "name": "x"},
                "name": "x",
                "inbound_nodes": [],
            },
            {
                "class_name": "Dense",
                "config": {"name": "dense", "units": 3, "dtype": "float32"},
                "name": "dense",
                "inbound_nodes": [[["x", 0, 0, {}]]],
            },
        ],
        "input_layers": [["x", 0, 0]],
        "output_layers": [["dense", 0, 0]],
    },
}


def keras2_h5(directory, filename: str, edit=None) -> Path:
    """A Keras 2 `.h5` file of `x -> Dense(3)`, laid out as tf_keras writes it, then
    `edit(file)` (an open `h5py.File`) applied."""
    import h5py
    import numpy as np

    path = Path(directory) / filename
    with h5py.File(path, "w") as file:
        file.attrs.update(
            keras_version="2.15.0", backend="tensorflow", model_config=json.dumps(_DENSE_CONFIG)
        )
        weights = file.create_group("model_weights")
        weights.attrs.update(keras_version="2.15.0", backend="tensorflow", layer_names=[b"x", b"dense"])
        for empty in ("x", "top_level_model_weights"):
            weights.create_group(empty).attrs["weight_names"] = np.array([], "S1")
        dense = weights.create_group("dense")
        dense.attrs["weight_names"] = [b"dense/kernel:0", b"dense/bias:0"]
        dense["dense/kernel:0"] = np.ones((3, 3), "float32")
        dense["dense/bias:0"] = np.zeros(3, "float32")
        if edit is not None:
            edit(file)
    return path


def _replace_kernel(file, **dataset) -> None:
    del file[_KERNEL]
    file.create_dataset(_KERNEL, **dataset)


def h5_shape_bomb(directory) -> Path:
    """A `.h5` kernel declared 60000x60000 (13 GB), chunked and never written: 20 KB on disk."""
    return keras2_h5(
        directory,
        "h5_shape_bomb.h5",
        lambda f: _replace_kernel(
            f, shape=(60000, 60000), dtype="float32", chunks=(1000, 1000), compression="gzip"
        ),
    )


def h5_gzip_bomb(directory) -> Path:
    """A `.h5` kernel of 1 GiB of zeros, all written, gzip-compressed to a few MB."""
    import numpy as np

    def edit(file):
        _replace_kernel(file, shape=(16384, 16384), dtype="float32", chunks=(1024, 1024), compression="gzip")
        for row in range(0, 16384, 1024):
            file[_KERNEL][row : row + 1024] = np.zeros((1024, 16384), "float32")

    return keras2_h5(directory, "h5_gzip_bomb.h5", edit)


def h5_optimizer_bomb(directory) -> Path:
    """`.h5` optimizer state (read before any layer exists) declared 13 GB, stored as nothing."""

    def edit(file):
        group = file.create_group("optimizer_weights")
        group.attrs["weight_names"] = [b"iteration:0"]
        group.create_dataset("iteration:0", shape=(60000, 60000), dtype="float32", chunks=(1000, 1000))

    return keras2_h5(directory, "h5_optimizer_bomb.h5", edit)


def h5_repeated_weight_names(directory) -> Path:
    """A 16 MB weight that `weight_names` names 300 times: each mention is read (4.8 GB)."""
    import numpy as np

    def edit(file):
        dense = file["model_weights/dense"]
        dense["big"] = np.zeros(1 << 22, "float32")
        dense.attrs["weight_names"] = [b"big"] * 300

    return keras2_h5(directory, "h5_repeated_weight_names.h5", edit)


def h5_hard_link_aliases(directory) -> Path:
    """300 hard links to one 16 MB weight, each named once in `weight_names` (4.8 GB read)."""
    import numpy as np

    def edit(file):
        dense = file["model_weights/dense"]
        dense["big"] = np.zeros(1 << 22, "float32")
        for i in range(300):
            dense[f"alias{i}"] = dense["big"]
        dense.attrs["weight_names"] = [f"alias{i}".encode() for i in range(300)]

    return keras2_h5(directory, "h5_hard_link_aliases.h5", edit)


def _elsewhere(directory) -> Path:
    """A file beside the model that a link or external storage could read: `other.h5`
    (a 3x3 kernel of 7s) and `secret.bin` (36 bytes: a 3x3 float32 array of 42s)."""
    import h5py
    import numpy as np

    directory = Path(directory)
    with h5py.File(directory / "other.h5", "w") as other:
        other["w"] = np.full((3, 3), 7.0, "float32")
    (directory / "secret.bin").write_bytes(np.full((3, 3), 42.0, "float32").tobytes())
    return directory


def h5_external_link(directory) -> Path:
    """A `.h5` kernel that is an external link to another HDF5 file on the disk."""
    import h5py

    other = _elsewhere(directory) / "other.h5"

    def edit(file):
        del file[_KERNEL]
        file[_KERNEL] = h5py.ExternalLink(str(other), "w")

    return keras2_h5(directory, "h5_external_link.h5", edit)


def h5_soft_link(directory) -> Path:
    """A `.h5` kernel that is a soft link to the bias (another object of the file)."""
    import h5py

    def edit(file):
        del file[_KERNEL]
        file[_KERNEL] = h5py.SoftLink("/model_weights/dense/dense/bias:0")

    return keras2_h5(directory, "h5_soft_link.h5", edit)


def h5_external_storage(directory) -> Path:
    """A `.h5` kernel whose bytes HDF5 reads from another file (`secret.bin`): file contents in the weights."""
    secret = _elsewhere(directory) / "secret.bin"
    return keras2_h5(
        directory,
        "h5_external_storage.h5",
        lambda f: _replace_kernel(f, shape=(3, 3), dtype="float32", external=[(str(secret), 0, 36)]),
    )


def h5_virtual_dataset(directory) -> Path:
    """A `.h5` kernel that is a virtual dataset mapping another file's dataset."""
    import h5py

    other = _elsewhere(directory) / "other.h5"

    def edit(file):
        del file[_KERNEL]
        layout = h5py.VirtualLayout(shape=(3, 3), dtype="float32")
        layout[:] = h5py.VirtualSource(str(other), "w", shape=(3, 3))
        file.create_virtual_dataset(_KERNEL, layout)

    return keras2_h5(directory, "h5_virtual_dataset.h5", edit)


def h5_string_weights(directory) -> Path:
    """A `.h5` kernel of variable-length strings where Keras stores numbers."""
    import h5py

    return keras2_h5(
        directory,
        "h5_string_weights.h5",
        lambda f: _replace_kernel(f, data=[["a" * 10] * 3] * 3, dtype=h5py.string_dtype()),
    )


def h5_unknown_filter(directory) -> Path:
    """A `.h5` kernel compressed by filter 307, which HDF5 would look for as a plugin library."""
    return keras2_h5(
        directory,
        "h5_unknown_filter.h5",
        lambda f: _replace_kernel(
            f, shape=(3, 3), dtype="float32", chunks=(3, 3), compression=307, allow_unknown_filter=True
        ),
    )


def _rezip(source: Path, target: Path, replace=None, extra=()) -> Path:
    """`source` (a zip) copied to `target` with members replaced and `extra` (name, bytes) added."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as copy:
        for name in original.namelist():
            copy.writestr(name, (replace or {}).get(name, original.read(name)))
        for name, data in extra:
            copy.writestr(name, data)
    return target


def zip_member_bomb(directory) -> Path:
    """A `.keras` file whose `assets/` member is 1.5 GB of zeros, deflated to 1.5 MB."""
    target = Path(directory) / "zip_member_bomb.keras"
    source = benign_model(directory)
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as copy:
        for name in original.namelist():
            copy.writestr(name, original.read(name))
        with copy.open("assets/bomb.bin", "w", force_zip64=True) as member:
            for _ in range(1536):
                member.write(bytes(1 << 20))
    return target


def zip_path_traversal(directory) -> Path:
    """A `.keras` file with members named `../../escape.txt` and `assets/../../escape2`."""
    return _rezip(
        benign_model(directory),
        Path(directory) / "zip_path_traversal.keras",
        extra=[("../../escape.txt", b"x"), ("assets/../../escape2", b"y")],
    )


def zip_many_members(directory) -> Path:
    """A `.keras` file of 70,000 empty members."""
    return _rezip(
        benign_model(directory),
        Path(directory) / "zip_many_members.keras",
        extra=[(f"assets/{i}", b"") for i in range(70_000)],
    )


def zip_metadata_bomb(directory) -> Path:
    """A `.keras` file whose `metadata.json` (which keras-graft reads first) is 400 MB deflated to 400 KB."""
    source = benign_model(directory)
    with zipfile.ZipFile(source) as archive:
        metadata = archive.read("metadata.json")
    padded = metadata.rstrip()[:-1] + b', "pad": "' + b" " * (400 << 20) + b'"}'
    return _rezip(source, Path(directory) / "zip_metadata_bomb.keras", replace={"metadata.json": padded})


def zip_deep_json(directory) -> Path:
    """A `.keras` file whose config nests 200,000 lists deep (a recursion bomb)."""
    source = benign_model(directory)
    with zipfile.ZipFile(source) as archive:
        config = archive.read("config.json")
    deep = config.rstrip()[:-1] + b', "deep": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    return _rezip(source, Path(directory) / "zip_deep_json.keras", replace={"config.json": deep})


def _edited_weights(directory, filename, edit) -> Path:
    import io

    import h5py

    source = benign_model(directory)
    with zipfile.ZipFile(source) as archive:
        data = io.BytesIO(archive.read("model.weights.h5"))
    with h5py.File(data, "r+") as weights:
        edit(weights)
    return _rezip(source, Path(directory) / filename, replace={"model.weights.h5": data.getvalue()})


def zip_weights_external_link(directory) -> Path:
    """A `.keras` file whose `model.weights.h5` links to another HDF5 file on the disk."""
    import h5py

    other = _elsewhere(directory) / "other.h5"
    return _edited_weights(
        directory,
        "zip_weights_external_link.keras",
        lambda w: w.__setitem__("layers/elsewhere", h5py.ExternalLink(str(other), "w")),
    )


def zip_weights_shape_bomb(directory) -> Path:
    """A `.keras` file whose `model.weights.h5` holds a 13 GB dataset stored as nothing."""
    return _edited_weights(
        directory,
        "zip_weights_shape_bomb.keras",
        lambda w: w.create_dataset("vars/bomb", shape=(60000, 60000), dtype="float32", chunks=(1000, 1000)),
    )


# ---------------------------------------------------------------------------
# Keras 2 `Lambda` bytecode (keras_graft/keras2/lambdas.py): never run without trust
# ---------------------------------------------------------------------------


def _lambda_payload(t):
    open("lambda_ran.txt", "w").close()  # in the loading process's working directory
    return t


def _lambda_bytecode() -> str:
    """The payload's code object as Keras 2 stores it (marshal, base64): this Python's."""
    import codecs
    import marshal

    return codecs.encode(marshal.dumps(_lambda_payload.__code__), "base64").decode("ascii")


def _lambda_config(function=None, function_type="lambda", module="__main__") -> dict:
    return {
        "class_name": "Lambda",
        "config": {
            "name": "payload",
            "dtype": "float32",
            "function": [_lambda_bytecode(), None, None] if function is None else function,
            "function_type": function_type,
            "module": module,
            "output_shape": None,
            "output_shape_type": "raw",
            "output_shape_module": None,
            "arguments": {},
        },
    }


def _h5_calling(directory, filename: str, layer: dict) -> Path:
    """The Keras 2 `.h5` of `x -> Dense(3)` with `layer` called on the Dense's output."""
    config = json.loads(json.dumps(_DENSE_CONFIG))
    name = layer["config"]["name"]
    config["config"]["layers"].append({**layer, "name": name, "inbound_nodes": [[["dense", 0, 0, {}]]]})
    config["config"]["output_layers"] = [[name, 0, 0]]
    return keras2_h5(directory, filename, lambda f: f.attrs.__setitem__("model_config", json.dumps(config)))


def h5_lambda_bytecode(directory) -> Path:
    """A Keras 2 `.h5` `Lambda` whose bytecode (this Python's) writes a file when called."""
    return _h5_calling(directory, "h5_lambda_bytecode.h5", _lambda_config())


def h5_lambda_module_function(directory) -> Path:
    """A `Lambda` of `function_type: "function"` naming `os.system` (module `os`)."""
    return _h5_calling(directory, "h5_lambda_module_function.h5", _lambda_config("system", "function", "os"))


def h5_lambda_new_format(directory) -> Path:
    """The bytecode as Keras 3 stores it (`{"class_name": "__lambda__"}`, module `keras.layers`)."""
    layer = _lambda_config(
        {
            "class_name": "__lambda__",
            "config": {"code": _lambda_bytecode(), "defaults": None, "closure": None},
        }
    )
    return _h5_calling(
        directory, "h5_lambda_new_format.h5", {**layer, "module": "keras.layers", "registered_name": None}
    )


def h5_lambda_in_sequential(directory) -> Path:
    """The bytecode `Lambda` inside a `Sequential` nested in the functional model."""
    nested = {"class_name": "Sequential", "config": {"name": "nested", "layers": [_lambda_config()]}}
    return _h5_calling(directory, "h5_lambda_in_sequential.h5", nested)


def h5_lambda_in_wrapper(directory) -> Path:
    """The bytecode `Lambda` as the layer of a `TimeDistributed` wrapper."""
    wrapper = {"class_name": "TimeDistributed", "config": {"name": "wrapped", "layer": _lambda_config()}}
    return _h5_calling(directory, "h5_lambda_in_wrapper.h5", wrapper)


def h5_lambda_in_wrapper_new_format(directory) -> Path:
    """The same, with the `module` and `registered_name` keys tf_keras 2.16+ writes on a
    nested layer: Keras reads such a layer itself, past keras-graft's hook."""
    lam = {**_lambda_config(), "module": "keras.layers", "registered_name": None}
    wrapper = {"class_name": "TimeDistributed", "config": {"name": "wrapped", "layer": lam}}
    return _h5_calling(directory, "h5_lambda_in_wrapper_new_format.h5", wrapper)


def h5_lambda_sequential_model(directory) -> Path:
    """A top-level Keras 2 `Sequential` `.h5` whose second layer is the bytecode `Lambda`."""
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "sequential",
            "layers": [
                {
                    "class_name": "InputLayer",
                    "config": {"batch_input_shape": [None, 3], "dtype": "float32", "name": "x"},
                },
                _lambda_config(),
            ],
        },
    }
    return keras2_h5(
        directory,
        "h5_lambda_sequential_model.h5",
        lambda f: f.attrs.__setitem__("model_config", json.dumps(config)),
    )


def h5_lambda_loss(directory) -> Path:
    """A `.h5` compiled with a bytecode loss and metric (`__lambda__` in `training_config`)."""
    function = {
        "class_name": "__lambda__",
        "config": {"code": _lambda_bytecode(), "defaults": None, "closure": None},
    }
    setup = {
        "loss": function,
        "metrics": [function, {"class_name": "MeanMetricWrapper", "config": {"name": "m", "fn": function}}],
        "optimizer_config": {"class_name": "Adam", "config": {"learning_rate": function}},
    }
    return keras2_h5(
        directory, "h5_lambda_loss.h5", lambda f: f.attrs.__setitem__("training_config", json.dumps(setup))
    )


LAMBDA_ATTACKS = (
    h5_lambda_bytecode,
    h5_lambda_module_function,
    h5_lambda_new_format,
    h5_lambda_in_sequential,
    h5_lambda_in_wrapper_new_format,
    h5_lambda_in_wrapper,
    h5_lambda_sequential_model,
)


FILE_FORMAT_ATTACKS = (
    h5_shape_bomb,
    h5_gzip_bomb,
    h5_optimizer_bomb,
    h5_repeated_weight_names,
    h5_hard_link_aliases,
    h5_external_link,
    h5_soft_link,
    h5_external_storage,
    h5_virtual_dataset,
    h5_string_weights,
    h5_unknown_filter,
    zip_member_bomb,
    zip_path_traversal,
    zip_many_members,
    zip_metadata_bomb,
    zip_deep_json,
    zip_weights_external_link,
    zip_weights_shape_bomb,
)


def self_referencing_node(directory) -> Path:
    """A layer whose inbound node names itself: Keras' node queue never empties."""
    layers = [input_layer(), op_layer("loop", "tf.math.sin", [INPUT0], inputs=["loop"])]
    return write_keras(directory, "self_referencing_node.keras", model_config(layers))


def unknown_node_index(directory) -> Path:
    """An inbound node that refers to node 5 of a layer that has one."""
    layer = op_layer("sin", "tf.math.sin", [INPUT0])
    layer["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = ["input", 5, 0]
    return write_keras(directory, "unknown_node_index.keras", model_config([input_layer(), layer]))


# A node's arguments may hold a stored tensor where a Keras tensor belongs: Keras
# then calls the layer on it, and a layer called on a real tensor runs.
_STORED_SHAPE_TENSOR = {"class_name": "__tensor__", "config": {"value": [20000, 20000], "dtype": "int32"}}


def _called_on_stored_tensor(directory, filename, layer) -> Path:
    layer["inbound_nodes"] = [{"args": [_STORED_SHAPE_TENSOR], "kwargs": {}}]
    return write_keras(directory, filename, model_config([input_layer(), layer], output="input"))


def node_stored_tensor_fill(directory) -> Path:
    """`tf.fill(dims, 1.0)` whose node calls it on a stored tensor `[20000, 20000]`: the
    layer ran at load, a 1.6 GB fill (2.3 GB peak); `[40000, 40000]` runs out of memory."""
    return _called_on_stored_tensor(
        directory, "node_stored_tensor_fill.keras", op_layer("filled", "tf.fill", [INPUT0, 1.0])
    )


def node_stored_tensor_print(directory) -> Path:
    """A `Print` layer (printing allowed) whose node calls it on a stored tensor: it
    printed at load, before the model ever ran."""
    return _called_on_stored_tensor(
        directory, "node_stored_tensor_print.keras", print_layer("printed", ["x:", INPUT0])
    )


def node_stored_tensor_kwarg(directory) -> Path:
    """`tf.math.sin` called on the input, with a stored tensor as a node keyword argument."""
    layer = op_layer("sin", "tf.math.sin", [INPUT0])
    layer["inbound_nodes"][0]["kwargs"] = {"training": _STORED_SHAPE_TENSOR}
    return write_keras(directory, "node_stored_tensor_kwarg.keras", model_config([input_layer(), layer]))


def node_stored_tensor_layer(directory) -> Path:
    """Victim layer (preload `VICTIM`) called on a stored tensor: a `@keras_graft.layer`
    function ran on the file's data at load, instead of being traced."""
    layer = _victim_layer()
    layer["inbound_nodes"] = [
        {
            "args": [
                {"class_name": "__tensor__", "config": {"value": [[1.0, 2.0, 3.0]], "dtype": "float32"}}
            ],
            "kwargs": {"mask": None},
        }
    ]
    return write_keras(
        directory, "node_stored_tensor_layer.keras", model_config([input_layer(), layer], output="input")
    )


def slot_out_of_range(directory) -> Path:
    """A tensor slot index past the layer's inputs."""
    return single_op(directory, "slot_out_of_range.keras", "tf.math.sin", args=[graft("input", index=10**9)])


def layer_name_path(directory) -> Path:
    """A layer named like a path and very long."""
    layers = [input_layer(), op_layer("../../" + "x" * 100_000, "tf.math.sin", [INPUT0])]
    return write_keras(directory, "layer_name_path.keras", model_config(layers))


VICTIM = "hostile:register_victim_layer"
"""`preload` entry for `load_in_child` that registers the victim `@keras_graft.layer`."""


def register_victim_layer():
    """Registers `hostile_victim>scaled`, an ordinary-looking `@keras_graft.layer`:
    `scaled(ctx, x, scale=2.0, activation=None)` applies `activation` if given."""
    import keras

    import keras_graft

    @keras_graft.layer(package="hostile_victim")
    def scaled(ctx, x, scale=2.0, activation=None):
        y = x * scale
        return activation(y) if activation is not None else y

    @keras_graft.layer(package="hostile_victim")
    def activated(ctx, x, activation=keras.activations.relu):
        return activation(x)

    return scaled, activated


def _flip_state_on_load():
    """Harness self-test (a `preload`): the next load changes process state."""
    import keras
    import tensorflow as tf

    load = keras.models.load_model

    def flipping(*args, **kwargs):
        tf.debugging.disable_traceback_filtering()
        return load(*args, **kwargs)

    keras.models.load_model = flipping


def _victim_layer(victim="scaled", **hyperparameters) -> dict:
    """The victim layer `victim` of a forged config, called on the input."""
    defaults = {"scale": 2.0, "activation": None} if victim == "scaled" else {}
    return {
        "module": None,
        "class_name": victim,
        "config": {"name": victim, "trainable": True, **defaults, **hyperparameters},
        "registered_name": f"hostile_victim>{victim}",
        "build_config": {"input_shape": [None, 3], "input_dtypes": ["float32"], "input_masks": [None]},
        "name": victim,
        "inbound_nodes": [
            {
                "args": [
                    {
                        "class_name": "__keras_tensor__",
                        "config": {"shape": [None, 3], "dtype": "float32", "keras_history": ["input", 0, 0]},
                    }
                ],
                "kwargs": {"mask": None},
            }
        ],
    }


def _victim_model(directory, filename, victim="scaled", **hyperparameters) -> Path:
    layers = [input_layer(), _victim_layer(victim, **hyperparameters)]
    return write_keras(directory, filename, model_config(layers))


def hyperparameter_set_epsilon(directory) -> Path:
    """Victim layer (preload `VICTIM`): `activation` = `keras.config.set_epsilon`, any Keras
    API function being accepted; the build trace calls it on a tensor: global epsilon changed."""
    return _victim_model(
        directory,
        "hyperparameter_set_epsilon.keras",
        activation={
            "module": "keras.config",
            "class_name": "function",
            "config": "set_epsilon",
            "registered_name": "function",
        },
    )


def hyperparameter_function_default(directory) -> Path:
    """Victim layer `activated(activation=keras.activations.relu)`: a file gives it
    `keras.config.set_epsilon`, a Keras function but no activation."""
    return _victim_model(
        directory,
        "hyperparameter_function_default.keras",
        victim="activated",
        activation={
            "module": "keras.config",
            "class_name": "function",
            "config": "set_epsilon",
            "registered_name": "function",
        },
    )


def hyperparameter_any_object(directory) -> Path:
    """Victim layer: `scale` = a whole Keras `StringLookup` (any Keras object is accepted)
    with a vocabulary file path; Keras' own safe-mode vocabulary guard refuses it."""
    return _victim_model(
        directory,
        "hyperparameter_any_object.keras",
        scale={
            "module": "keras.layers",
            "class_name": "StringLookup",
            "config": {"name": "lookup", "vocabulary": "/etc/hostname", "output_mode": "int"},
            "registered_name": None,
        },
    )


def build_config_huge_input(directory) -> Path:
    """Victim layer with a `build_config` input shape of 2**40 elements: the build trace only
    makes placeholders (cheap), unless the function allocates by shape."""
    path = _victim_model(directory, "build_config_huge_input.keras")
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    config["config"]["layers"][1]["build_config"]["input_shape"] = [1 << 20, 1 << 20]
    return write_keras(directory, path.name, config)


def keras_op_layer(
    name: str, class_name: str, config: dict, inputs, dtype="int32", module="keras.src.ops.numpy"
) -> dict:
    """A Keras op (an `Operation`, not a layer: `keras.ops.sum`) called on the layers `inputs`."""
    return {
        "module": module,
        "class_name": class_name,
        "config": {"name": name, **config},
        "registered_name": class_name,
        "name": name,
        "inbound_nodes": [
            {
                "args": [
                    {
                        "class_name": "__keras_tensor__",
                        "config": {"shape": [], "dtype": dtype, "keras_history": [source, 0, 0]},
                    }
                    for source in inputs
                ],
                "kwargs": {},
            }
        ],
    }


def keras_op_fill_bypass(directory, elements: int = 1 << 29) -> Path:
    """A = `tf.fill([n], 1)`, B = Keras op `keras.ops.sum(A)`, C = `tf.range(B)`: B is rebuilt as
    trusted, on A's cached real Fill tensor, so the refiner fills n int32 (2 GiB) while tracing."""
    layers = [
        input_layer(),
        op_layer("a", "tf.fill", [[elements], 1]),
        keras_op_layer("b", "Sum", {"axis": None, "keepdims": False}, ["a"]),
        op_layer("c", "tf.range", [INPUT0], inputs=["b"]),
    ]
    return write_keras(directory, "keras_op_fill_bypass.keras", model_config(layers))


def eigvals_small_output(directory, n: int = 2560) -> Path:
    """A = `tf.linalg.eigvals` of a stored n x n cyclic-shift matrix (a 40 KB file; n values out,
    so kept for folding), then abs, sum, `tf.range`: the refiner runs the O(n^3) eigensolver."""
    values = [[1 if (i - j) % n == 1 else 0 for j in range(n)] for i in range(n)]
    return chain(
        directory,
        "eigvals_small_output.keras",
        [
            ("a", "tf.linalg.eigvals", [array("float32", [n, n], values)], {}, ["input"]),
            ("b", "tf.math.abs", [INPUT0], {}, ["a"]),
            ("c", "tf.math.reduce_sum", [INPUT0], {}, ["b"]),
            ("d", "tf.range", [INPUT0], {}, ["c"]),
        ],
    )


def einsum_optimal_path(directory, operands: int = 14) -> Path:
    """`tf.einsum` of a ring of 14 stored 2x2 matrices with `optimize="optimal"`: opt_einsum's
    exhaustive path search (factorial in the operand count) runs in Python while tracing."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    equation = ",".join(letters[i] + letters[(i + 1) % operands] for i in range(operands)) + "->"
    matrices = [array("float32", [2, 2], [[1.0, 0.0], [0.0, 1.0]]) for _ in range(operands)]
    return single_op(
        directory,
        "einsum_optimal_path.keras",
        "tf.einsum",
        args=[equation, *matrices],
        kwargs={"optimize": "optimal"},
    )


def polyval_long_list(directory, coefficients: int = 100_000) -> Path:
    """`tf.math.polyval` with a plain list of 100k zero coefficients (a 2 KB file): its Python
    loop adds 3 graph ops per coefficient while tracing, minutes and gigabytes."""
    return single_op(
        directory, "polyval_long_list.keras", "tf.math.polyval", args=[[0.0] * coefficients, INPUT0]
    )


# Bounds that follow the function: a function argument gets the bounds of the op it is.

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _ring_einsum(operands: int = 14) -> tuple[str, list]:
    """A ring of `operands` stored 2x2 matrices: the equation and its operands."""
    equation = ",".join(_LETTERS[i] + _LETTERS[(i + 1) % operands] for i in range(operands)) + "->"
    return equation, [array("float32", [2, 2], [[1.0, 0.0], [0.0, 1.0]]) for _ in range(operands)]


def map_flat_values_einsum(directory) -> Path:
    """`tf.ragged.map_flat_values(tf.einsum, ring of 14, optimize="optimal")`: the function
    argument gets the keyword, so the exhaustive path search runs while tracing (> 90 s)."""
    equation, matrices = _ring_einsum()
    return single_op(
        directory,
        "map_flat_values_einsum.keras",
        "tf.ragged.map_flat_values",
        args=[graft("function", name="tf.einsum"), equation, *matrices],
        kwargs={"optimize": "optimal"},
    )


def nested_map_flat_values_einsum(directory) -> Path:
    """The same through two `map_flat_values`, the outer forwarding the inner `tf.linalg.einsum`."""
    equation, matrices = _ring_einsum()
    return single_op(
        directory,
        "nested_map_flat_values_einsum.keras",
        "tf.ragged.map_flat_values",
        args=[
            graft("function", name="tf.ragged.map_flat_values"),
            graft("function", name="tf.linalg.einsum"),
            equation,
            *matrices,
        ],
        kwargs={"optimize": "optimal"},
    )


def sparse_map_values_einsum(directory) -> Path:
    """A = `tf.sparse.from_dense(x)`, B = `tf.sparse.map_values(tf.einsum, "a,ab,...", A, 14
    matrices, optimize="branch-all")`: the values of A join the search of another forwarder."""
    equation, matrices = _ring_einsum()
    return chain(
        directory,
        "sparse_map_values_einsum.keras",
        [
            ("a", "tf.sparse.from_dense", [INPUT0], {}, ["input"]),
            (
                "b",
                "tf.sparse.map_values",
                [graft("function", name="tf.einsum"), "a," + equation, INPUT0, *matrices],
                {"optimize": "branch-all"},
                ["a"],
            ),
        ],
        shape=(),
    )


# Output counts from a file: one number, a graph op of a million outputs.

MILLION = 1_000_000


def dynamic_partition_count(directory) -> Path:
    """`tf.dynamic_partition(x, [0], num_partitions=1_000_000)` (a 2.5 KB file): 2.3 GB, 64 s."""
    return single_op(
        directory,
        "dynamic_partition_count.keras",
        "tf.dynamic_partition",
        args=[INPUT0, tensor("int32", [1], [0])],
        kwargs={"num_partitions": MILLION},
    )


def split_count(directory) -> Path:
    """`tf.split(x, 1_000_000)` along the unknown batch dimension."""
    return single_op(directory, "split_count.keras", "tf.split", args=[INPUT0, MILLION])


def split_sizes(directory) -> Path:
    """`tf.split(x, sizes)` with a stored array of a million sizes (a few KB zipped)."""
    return single_op(
        directory, "split_sizes.keras", "tf.split", args=[INPUT0, array("int32", [MILLION], [0] * MILLION)]
    )


def unstack_count(directory) -> Path:
    """`tf.unstack(x, num=1_000_000)` along the unknown batch dimension."""
    return single_op(directory, "unstack_count.keras", "tf.unstack", args=[INPUT0], kwargs={"num": MILLION})


def unstack_stored_dimension(directory) -> Path:
    """A = `tf.reshape(x, [-1, 1_000_000])` (a stored shape), B = `tf.unstack(A, axis=1)`:
    the count comes from a static dimension, no argument names it."""
    return chain(
        directory,
        "unstack_stored_dimension.keras",
        [
            ("a", "tf.reshape", [INPUT0, [-1, MILLION]], {}, ["input"]),
            ("b", "tf.unstack", [INPUT0], {"axis": 1}, ["a"]),
        ],
    )


def unstack_in_map_fn(directory) -> Path:
    """Input `(None, 1_000_000)`, `tf.map_fn(tf.unstack, x)`: the million outputs in a loop body."""
    return single_op(
        directory,
        "unstack_in_map_fn.keras",
        "tf.map_fn",
        args=[graft("function", name="tf.unstack"), INPUT0],
        shape=(MILLION,),
    )


def split_in_map_flat_values(directory) -> Path:
    """`tf.ragged.map_flat_values(tf.split, x, 1_000_000)`: the count forwarded to a function argument."""
    return single_op(
        directory,
        "split_in_map_flat_values.keras",
        "tf.ragged.map_flat_values",
        args=[graft("function", name="tf.split"), INPUT0, MILLION],
    )


def sparse_split_count(directory) -> Path:
    """A = `tf.sparse.from_dense(x)`, B = `tf.sparse.split(A, num_split=1_000_000, axis=0)`."""
    return chain(
        directory,
        "sparse_split_count.keras",
        [
            ("a", "tf.sparse.from_dense", [INPUT0], {}, ["input"]),
            ("b", "tf.sparse.split", [], {"sp_input": INPUT0, "num_split": MILLION, "axis": 0}, ["a"]),
        ],
    )


def ctc_top_paths(directory) -> Path:
    """`tf.nn.ctc_beam_search_decoder(x, [2], top_paths=1_000_000)`: three outputs per path."""
    return single_op(
        directory,
        "ctc_top_paths.keras",
        "tf.nn.ctc_beam_search_decoder",
        args=[INPUT0, tensor("int32", [1], [2])],
        kwargs={"beam_width": MILLION, "top_paths": MILLION},
        shape=(1, 4),
    )


def meshgrid_rank(directory, arguments: int = 2000) -> Path:
    """`tf.meshgrid` of 2000 stored 1-element arrays (4000 items): 5 graph ops each, every
    output of rank 2000; 10 s and 600 MB while tracing, within the op count."""
    return single_op(
        directory,
        "meshgrid_rank.keras",
        "tf.meshgrid",
        args=[array("float32", [1], [1.0]) for _ in range(arguments)],
    )


VICTIM_OP = "hostile:register_victim_op"
"""`preload` entry for `load_in_child` that registers the victim `@keras_graft.op`."""


def register_victim_op():
    """Registers `hostile_victim>repeated_sin(x, times=1)`, an ordinary-looking
    `@keras_graft.op` whose Python loop runs `times` times."""
    import tensorflow as tf

    import keras_graft

    @keras_graft.op(package="hostile_victim")
    def repeated_sin(x, times=1):
        for _ in range(times):
            x = tf.math.sin(x)
        return x

    return repeated_sin


def graph_ops_loop(directory) -> Path:
    """Victim op (preload `VICTIM_OP`) `repeated_sin(x, times=10_000_000)` from a file: its
    loop adds a graph op per step while tracing, an hour and GBs without a bound."""
    return single_op(
        directory,
        "graph_ops_loop.keras",
        "hostile_victim>repeated_sin",
        args=[INPUT0],
        kwargs={"times": 10_000_000},
    )


# `Print` stores only its formatting options, even where printing is allowed.

ALLOW_PRINT = "hostile:allow_print"
"""`preload` entry for `load_in_child` that allows `Print` layers process-wide."""


def allow_print():
    import keras_graft

    keras_graft.allow_process_wide("print")


def _print_model(directory, filename, kwargs) -> Path:
    layers = [input_layer(), print_layer("printed", ["x:", INPUT0], kwargs)]
    return write_keras(directory, filename, model_config(layers))


def print_to_file(directory) -> Path:
    """A `Print` layer with `output_stream="file://printed.txt"` (allowed to print): when the
    model runs, it appends to a file of the file's choosing."""
    return _print_model(directory, "print_to_file.keras", {"output_stream": "file://printed.txt"})


def print_to_stdout(directory) -> Path:
    """`output_stream="stdout"`: no file, but still a stream the file chooses."""
    return _print_model(directory, "print_to_stdout.keras", {"output_stream": "stdout"})


def print_to_log(directory) -> Path:
    """`output_stream="log(error)"`, and formatting options beside it."""
    return _print_model(
        directory, "print_to_log.keras", {"sep": ",", "output_stream": "log(error)", "summarize": -1}
    )


def print_op_name(directory) -> Path:
    """`name=...`, the graph op's name, is not a formatting option either."""
    return _print_model(directory, "print_op_name.keras", {"name": "../../etc"})


def print_option_of_another_kind(directory) -> Path:
    """`summarize` as a string, `end` as the input tensor: refused when loaded, not when run."""
    return _print_model(directory, "print_option_of_another_kind.keras", {"summarize": "all", "end": INPUT0})


# The signature cache answers only for values TensorFlow knows nothing of.


def _partly_known_reshape(directory, filename, columns: int) -> Path:
    """`tf.reshape(y, tf.stack([n, columns]))` with `n` computed from the input's value:
    TensorFlow knows the second part of the shape, not the first."""
    rows = 3 * 8 // columns  # on a batch of one row of 24 zeros
    return chain(
        directory,
        filename,
        [
            ("zeroed", "tf.math.multiply", [INPUT0, 0.0], {}, ["input"]),
            ("total", "tf.math.reduce_sum", [INPUT0], {}, ["zeroed"]),
            ("as_int", "tf.cast", [INPUT0, graft("dtype", name="int32")], {}, ["total"]),
            ("rows", "tf.math.add", [INPUT0, rows], {}, ["as_int"]),
            ("shape", "tf.stack", [[INPUT0, columns]], {}, ["rows"]),
            ("reshaped", "tf.reshape", [INPUT0, graft("input", index=1)], {}, ["input", "shape"]),
        ],
        shape=(24,),
    )


def cache_partly_known_first(directory) -> Path:
    """The first of two files: a partly known reshape with 4 columns."""
    return _partly_known_reshape(directory, "cache_partly_known_first.keras", 4)


def cache_partly_known_shape(directory) -> Path:
    """Loaded after the same model with 4 columns, this one (8 columns) reported `(None, 4)`
    and ran as `(3, 8)`: the cache keyed the shape tensor by its signature only."""
    return _partly_known_reshape(directory, "cache_partly_known_shape.keras", 8)


def _partly_known_fill(directory, filename, columns: int) -> Path:
    """`tf.fill(tf.concat([[n], [columns]], 0), 1.0)` with `n` from the input's value."""
    return chain(
        directory,
        filename,
        [
            ("total", "tf.math.reduce_sum", [INPUT0], {}, ["input"]),
            ("as_int", "tf.cast", [INPUT0, graft("dtype", name="int32")], {}, ["total"]),
            ("rows", "tf.reshape", [INPUT0, [1]], {}, ["as_int"]),
            ("shape", "tf.concat", [[INPUT0, array("int32", [1], [columns])], 0], {}, ["rows"]),
            ("filled", "tf.fill", [INPUT0, 1.0], {}, ["shape"]),
        ],
    )


def cache_partly_known_fill_first(directory) -> Path:
    """The first of two files: a fill of a partly known shape with 2 columns."""
    return _partly_known_fill(directory, "cache_partly_known_fill_first.keras", 2)


def cache_partly_known_fill(directory) -> Path:
    """After the 2-column file, a 5-column `tf.fill` through `tf.concat` with a constant."""
    return _partly_known_fill(directory, "cache_partly_known_fill.keras", 5)


class Attack(NamedTuple):
    name: str
    weakness: int
    build: Callable[[Path], Path]
    description: str
    preload: tuple[str, ...] = ()
    before: Callable[[Path], Path] | None = None  # a file the child loads first
    run: bool = False  # the child calls the loaded model on zeros


def _attack(weakness: int, build: Callable, **setup) -> Attack:
    return Attack(build.__name__, weakness, build, (build.__doc__ or "").strip().splitlines()[0], **setup)


ATTACKS = [
    *(
        _attack(1, b)
        for b in (
            xla_call_module,
            xla_call_module_spin,
            xla_call_module_spin_on_call,
            rpc_server,
            rpc_client,
            check_preemption,
            audio_microfrontend,
            xla_recv,
            xla_send,
            timestamp,
        )
    ),
    *(
        _attack(2, b)
        for b in (
            enable_check_numerics,
            set_log_device_placement,
            disable_traceback_filtering,
            set_global_generator,
            get_global_generator,
            state_then_valid_op,
        )
    ),
    *(
        _attack(3, b)
        for b in (
            parse_tensor_bomb,
            decode_image_bomb,
            decode_png_bomb,
            decode_compressed_bomb,
            fill_huge,
            probe_huge_input,
            range_constant_value,
            fill_constant_value,
            fill_shape_refiner,
            decompress_shape_refiner,
            decode_image_shape_refiner,
            keras_op_fill_bypass,
            eigvals_small_output,
            einsum_optimal_path,
            polyval_long_list,
        )
    ),
    *(
        _attack(3, b)
        for b in (
            map_flat_values_einsum,
            nested_map_flat_values_einsum,
            sparse_map_values_einsum,
            dynamic_partition_count,
            split_count,
            split_sizes,
            unstack_count,
            unstack_stored_dimension,
            unstack_in_map_fn,
            split_in_map_flat_values,
            sparse_split_count,
            ctc_top_paths,
            meshgrid_rank,
        )
    ),
    _attack(3, graph_ops_loop, preload=(VICTIM_OP,)),
    *(
        _attack(4, b)
        for b in (
            deep_nesting,
            resource_dtype,
            variant_dtype_tensor,
            huge_shape_argument,
            negative_shape,
            config_zip_bomb,
            self_referencing_node,
            unknown_node_index,
            slot_out_of_range,
            layer_name_path,
            node_stored_tensor_fill,
            node_stored_tensor_kwarg,
        )
    ),
    _attack(4, node_stored_tensor_print, preload=(ALLOW_PRINT,)),
    _attack(4, node_stored_tensor_layer, preload=(VICTIM,)),
    *(
        _attack(4, b, preload=(VICTIM,))
        for b in (hyperparameter_set_epsilon, hyperparameter_function_default, hyperparameter_any_object)
    ),
    # Loads (the victim layer is registered): its build trace must stay cheap.
    _attack(3, build_config_huge_input, preload=(VICTIM,)),
    *(
        _attack(4, b, preload=(ALLOW_PRINT,), run=True)
        for b in (print_to_file, print_to_stdout, print_to_log, print_op_name, print_option_of_another_kind)
    ),
    # Refused in safe mode, naming the layer (`keras2/lambdas.py`); the bytecode never runs.
    *(_attack(4, b) for b in LAMBDA_ATTACKS),
    # Loads (uncompiled or compiled without the bytecode), running nothing, also when run.
    _attack(3, h5_lambda_loss, run=True),
    # Every one is refused before anything reads the file (`keras2/file_limits.py`).
    *(_attack(4, b) for b in FILE_FORMAT_ATTACKS),
    _attack(5, cache_partly_known_shape, before=cache_partly_known_first, run=True),
    _attack(5, cache_partly_known_fill, before=cache_partly_known_fill_first, run=True),
]


# ---------------------------------------------------------------------------
# Loading in a child process
# ---------------------------------------------------------------------------


def _child_env(extra: dict | None = None) -> dict:
    """The environment of child interpreters; `HOSTILE_PYTHONPATH` (or `extra`)
    can point them at another copy of keras-graft, e.g. a checkout of a commit."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    if os.environ.get("HOSTILE_PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [os.environ["HOSTILE_PYTHONPATH"], env.get("PYTHONPATH")])
        )
    env.update(extra or {})
    return env


def load_in_child(
    path,
    timeout_s: float = 60,
    memory_limit_bytes: int = 8 * GiB,
    preload: tuple[str, ...] = (),
    env: dict | None = None,
    before=None,
    run: bool = False,
) -> dict:
    """Loads `path` with `keras.models.load_model` in a fresh, limited interpreter.

    The child imports `keras_graft` (and the modules in `preload`, found on
    `sys.path` or next to this file; `"module:function"` also calls the
    function, e.g. `VICTIM`), loads the file `before` if given (in safe mode),
    snapshots process state, loads the file in safe mode, with `run` calls
    the model on zeros (a batch of one), and snapshots again.
    Runs in an empty working directory so created files show. Returns a dict:

    - `outcome`: "loaded", "refused" (load raised), "timeout" (killed after
      `timeout_s`) or "crashed" (died otherwise: signal, abort, out of memory);
    - `exception`, `message`: the exception's type and first line of message;
    - `seconds`: wall time of `load_model` (of the whole child if it did not
      report);
    - `peak_rss_mb`, `rss_before_load_mb`: peak resident memory of the child,
      and its resident memory right before `load_model`;
    - `state_changes`: `{key: [before, after]}` for process state that differs;
    - `files_created`: names that appeared in the working directory;
    - `before_refused` (only if `before` was refused): its exception and message;
    - with `run`: `output_shapes`, the loaded model's output shapes, and
      `run_shapes`, those of what the call returned (None if it raised);
    - `returncode`, `stderr_tail`.
    """
    options = [f"--before={Path(before).resolve()}"] if before is not None else []
    options += ["--run"] if run else []
    with tempfile.TemporaryDirectory(prefix="hostile-") as cwd:
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            str(Path(path).resolve()),
            *options,
            *preload,
        ]
        run = run_limited(
            command, cwd=cwd, timeout_s=timeout_s, memory_limit_bytes=memory_limit_bytes, env=env
        )
    reports = _reports(run["stdout"])
    return _result(run, reports[0] if reports else None)


def load_batch_in_child(
    jobs: list[dict], timeout_s: float = 60, memory_limit_bytes: int = 8 * GiB, env: dict | None = None
) -> list:
    """`load_in_child` of each job (`{"path", "before", "run"}`, as its
    arguments), the loads one after another in one limited interpreter: one
    start of TensorFlow for the batch instead of one per file. `env` is the
    child's extra environment (`{"KERAS_BACKEND": "jax"}`), also for the jobs
    loaded again alone.

    Each load starts from a fresh Keras session, in an empty folder of its
    own (so created files show per job); state changes are measured per
    job, and each job's peak RSS is the process's peak up to its end
    (TensorFlow and the loads before it included, so never less than its
    own). Jobs with `preload` entries change the process by design and
    must run alone. The batch gets `timeout_s` plus 10 seconds per job: if it
    hangs, crashes or runs out of memory, the jobs it did not report on are
    loaded again, each alone (`load_in_child`), so each outcome is a file's own.
    """
    with tempfile.TemporaryDirectory(prefix="hostile-") as cwd:
        listing = Path(cwd) / "jobs.json"
        listing.write_text(
            json.dumps(
                [
                    {
                        "path": str(Path(job["path"]).resolve()),
                        "before": str(Path(job["before"]).resolve()) if job.get("before") else None,
                        "run": bool(job.get("run")),
                    }
                    for job in jobs
                ]
            )
        )
        command = [sys.executable, str(Path(__file__).resolve()), "--batch", str(listing)]
        run = run_limited(
            command,
            cwd=cwd,
            timeout_s=timeout_s + 10 * len(jobs),
            memory_limit_bytes=memory_limit_bytes,
            env=env,
        )
    by_index = {report.pop("index"): report for report in _reports(run["stdout"])}
    return [
        _result(run, by_index[i], batched=True)
        if i in by_index
        else load_in_child(
            job["path"],
            timeout_s,
            memory_limit_bytes,
            env=env,
            before=job.get("before"),
            run=job.get("run", False),
        )
        for i, job in enumerate(jobs)
    ]


def _reports(output: bytes) -> list[dict]:
    """The report lines a child wrote, in order."""
    return [
        json.loads(line[len(_MARKER) :])
        for line in output.decode(errors="replace").splitlines()
        if line.startswith(_MARKER)
    ]


def _result(run: dict, reported: dict | None, batched: bool = False) -> dict:
    """`load_in_child`'s result from the limited run and the child's report on the load."""
    status, timed_out = run["returncode"], run["timed_out"]
    result = {
        "outcome": "timeout" if timed_out else "crashed",
        "exception": None,
        "message": None,
        "seconds": round(run["seconds"], 2),
        "peak_rss_mb": run["peak_rss_mb"],
        "rss_before_load_mb": None,
        "state_changes": {},
        "files_created": [],
        "returncode": status,
        "stderr_tail": run["stderr"][-2000:],
    }
    if reported is not None:
        result.update(reported)
        # A batch's later loads raise the process's peak; the report has the peak at this load's end.
        if not batched:
            result["peak_rss_mb"] = max(run["peak_rss_mb"], reported["peak_rss_mb"])
    elif status is not None and status < 0:
        result["message"] = f"signal {signal.Signals(-status).name}"
    return result


# Runs the command it is given as a child of its own and writes that child's
# exit status and peak resident memory to the file named first. A process's
# peak counts the memory of the process it was forked from (here, the test
# process, gigabytes perhaps), so the command is forked from this small one.
_REAPER = """import json, os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
code = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as out:
    json.dump({"returncode": code, "maxrss_kb": usage.ru_maxrss}, out)
os._exit(code if code >= 0 else 128 - code)
"""


def run_limited(
    command: list[str], *, cwd, timeout_s: float, memory_limit_bytes: int = 8 * GiB, env: dict | None = None
) -> dict:
    """Runs `command` in `cwd` in a new session under an address-space limit, killing
    everything it started after `timeout_s`. Returns `stdout` (bytes), `stderr`
    (text), `returncode`, `peak_rss_mb` (the peak resident memory of the
    largest process of the command's tree, children it waited for included),
    `timed_out`, `seconds`, and `peak_pss_mb`: the largest sum of the tree's
    proportional set sizes seen (shared pages counted once; sampled twice a second)."""

    def limit():
        os.setsid()
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    start = time.perf_counter()
    with tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "reaped.json"
        process = subprocess.Popen(
            [sys.executable, "-c", _REAPER, str(report), *command],
            cwd=cwd,
            env=_child_env(env),
            stdout=subprocess.PIPE,
            stderr=err,
            preexec_fn=limit,
        )
        output, status, usage, timed_out, pss = _wait(process, timeout_s)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
        reaped = json.loads(report.read_text()) if report.exists() else {}
    return {
        "stdout": output,
        "stderr": stderr,
        "returncode": reaped.get("returncode", status),
        "peak_rss_mb": round(reaped.get("maxrss_kb", usage.ru_maxrss) / 1024),
        "timed_out": timed_out,
        "seconds": round(time.perf_counter() - start, 2),
        "peak_pss_mb": round(pss / 1024),
    }


_PSS_INTERVAL_S = 0.5


def _session_pss_kb(session: int) -> int:
    """The summed proportional set size (kB) of the processes of `session`."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) != session:
                continue
            with open(f"/proc/{entry}/smaps_rollup") as rollup:
                total += next(int(line.split()[1]) for line in rollup if line.startswith("Pss:"))
        except (OSError, StopIteration, ValueError):
            continue
    return total


def _wait(process: subprocess.Popen, timeout_s: float):
    """Waits for the child with `wait4`, which gives its own rusage (peak RSS),
    sampling its session's memory meanwhile."""
    deadline = time.monotonic() + timeout_s
    chunks = []
    os.set_blocking(process.stdout.fileno(), False)
    timed_out = False
    peak_pss, next_pss = 0, 0.0
    while True:
        chunk = process.stdout.read()
        if chunk:
            chunks.append(chunk)
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
            pid, status, usage = os.wait4(process.pid, 0)
            break
        if time.monotonic() >= next_pss:
            # Reading a TensorFlow process's smaps costs ~15 ms of this process's CPU:
            # sampled every half second, not at each 50 ms poll.
            peak_pss = max(peak_pss, _session_pss_kb(process.pid))
            next_pss = time.monotonic() + _PSS_INTERVAL_S
        time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)
    rest = process.stdout.read()
    if rest:
        chunks.append(rest)
    process.stdout.close()
    return b"".join(chunks), process.returncode, usage, timed_out, peak_pss


def _state() -> dict:
    """Process state a load must not change (child side; TF is imported)."""
    import keras
    import numpy as np
    import tensorflow as tf
    from keras.src.saving import serialization_lib
    from tensorflow.python.debug.lib import check_numerics_callback
    from tensorflow.python.eager import context
    from tensorflow.python.framework import config as framework_config
    from tensorflow.python.ops import stateful_random_ops

    fds = os.listdir("/proc/self/fd")
    sockets = sum(1 for fd in fds if _readlink(f"/proc/self/fd/{fd}").startswith("socket:"))
    return {
        "traceback_filtering": tf.debugging.is_traceback_filtering_enabled(),
        "log_device_placement": tf.debugging.get_log_device_placement(),
        "check_numerics_callback": getattr(check_numerics_callback._state, "check_numerics_callback", None)
        is not None,
        "op_callbacks": len(context.context().op_callbacks),
        "global_generator": type(stateful_random_ops.global_generator).__name__,
        "global_seed": context.context()._seed,
        "run_functions_eagerly": tf.config.functions_run_eagerly(),
        "soft_device_placement": tf.config.get_soft_device_placement(),
        "op_determinism": framework_config.is_op_determinism_enabled(),
        "keras_safe_mode": serialization_lib.in_safe_mode(),
        "keras_floatx": keras.config.floatx(),
        "keras_epsilon": repr(keras.config.epsilon())[:60],
        "keras_policy": keras.config.dtype_policy().name,
        "numpy_errstate": str(sorted(np.geterr().items())),
        "environment": len(os.environ),
        "sockets": sockets,
    }


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _message_head(error: BaseException) -> str:
    """The first informative line of an error (Keras wraps errors of `call`)."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Exception encountered when")] or lines
    return (lines or [""])[0][:300]


def _child_main(path: str, arguments: list[str]) -> None:
    import importlib

    _import_keras_graft()
    before_path = next((a.split("=", 1)[1] for a in arguments if a.startswith("--before=")), None)
    for entry in (a for a in arguments if not a.startswith("--")):  # "module" or "module:function"
        module, _, function = entry.partition(":")
        imported = importlib.import_module(module)
        if function:
            getattr(imported, function)()
    _load_and_report(path, before_path, run="--run" in arguments)


def _batch_child_main(jobs_path: str) -> None:
    """Each job of the batch as `_child_main` does it, one after another, each
    in a folder of its own, from a fresh Keras session."""
    import gc

    import keras

    _import_keras_graft()
    gc.freeze()  # the imports, out of the reach of each job's collection (conftest.py says why)
    for index, job in enumerate(json.loads(Path(jobs_path).read_text())):
        folder = Path(f"job{index}")
        folder.mkdir()
        os.chdir(folder)
        keras.backend.clear_session()
        gc.collect()
        _load_and_report(job["path"], job["before"], run=job["run"], index=index)
        os.chdir("..")


def _import_keras_graft() -> None:
    sys.path.insert(0, str(_HERE))
    import keras  # noqa: F401

    import keras_graft  # noqa: F401


def _load_and_report(path: str, before_path: str | None, *, run: bool, index: int | None = None) -> None:
    """Loads `before_path` (if given), snapshots, loads `path` in safe mode
    (with `run`, calls it on zeros), and writes the report line."""
    import traceback

    import keras

    report = {"outcome": "loaded", "exception": None, "message": None}
    if index is not None:
        report["index"] = index
    if before_path is not None:
        # A backend may refuse it (JAX, a value-dependent shape): `path` still loads after it.
        try:
            keras.models.load_model(before_path)
        except Exception as error:  # noqa: BLE001 - reported; the test decides
            report["before_refused"] = f"{type(error).__name__}: {_message_head(error)}"
    before = _state()
    files_before = set(os.listdir("."))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def emit(seconds):
        after = _state()
        report.update(
            seconds=round(seconds, 2),
            rss_before_load_mb=round(rss_before / 1024),
            peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            state_changes={k: [before[k], after[k]] for k in before if before[k] != after[k]},
            files_created=sorted(set(os.listdir(".")) - files_before - {".stderr"}),
        )
        sys.stdout.write(_MARKER + json.dumps(report, default=str) + "\n")
        sys.stdout.flush()

    start = time.perf_counter()
    model = None
    try:
        model = keras.models.load_model(path)
    except BaseException as error:  # noqa: BLE001 - report everything, incl. RecursionError
        report.update(
            outcome="refused",
            exception=type(error).__name__,
            message=_message_head(error),
        )
        traceback.print_exc()
    seconds = time.perf_counter() - start
    if run and model is not None:
        report.update(_run_on_zeros(model))
    emit(seconds)


def _run_on_zeros(model) -> dict:
    """The model's output shapes, and those of its outputs on zeros (a batch of one)."""
    import traceback

    import keras
    import numpy as np

    inputs = [np.zeros([1 if d is None else d for d in t.shape], t.dtype) for t in model.inputs]
    shapes = {"output_shapes": [list(t.shape) for t in keras.tree.flatten(model.outputs)], "run_shapes": None}
    try:
        outputs = model(inputs if len(inputs) > 1 else inputs[0])
    except Exception:  # Reported as no run shapes; the test decides.
        traceback.print_exc()
        return shapes
    shapes["run_shapes"] = [list(np.shape(o)) for o in keras.tree.flatten(outputs)]
    return shapes


if __name__ == "__main__" and len(sys.argv) >= 3 and sys.argv[1] == "--child":
    _child_main(sys.argv[2], sys.argv[3:])
if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--batch":
    _batch_child_main(sys.argv[2])
