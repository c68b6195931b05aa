"""The array cache: uncompressed Arrow IPC files inside the store, memory-mapped.

The first read of a (frame model, sampling, n_frames, maps or not) decodes the
frames of every visible video of that model and sampling from Parquet
(``read.py``) and writes the picked arrays to ``<store>/.cache/`` (an S3 store's to a
folder of this machine: ``AMNETVID_CACHE_DIR``, see :func:`.location.cache_folder`) as an
uncompressed Arrow IPC (Feather v2) file. Every later read, in this process or
any other (joblib workers of a grid search, a new ``amnetvid`` command), maps
that file (``pyarrow.memory_map``): the arrays are read-only numpy views of the
operating system's page cache, shared by every process, and a read is numpy
indexing of them. Beside the arrays, a small JSON file keeps the store's models
and samplings (a :class:`~.resolve.Catalog`), so that a read answered from the
cache runs no DuckDB query.

- Key: a hash of the names of the ``videos``, ``frames``, ``embeddings`` and
  ``models`` part files. Part files never change once renamed into place (writers add files,
  ``compact`` replaces them), so one listing always holds the same rows, and any
  write or compaction makes a new key. Files of other keys are deleted when a
  file of a new key is written (a process that still maps one keeps reading it).
- Files are written to a hidden temporary name and renamed, as the part files.
  A file that cannot be opened (truncated, say) is deleted and built again.
- One process builds a file at a time (an advisory ``flock`` on a lock file
  beside it): the joblib workers of a grid search that start together wait for
  the first one's file and map it, rather than each decoding its own copy.
- A store folder that cannot be written still reads: the decoded arrays are then
  kept in this process's memory instead of a file.
- ``AMNETVID_CACHE_BYTES`` (default 2 GiB): the most bytes of arrays one cache
  file (or, in a read-only store, one in-memory copy) may hold; reads of larger
  arrays decode only the frames they ask for, every time. ``0`` turns the cache
  off: no file is written or read and every read decodes from Parquet.
- The ``.cache`` folder is not a table: DuckDB's views never read it, and
  ``info`` and ``compact`` leave it out (``compact`` empties it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: builds are not serialised, each process builds its own
    fcntl = None

import pyarrow as pa

from ..errors import StoreError
from . import location
from .location import CACHE_DIR, cache_folder

__all__ = ["CACHE_DIR", "cache_limit", "listing_key", "remembered", "remember", "load", "save", "clear",
           "building"]

# the tables whose parts decide what read_arrays returns (and the catalog: embedding sizes)
KEY_TABLES = ("videos", "frames", "embeddings", "models")
_ENV = "AMNETVID_CACHE_BYTES"
_DEFAULT_BYTES = 2 << 30

# Per process: store path -> (listing key, {name: value}); only the latest key of a store is kept.
_HELD: dict[str, tuple[str, dict]] = {}


def cache_limit() -> int:
    """The most bytes of arrays one cache file may hold (``AMNETVID_CACHE_BYTES``; 0: no cache).

    Examples
    --------
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"AMNETVID_CACHE_BYTES": ""}):
    ...     cache_limit()
    2147483648
    >>> with mock.patch.dict(os.environ, {"AMNETVID_CACHE_BYTES": "2e9"}):
    ...     cache_limit()
    2000000000
    """
    raw = os.environ.get(_ENV, "").strip()
    if not raw:
        return _DEFAULT_BYTES
    try:
        value = float(raw)  # "2000000000" and "2e9" alike
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise StoreError(f"the environment variable {_ENV} must be a number of bytes >= 0 (0 turns "
                         f"the array cache of FeatureStore.read_arrays off); got {raw!r}")
    return int(value)


def listing_key(listing: dict) -> str:
    """A hash of the part file names of the tables that decide what a read returns.

    Examples
    --------
    >>> len(listing_key({"videos": (), "frames": (), "models": ()}))
    20
    """
    digest = hashlib.sha1()
    for table in KEY_TABLES:
        for path in listing.get(table, ()):
            digest.update(f"{table}/{os.path.basename(path)}\n".encode())
    return digest.hexdigest()[:20]


def remembered(store: Path, key: str, name: str) -> Any:
    """What this process holds under ``name`` for this listing of the store, or None."""
    held = _HELD.get(str(store))
    return held[1].get(name) if held is not None and held[0] == key else None


def remember(store: Path, key: str, name: str, value: Any) -> Any:
    """Hold ``value`` for this listing of the store (what older listings held is let go)."""
    held = _HELD.get(str(store))
    if held is None or held[0] != key:
        held = _HELD[str(store)] = (key, {})
    held[1][name] = value
    return value


def _file(store: Path | str, key: str, name: str) -> Path:
    return cache_folder(store) / f"{key}-{name}"


def load(store: Path, key: str, name: str) -> pa.Table | dict | None:
    """The cache file ``name`` of this listing (``.arrow``: a memory-mapped table, ``.json``: a dict),
    or None when there is none or it cannot be read (a damaged file is deleted)."""
    path = _file(store, key, name)
    try:
        if name.endswith(".json"):
            return json.loads(path.read_text())
        # Zero-copy: the arrays are views of the mapping, which lives as long as they do.
        return pa.ipc.open_file(pa.memory_map(str(path))).read_all()
    except FileNotFoundError:
        return None
    except (OSError, ValueError, pa.ArrowException):
        location.remove(path)  # truncated or garbled: built again by the caller
        return None


def save(store: Path, key: str, name: str, value: pa.Table | dict) -> bool:
    """Write the cache file ``name`` of this listing (atomically); False when the store
    cannot be written (read-only folder, full disk). Files of other listings are removed.

    Not :func:`amnetvid_sk.atomic_files.write_atomic`: a cache file is not synced to the disk (one
    lost in a crash is built again; syncing gigabytes would slow every first read), and Arrow writes
    it straight to the file, not through a Python file object."""
    folder = cache_folder(store)
    tmp = folder / f".{key}-{name}.{uuid.uuid4().hex}.tmp"
    try:
        folder.mkdir(exist_ok=True)  # never creates the store itself
        if isinstance(value, dict):
            tmp.write_text(json.dumps(value))
        else:
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, value.schema) as writer:
                writer.write_table(value)  # uncompressed: read back at memory speed
        os.replace(tmp, _file(store, key, name))
    except OSError:
        location.remove(tmp)
        return False
    clear(store, keep=lambda n: n.startswith((key, "." + key)))  # a crashed writer's temp of an old key goes too
    return True


@contextlib.contextmanager
def building(store: Path, key: str, name: str) -> Iterator[None]:
    """Hold the build lock of the cache file ``name`` of this listing while the body runs.

    Other processes that want the same file wait, then find it written. Where the lock
    cannot be taken (a store that cannot be written, no ``fcntl``) the body runs unlocked.
    """
    handle = None
    if fcntl is not None:
        try:
            cache_folder(store).mkdir(exist_ok=True)
            handle = open(_file(store, key, name + ".lock"), "a")
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:
            if handle is not None:
                handle.close()
            handle = None
    try:
        yield
    finally:
        if handle is not None:
            handle.close()  # closing releases the lock


def clear(store: Path, keep: Callable[[str], bool] = lambda name: False) -> None:
    """Delete the cache files of the store that ``keep`` does not keep (by file name)."""
    try:
        names = os.listdir(cache_folder(store))
    except OSError:
        return
    for name in names:
        if not keep(name):
            location.remove(cache_folder(store) / name)


