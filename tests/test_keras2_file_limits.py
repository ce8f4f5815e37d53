"""`keras_graft.keras2.file_limits`: HDF5 and zip files checked whole before anything reads them.

The checks read no dataset, so the forgeries (`hostile.FILE_FORMAT_ATTACKS`) are
checked in this process; `test_hostile_files.py` and `test_hostile_commands.py`
load them through `load_model`, `convert` and `inspect` in limited children.
"""

import io
import zipfile

import h5py
import pytest

import hostile
from keras_graft.errors import MalformedModelFileError
from keras_graft.keras2 import file_limits

REFUSED_H5 = {
    "h5_shape_bomb": "`/model_weights/dense/dense/kernel:0` declares 13,732.9 MiB (it stores 0 bytes)",
    "h5_optimizer_bomb": "`/optimizer_weights/iteration:0` declares",
    "h5_repeated_weight_names": "names ['big'] more than once",
    "h5_hard_link_aliases": "one dataset reached by many links",
    "h5_external_link": "is a ExternalLink",
    "h5_soft_link": "is a SoftLink",
    "h5_external_storage": "is stored outside the file",
    "h5_virtual_dataset": "is virtual",
    "h5_string_weights": "where Keras stores plain numbers",
    "h5_unknown_filter": "filter(s) [307]",
}


def test_a_file_as_keras_2_writes_it_passes(tmp_path):
    path = hostile.keras2_h5(tmp_path, "plain.h5")
    with file_limits.open_hdf5(path) as file:
        assert file["model_weights/dense/dense/kernel:0"].shape == (3, 3)


@pytest.mark.parametrize("name", sorted(REFUSED_H5))
def test_a_forged_hdf5_file_is_refused_naming_the_file_and_the_dataset(tmp_path, name):
    path = getattr(hostile, name)(tmp_path)
    with pytest.raises(MalformedModelFileError) as refused:
        with file_limits.open_hdf5(path):
            pass
    message = " ".join(str(refused.value).split())
    assert str(path) in message and REFUSED_H5[name] in message, message
    assert "was not written by Keras" in message


def _zip(members) -> tuple[zipfile.ZipFile, int]:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members:
            archive.writestr(name, content)
    return zipfile.ZipFile(data), len(data.getvalue())


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize(
    "members, said",
    [
        ([("/etc/evil", b"x")], "is named outside the archive"),
        ([("assets/../../evil", b"x")], "is named outside the archive"),
        ([("assets\\..\\evil", b"x")], "is named outside the archive"),
        ([("config.json", b"{}"), ("config.json", b"{}")], "two members named `config.json`"),
        ([("config.json", b'{"a": "' + b" " * (8 << 20) + b'"}')], "a JSON bomb"),
        ([("assets/zeros", bytes(80 << 20))], "a zip bomb"),
    ],
    ids=["absolute", "dot-dot", "backslash", "repeated", "json-bomb", "zip-bomb"],
)
def test_a_forged_zip_is_refused(members, said):
    archive, size = _zip(members)
    with pytest.raises(MalformedModelFileError, match="forged.keras") as refused:
        file_limits.check_zip(archive, "forged.keras", size)
    assert said in str(refused.value)


def test_a_zip_of_too_many_members_is_refused(monkeypatch):
    monkeypatch.setattr(file_limits, "MAX_ZIP_MEMBERS", 10)
    archive, size = _zip([(f"assets/{i}", b"") for i in range(11)])
    with pytest.raises(MalformedModelFileError, match="11 members, over 10"):
        file_limits.check_zip(archive, "forged.keras", size)


def test_a_zip_member_is_read_as_declared_never_more():
    archive, _ = _zip([("config.json", b'{"a": 1}')])
    assert file_limits.read_json(archive, "config.json", "m.keras") == {"a": 1}
    archive.getinfo("config.json").file_size = 3  # a central directory that lies
    with pytest.raises((MalformedModelFileError, zipfile.BadZipFile)):
        file_limits.read_member(archive, "config.json", "m.keras")


def test_json_nested_past_the_recursion_limit_is_refused():
    with pytest.raises(MalformedModelFileError, match="nested too deep"):
        file_limits.parse_json(b"[" * 200_000 + b"]" * 200_000, "m.keras's config.json")


def test_hdf5_in_memory_is_checked_against_its_own_size():
    data = io.BytesIO()
    with h5py.File(data, "w") as file:
        file.create_dataset("bomb", shape=(30000, 30000), dtype="float32", chunks=(1000, 1000))
    with h5py.File(data, "r") as file, pytest.raises(MalformedModelFileError, match="`/bomb` declares"):
        file_limits.check_hdf5(file, "m.keras's model.weights.h5", len(data.getvalue()))
