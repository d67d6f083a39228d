"""Writing results safely: atomic writes, checked reads of febone's own files, and one-line
messages for file-system errors.

An atomic write puts the bytes in a temporary file beside the target (same folder, hence the
same file system: ``.<name>.<pid>.tmp``), flushes them to the disk and renames the temporary
file over the target with :func:`os.replace`. A reader, or a run killed half-way, sees the old
file or the new one, never a mixture; a failed write (full disk, no permission) leaves the old
file as it was, removes the temporary one and raises an :class:`OSError` that names the target.

    atomic_write_json(out / "results.json", summary)
    atomic_savez(out / "arm.checkpoint.npz", step=12, leaf0=a, leaf1=b)
    arrays = read_npz(out / "arm.checkpoint.npz", fix="run with --overwrite to start afresh")
"""
from __future__ import annotations

import errno
import io
import json
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_savez",
           "read_npz", "check_writable", "CorruptFileError", "describe_os_error",
           "is_temporary"]

#: What each file-system error means for the user, and what to do about it.
_FIXES = {
    errno.ENOSPC: "the disk is full: free some space or write to another disk",
    errno.EDQUOT: "the disk quota is used up: free some space or write to another disk",
    errno.EACCES: "no permission to write there: choose a folder you can write to",
    errno.EPERM: "no permission to write there: choose a folder you can write to",
    errno.EROFS: "the file system is read-only: choose a writable folder",
    errno.ENOENT: "check the path (the file or a folder on it does not exist)",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "it is a folder: give a file name",
    errno.EEXIST: "something of that name is in the way: remove it or choose another name",
    errno.ENAMETOOLONG: "choose a shorter path",
}


class CorruptFileError(ValueError):
    """A file febone wrote earlier cannot be read back (truncated, damaged, or not febone's)."""


def is_temporary(name: str) -> bool:
    """True for the name of an atomic write's temporary file (``.<name>.<pid>.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp")


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _named(err: OSError, path: Path, tmp: Path) -> OSError:
    """``err`` naming ``path`` (the target, not the temporary file) when it names no file."""
    if err.errno is None or (err.filename is not None and os.fspath(err.filename) != str(tmp)):
        return err
    return OSError(err.errno, err.strerror, str(path))  # OSError picks the subclass by errno


def atomic_write_bytes(path, data, *, make_parents: bool = True) -> Path:
    """Write ``data`` (bytes-like) to ``path`` atomically; create missing parent folders
    unless ``make_parents`` is False. Returns the path; raises :class:`OSError` naming it."""
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            view = memoryview(data).cast("B")
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise _named(err, path, tmp) from err
    return path


def atomic_write_text(path, text: str, *, encoding: str = "utf-8",
                      make_parents: bool = True) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode(encoding), make_parents=make_parents)


def atomic_write_json(path, obj, *, make_parents: bool = True) -> Path:
    """Write ``obj`` as indented JSON (and a final newline) to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n", make_parents=make_parents)


def atomic_savez(path, **arrays) -> Path:
    """``numpy.savez`` to ``path`` atomically (uncompressed; ``path`` is used as given, no
    ``.npz`` is appended). The archive is built in memory first, so a checkpoint briefly
    needs its size in RAM twice."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(path, buf.getbuffer())


def read_npz(path, *, fix: str = "delete it to start afresh") -> dict:
    """Every array of the ``.npz`` file ``path``, read now (a dict name → ndarray).

    Raises:
        CorruptFileError: the file is truncated, damaged or no ``.npz`` archive; the message
            names the file and ends with ``fix``.
        OSError: the file cannot be opened (missing, no permission).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, KeyError) as err:
        raise CorruptFileError(f"{path} is truncated or damaged ({type(err).__name__}: {err}); "
                               f"{fix}") from None


def describe_os_error(err: OSError, *, context: str | None = None) -> str:
    """One line for a file-system error: the path, what went wrong and the fix.

    ``context`` (e.g. ``"writing into results/"``) stands in for the path when the error
    names none (a failed ``write`` on an open file). Errors raised with a message of their
    own (no errno) are returned as they are.
    """
    if err.errno is None:
        return str(err)
    where = err.filename if err.filename is not None else context
    what = err.strerror or os.strerror(err.errno)
    fix = _FIXES.get(err.errno, "check the path and the disk")
    return f"{where}: {what}; {fix}" if where else f"{what}; {fix}"


def check_writable(path) -> Path:
    """Raise now the :class:`OSError` that writing ``path`` later would raise (a folder of that
    name, no permission, a read-only disk), before a long computation; missing parent folders
    are created. Writes nothing that stays."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    tmp = _temporary(path)
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666))
        tmp.unlink()
    except OSError as err:
        raise _named(err, path, tmp) from err
    return path
