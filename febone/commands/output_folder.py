"""One run per output folder: a lock, a manifest of the run's files, and the user's files kept.

A command that writes a folder (``febone run --out``, ``febone compress --out``, ...) opens it
as an :class:`OutputFolder`::

    with OutputFolder(args.out, command="run", mode="new", expected=["results.json"]) as folder:
        ...                      # write files into args.out
        folder.update()          # after each output: record the files written so far

The rules:

- The folder is created with its parents when missing; a file of that name is an error.
- A lock (``.febone-run.lock``, an exclusive ``flock`` that holds the PID and host) keeps a
  second run out while one writes. The operating system drops it when its process ends, even
  on SIGKILL, so a lock left by a dead run never blocks the next one.
- The manifest (``.febone-run.json``) lists the run's files: every file that appeared in the
  folder after the run started, recorded at each :meth:`OutputFolder.update` and at the end.
  The files that were there before the run are the user's: never removed, never overwritten (a
  run refuses to start when one of them matches a name in ``expected``).
- A folder that holds a run refuses a new one: ``mode="overwrite"`` removes exactly the files
  (and then the emptied sub-folders) of the earlier run; ``mode="resume"`` continues it.
"""
from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import json
import logging
import os
import socket
import time
from pathlib import Path, PurePosixPath

from ..files import atomic_write_json, check_writable, is_temporary

__all__ = ["OutputFolder", "OutputFolderError", "output_folder", "add_overwrite_option",
           "run_with_outputs", "MANIFEST", "LOCK", "MODES"]

log = logging.getLogger(__name__)

MANIFEST = ".febone-run.json"
LOCK = ".febone-run.lock"
MODES = ("new", "overwrite", "resume")


class OutputFolderError(ValueError):
    """The output folder cannot take this run (another run's results, a run in progress, the
    user's files in the way); the message says what to do."""


