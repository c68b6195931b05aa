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
from ..frame_models.outputs import MAPS_MODES  # re-exported: what a models row's maps column holds

__all__ = ["SCHEMAS", "TABLES", "REQUIRED", "STAMP", "MAPS_MODES", "embeddings_table", "frames_table",
           "new_extraction_id"]

TS = pa.timestamp("us")  # naive timestamps, in UTC

#: Column types of each table as written to Parquet. ``frames.attention`` is written
#: as ``fixed_size_list<float32, prod(map_shape)>`` (null for a scores-only model) and
#: ``embeddings.embedding`` as ``fixed_size_list<float16, embedding_dim>``; the list types
#: here stand for any size.
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
    "embeddings": pa.schema([
        ("extraction_id", pa.string()), ("video_id", pa.string()), ("model", pa.string()),
        ("sampling", pa.string()), ("frame_index", pa.int64()), ("embedding", pa.list_(pa.float16())),
    ]),
    # maps and embedding_dim are null in stores written before they existed: read as
    # "attention" and 0 (see queries.models)
    "models": pa.schema([
        ("model", pa.string()), ("name", pa.string()), ("config", pa.string()),
        ("map_shape", pa.list_(pa.int32())), ("created_at", TS), ("maps", pa.string()),
        ("embedding_dim", pa.int32()),
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
    # each evaluated video's out-of-fold prediction, so that every figure of a run can be recomputed
    # (intervals, paired differences); ``fold`` is the round in the note's protocol
    "predictions": pa.schema([
        ("run_id", pa.string()), ("recipe", pa.string()), ("target", pa.string()), ("protocol", pa.string()),
        ("fold", pa.int64()), ("video_id", pa.string()), ("prediction", pa.float64()), ("label", pa.float64()),
        ("created_at", TS),
    ]),
}

#: Table names, in the order their folders are listed. ``videos`` comes before
#: ``frames`` and ``embeddings`` on purpose: a videos part is renamed into place
#: after its frames and embeddings parts, so any videos part seen in the listing
#: has them on disk when their folders are listed next.
TABLES: tuple[str, ...] = ("videos", "frames", "embeddings", "models", "labels", "failures", "results",
                           "predictions")


#: Columns that may not be null, per table.
REQUIRED = {
    "videos": ("extraction_id", "video_id", "path", "size", "mtime", "duration", "fps", "frame_count",
               "width", "height", "model", "sampling", "n_frames", "short", "extracted_at"),
    # attention is required of the models with maps (write._frames_part checks it per model)
    "frames": ("extraction_id", "video_id", "model", "sampling", "frame_index", "timestamp", "score"),
    "embeddings": ("extraction_id", "video_id", "model", "sampling", "frame_index", "embedding"),
    "models": ("model", "name", "config", "map_shape", "created_at"),
    "labels": ("video_id", "imported_at"),
    "failures": ("path", "video_id", "model", "sampling", "reason", "failed_at"),
    "results": ("run_id", "recipe", "target", "protocol", "fold", "created_at"),
    "predictions": ("run_id", "recipe", "target", "protocol", "fold", "video_id", "prediction", "label",
                    "created_at"),
}

#: The timestamp column each writer fills with the write time when it is not given.
STAMP = {"videos": "extracted_at", "models": "created_at", "labels": "imported_at",
         "failures": "failed_at", "results": "created_at", "predictions": "created_at"}

_DUCK_TYPES = {
    pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.float64(): "DOUBLE",
    pa.float32(): "FLOAT", pa.float16(): "FLOAT", pa.bool_(): "BOOLEAN", TS: "TIMESTAMP",
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


def map_size(shape) -> int:
    """Floats per frame of maps of ``shape``; 0 for a scores-only model (shape ``()``).

    Examples
    --------
    >>> map_size((3, 14, 14)), map_size(())
    (588, 0)
    """
    return int(np.prod(shape)) if len(shape) else 0


def frames_schema(size: int) -> pa.Schema:
    """``SCHEMAS["frames"]`` with the attention column as written for maps of ``size`` floats
    (``size=0``: a scores-only model, whose attention is null)."""
    schema = SCHEMAS["frames"]
    if size == 0:
        return schema
    return schema.set(schema.get_field_index("attention"), pa.field("attention", attention_type(size)))


def embedding_type(dim: int) -> pa.DataType:
    """Parquet type of ``embeddings.embedding``: ``dim`` non-null float16 values.

    Examples
    --------
    >>> embedding_type(2048)
    FixedSizeListType(fixed_size_list<element: halffloat not null>[2048])
    """
    return pa.list_(pa.field("element", pa.float16(), nullable=False), int(dim))


def embeddings_schema(dim: int) -> pa.Schema:
    """``SCHEMAS["embeddings"]`` with the embedding column as written for ``dim`` values."""
    schema = SCHEMAS["embeddings"]
    return schema.set(schema.get_field_index("embedding"), pa.field("embedding", embedding_type(dim)))


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
    values = arr.tolist()
    wrong = next((v for v in values if v is not None and not isinstance(v, str)), None)
    if wrong is not None:
        raise TypeError(f"video ids must be str; got {wrong!r} of type {type(wrong).__name__}")
    if None in values:
        raise ValueError("ids hold None")
    # Arrow's buffers built by hand: pa.array, on any input, imports pandas when it is
    # installed (to check for pandas types), which costs a fresh process more than the read
    try:
        encoded = [v.encode("utf-8") for v in values]
    except UnicodeEncodeError as e:
        raise ValueError(f"video ids must be valid Unicode: {e}") from None
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    if offsets[-1] > np.iinfo(np.int32).max:
        raise ValueError(f"the video ids hold {offsets[-1]} bytes; at most 2**31 - 1 fit in one read")
    return pa.StringArray.from_buffers(len(encoded), pa.py_buffer(offsets.astype(np.int32)),
                                       pa.py_buffer(b"".join(encoded)))


def frames_table(extraction_id: str, frame_index, timestamp, score, attention=None, *,
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
    attention : array-like of float, shape (n, K, h, w), default=None
        Attention maps of each frame; stored flattened (C order) as
        ``fixed_size_list<float32, K*h*w>``. None for a scores-only frame model
        (``maps="none"``): the column is left out and stored null.
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
    >>> frames_table("e2", [0, 5], [0.0, 0.2], [0.7, 0.8]).column_names  # scores only
    ['extraction_id', 'frame_index', 'timestamp', 'score']
    """
    score = np.asarray(score, dtype=np.float32)
    n = len(score)
    columns = {"extraction_id": pa.array([extraction_id] * n, pa.string())}
    for name, value in (("video_id", video_id), ("model", model), ("sampling", sampling)):
        if value is not None:
            columns[name] = pa.array([value] * n, pa.string())
    columns["frame_index"] = pa.array(np.asarray(frame_index, dtype=np.int64))
    columns["timestamp"] = pa.array(np.asarray(timestamp, dtype=np.float64))
    columns["score"] = pa.array(score)
    if attention is not None:
        maps = np.ascontiguousarray(attention, dtype=np.float32)
        if maps.ndim < 2:
            raise StoreError(f"attention must have shape (n_frames, K, h, w); got shape {maps.shape}")
        size = int(np.prod(maps.shape[1:]))
        columns["attention"] = pa.FixedSizeListArray.from_arrays(pa.array(maps.reshape(-1)), size)
    _check_lengths(columns, n, extraction_id, "frame_index, timestamp, score and attention")
    return pa.table(columns)


def _check_lengths(columns: dict, n: int, extraction_id: str, names: str) -> None:
    lengths = {len(c) for c in columns.values()}
    if lengths != {n}:
        raise StoreError(f"{names} of extraction {extraction_id!r} must have the same length; "
                         f"got lengths {sorted(lengths)}")


def embeddings_table(extraction_id: str, frame_index, embedding) -> pa.Table:
    """The frame embeddings of one extraction as an Arrow table, stored as float16.

    Ready for ``write_extractions(..., embeddings=...)`` (a new extraction) or
    ``write_embeddings`` (an extraction already in the store).

    Parameters
    ----------
    extraction_id : str
        The extraction these embeddings belong to.
    frame_index : array-like of int, shape (n,)
        Index of each frame in the video (the same frames as the extraction's).
    embedding : array-like of float, shape (n, D)
        One embedding per frame, rounded to float16 (finite values up to 65504).

    Returns
    -------
    pyarrow.Table

    Examples
    --------
    >>> import numpy as np
    >>> t = embeddings_table("e1", [0, 5], np.ones((2, 1024)))
    >>> t.num_rows, t.schema.field("embedding").type
    (2, FixedSizeListType(fixed_size_list<item: halffloat>[1024]))
    """
    values = np.asarray(embedding, dtype=np.float32)
    if values.ndim != 2 or values.shape[1] < 1:
        raise StoreError(f"embedding of extraction {extraction_id!r} must have shape (n_frames, D); "
                         f"got shape {values.shape}")
    half = values.astype(np.float16)
    if not np.isfinite(half).all():
        raise StoreError(f"embedding of extraction {extraction_id!r} holds values that are not finite in "
                         "float16 (|x| > 65504, inf or nan); the store keeps embeddings as float16")
    n = len(half)
    columns = {"extraction_id": pa.array([extraction_id] * n, pa.string()),
               "frame_index": pa.array(np.asarray(frame_index, dtype=np.int64)),
               "embedding": pa.FixedSizeListArray.from_arrays(pa.array(half.reshape(-1)), half.shape[1])}
    _check_lengths(columns, n, extraction_id, "frame_index and embedding")
    return pa.table(columns)
