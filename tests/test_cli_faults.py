"""File-system faults and output folders at the command line: each fault is one line that names
the path and the fix, exit status 1, no traceback; one run per --out folder; a user's files are
never touched. The fast `febone run` tests fail before the simulation starts; `febone compress`
solves a 288-voxel specimen."""
import errno
import json
import os

import numpy as np
import pytest

from febone.cli import main
from febone.commands.output_folder import MANIFEST, OutputFolder

RUN = ["run", "--protocol", "untreated-menopause", "--years", "1", "--no-pictures"]


def _one_error_line(capsys, *expected):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def _read_only(monkeypatch, folder):
    """Writes under ``folder`` fail as on a read-only file system (root ignores chmod)."""
    real_open, real_mkdir = os.open, os.mkdir
    inside = str(folder)

    def refuse(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))

    def fake_open(path, flags, *args, **kw):
        if os.fspath(path).startswith(inside) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            refuse(path)
        return real_open(path, flags, *args, **kw)

    def fake_mkdir(path, *args, **kw):
        if os.fspath(path).startswith(inside):
            refuse(path)
        return real_mkdir(path, *args, **kw)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


def test_out_names_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert main(RUN + ["--out", str(tmp_path / "afile")]) == 1
    _one_error_line(capsys, str(tmp_path / "afile"), "is a file, not a folder")
    assert main(RUN + ["--out", str(tmp_path / "afile" / "sub")]) == 1
    _one_error_line(capsys, str(tmp_path / "afile"), "is a file, not a folder")


@pytest.mark.parametrize("out", ["ro", "ro/missing/sub"])
def test_read_only_folder_or_parent(tmp_path, capsys, monkeypatch, out):
    (tmp_path / "ro").mkdir()
    _read_only(monkeypatch, tmp_path / "ro")
    assert main(RUN + ["--out", str(tmp_path / out)]) == 1
    _one_error_line(capsys, str(tmp_path / "ro"), "read-only: choose a writable folder")


def test_full_disk(tmp_path, capsys, monkeypatch):
    def write(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "write", write)
    assert main(RUN + ["--out", str(tmp_path / "r")]) == 1
    _one_error_line(capsys, str(tmp_path / "r"), "disk is full")


@pytest.mark.parametrize("where", ["a folder", "under a file", "read-only"])
def test_unwritable_json_fails_before_the_run(tmp_path, capsys, monkeypatch, where):
    (tmp_path / "afile").write_text("x")
    target = {"a folder": tmp_path, "under a file": tmp_path / "afile" / "run.json",
              "read-only": tmp_path / "ro" / "run.json"}[where]
    if where == "read-only":
        (tmp_path / "ro").mkdir()
        _read_only(monkeypatch, tmp_path / "ro")
    assert main(RUN + ["--json", str(target)]) == 1
    _one_error_line(capsys, str(target if where == "a folder" else target.parent))
    assert "scenario:" not in capsys.readouterr().out          # no run was started


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_checkpoint_on_resume(tmp_path, capsys, damage):
    ckpt = tmp_path / "untreated-menopause.checkpoint.npz"
    np.savez(ckpt, step=3, leaf0=np.arange(10000.0))
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 3] if damage == "truncated" else b"\0" * 100)
    assert main(RUN + ["--out", str(tmp_path), "--resume"]) == 1
    _one_error_line(capsys, str(ckpt), "truncated or damaged", "--overwrite")


def test_second_run_into_a_folder_that_holds_a_run(tmp_path, capsys):
    out = tmp_path / "r"
    with OutputFolder(out, command="run"):
        (out / "results.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    assert main(RUN + ["--out", str(out)]) == 1
    _one_error_line(capsys, str(out), "--overwrite", "--resume")
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".febone")) == \
        ["notes.txt", "results.json"]


def test_a_users_file_with_an_output_name_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "results.json").write_text("mine")
    for extra in ([], ["--overwrite"]):
        assert main(RUN + ["--out", str(tmp_path)] + extra) == 1
        _one_error_line(capsys, "results.json", "move it away")
    assert (tmp_path / "results.json").read_text() == "mine"


def test_two_runs_cannot_write_one_folder(tmp_path, capsys):
    with OutputFolder(tmp_path, command="run"):
        assert main(RUN + ["--out", str(tmp_path), "--resume"]) == 1
    _one_error_line(capsys, str(tmp_path), "in use by another febone run", f"PID {os.getpid()}")


def test_overwrite_needs_out(capsys):
    assert main(RUN + ["--overwrite"]) == 1
    _one_error_line(capsys, "--overwrite needs --out")


@pytest.mark.slow
def test_run_records_its_files_refuses_a_second_run_and_resumes(tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(RUN + ["--out", str(out), "--json", str(tmp_path / "run.json")]) == 0
    m = json.loads((out / MANIFEST).read_text())
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert m["status"] == "complete" and m["preexisting"] == ["notes.txt"]
    assert set(m["files"]) == on_disk - {"notes.txt", MANIFEST, ".febone-run.lock"}
    assert {"results.json", "untreated-menopause.jsonl", "untreated-menopause.pvd"} <= set(m["files"])
    capsys.readouterr()
    assert main(RUN + ["--out", str(out)]) == 1
    _one_error_line(capsys, "--overwrite")
    results = (out / "results.json").read_text()
    assert main(RUN + ["--out", str(out), "--resume"]) == 0     # a finished run: nothing to do
    assert json.loads((out / "results.json").read_text())["regions"] == \
        json.loads(results)["regions"]
    assert (out / "notes.txt").read_text() == "mine"


def _compress(tmp_path, *extra):
    mask = np.zeros((6, 4, 4), bool)
    mask[0] = mask[-1] = True
    mask[:, 1:3, 1:3] = True
    np.save(tmp_path / "bone.npy", mask)
    return main(["compress", str(tmp_path / "bone.npy"), "--voxel-size", "0.05", "--strain",
                 "0.01", "--quiet", *extra])


def test_compress_one_run_per_folder_and_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    assert _compress(tmp_path, "--out", str(out)) == 0
    (out / "notes.txt").write_text("mine")
    first = json.loads((out / MANIFEST).read_text())
    assert "compression.vtu" in first["files"] and first["status"] == "complete"
    capsys.readouterr()
    assert _compress(tmp_path, "--out", str(out)) == 1
    _one_error_line(capsys, str(out), "--overwrite")
    assert _compress(tmp_path, "--out", str(out), "--overwrite") == 0
    again = json.loads((out / MANIFEST).read_text())
    assert again["files"] == first["files"] and again["preexisting"] == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"


def test_compress_unwritable_json_or_out(tmp_path, capsys):
    assert _compress(tmp_path, "--json", str(tmp_path)) == 1
    _one_error_line(capsys, str(tmp_path), "give a file name")
    (tmp_path / "afile").write_text("x")
    assert _compress(tmp_path, "--out", str(tmp_path / "afile")) == 1
    _one_error_line(capsys, str(tmp_path / "afile"), "is a file, not a folder")
