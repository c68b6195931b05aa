"""Where a store lives, a folder on this machine or a prefix in an S3 bucket, and the few file
operations the store makes there.

The store names each of its files by one string: a local file by its absolute path, an object
by its URL (``s3://bucket/prefix/frames/part-....parquet``). The functions here take those names,
so the rest of the store never asks which kind of store it has:

- :func:`store_root`: the store a user gave (``"store"``, ``"s3://bucket/prefix"``), normalised;
- :func:`join`, :func:`list_names`, :func:`stat`, :func:`exists`, :func:`kind`: naming and listing;
- :func:`source`: what pyarrow's Parquet readers open;
- :func:`write_whole`: a file that appears whole or not at all; :func:`remove`, :func:`move`;
- :func:`table_dataset`: the part files of a table as one Arrow dataset (DuckDB reads an S3 store
  through it);
- :func:`cache_folder`: the local folder of the array cache.

A local store's file is written under a hidden temporary name, synced, then renamed. S3 has
no rename, and needs none: an object becomes visible only when its upload completes. A part is
serialised in memory and sent in one request (a single PUT, or a multipart upload whose completion
is the last request), so a writer killed at any point leaves nothing a reader lists.

S3 goes through ``pyarrow.fs.S3FileSystem``: it ships in every pyarrow wheel (no run-time download,
no extra package), pyarrow's Parquet readers and datasets take it directly, and it reads the
credentials the way the AWS tools do (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE`` and ``~/.aws``, instance roles). ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``
names another server (MinIO, SeaweedFS, a local test server).

Examples
--------
>>> str(store_root("s3://bucket/features/")), join("s3://bucket/features", "frames", "part-1.parquet")
('s3://bucket/features', 's3://bucket/features/frames/part-1.parquet')
>>> is_remote("s3://bucket/features"), is_remote("store")
(True, False)
>>> list_names("/no/such/store/frames", lambda name: True)
[]
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from ..atomic_files import write_atomic
from ..errors import MissingDependencyError, StoreError

__all__ = ["CACHE_DIR", "S3_SCHEME", "cache_folder", "delete", "exists", "is_remote", "join", "kind", "list_names", "make_store",
           "move", "remove", "source", "stat", "store_root", "table_dataset", "write_whole"]

S3_SCHEME = "s3://"
CACHE_DIR = ".cache"  # a local store's array cache, inside it
_CACHE_ENV = "AMNETVID_CACHE_DIR"
_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_FILESYSTEMS: dict[tuple, pafs.FileSystem] = {}
_LOCK = threading.Lock()


def is_remote(path) -> bool:
    """Whether ``path`` names an object in S3 (``s3://...``) rather than a local file."""
    return isinstance(path, str) and path.startswith(S3_SCHEME)


def store_root(path: str | os.PathLike) -> Path | str:
    """The store ``path`` means: an absolute Path for a local folder, ``s3://bucket/prefix``
    (no trailing slash) for S3.

    Raises
    ------
    StoreError
        An ``s3://`` URL without a valid bucket name, or with an empty segment.

    Examples
    --------
    >>> store_root("s3://my-bucket//features")
    Traceback (most recent call last):
    ...
    amnetvid_sk.errors.StoreError: the store URL 's3://my-bucket//features' ...
    """
    if not is_remote(path):
        return Path(os.path.abspath(os.fspath(path)))
    parts = path[len(S3_SCHEME):].rstrip("/").split("/")
    if "@" in parts[0]:  # s3://KEY:SECRET@bucket: the URL is not repeated, it may hold a secret
        raise StoreError("an s3:// store URL holds no credentials (s3://KEY:SECRET@BUCKET/...): give "
                         "s3://BUCKET/PREFIX and the credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
                         "or AWS_PROFILE")
    if not _BUCKET_RE.match(parts[0]) or any(p in ("", ".", "..") for p in parts[1:]) or "?" in path:
        raise StoreError(f"the store URL {path!r} is not s3://BUCKET/PREFIX: give a bucket name (3-63 "
                         "lower-case letters, digits, dots and dashes) and a prefix of non-empty segments; "
                         "the server and credentials come from the AWS environment variables, never the URL")
    return S3_SCHEME + "/".join(parts)


def join(root, *names: str) -> str:
    """The name of ``names`` under ``root`` (a store, a folder of it)."""
    if is_remote(root):
        return "/".join([root.rstrip("/"), *names])
    return os.path.join(root, *names)


def _scrub(text: str) -> str:
    """``text`` with any credential of the environment replaced (errors never show one)."""
    for name in _SECRETS:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def _s3_error(what: str, url: str, exc: BaseException) -> StoreError:
    reason = _scrub(" ".join(str(exc).split()))
    return StoreError(f"cannot {what} {url!r} on S3: {reason} (the server and credentials come from "
                      "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE)")


def _filesystem() -> pafs.FileSystem:
    """This process's S3 filesystem, for the current AWS environment."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
    # keyed by the environment (a hash: the key holds no secret) and the process (no client crosses a fork)
    env = hashlib.sha1("\0".join(os.environ.get(n, "") for n in (*_SECRETS, "AWS_PROFILE", "AWS_REGION",
                                                                   "AWS_DEFAULT_REGION")).encode()).hexdigest()
    key = (os.getpid(), endpoint, env)
    with _LOCK:
        if key not in _FILESYSTEMS:
            try:
                from pyarrow.fs import S3FileSystem
            except ImportError as e:
                raise MissingDependencyError(
                    f"s3:// stores need pyarrow with S3 support, which this pyarrow lacks ({e}); install "
                    "pyarrow's wheel from PyPI (`pip install --force-reinstall pyarrow`), and the extra "
                    "amnetvid-sk[s3] for a local S3 server to try it") from None
            options = {}
            if endpoint:
                scheme, _, host = endpoint.rpartition("://")
                options = {"endpoint_override": host.rstrip("/"), "scheme": scheme or "https"}
            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            if region:
                options["region"] = region
            _FILESYSTEMS[key] = S3FileSystem(allow_bucket_creation=True, **options)
        return _FILESYSTEMS[key]


def _split(path) -> tuple[pafs.FileSystem, str]:
    if is_remote(path):
        return _filesystem(), path[len(S3_SCHEME):]
    return pafs.LocalFileSystem(), os.fspath(path)


def kind(path) -> str | None:
    """``"folder"``, ``"file"`` or None (nothing there). An S3 prefix is a folder when it holds an
    object (or the marker :func:`make_store` writes)."""
    if not is_remote(path):
        return "folder" if os.path.isdir(path) else "file" if os.path.exists(path) else None
    fs, key = _split(path)
    try:
        info = fs.get_file_info(key)
    except OSError as e:
        raise _s3_error("reach the store", path, e) from None
    return {pafs.FileType.Directory: "folder", pafs.FileType.File: "file"}.get(info.type)


def make_store(path) -> None:
    """Make the store folder (and its parents); on S3 the bucket if it is missing, and a folder marker."""
    if not is_remote(path):
        Path(path).mkdir(parents=True, exist_ok=True)
        return
    fs, key = _split(path)
    try:
        fs.create_dir(key, recursive=True)
    except OSError as e:
        raise _s3_error("make the store", path, e) from None


def exists(path) -> bool:
    """Whether a file (or object) ``path`` is there."""
    return kind(path) == "file"


def list_names(folder, match: Callable[[str], bool]) -> list[str]:
    """The sorted names of the files directly in ``folder`` that ``match`` accepts (none when
    the folder is missing); no file is opened."""
    if not is_remote(folder):
        try:
            with os.scandir(folder) as it:
                return sorted(e.name for e in it if match(e.name) and e.is_file())
        except (FileNotFoundError, NotADirectoryError):
            return []
    fs, key = _split(folder)
    try:
        infos = fs.get_file_info(pafs.FileSelector(key, allow_not_found=True))
    except OSError as e:
        raise _s3_error("list", folder, e) from None
    return sorted(name for i in infos if i.type == pafs.FileType.File and match(name := i.base_name))


def stat(path) -> tuple[int, int]:
    """``(size in bytes, modification time in ns)`` of a file; FileNotFoundError when it is gone."""
    if not is_remote(path):
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    fs, key = _split(path)
    info = fs.get_file_info(key)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(2, "no such object", path)
    return info.size, info.mtime_ns or 0


def source(path):
    """What pyarrow's readers open for the file ``path``: the path itself for a local file (so that
    it can be memory-mapped), an open random-access file for an object. FileNotFoundError when
    it is gone."""
    if not is_remote(path):
        return path
    fs, key = _split(path)
    try:
        return fs.open_input_file(key)
    except FileNotFoundError:
        raise
    except OSError as e:
        if "does not exist" in str(e) or "NoSuchKey" in str(e):
            raise FileNotFoundError(2, "no such object", path) from None
        raise _s3_error("read", path, e) from None


def write_whole(path, produce: Callable[[pa.NativeFile | object], int]) -> bool:
    """Write the file ``path`` so that a reader (or a listing) sees it whole or not at all.

    ``produce(sink)`` writes the content and returns how many rows it wrote; with 0 nothing
    is kept (False). Locally the bytes go to a hidden temporary name beside ``path``, are synced,
    then renamed into place (:func:`amnetvid_sk.atomic_files.write_atomic`); on S3 they are
    serialised in memory and uploaded in one request (an object appears only when its upload completes). On any failure
    nothing is left and the error is raised.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> write_whole(join(folder, "a.txt"), lambda sink: sink.write(b"hello") and 1)
    True
    >>> list_names(folder, lambda name: True)
    ['a.txt']
    """
    if not is_remote(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return write_atomic(path, produce)
    buf = pa.BufferOutputStream()
    if not produce(buf):
        return False
    data = buf.getvalue()
    fs, key = _split(path)
    try:
        # One write of the whole object, then close: the upload completes (and the object appears)
        # at close, never with part of the bytes.
        out = fs.open_output_stream(key)
        out.write(data)
        out.close()
    except OSError as e:
        raise _s3_error("write", path, e) from None
    return True


def delete(path) -> None:
    """Delete the file ``path``; one already gone is fine, any other failure is raised."""
    if not is_remote(path):
        Path(path).unlink(missing_ok=True)
        return
    fs, key = _split(path)
    try:
        fs.delete_file(key)
    except FileNotFoundError:
        pass
    except OSError as e:
        if "does not exist" not in str(e) and "NoSuchKey" not in str(e):
            raise _s3_error("delete", path, e) from None


def remove(path) -> None:
    """Delete the file ``path`` if it is there; never raises (a failed write's own error is the
    one to report; a file removed already is fine)."""
    try:
        if is_remote(path):
            fs, key = _split(path)
            fs.delete_file(key)
        else:
            os.unlink(path)
    except (OSError, StoreError):
        pass


def move(path, target) -> None:
    """Move a file to ``target`` in the same store (S3: copied, then deleted; a reader sees the
    file at one of the two names, or for a moment at both)."""
    if not is_remote(path):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(path, target)
        return
    fs, key = _split(path)
    try:
        fs.copy_file(key, _split(target)[1])
        fs.delete_file(key)
    except OSError as e:
        raise _s3_error("move", path, e) from None


def table_dataset(files, schema: pa.Schema) -> "pyarrow.dataset.Dataset":
    """The part files ``files`` (objects of one table) as one Arrow dataset of ``schema`` plus a
    ``filename`` column (the file of each row), as ``read_parquet(..., filename=true)`` gives.

    A column a file lacks reads as null; fixed-size lists read as lists (DuckDB then sees
    ``FLOAT[]``, as from its own Parquet reader), and float16 as float32 (DuckDB reads no Arrow
    float16).
    """
    import pyarrow.dataset as ds  # here: it imports pandas, which a cold read of a local store never pays

    fields = []
    for f in schema:
        t = f.type
        if pa.types.is_list(t) or pa.types.is_fixed_size_list(t):
            t = pa.list_(pa.float32() if t.value_type == pa.float16() else t.value_type)
        fields.append(pa.field(f.name, t))
    fs = _filesystem()
    keys = [f[len(S3_SCHEME):] for f in files]
    # the file name of each row is a partition value of its fragment: a constant column, never read
    return ds.FileSystemDataset.from_paths(
        keys, schema=pa.schema([*fields, pa.field("filename", pa.string())]), format=ds.ParquetFileFormat(),
        filesystem=fs, partitions=[pc.field("filename") == pa.scalar(f) for f in files])


def cache_folder(root) -> Path:
    """The folder of a store's array cache: ``<store>/.cache`` for a local store; for an S3 store a
    folder of this machine, ``$AMNETVID_CACHE_DIR/<bucket>-<hash of the URL>`` (default
    ``AMNETVID_CACHE_DIR``: ``amnetvid`` under ``$XDG_CACHE_HOME`` or ``~/.cache``).

    Examples
    --------
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"AMNETVID_CACHE_DIR": "/tmp/c"}):
    ...     str(cache_folder("s3://bucket/features")).startswith("/tmp/c/bucket-")
    True
    """
    if not is_remote(root):
        return Path(root) / CACHE_DIR
    base = os.environ.get(_CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "amnetvid")
    bucket = root[len(S3_SCHEME):].split("/")[0]
    folder = Path(base) / f"{bucket}-{hashlib.sha1(root.encode()).hexdigest()[:16]}"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)  # the cache writes its own folder, not its parents
    except OSError:
        pass  # not writable: reads keep their arrays in memory (see cache.py)
    return folder
