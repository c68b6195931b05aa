"""Writing the store: atomic part files, and the five writers (extractions, models,
failures, labels, results).

A part file is written under a hidden temporary name (``.part-....parquet.tmp``)
in its table's folder, synced, then renamed: the rename is atomic, so a reader
never sees half a file, and the read list (``part-*.parquet``) never matches a
temporary file. Attention maps are LZ4 with byte-stream-split floats (they decode
about 1.6 times as fast as under zstd for about 8% more bytes,
``bench/bench_store_size.py``); every other column is zstd.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import StoreError
from ..video_ids import video_id_from_name
from .connection import Connection
from .resolve import map_shapes
from .schema import REQUIRED, SCHEMAS, attention_type, fmt_ids, frames_schema, now, unique_in_order

__all__ = ["write_part", "write_extractions", "write_model", "write_failure", "write_labels", "write_results"]

_ROW_GROUP_BYTES = 32 << 20  # about 32 MB of raw data per Parquet row group
_LIST_CODEC = "lz4"  # of the float lists (attention maps); see the module docstring


def _gather(batches: Iterable[pa.RecordBatch], schema: pa.Schema, rows: int):
    """Tables of about ``rows`` rows each from a stream of record batches."""
    buf, have = [], 0
    for batch in batches:
        buf.append(batch)
        have += batch.num_rows
        if have >= rows:
            yield pa.Table.from_batches(buf, schema)
            buf, have = [], 0
    if buf:
        yield pa.Table.from_batches(buf, schema)


def write_part(path: Path, table: str, data: pa.Table | Iterable[pa.RecordBatch],
               schema: pa.Schema) -> Path | None:
    """Write one part file of ``table`` under the store ``path`` atomically; None when there were no rows.

    Examples
    --------
    >>> import tempfile
    >>> schema = pa.schema([("run_id", pa.string())])
    >>> write_part(Path(tempfile.mkdtemp()), "results", pa.table({"run_id": ["r1"]}), schema).suffix
    '.parquet'
    """
    folder = path / table
    folder.mkdir(parents=True, exist_ok=True)
    # The name sorts by write time, so "the later part file" breaks timestamp ties.
    stem = f"part-{time.time_ns():020d}-{uuid.uuid4().hex}.parquet"
    tmp, final = folder / f".{stem}.tmp", folder / stem
    strings = [f.name for f in schema if pa.types.is_string(f.type)]
    # Byte-stream-split needs dictionary encoding off for that column; it makes
    # float maps compress noticeably better (under zstd and LZ4 alike).
    lists = {f.name for f in schema if pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type)}
    float_lists = [f"{f.name}.list.element" for f in schema
                   if f.name in lists and f.type.value_type == pa.float32()]
    floats = [f.name for f in schema if f.type == pa.float32()] + float_lists
    codecs = {(f"{f.name}.list.element" if f.name in lists else f.name): "zstd" for f in schema}
    codecs.update(dict.fromkeys(float_lists, _LIST_CODEC))
    row_bytes = sum(getattr(f.type, "list_size", 1) * 4 + 8 for f in schema)
    rows = int(max(1024, min(1 << 20, _ROW_GROUP_BYTES // row_bytes)))
    # a table is written in one go; a stream of batches is gathered into row groups
    chunks = [data] if isinstance(data, pa.Table) else _gather(data, schema, rows)
    n = 0
    try:
        with open(tmp, "wb") as fh:
            with pq.ParquetWriter(fh, schema, compression=codecs, use_dictionary=strings,
                                  use_byte_stream_split=floats or False) as writer:
                for chunk in chunks:
                    if chunk.num_rows:
                        writer.write_table(chunk, row_group_size=rows)
                        n += chunk.num_rows
            fh.flush()
            os.fsync(fh.fileno())
        if n == 0:
            tmp.unlink()
            return None
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def _check_columns(table: str, given: set) -> None:
    unknown = sorted(given - set(SCHEMAS[table].names))
    if unknown:
        raise StoreError(f"unknown column(s) {unknown} for table {table!r}; its columns are "
                         f"{SCHEMAS[table].names}")


def _rows_to_table(table: str, data: Sequence[Mapping], defaults: Mapping[str, Any]) -> pa.Table:
    if not all(isinstance(r, Mapping) for r in data):
        raise StoreError(f"rows for table {table!r} must be dicts")
    given = set().union(*(r.keys() for r in data)) if data else set()
    _check_columns(table, given)
    columns = {}
    for field in SCHEMAS[table]:
        if field.name == "attention" or (field.name not in given and field.name not in defaults):
            continue
        values = [r.get(field.name, defaults.get(field.name)) for r in data]
        try:
            columns[field.name] = pa.array(values, type=field.type)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
            raise StoreError(f"column {field.name!r} of table {table!r}: {e}") from None
    return pa.table(columns) if columns else pa.table({})


def to_table(table: str, data, defaults: Mapping[str, Any]) -> pa.Table:
    """Rows (list of dicts) or a table-like object -> an Arrow table of ``table``'s schema."""
    schema = SCHEMAS[table]
    if isinstance(data, Mapping) and not isinstance(data, pa.Table):
        data = pa.table(dict(data)) if all(np.ndim(v) == 1 for v in data.values()) else [data]
    if isinstance(data, (list, tuple)):
        tbl, n = _rows_to_table(table, data, defaults), len(data)
    else:
        if not isinstance(data, pa.Table):
            try:
                data = pa.table(data)  # pandas DataFrame, dict of arrays, ...
            except Exception as e:
                raise StoreError(f"cannot read the rows for table {table!r} as a table: {e}") from None
        _check_columns(table, set(data.column_names))
        tbl, n = data, data.num_rows
    out = {}
    for field in schema:
        if field.name == "attention" and field.name in tbl.column_names:
            out[field.name] = tbl[field.name]  # cast by write_extractions, which knows the map size
            continue
        if field.name in tbl.column_names:
            col = tbl[field.name]
        elif field.name in defaults:
            col = pa.array([defaults[field.name]] * n, type=field.type)
        else:
            col = pa.nulls(n, type=field.type)
        try:
            out[field.name] = col.cast(field.type)
        except (pa.ArrowException, TypeError, ValueError) as e:
            raise StoreError(
                f"column {field.name!r} of table {table!r} must hold {field.type}; got {col.type}: {e}"
            ) from None
    result = pa.table(out)
    for name in REQUIRED[table]:
        if name in result.column_names and result[name].null_count:
            raise StoreError(f"column {name!r} of table {table!r} has {result[name].null_count} "
                             f"missing value(s); it is required")
    return result


