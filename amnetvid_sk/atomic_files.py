"""Writing a whole file atomically: a reader (or a rerun) sees the old file, the new one, or none,
never half of one; on any failure no temporary file is left behind.

The bytes go to a hidden temporary name beside the file (``.STEM.PID.SUFFIX.tmp``: a store's
``.part-*.parquet.tmp``), are synced to the disk, and the name is then switched with ``os.replace``
(atomic on POSIX and on Windows within one folder). :func:`write_atomic` streams the content
from a callback (the store's Parquet parts); :func:`write_file_atomic` writes bytes and reports a
full disk as one clear error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Callable

from .errors import DiskFullError, disk_full_errno, disk_full_message

__all__ = ["temporary_name", "write_atomic", "write_file_atomic"]


def temporary_name(path) -> Path:
    """The hidden name ``path``'s content is written under before it is renamed into place.

    Examples
    --------
    >>> temporary_name("store/frames/part-1-ab.parquet").name.startswith(".part-1-ab.")
    True
    >>> temporary_name("store/frames/part-1-ab.parquet").name.endswith(".parquet.tmp")
    True
    """
    path = Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}{path.suffix}.tmp")


def write_atomic(path, produce: Callable[[BinaryIO], int]) -> bool:
    """Write ``path`` atomically from ``produce(file)``, which writes the content and returns how
    much it wrote; with 0 nothing is kept and the result is False. Any error is raised as it is,
    with the temporary file removed.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_atomic(folder / "a.txt", lambda f: f.write(b"hello"))
    True
    >>> write_atomic(folder / "b.txt", lambda f: 0)  # nothing written: no file
    False
    >>> sorted(p.name for p in folder.iterdir())
    ['a.txt']
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as f:
            n = produce(f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on the disk before the name points at them
        if not n:
            tmp.unlink()
            return False
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # the write's own error is the one to report
        raise
    return True


def write_file_atomic(path, data: bytes, what: str = "file") -> Path:
    """Write ``data`` to ``path`` atomically; returns the path.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (replaced if it exists), in an existing folder.
    data : bytes
        The whole content.
    what : str, default="file"
        What the file is, for the error message (``"model file"``).

    Raises
    ------
    DiskFullError
        The disk filled up (or a quota ran out): nothing was written, no temporary file is left,
        and a file that was at ``path`` before is unchanged.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "hello.txt"
    >>> write_file_atomic(path, b"hello").read_bytes()
    b'hello'
    >>> sorted(p.name for p in path.parent.iterdir())  # no temporary file left
    ['hello.txt']
    """
    path = Path(path)
    try:
        write_atomic(path, lambda f: f.write(data) or 1)  # empty data is still a file
    except BaseException as exc:
        code = disk_full_errno(exc)
        if code is None or isinstance(exc, DiskFullError):
            raise
        raise DiskFullError(code, disk_full_message(code, f"writing the {what} {str(path)!r}",
                                                    "nothing was written (no partial file is left)",
                                                    then="try again")) from exc
    return path