class OutputFolder:
    """An output folder held by one run; a context manager (see the module docstring).

    Args:
        path: the folder (created with its parents when missing).
        command: the command writing it (``"run"``, ``"compress"``...), for messages.
        mode: ``"new"`` (refuse a folder that holds a run), ``"overwrite"`` (remove that run's
            files first) or ``"resume"`` (continue that run).
        expected: glob patterns of the files this run writes (relative to ``path``); a user's
            file matching one stops the run before anything is written.
    """

    def __init__(self, path, *, command: str, mode: str = "new", expected=()):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
        self.path = Path(path)
        self.command = command
        self.mode = mode
        self.expected = tuple(expected)
        self._lock_fd = None
        self._manifest = None

    # --- the public life cycle -----------------------------------------------------------

    def __enter__(self) -> OutputFolder:
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(complete=exc_type is None)

    def open(self) -> None:
        """Create and lock the folder, apply ``mode``, and write the manifest."""
        if self.path.exists() and not self.path.is_dir():
            raise OutputFolderError(f"--out {self.path} is a file, not a folder; give a folder "
                                    f"(it is created when missing)")
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._start()
        except BaseException:
            self._unlock()
            raise

    def update(self, status: str = "running") -> None:
        """Record the run's files (everything new in the folder) in the manifest."""
        files, dirs = self._scan()
        before = set(self._manifest["preexisting"])
        self._manifest.update(status=status, updated=_now(),
                              files=sorted(files - before), dirs=sorted(dirs - before))
        atomic_write_json(self.path / MANIFEST, self._manifest)

    def close(self, complete: bool = True) -> None:
        """Record the files a last time (status ``complete`` or ``interrupted``), unlock."""
        if self._lock_fd is None:
            return
        try:
            self.update("complete" if complete else "interrupted")
        except OSError as err:
            if complete:
                raise
            # the run already failed (often the same full disk): keep its error, not this one
            log.warning("could not record the files of the run in %s: %s", self.path, err)
        finally:
            self._unlock()

    @property
    def files(self) -> list[str]:
        """The run's files recorded so far (relative POSIX paths)."""
        return list(self._manifest["files"]) if self._manifest else []

    # --- the rules -----------------------------------------------------------------------

    def _start(self) -> None:
        previous = self._read_manifest()
        if previous is not None and self.mode == "new":
            status = "interrupted" if previous["status"] == "running" else previous["status"]
            raise OutputFolderError(
                f"{self.path} holds the results of another `febone {previous['command']}` "
                f"({len(previous['files'])} files, {status}, started "
                f"{previous['started']}); give --overwrite to replace them (files that are "
                f"not the run's stay), --resume to continue that run, or another --out folder")
        if previous is not None and self.mode == "overwrite":
            self._remove(previous)
        files, dirs = self._scan()
        if self.mode == "resume":
            # the earlier run's files stay the run's; a file it did not record is the run's
            # when it has an expected name (written after its last record, or by an older
            # febone without a manifest), else the user's
            ours = set() if previous is None else set(previous["files"] + previous["dirs"])
            before = {f for f in files | dirs if f not in ours and not self._is_expected(f)}
            before |= set(previous["preexisting"]) if previous is not None else set()
        else:
            clash = sorted(f for f in files if self._is_expected(f))
            if clash:
                shown = ", ".join(clash[:5]) + (" ..." if len(clash) > 5 else "")
                raise OutputFolderError(
                    f"{self.path} holds {shown}, which no febone run there recorded as its own, "
                    f"and this run would overwrite it; move it away or choose another --out "
                    f"folder")
            before = files | dirs
        self._manifest = {"febone_output_folder": 1, "command": self.command,
                          "started": _now(), "status": "running",
                          "preexisting": sorted(before & (files | dirs)),
                          "files": [], "dirs": []}
        self.update()

    def _is_expected(self, relative: str) -> bool:
        return any(fnmatch.fnmatchcase(relative, p) for p in self.expected)

    def _read_manifest(self) -> dict | None:
        path = self.path / MANIFEST
        if not path.exists():
            return None
        fix = (f"delete {path} (the files of that run then count as yours and stay) or choose "
               f"another --out folder")
        try:
            m = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise OutputFolderError(f"{path} is damaged ({err}); {fix}") from None
        keys = ("command", "started", "status", "preexisting", "files", "dirs")
        if not isinstance(m, dict) or any(k not in m for k in keys) or not all(
                _inside(p) for p in m["preexisting"] + m["files"] + m["dirs"]):
            raise OutputFolderError(f"{path} is no febone output-folder manifest; {fix}")
        return m

    def _remove(self, previous: dict) -> None:
        """Remove the files of an earlier run, then its sub-folders that are left empty."""
        for rel in previous["files"]:
            (self.path / rel).unlink(missing_ok=True)
        for rel in sorted(previous["dirs"], key=lambda p: p.count("/"), reverse=True):
            folder = self.path / rel
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

    def _scan(self) -> tuple[set, set]:
        """(files, sub-folders) in the folder, relative POSIX paths, without the lock, the
        manifest and atomic writes' temporary files."""
        files, dirs = set(), set()
        for root, subdirs, names in os.walk(self.path):
            rel = Path(root).relative_to(self.path)
            dirs.update((rel / d).as_posix() for d in subdirs)
            files.update((rel / n).as_posix() for n in names
                         if not is_temporary(n) and (rel.parts or n not in (MANIFEST, LOCK)))
        return files, dirs

    # --- the lock ------------------------------------------------------------------------

    def _lock(self) -> None:
        try:
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:  # a read-only folder: name the folder, not the lock file
            raise OSError(err.errno, err.strerror, str(self.path)) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode("utf-8", "replace")
            os.close(fd)
            raise OutputFolderError(
                f"{self.path} is in use by another febone run ({_holder(holder)}); wait for it "
                f"to finish or choose another --out folder") from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "command": self.command, "since": _now()}).encode())
        self._lock_fd = fd

    def _unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock


def add_overwrite_option(parser) -> None:
    """``--overwrite`` for a command whose ``--out`` folder holds one run."""
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of an earlier run in --out (only its files; "
                             "yours stay)")


def output_folder(path, *, command: str, overwrite: bool = False, resume: bool = False,
                  expected=()):
    """The :class:`OutputFolder` of an optional ``--out`` (``path`` None: a context that holds
    nothing and yields None)."""
    if path is None:
        return contextlib.nullcontext()
    mode = "resume" if resume else "overwrite" if overwrite else "new"
    return OutputFolder(path, command=command, mode=mode, expected=expected)


def run_with_outputs(args, work, *, command: str, expected=()) -> int:
    """``work(args)`` of a command with ``--out``/``--overwrite``/``--json``: ``--json`` checked
    writable first, ``--out`` held as an :class:`OutputFolder` while ``work`` runs."""
    if getattr(args, "json", None) is not None:
        check_writable(args.json)                # fail now, not after the computation
    with output_folder(args.out, command=command, overwrite=args.overwrite, expected=expected):
        return work(args)


def _holder(text: str) -> str:
    try:
        h = json.loads(text)
        return f"`febone {h['command']}`, PID {h['pid']} on {h['host']}, since {h['since']}"
    except (json.JSONDecodeError, KeyError, TypeError):
        return "a process that is still starting"


def _inside(relative) -> bool:
    """True for a relative path that stays inside the folder (no ``..``, not absolute)."""
    p = PurePosixPath(str(relative))
    return isinstance(relative, str) and not p.is_absolute() and ".." not in p.parts and \
        relative not in ("", ".")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