def _videos_rows(videos) -> pa.Table:
    vids = to_table("videos", videos, {"extracted_at": now(), "short": False})
    if vids.num_rows == 0:
        return vids
    vids = vids.set_column(vids.schema.get_field_index("path"), "path",
                           pa.array([os.path.abspath(p) for p in vids["path"].to_pylist()], pa.string()))
    if pc.count_distinct(vids["extraction_id"]).as_py() != vids.num_rows:
        raise StoreError("extraction_id must be unique per videos row; got repeated ids")
    if pc.min(vids["n_frames"]).as_py() < 1:
        raise StoreError("n_frames must be >= 1 for every extraction")
    return vids


def _frames_of(vids: pa.Table, frames) -> pa.Table:
    """``frames`` checked against the videos rows, video_id/model/sampling filled from them."""
    if not isinstance(frames, pa.Table):
        try:
            frames = pa.table(frames)
        except Exception as e:
            raise StoreError(f"frames must be a pyarrow.Table: {e}") from None
    missing = [c for c in ("extraction_id", "frame_index", "timestamp", "score", "attention")
               if c not in frames.column_names]
    if missing:
        raise StoreError(f"frames table lacks column(s) {missing}")
    _check_columns("frames", set(frames.column_names))
    where = pc.index_in(frames["extraction_id"].cast(pa.string()), value_set=vids["extraction_id"])
    if where.null_count:
        orphan = pc.filter(frames["extraction_id"], pc.is_null(where)).unique().to_pylist()
        raise StoreError(f"frames reference extraction ids with no videos row: {fmt_ids(orphan)}")
    for name in ("video_id", "model", "sampling"):
        filled = pc.take(vids[name], where)
        if name in frames.column_names:
            if not pc.all(pc.equal(frames[name].cast(pa.string()), filled)).as_py():
                raise StoreError(f"frames column {name!r} disagrees with the videos row of its extraction_id")
            frames = frames.drop_columns([name])
        frames = frames.append_column(name, filled)
    counts = frames.group_by("extraction_id").aggregate(
        [("frame_index", "count"), ("frame_index", "count_distinct")])
    check = vids.select(["extraction_id", "video_id", "n_frames"]).join(counts, "extraction_id")
    check = check.sort_by("video_id")  # join order is not deterministic
    got = check["frame_index_count"].to_numpy(zero_copy_only=False)
    distinct = check["frame_index_count_distinct"].to_numpy(zero_copy_only=False)
    want = check["n_frames"].to_numpy(zero_copy_only=False)
    got = np.where(np.isnan(got.astype(float)), 0, got).astype(np.int64)
    if check.num_rows != vids.num_rows or (got != want).any():
        bad = check.filter(pa.array(got != want))["video_id"].to_pylist() if check.num_rows else []
        raise StoreError(f"the frames of {len(bad) or 'some'} extraction(s) do not match their n_frames "
                         f"(every extraction needs exactly n_frames frame rows): {fmt_ids(bad)}")
    if (distinct.astype(np.int64) != got).any():
        raise StoreError("an extraction has the same frame_index twice")
    return frames


