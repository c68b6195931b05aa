"""Writing a whole file atomically: a reader (or a rerun) sees the old file, the new one, or none,
never half of one; a full disk is one clear error and leaves no temporary file behind.

The bytes go to a hidden temporary name beside the file (``.NAME.PID.tmp``), are synced to the
disk, and the name is then switched with ``os.replace`` (atomic on POSIX and on Windows within one
folder). On any failure the temporary file is removed.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DiskFullError, disk_full_errno, disk_full_message

__all__ = ["write_file_atomic"]


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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on the disk before the name points at them
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # the write's own error is the one to report
        code = disk_full_errno(exc)
        if code is None or isinstance(exc, DiskFullError):
            raise
        raise DiskFullError(code, disk_full_message(code, f"writing the {what} {str(path)!r}",
                                                    "nothing was written (no partial file is left)",
                                                    then="try again")) from exc
    return path
