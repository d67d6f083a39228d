"""One run per output folder (febone.commands.output_folder): the manifest records exactly the
run's files, --overwrite removes those and nothing else, the lock keeps a second run out and
dies with its process, a user's files are never touched."""
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import febone.commands.output_folder as output_folder
from febone.commands.output_folder import MANIFEST, OutputFolder, OutputFolderError


def _fake_run(path, mode="new", expected=("results.json", "arm[._]*"), fail=False):
    """A run that writes results.json, arm.jsonl and a pictures sub-folder."""
    with OutputFolder(path, command="run", mode=mode, expected=expected) as folder:
        (path / "arm.jsonl").write_text("{}\n")
        folder.update()
        (path / "arm_pictures").mkdir(exist_ok=True)
        (path / "arm_pictures" / "density.png").write_bytes(b"png")
        if fail:
            raise RuntimeError("killed half-way")
        (path / "results.json").write_text("{}")
    return json.loads((path / MANIFEST).read_text())


def test_manifest_lists_the_runs_files_not_the_users(tmp_path):
    out = tmp_path / "new" / "results"                          # parents are created
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    m = _fake_run(out)
    assert m["status"] == "complete" and m["command"] == "run"
    assert m["files"] == ["arm.jsonl", "arm_pictures/density.png", "results.json"]
    assert m["dirs"] == ["arm_pictures"] and m["preexisting"] == ["notes.txt"]


def test_second_run_refuses_overwrite_removes_only_the_runs_files(tmp_path):
    _fake_run(tmp_path)
    (tmp_path / "later.txt").write_text("added by the user after the run")
    (tmp_path / "arm_pictures" / "mine.png").write_bytes(b"user's picture in the run's folder")
    with pytest.raises(OutputFolderError, match="--overwrite.*--resume"):
        _fake_run(tmp_path)
    assert (tmp_path / "results.json").exists()              # the refused run removed nothing
    with OutputFolder(tmp_path, command="run", mode="overwrite"):
        left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")
                      if not p.name.startswith(".febone-run"))
    assert left == ["arm_pictures", "arm_pictures/mine.png", "later.txt"]
    m = json.loads((tmp_path / MANIFEST).read_text())
    assert m["preexisting"] == ["arm_pictures", "arm_pictures/mine.png", "later.txt"]


def test_a_users_file_with_an_output_name_stops_the_run(tmp_path):
    (tmp_path / "results.json").write_text("the user's own results")
    for mode in ("new", "overwrite"):
        with pytest.raises(OutputFolderError, match="results.json.*move it away"):
            _fake_run(tmp_path, mode=mode)
    assert (tmp_path / "results.json").read_text() == "the user's own results"
    assert not (tmp_path / "arm.jsonl").exists()


def test_interrupted_run_resumes_and_keeps_its_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError):
        _fake_run(tmp_path, fail=True)
    m = json.loads((tmp_path / MANIFEST).read_text())
    assert m["status"] == "interrupted" and "arm_pictures/density.png" in m["files"]
    with pytest.raises(OutputFolderError, match="interrupted"):
        _fake_run(tmp_path)
    (tmp_path / "later.txt").write_text("added by the user before the resume")
    m = _fake_run(tmp_path, mode="resume")
    assert m["status"] == "complete" and m["preexisting"] == ["later.txt", "notes.txt"]
    assert m["files"] == ["arm.jsonl", "arm_pictures/density.png", "results.json"]


def test_resume_of_a_folder_without_manifest_takes_the_expected_names_as_the_runs(tmp_path):
    (tmp_path / "arm.jsonl").write_text("{}\n")                  # an older febone's run
    (tmp_path / "notes.txt").write_text("mine")
    m = _fake_run(tmp_path, mode="resume")
    assert m["preexisting"] == ["notes.txt"] and "arm.jsonl" in m["files"]


def test_lock_keeps_a_second_run_out(tmp_path):
    with OutputFolder(tmp_path, command="run"):
        with pytest.raises(OutputFolderError, match=f"in use by another febone run.*PID {os.getpid()}"):
            OutputFolder(tmp_path, command="compress", mode="overwrite").open()
    with OutputFolder(tmp_path, command="run", mode="overwrite"):   # free again
        pass


def test_lock_of_a_killed_run_does_not_block(tmp_path):
    code = textwrap.dedent(f"""
        import sys, time
        from febone.commands.output_folder import OutputFolder
        OutputFolder({str(tmp_path)!r}, command="run").open()
        print("locked", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(OutputFolderError, match=f"PID {proc.pid}"):
            OutputFolder(tmp_path, command="run", mode="resume").open()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with OutputFolder(tmp_path, command="run", mode="resume") as folder:
        assert folder.files == []


def test_damaged_or_foreign_manifest_is_an_error_and_nothing_is_removed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("must survive")
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST).write_text(json.dumps({"command": "run", "started": "", "status": "complete",
                                            "preexisting": [], "files": ["../victim.txt"],
                                            "dirs": []}))
    with pytest.raises(OutputFolderError, match="no febone output-folder manifest"):
        OutputFolder(out, command="run", mode="overwrite").open()
    (out / MANIFEST).write_text("{truncated")
    with pytest.raises(OutputFolderError, match="is damaged.*delete"):
        OutputFolder(out, command="run", mode="overwrite").open()
    assert victim.read_text() == "must survive"


def test_a_file_named_as_the_folder(tmp_path):
    (tmp_path / "r").write_text("x")
    with pytest.raises(OutputFolderError, match="is a file, not a folder"):
        OutputFolder(tmp_path / "r", command="run").open()


def test_a_failed_run_keeps_its_own_error_when_the_manifest_cannot_be_written(tmp_path,
                                                                              monkeypatch):
    def full(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    with pytest.raises(RuntimeError, match="the run's own error"):
        with OutputFolder(tmp_path, command="run"):
            monkeypatch.setattr(output_folder, "atomic_write_json", full)
            raise RuntimeError("the run's own error")
    monkeypatch.undo()
    with OutputFolder(tmp_path, command="run", mode="resume"):   # the lock was released
        pass
