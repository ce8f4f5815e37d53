"""What a model file may make keras-graft read, checked before anything is read.

Reading an HDF5 dataset allocates what it *declares* (shape × item size),
whatever the file stores: a chunked, gzip-compressed or never-written
dataset of 60000×60000 floats is a few KB on disk and 13 GB in memory. And
HDF5 reads other files on request: external links, external storage and
virtual datasets name files anywhere on the disk. So every HDF5 file
keras-graft opens (a Keras 2 `.h5`, the `model.weights.h5` inside a `.keras`
zip, a Keras 3 `.h5` before Keras reads it) is checked whole first
(`check_hdf5`):

- every link is a hard link (no soft or external links), at most
  `MAX_LINKS` of them, nested at most `MAX_DEPTH` deep;
- no dataset has external storage, virtual storage, a filter other than
  deflate, shuffle, Fletcher-32 or LZF (an unknown filter makes HDF5 load a
  plugin library), or a type that is no plain value (variable-length
  strings, references, compounds);
- at most `MAX_ATTRIBUTES` attributes per object, variable-length ones of at
  most `MAX_VLEN_ITEMS` items;
- all datasets and attributes together, counted once per path that reaches
  them, declare at most `MAX_EXPANSION` times the file's size plus
  `SLACK_BYTES`. Keras writes weights uncompressed (a file of weights
  declares what it stores), so only a bomb goes over;
- the name lists Keras reads weights by (`layer_names`, `weight_names`)
  name nothing twice (each name is read once per mention).

A zip (`check_zip`) holds at most `MAX_ZIP_MEMBERS` members, with relative
names that stay inside it, named once each, declaring together at most the
same budget; a JSON member expands at most `MAX_JSON_EXPANSION` times
(a zipped JSON bomb costs gigabytes to parse) and `read_member` never reads
more than a member declares. Anything else is a `MalformedModelFileError`
naming the file, the part and the limit.

>>> import io, zipfile
>>> data = io.BytesIO()
>>> with zipfile.ZipFile(data, "w") as archive:
...     archive.writestr("../escape.txt", "x")
>>> check_zip(zipfile.ZipFile(data), "forged.keras", len(data.getvalue()))
Traceback (most recent call last):
...
keras_graft.errors.MalformedModelFileError: forged.keras: the zip member `../escape.txt` is named outside the archive (absolute, `..`, a drive or a backslash); a model file Keras wrote names its members `config.json`, `model.weights.h5`, `assets/...`: the model file was not written by Keras or was edited by hand. Do not load it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import zipfile
from pathlib import Path

import h5py
from h5py import h5a, h5z

from keras_graft.errors import MalformedModelFileError, malformed

MAX_EXPANSION = 4
SLACK_BYTES = 64 << 20
MAX_LINKS = 1 << 18
MAX_DEPTH = 64
MAX_ATTRIBUTES = 4096
MAX_VLEN_ITEMS = 1 << 16
MAX_ZIP_MEMBERS = 1 << 16
MAX_JSON_EXPANSION = 200
JSON_SLACK_BYTES = 1 << 20
# deflate, shuffle, Fletcher-32 (built into HDF5) and LZF (built into h5py).
FILTERS = {h5z.FILTER_DEFLATE, h5z.FILTER_SHUFFLE, h5z.FILTER_FLETCHER32, 32000}
# Plain values: booleans, integers, floats, complex numbers, fixed-size opaque
# values (bfloat16), fixed-size byte strings.
VALUE_KINDS = set("biufcVS")
_KERAS = "Keras"


def budget(size: int) -> int:
    """The bytes a file of `size` bytes may declare, in all."""
    return MAX_EXPANSION * size + SLACK_BYTES


def _refuse(source, problem: str, fix: str = "Do not load it") -> MalformedModelFileError:
    """`problem` of the file `source`, and what to do."""
    return MalformedModelFileError(f"{malformed(f'{source}: {problem}', writer=_KERAS)} {fix}.")


def _size(number: int) -> str:
    return f"{number / (1 << 20):,.1f} MiB" if number >= 1 << 20 else f"{number:,} bytes"


class _Walk:
    def __init__(self, source: str, size: int):
        self.source, self.limit = source, budget(size)
        self.links = self.declared = 0

    def add(self, where: str, declared: int, stored: int | None = None) -> None:
        self.declared += declared
        if self.declared > self.limit:
            held = "" if stored is None else f" (it stores {_size(stored)})"
            raise _refuse(
                self.source,
                f"`{where}` declares {_size(declared)}{held}, which brings what reading the file "
                f"allocates to {_size(self.declared)}, over {MAX_EXPANSION} times the file's size "
                f"plus {_size(SLACK_BYTES)} (a shape or decompression bomb, or one dataset reached "
                "by many links)",
                "A file Keras wrote stores its weights uncompressed: re-save the model from the "
                "code that built it",
            )

    def node(self, item, where: str, depth: int) -> None:
        self.attributes(item, where)
        if isinstance(item, h5py.Dataset):
            self.dataset(item, where)
            return
        if not isinstance(item, h5py.Group):
            return  # a committed datatype
        if depth > MAX_DEPTH:
            raise _refuse(
                self.source, f"`{where}` is nested over {MAX_DEPTH} groups deep (a cycle of links?)"
            )
        for name in item:
            self.links += 1
            if self.links > MAX_LINKS:
                raise _refuse(self.source, f"it holds over {MAX_LINKS:,} links (at `{where}`)")
            path = f"{where.rstrip('/')}/{name}"
            link = item.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):
                target = getattr(link, "filename", None) or getattr(link, "path", "")
                raise _refuse(
                    self.source,
                    f"`{path}` is a {type(link).__name__} (to {target!r}); HDF5 would follow it "
                    "to another object or another file on this disk, and Keras writes none",
                )
            self.node(item[name], path, depth + 1)

    def attributes(self, item, where: str) -> None:
        count = item.id.get_info().num_attrs if hasattr(item.id, "get_info") else len(item.attrs)
        if count > MAX_ATTRIBUTES:
            raise _refuse(self.source, f"`{where}` has {count:,} attributes, over {MAX_ATTRIBUTES}")
        for index in range(count):
            attribute = h5a.open(item.id, index=index)
            name = attribute.name.decode(errors="replace")
            shape = attribute.shape or ()
            items = math.prod(shape)
            dtype = attribute.dtype
            if dtype.kind == "O":
                if items > MAX_VLEN_ITEMS:
                    raise _refuse(
                        self.source,
                        f"the attribute `{name}` of `{where}` holds {items:,} variable-length "
                        f"values, over {MAX_VLEN_ITEMS:,}",
                    )
                self.add(f"{where}@{name}", items * 16)
            else:
                self.add(f"{where}@{name}", items * dtype.itemsize)

    def dataset(self, dataset: h5py.Dataset, where: str) -> None:
        if dataset.is_virtual:
            raise _refuse(self.source, f"the dataset `{where}` is virtual: it reads other files")
        if dataset.external:
            files = sorted({str(entry[0]) for entry in dataset.external})
            raise _refuse(
                self.source, f"the dataset `{where}` is stored outside the file, in {files}: it reads them"
            )
        plist = dataset.id.get_create_plist()
        filters = {plist.get_filter(i)[0] for i in range(plist.get_nfilters())}
        if filters - FILTERS:
            raise _refuse(
                self.source,
                f"the dataset `{where}` uses the HDF5 filter(s) {sorted(filters - FILTERS)} "
                "(an unknown filter makes HDF5 load a plugin library)",
            )
        dtype = dataset.dtype
        if dtype.kind not in VALUE_KINDS or dtype.fields is not None:
            raise _refuse(
                self.source,
                f"the dataset `{where}` holds values of type {dtype} (variable-length, "
                "references or records), where Keras stores plain numbers",
            )
        shape = dataset.shape or ()
        self.add(where, math.prod(shape) * dtype.itemsize, dataset.id.get_storage_size())


def check_hdf5(file: h5py.File, source, size: int) -> None:
    """Refuses `file` (of `size` bytes on disk; `source` names it) when reading it
    could allocate past the budget, follow a link or read another file."""
    walk = _Walk(str(source), size)
    walk.node(file, "/", 0)
    _check_name_lists(file, str(source))


@contextlib.contextmanager
def open_hdf5(path):
    """The HDF5 file at `path`, opened read-only once `check_hdf5` passed it."""
    path = Path(path)
    with h5py.File(path, "r") as file:
        check_hdf5(file, path, os.path.getsize(path))
        yield file


def list_attribute(group, name: str) -> list[str]:
    """A list attribute that Keras 2 may have split into `name0`, `name1`... (HDF5's
    limit on attribute sizes); KeyError when there is none."""
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values += list(group.attrs[f"{name}{chunk}"])
            chunk += 1
        if not chunk:
            raise KeyError(f"no `{name}` attribute")
    return [value.decode("utf8", "replace") if isinstance(value, bytes) else str(value) for value in values]


def _check_name_lists(file: h5py.File, source: str) -> None:
    """Keras reads each weight once per mention in these lists: none may repeat."""

    def unique(group, attribute: str, where: str) -> list[str]:
        try:
            listed = list_attribute(group, attribute)
        except KeyError:
            return []
        repeated = (
            sorted({name for name in listed if listed.count(name) > 1})
            if len(set(listed)) < len(listed)
            else []
        )
        if repeated:
            raise _refuse(
                source,
                f"the `{attribute}` of `{where}` names {repeated[:3]} more than once "
                f"({len(listed):,} names, {len(set(listed)):,} different): each would be read once per mention",
            )
        return listed

    for where in ("model_weights", "/"):
        group = file.get(where) if where != "/" else file
        if not isinstance(group, h5py.Group):
            continue
        for layer in unique(group, "layer_names", where):
            layer_group = group.get(layer)
            if isinstance(layer_group, h5py.Group):
                unique(layer_group, "weight_names", f"{where.rstrip('/')}/{layer}")
    optimizer = file.get("optimizer_weights")
    if isinstance(optimizer, h5py.Group):
        unique(optimizer, "weight_names", "optimizer_weights")


def _outside(name: str) -> bool:
    parts = name.split("/")
    return (
        name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or ".." in parts
        or (len(name) > 1 and name[1] == ":")
    )


def check_zip(archive: zipfile.ZipFile, source, size: int) -> None:
    """Refuses an `archive` (of `size` bytes) with too many members, names outside
    it or repeated, or members declaring more than the budget; then checks its
    HDF5 members (`check_hdf5`)."""
    members = archive.infolist()
    if len(members) > MAX_ZIP_MEMBERS:
        raise _refuse(source, f"the zip holds {len(members):,} members, over {MAX_ZIP_MEMBERS:,}")
    seen, declared = set(), 0
    for member in members:
        name = member.filename
        if _outside(name):
            raise _refuse(
                source,
                f"the zip member `{name}` is named outside the archive (absolute, `..`, a drive or a "
                "backslash); a model file Keras wrote names its members `config.json`, "
                "`model.weights.h5`, `assets/...`",
            )
        if name in seen:
            raise _refuse(
                source, f"the zip holds two members named `{name}` (which one is read depends on the reader)"
            )
        seen.add(name)
        declared += member.file_size
        if declared > budget(size):
            raise _refuse(
                source,
                f"the zip member `{name}` declares {_size(member.file_size)} ({_size(member.compress_size)} "
                f"compressed), which brings the archive to {_size(declared)}, over {MAX_EXPANSION} times "
                f"its size plus {_size(SLACK_BYTES)} (a zip bomb)",
            )
        if name.endswith(".json"):
            _check_json_member(member, source)
    for member in members:
        if member.filename.endswith(".h5") and not member.is_dir():
            with archive.open(member) as stream, h5py.File(stream, "r") as file:
                check_hdf5(file, f"{source}'s {member.filename}", member.compress_size)


def _check_json_member(member: zipfile.ZipInfo, source) -> None:
    limit = MAX_JSON_EXPANSION * member.compress_size + JSON_SLACK_BYTES
    if member.file_size > limit:
        raise _refuse(
            source,
            f"the zip member `{member.filename}` expands from {_size(member.compress_size)} to "
            f"{_size(member.file_size)}, over {MAX_JSON_EXPANSION} times (a JSON bomb: parsing it "
            "would take gigabytes)",
        )


def read_member(archive: zipfile.ZipFile, name: str, source) -> bytes:
    """Member `name` of a checked archive, never more than it declares (KeyError if absent)."""
    member = archive.getinfo(name)
    with archive.open(member) as stream:
        data = stream.read(member.file_size + 1)
    if len(data) != member.file_size:
        raise _refuse(
            source, f"the zip member `{name}` holds other than the {member.file_size:,} bytes it declares"
        )
    return data


def read_json(archive: zipfile.ZipFile, name: str, source):
    """Member `name` of a checked archive, parsed as JSON (KeyError if absent)."""
    return parse_json(read_member(archive, name, source), f"{source}'s {name}")


def parse_json(text, where):
    """`text` parsed as JSON; a `MalformedModelFileError` naming `where` when it is no
    JSON Python can parse (nested past the interpreter's recursion limit too)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise _refuse(where, "its JSON is nested too deep to parse") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise _refuse(where, f"it is no valid JSON ({str(error)[:200]})") from None
