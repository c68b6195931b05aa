"""What the store's tables hold: column types, required columns, ids.

Everything here is plain data or a pure function of its arguments; no file is
read or written.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Sequence

import numpy as np
import pyarrow as pa

from ..errors import StoreError

__all__ = ["SCHEMAS", "TABLES", "REQUIRED", "STAMP", "frames_table", "new_extraction_id"]

TS = pa.timestamp("us")  # naive timestamps, in UTC

#: Column types of each table as written to Parquet. ``frames.attention`` is written
#: as ``fixed_size_list<float32, prod(map_shape)>``; the list type here stands for any size.
SCHEMAS: dict[str, pa.Schema] = {
    "videos": pa.schema([
        ("extraction_id", pa.string()), ("video_id", pa.string()), ("path", pa.string()),
        ("size", pa.int64()), ("mtime", pa.float64()), ("duration", pa.float64()), ("fps", pa.float64()),
        ("frame_count", pa.int64()), ("width", pa.int64()), ("height", pa.int64()),
        ("model", pa.string()), ("sampling", pa.string()), ("n_frames", pa.int32()), ("short", pa.bool_()),
        ("extracted_at", TS),
    ]),
    "frames": pa.schema([
        ("extraction_id", pa.string()), ("video_id", pa.string()), ("model", pa.string()),
        ("sampling", pa.string()), ("frame_index", pa.int64()), ("timestamp", pa.float64()),
        ("score", pa.float32()), ("attention", pa.list_(pa.float32())),
    ]),
    "models": pa.schema([
        ("model", pa.string()), ("name", pa.string()), ("config", pa.string()),
        ("map_shape", pa.list_(pa.int32())), ("created_at", TS),
    ]),
    "labels": pa.schema([
        ("video_id", pa.string()), ("short_term", pa.float64()), ("n_short", pa.int64()),
        ("long_term", pa.float64()), ("n_long", pa.int64()), ("source", pa.string()), ("imported_at", TS),
    ]),
    "failures": pa.schema([
        ("path", pa.string()), ("video_id", pa.string()), ("model", pa.string()), ("sampling", pa.string()),
        ("reason", pa.string()), ("failed_at", TS),
    ]),
    "results": pa.schema([
        ("run_id", pa.string()), ("recipe", pa.string()), ("target", pa.string()), ("protocol", pa.string()),
        ("fold", pa.int64()), ("spearman", pa.float64()), ("n_train", pa.int64()), ("n_test", pa.int64()),
        ("params", pa.string()), ("created_at", TS),
    ]),
}

#: Table names, in the order their folders are listed. ``videos`` comes before
#: ``frames`` on purpose: a videos part is renamed into place after its frames
#: part, so any videos part seen in the listing has its frames part on disk
#: when ``frames`` is listed next.
TABLES: tuple[str, ...] = ("videos", "frames", "models", "labels", "failures", "results")

#: Columns that may not be null, per table.
REQUIRED = {
    "videos": ("extraction_id", "video_id", "path", "size", "mtime", "duration", "fps", "frame_count",
               "width", "height", "model", "sampling", "n_frames", "short", "extracted_at"),
    "frames": ("extraction_id", "video_id", "model", "sampling", "frame_index", "timestamp", "score",
               "attention"),
    "models": ("model", "name", "config", "map_shape", "created_at"),
    "labels": ("video_id", "imported_at"),
    "failures": ("path", "video_id", "model", "sampling", "reason", "failed_at"),
    "results": ("run_id", "recipe", "target", "protocol", "fold", "created_at"),
}

#: The timestamp column each writer fills with the write time when it is not given.
STAMP = {"videos": "extracted_at", "models": "created_at", "labels": "imported_at",
         "failures": "failed_at", "results": "created_at"}

_DUCK_TYPES = {
    pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.float64(): "DOUBLE",
    pa.float32(): "FLOAT", pa.bool_(): "BOOLEAN", TS: "TIMESTAMP",
}


def new_extraction_id() -> str:
    """A fresh extraction id (a random UUID as 32 hex digits).

    Examples
    --------
    >>> len(new_extraction_id())
    32
    """
    return uuid.uuid4().hex


def now() -> datetime:
    """The current time in UTC, without a time zone (as the store keeps timestamps)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def duck_type(t: pa.DataType) -> str:
    """The DuckDB type name of an Arrow type of ``SCHEMAS``.

    Examples
    --------
    >>> duck_type(pa.list_(pa.float32()))
    'FLOAT[]'
    """
    if pa.types.is_list(t) or pa.types.is_fixed_size_list(t):
        return duck_type(t.value_type) + "[]"
    return _DUCK_TYPES[t]


