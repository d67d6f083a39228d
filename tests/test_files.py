"""Atomic writes and checked reads (febone.files): a failed write leaves the old file whole and
names the path; a damaged archive is an error that names the file and the fix."""
import errno
import os
import zipfile

import numpy as np
import pytest

from febone.files import (CorruptFileError, atomic_savez, atomic_write_json, atomic_write_text,
                          check_writable, describe_os_error, read_npz)


def _full_disk(monkeypatch):
    def write(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "write", write)


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "results.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert target.read_text() == '{\n  "a": 2\n}\n'
    assert sorted(p.name for p in target.parent.iterdir()) == ["results.json"]


def test_full_disk_keeps_the_old_file_and_names_the_path(tmp_path, monkeypatch):
    target = tmp_path / "report.md"
    atomic_write_text(target, "old report")
    _full_disk(monkeypatch)
    with pytest.raises(OSError) as info:
        atomic_write_text(target, "new report " * 1000)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_text() == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]   # no temporary left
    line = describe_os_error(info.value)
    assert str(target) in line and "disk is full" in line and "\n" not in line


def test_atomic_savez_round_trip_and_failed_replace(tmp_path, monkeypatch):
    path = tmp_path / "arm.checkpoint.npz"
    atomic_savez(path, step=np.int64(3), leaf0=np.arange(5.0))
    got = read_npz(path)
    assert int(got["step"]) == 3 and np.array_equal(got["leaf0"], np.arange(5.0))

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), src, None, dst)
    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError) as info:
        atomic_savez(path, step=np.int64(4), leaf0=np.zeros(5))
    monkeypatch.undo()
    assert info.value.filename == str(path)                   # the target, not the temporary
    assert int(read_npz(path)["step"]) == 3                  # the old checkpoint is whole
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "bad member"])
def test_read_npz_names_a_damaged_file_and_the_fix(tmp_path, damage):
    path = tmp_path / "arm.checkpoint.npz"
    atomic_savez(path, leaf0=np.arange(1000.0), leaf1=np.ones(10))
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not an archive at all")
    else:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("leaf0.npy", b"\x93NUMPY broken header")
    with pytest.raises(CorruptFileError, match="start afresh with --overwrite") as info:
        read_npz(path, fix="start afresh with --overwrite")
    assert str(path) in str(info.value)


def test_read_npz_of_a_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_npz(tmp_path / "none.npz")


def test_check_writable(tmp_path):
    assert check_writable(tmp_path / "new" / "run.json") == tmp_path / "new" / "run.json"
    assert list((tmp_path / "new").iterdir()) == []          # nothing stays
    with pytest.raises(IsADirectoryError) as info:
        check_writable(tmp_path / "new")
    assert "give a file name" in describe_os_error(info.value)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OSError) as info:
        check_writable(tmp_path / "afile" / "run.json")
    assert "afile" in describe_os_error(info.value)


def test_describe_os_error():
    assert describe_os_error(FileNotFoundError("bone.vtu is missing; reinstall")) == \
        "bone.vtu is missing; reinstall"                    # a message of its own stays
    line = describe_os_error(OSError(errno.EROFS, os.strerror(errno.EROFS)), context="writing r")
    assert line.startswith("writing r: ") and "read-only" in line