def _frames_part(frames: pa.Table, model: str, shape: tuple[int, ...]) -> pa.Table:
    """The frames of one model with the attention lists cast to their fixed size."""
    size = math.prod(shape)
    part = to_table("frames", frames, {})
    try:
        att = part["attention"].cast(attention_type(size))
    except (pa.ArrowException, TypeError, ValueError):
        lengths = pc.list_value_length(part["attention"])
        raise StoreError(
            f"attention lists of model {model!r} must hold prod(map_shape) = {size} floats "
            f"(map_shape {shape}); got lengths between {pc.min(lengths).as_py()} and "
            f"{pc.max(lengths).as_py()}") from None
    # the cast to non-null floats does not check: a null float would be written as garbage
    if att.null_count or pc.list_flatten(part["attention"]).null_count:
        raise StoreError("column 'attention' of table 'frames' has missing values")
    return part.set_column(part.schema.get_field_index("attention"), "attention", att)


def write_extractions(con: Connection, shapes: dict, videos: Sequence[Mapping] | pa.Table,
                      frames: pa.Table) -> int:
    """Add extractions: one ``videos`` row and its frames per extracted video.

    The frames are written first and the videos rows second; the videos row
    is the commit record, so frames without one stay invisible (a crash in
    between leaves nothing visible). An extraction of a (video_id, model,
    sampling) already in the store hides the older one.

    Parameters
    ----------
    con : Connection
        The store's connections.
    shapes : dict
        Known map shapes per fingerprint (filled in place).
    videos : list of dict or pyarrow.Table
        One row per extraction with the columns of ``SCHEMAS["videos"]``:
        extraction_id (see :func:`new_extraction_id`), video_id, path (stored
        as its absolute form), size, mtime, duration, fps, frame_count, width,
        height, model (a fingerprint registered with :func:`write_model`),
        sampling (for example ``"frames=28"``), n_frames (frames stored),
        short, and optionally extracted_at (default: now, UTC).
    frames : pyarrow.Table
        ``n_frames`` rows per extraction: extraction_id, frame_index,
        timestamp, score and attention (list of ``prod(map_shape)`` floats);
        video_id, model and sampling are filled from ``videos``. See
        :func:`frames_table`.

    Returns
    -------
    int
        Number of extractions written.

    Raises
    ------
    StoreError
        A column is missing or of the wrong type, a model is not registered,
        an attention list has the wrong length, or an extraction's frame count
        differs from its ``n_frames``.

    Examples
    --------
    Through the :class:`~amnetvid_sk.store.FeatureStore` facade (its class example
    writes and reads two videos):

    >>> import numpy as np
    >>> from amnetvid_sk.store import FeatureStore, frames_table, new_extraction_id
    >>> fs, eid = FeatureStore("store_extractions"), new_extraction_id()
    >>> fs.write_model("toy-ab12", "toy", {}, (3, 14, 14))
    True
    >>> row = {"extraction_id": eid, "video_id": "video10", "path": "/data/video10.mp4", "size": 1000,
    ...        "mtime": 0.0, "duration": 2.0, "fps": 1.0, "frame_count": 2, "width": 64, "height": 64,
    ...        "model": "toy-ab12", "sampling": "frames=2", "n_frames": 2, "short": False}
    >>> fs.write_extractions([row], frames_table(eid, [0, 1], [0.0, 1.0], [0.7, 0.8],
    ...                                          np.full((2, 3, 14, 14), 1 / 196)))
    1
    """
    vids = _videos_rows(videos)
    if vids.num_rows == 0:
        return 0
    models = unique_in_order(vids["model"].to_pylist())
    known = map_shapes(con, shapes, models=models)
    unknown = [m for m in models if m not in known]
    if unknown:
        raise StoreError(f"frame model(s) {fmt_ids(unknown)} are not registered in the store; "
                         "call write_model(fingerprint, name, config, map_shape) first")
    frames = _frames_of(vids, frames)
    parts = [(_frames_part(frames.filter(pc.equal(frames["model"], m)) if len(models) > 1 else frames,
                           m, known[m]), frames_schema(math.prod(known[m]))) for m in models]
    written = []
    try:
        for part, schema in parts:
            written.append(write_part(con.path, "frames", part, schema))
        write_part(con.path, "videos", vids, SCHEMAS["videos"])  # the commit record, last
    except BaseException:
        # Frames without their videos row are invisible; removing them keeps a failed
        # write (a full disk, Ctrl-C) from leaving dead files behind.
        for path in written:
            if path is not None:
                path.unlink(missing_ok=True)
        raise
    return vids.num_rows