def attention_type(size: int) -> pa.DataType:
    """Parquet type of ``frames.attention`` for maps of ``size`` floats. The elements
    are declared non-null, which saves Parquet a definition level per float on read.

    Examples
    --------
    >>> attention_type(588).list_size
    588
    """
    return pa.list_(pa.field("element", pa.float32(), nullable=False), int(size))


def frames_schema(size: int) -> pa.Schema:
    """``SCHEMAS["frames"]`` with the attention column as written for maps of ``size`` floats."""
    schema = SCHEMAS["frames"]
    return schema.set(schema.get_field_index("attention"), pa.field("attention", attention_type(size)))


def fmt_ids(ids: Sequence[str], limit: int = 5) -> str:
    """The first ``limit`` ids, quoted, and how many more (for error messages).

    Examples
    --------
    >>> fmt_ids(["a", "b", "c"], limit=2)
    "'a', 'b' and 1 more"
    """
    shown = ", ".join(repr(str(i)) for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def unique_in_order(values) -> list:
    """``values`` without repeats, in the order of their first appearance."""
    return list(dict.fromkeys(values))


def id_array(ids) -> pa.Array:
    """Video ids as an Arrow string array; a single str, nulls or a non-1-D input are errors.

    Examples
    --------
    >>> id_array(["video10", "video11"]).to_pylist()
    ['video10', 'video11']
    """
    if isinstance(ids, str):
        raise TypeError("ids must be a sequence of video ids, not a single str; wrap it in a list")
    arr = np.asarray(ids, dtype=object)
    if arr.ndim != 1:
        raise ValueError(f"ids must be 1-D; got shape {arr.shape}")
    try:
        out = pa.array(arr, type=pa.string())
    except (pa.ArrowException, TypeError) as e:
        raise TypeError(f"video ids must be str: {e}") from None
    if out.null_count:
        raise ValueError("ids hold None")
    return out


def frames_table(extraction_id: str, frame_index, timestamp, score, attention, *,
                 video_id: str | None = None, model: str | None = None,
                 sampling: str | None = None) -> pa.Table:
    """The frames of one extraction as an Arrow table ready for ``write_extractions``.

    Parameters
    ----------
    extraction_id : str
        The extraction these frames belong to (its ``videos`` row has the same id).
    frame_index : array-like of int, shape (n,)
        Index of each frame in the video.
    timestamp : array-like of float, shape (n,)
        Time of each frame in seconds.
    score : array-like of float, shape (n,)
        Memorability score of each frame.
    attention : array-like of float, shape (n, K, h, w)
        Attention maps of each frame; stored flattened (C order) as
        ``fixed_size_list<float32, K*h*w>``.
    video_id, model, sampling : str, default=None
        Optional; ``write_extractions`` fills them from the videos rows.

    Returns
    -------
    pyarrow.Table

    Examples
    --------
    >>> import numpy as np
    >>> t = frames_table("e1", [0, 5], [0.0, 0.2], [0.7, 0.8], np.full((2, 3, 14, 14), 1 / 196))
    >>> t.num_rows, t.schema.field("attention").type.list_size
    (2, 588)
    """
    maps = np.ascontiguousarray(attention, dtype=np.float32)
    n = len(maps)
    if maps.ndim < 2:
        raise StoreError(f"attention must have shape (n_frames, K, h, w); got shape {maps.shape}")
    size = int(np.prod(maps.shape[1:]))
    columns = {"extraction_id": pa.array([extraction_id] * n, pa.string())}
    for name, value in (("video_id", video_id), ("model", model), ("sampling", sampling)):
        if value is not None:
            columns[name] = pa.array([value] * n, pa.string())
    columns["frame_index"] = pa.array(np.asarray(frame_index, dtype=np.int64))
    columns["timestamp"] = pa.array(np.asarray(timestamp, dtype=np.float64))
    columns["score"] = pa.array(np.asarray(score, dtype=np.float32))
    columns["attention"] = pa.FixedSizeListArray.from_arrays(pa.array(maps.reshape(-1)), size)
    lengths = {len(c) for c in columns.values()}
    if lengths != {n}:
        raise StoreError(
            f"frame_index, timestamp, score and attention of extraction {extraction_id!r} must have the "
            f"same length; got lengths {sorted(lengths)}"
        )
    return pa.table(columns)