def write_model(con: Connection, fingerprint: str, name: str, config: Mapping | None,
                map_shape: Sequence[int]) -> bool:
    """Register a frame model (idempotent: a known fingerprint is not written again).

    Parameters
    ----------
    con : Connection
        The store's connections.
    fingerprint : str
        The model's cache key (``FrameModel.fingerprint``).
    name : str
        Short name, for example ``"resmem"``.
    config : dict
        Settings to rebuild the model; stored as JSON.
    map_shape : sequence of int
        Shape of one frame's attention maps, for example ``(3, 14, 14)``.

    Returns
    -------
    bool
        True when a row was written, False when the fingerprint was known.

    Examples
    --------
    >>> from amnetvid_sk import FeatureStore
    >>> fs = FeatureStore("store_model")
    >>> fs.write_model("resmem-ab12", "resmem", {"layers": ["layer4"]}, (3, 14, 14))
    True
    >>> fs.write_model("resmem-ab12", "resmem", {"layers": ["layer4"]}, (3, 14, 14))
    False
    """
    if not isinstance(fingerprint, str) or not fingerprint:
        raise StoreError(f"fingerprint must be a non-empty str; got {fingerprint!r}")
    shape = tuple(map_shape)
    if not shape or not all(isinstance(s, (int, np.integer)) and s > 0 for s in shape):
        raise StoreError(f"map_shape must be a sequence of positive ints; got {map_shape!r}")
    if con.query("SELECT 1 FROM models_all WHERE model = ? LIMIT 1", [fingerprint]).num_rows:
        return False
    row = {"model": fingerprint, "name": str(name),
           "config": config if isinstance(config, str) else json.dumps(config or {}, sort_keys=True,
                                                                         default=str),
           "map_shape": [int(s) for s in shape]}
    write_part(con.path, "models", to_table("models", [row], {"created_at": now()}), SCHEMAS["models"])
    return True


def write_failure(con: Connection, path: str | os.PathLike, reason: str, model: str, sampling: str,
                  video_id: str | None = None) -> None:
    """Record that a video could not be extracted, and why; ``video_id`` defaults to the
    file name without its extension.

    Examples
    --------
    >>> from amnetvid_sk import FeatureStore
    >>> fs = FeatureStore("store_failure")
    >>> fs.write_failure("clips/broken.mp4", "truncated file", "resmem-ab12", "frames=28")
    >>> fs.sql("SELECT video_id, reason FROM failures").to_pylist()
    [{'video_id': 'broken', 'reason': 'truncated file'}]
    """
    path = os.path.abspath(os.fspath(path))
    if video_id is None:
        video_id = video_id_from_name(path)
    row = {"path": path, "video_id": video_id, "model": model, "sampling": sampling, "reason": str(reason)}
    write_part(con.path, "failures", to_table("failures", [row], {"failed_at": now()}), SCHEMAS["failures"])


def write_labels(con: Connection, table) -> int:
    """Import labels (the table of ``labels.read_labels``); a later import of a video wins.

    Parameters
    ----------
    con : Connection
        The store's connections.
    table : pyarrow.Table, pandas.DataFrame, dict of columns or list of dicts
        Columns video_id, short_term, n_short, long_term (may be null),
        n_long, source; imported_at defaults to now (UTC).

    Returns
    -------
    int
        Number of rows written.

    Examples
    --------
    >>> from amnetvid_sk import FeatureStore
    >>> fs = FeatureStore("store_labels")
    >>> fs.write_labels({"video_id": ["video10"], "short_term": [0.95], "n_short": [34],
    ...                  "long_term": [0.9], "n_long": [10], "source": ["dev.csv"]})
    1
    >>> fs.write_labels({"video_id": ["video10"], "short_term": [0.9]})  # a later import wins
    1
    >>> fs.labels(["video10"], target="short")
    array([0.9])
    """
    tbl = to_table("labels", table, {"imported_at": now()})
    if tbl.num_rows == 0:
        return 0
    if pc.count_distinct(tbl["video_id"]).as_py() != tbl.num_rows:
        counts = pc.value_counts(tbl["video_id"])
        dup = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1)).to_pylist()
        raise StoreError(f"labels name video id(s) more than once: {fmt_ids(dup)}")
    write_part(con.path, "labels", tbl, SCHEMAS["labels"])
    return tbl.num_rows


def write_results(con: Connection, table_or_rows) -> int:
    """Append evaluation results (one row per fold).

    Parameters
    ----------
    con : Connection
        The store's connections.
    table_or_rows : list of dict or pyarrow.Table
        Columns run_id, recipe, target, protocol, fold, spearman, n_train,
        n_test, params (JSON str, or a dict that is stored as JSON);
        created_at defaults to now (UTC).

    Returns
    -------
    int
        Number of rows written.

    Examples
    --------
    >>> from amnetvid_sk import FeatureStore
    >>> fs = FeatureStore("store_results")
    >>> fs.write_results([{"run_id": "r1", "recipe": "mean_score", "target": "short",
    ...                    "protocol": "cv", "fold": 0, "spearman": 0.42}])
    1
    """
    if isinstance(table_or_rows, (list, tuple)):
        table_or_rows = [
            {**r, "params": json.dumps(r["params"], sort_keys=True, default=str)}
            if isinstance(r, Mapping) and isinstance(r.get("params"), Mapping) else r
            for r in table_or_rows
        ]
    tbl = to_table("results", table_or_rows, {"created_at": now()})
    if tbl.num_rows:
        write_part(con.path, "results", tbl, SCHEMAS["results"])
    return tbl.num_rows
