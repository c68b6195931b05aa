"""Writing the store: atomic part files, and the writers (extractions, embeddings, models,
failures, labels, results).

A part file is written under a hidden temporary name (``.part-....parquet.tmp``)
in its table's folder, synced, then renamed: the rename is atomic, so a reader
never sees half a file, and the read list (``part-*.parquet``) never matches a
temporary file. A write that fills the disk removes its temporary file and raises
:class:`~amnetvid_sk.errors.StoreFullError`: the store is as it was before the write.
In an S3 store a part is one object, uploaded whole (S3 has no rename and needs none:
:func:`.location.write_whole`).

Attention maps are LZ4 with byte-stream-split floats (they decode
about 1.6 times as fast as under zstd for about 8% more bytes,
``bench/bench_store_size.py``); every other column is zstd, float16 embeddings included
(not byte-stream-split: DuckDB reads that encoding of float32, not of float16).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import StoreError, StoreFullError, allowed_values, disk_full_errno, disk_full_message
from ..video_ids import video_id_from_name
from . import location
from .connection import Connection
from .resolve import map_shapes
from .rows import embeddings_parts, frames_of, frames_part, to_table, videos_rows
from .schema import MAPS_MODES, SCHEMAS, fmt_ids, frames_schema, map_size, now, unique_in_order

__all__ = ["write_part", "write_extractions", "write_embeddings", "write_model", "write_failure", "write_labels",
           "write_predictions", "write_results"]

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


def write_part(path: Path | str, table: str, data: pa.Table | Iterable[pa.RecordBatch],
               schema: pa.Schema) -> Path | str | None:
    """Write one part file of ``table`` under the store ``path`` atomically (a local folder, or an S3
    store's URL: see :func:`.location.write_whole`); None when there were no rows.

    Raises
    ------
    StoreFullError
        The disk filled up (ENOSPC) or a quota ran out (EDQUOT); nothing of this write is
        left in the store. An OSError with that errno.

    Examples
    --------
    >>> import tempfile
    >>> schema = pa.schema([("run_id", pa.string())])
    >>> write_part(Path(tempfile.mkdtemp()), "results", pa.table({"run_id": ["r1"]}), schema).suffix
    '.parquet'
    """
    # The name sorts by write time, so "the later part file" breaks timestamp ties.
    final = location.join(path, table, f"part-{time.time_ns():020d}-{uuid.uuid4().hex}.parquet")
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

    def produce(sink) -> int:
        n = 0
        # page checksums: `amnetvid verify` then finds any changed byte, not only broken structure
        with pq.ParquetWriter(sink, schema, compression=codecs, use_dictionary=strings,
                              use_byte_stream_split=floats or False, write_page_checksum=True) as writer:
            for chunk in chunks:
                if chunk.num_rows:
                    writer.write_table(chunk, row_group_size=rows)
                    n += chunk.num_rows
        return n

    try:
        # whole or not at all: a hidden temporary file renamed into place, or one S3 upload
        if not location.write_whole(final, produce):
            return None
    except BaseException as exc:
        code = disk_full_errno(exc)
        if code is None or isinstance(exc, StoreFullError):
            raise
        # the file's close may fail again while the first error unwinds: the chain holds the ENOSPC
        raise _store_full(code, path, table) from exc
    return final if location.is_remote(final) else Path(final)


def _write_all(con: Connection, parts) -> None:
    """Write ``(table, part, schema)`` parts in order, all or none: on any failure (a full disk,
    Ctrl-C) the parts already written are removed, so that a failed write leaves no dead files
    (frames without their videos row are invisible, but take room)."""
    written = []
    try:
        for table, part, schema in parts:
            written.append(write_part(con.path, table, part, schema))
    except BaseException:
        for path in written:
            if path is not None:
                location.remove(path)  # never raises: the write's own error is the one to see
        raise


def _store_full(code: int, path: Path, table: str) -> StoreFullError:
    """The one-line error of a write that found the store's disk full (or its quota used up)."""
    return StoreFullError(code, disk_full_message(
        code, f"of the store {str(path)!r} while writing to its {table!r} table",
        "nothing of this write was kept and what was written before is intact"))


def write_extractions(con: Connection, shapes: dict, videos: Sequence[Mapping] | pa.Table,
                      frames: pa.Table, embeddings: pa.Table | None = None) -> int:
    """Add extractions: one ``videos`` row and its frames (and embeddings) per extracted video.

    The frames (and embeddings) are written first and the videos rows last;
    the videos row is the commit record, so frames without one stay invisible
    (a crash in between leaves nothing visible). An extraction of a (video_id,
    model, sampling) already in the store hides the older one.

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
        timestamp, score and attention (list of ``prod(map_shape)`` floats;
        left out, or null, for a scores-only model); video_id, model and
        sampling are filled from ``videos``. See :func:`frames_table`.
    embeddings : pyarrow.Table, default=None
        One row per frame of the extractions: extraction_id, frame_index and
        embedding (``embedding_dim`` values of the model, stored as float16).
        See :func:`embeddings_table`. None: no embeddings.

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
    >>> fs, eid = FeatureStore("store_extractions", create=True), new_extraction_id()
    >>> fs.write_model("toy-ab12", "toy", {}, (3, 14, 14))
    True
    >>> row = {"extraction_id": eid, "video_id": "video10", "path": "/data/video10.mp4", "size": 1000,
    ...        "mtime": 0.0, "duration": 2.0, "fps": 1.0, "frame_count": 2, "width": 64, "height": 64,
    ...        "model": "toy-ab12", "sampling": "frames=2", "n_frames": 2, "short": False}
    >>> fs.write_extractions([row], frames_table(eid, [0, 1], [0.0, 1.0], [0.7, 0.8],
    ...                                          np.full((2, 3, 14, 14), 1 / 196)))
    1
    """
    vids = videos_rows(videos)
    if vids.num_rows == 0:
        return 0
    models = unique_in_order(vids["model"].to_pylist())
    known = map_shapes(con, shapes, models=models)
    unknown = [m for m in models if m not in known]
    if unknown:
        raise StoreError(f"frame model(s) {fmt_ids(unknown)} are not registered in the store; "
                         "call write_model(fingerprint, name, config, map_shape) first")
    frames = frames_of(vids, frames)
    parts = [("frames", frames_part(frames.filter(pc.equal(frames["model"], m)) if len(models) > 1 else frames,
                                     m, known[m]), frames_schema(map_size(known[m]))) for m in models]
    if embeddings is not None:
        parts += [("embeddings", part, schema) for part, schema in embeddings_parts(con, vids, embeddings, frames)]
    _write_all(con, [*parts, ("videos", vids, SCHEMAS["videos"])])  # the videos row, the commit record, last
    return vids.num_rows


def write_embeddings(con: Connection, embeddings: pa.Table) -> int:
    """Add the frame embeddings of extractions already in the store (extracted without them).

    The extractions must be visible (their ``videos`` rows the latest of their
    video, model and sampling); each needs one embedding per stored frame. One
    part file is written, so the embeddings of an extraction appear all at once.

    Parameters
    ----------
    con : Connection
        The store's connections.
    embeddings : pyarrow.Table
        extraction_id, frame_index and embedding (see :func:`embeddings_table`).

    Returns
    -------
    int
        Number of extractions given embeddings.

    Examples
    --------
    >>> import numpy as np
    >>> from amnetvid_sk.store import FeatureStore, embeddings_table, frames_table, new_extraction_id
    >>> fs, eid = FeatureStore("store_embeddings", create=True), new_extraction_id()
    >>> fs.write_model("toy-ab12", "toy", {}, (3, 14, 14), embedding_dim=8)
    True
    >>> row = {"extraction_id": eid, "video_id": "video10", "path": "/data/video10.mp4", "size": 1000,
    ...        "mtime": 0.0, "duration": 2.0, "fps": 1.0, "frame_count": 2, "width": 64, "height": 64,
    ...        "model": "toy-ab12", "sampling": "frames=2", "n_frames": 2, "short": False}
    >>> fs.write_extractions([row], frames_table(eid, [0, 1], [0.0, 1.0], [0.7, 0.8],
    ...                                          np.full((2, 3, 14, 14), 1 / 196)))
    1
    >>> fs.write_embeddings(embeddings_table(eid, [0, 1], np.ones((2, 8))))
    1
    >>> fs.sql("SELECT frame_index, list_sum(embedding) AS s FROM embeddings ORDER BY 1").to_pylist()
    [{'frame_index': 0, 's': 8.0}, {'frame_index': 1, 's': 8.0}]
    """
    eids = embeddings["extraction_id"].unique() if isinstance(embeddings, pa.Table) and \
        "extraction_id" in embeddings.column_names else pa.array([], pa.string())
    vids = con.query("SELECT v.* FROM videos AS v JOIN _eids AS e USING (extraction_id)",
                     _eids=pa.table({"extraction_id": eids.cast(pa.string())}))
    parts = embeddings_parts(con, vids, embeddings, None)
    # all of them or none: an extraction's embeddings come in one go
    _write_all(con, [("embeddings", part, schema) for part, schema in parts])
    return vids.num_rows


def write_model(con: Connection, fingerprint: str, name: str, config: Mapping | None,
                map_shape: Sequence[int], *, maps: str = "attention", embedding_dim: int = 0) -> bool:
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
        Not stored for a scores-only model (``maps="none"``): its row has ``[]``.
    maps : {"attention", "none"}, default="attention"
        Whether the model's frames carry attention maps.
    embedding_dim : int, default=0
        Values per frame embedding (ResMem 2048, AMNet 1024); 0: the model has none.

    Returns
    -------
    bool
        True when a row was written, False when the fingerprint was known.

    Examples
    --------
    >>> from amnetvid_sk import FeatureStore
    >>> fs = FeatureStore("store_model", create=True)
    >>> fs.write_model("resmem-ab12", "resmem", {"layers": ["layer4"]}, (3, 14, 14))
    True
    >>> fs.write_model("resmem-ab12", "resmem", {"layers": ["layer4"]}, (3, 14, 14))
    False
    """
    if not isinstance(fingerprint, str) or not fingerprint:
        raise StoreError(f"fingerprint must be a non-empty str; got {fingerprint!r}")
    if maps not in MAPS_MODES:
        raise StoreError(f"The 'maps' parameter of write_model must be a str among {allowed_values(MAPS_MODES)}. "
                         f"Got {maps!r} instead.")
    if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, (int, np.integer)) or embedding_dim < 0:
        raise StoreError(f"The 'embedding_dim' parameter of write_model must be an int >= 0. "
                         f"Got {embedding_dim!r} instead.")
    shape = tuple(map_shape) if maps == "attention" else ()
    if maps == "attention" and (not shape or not all(isinstance(s, (int, np.integer)) and s > 0 for s in shape)):
        raise StoreError(f"map_shape must be a sequence of positive ints; got {map_shape!r}")
    # only the models table is listed: a store's thousands of frames parts are not bound for one row
    known = con.query("SELECT embedding_dim FROM models WHERE model = ?", [fingerprint],
                      tables=("models",)).to_pylist()
    if known and (known[0]["embedding_dim"] or 0) >= embedding_dim:
        return False  # a known model; a row written before embeddings existed gets its size below
    row = {"model": fingerprint, "name": str(name),
           "config": config if isinstance(config, str) else json.dumps(config or {}, sort_keys=True,
                                                                         default=str),
           "map_shape": [int(s) for s in shape], "maps": maps, "embedding_dim": int(embedding_dim)}
    write_part(con.path, "models", to_table("models", [row], {"created_at": now()}), SCHEMAS["models"])
    return True


def write_failure(con: Connection, path: str | os.PathLike, reason: str, model: str, sampling: str,
                  video_id: str | None = None) -> None:
    """Record that a video could not be extracted, and why; ``video_id`` defaults to the
    file name without its extension.

    Examples
    --------
    >>> from amnetvid_sk import FeatureStore
    >>> fs = FeatureStore("store_failure", create=True)
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
    >>> fs = FeatureStore("store_labels", create=True)
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
    >>> fs = FeatureStore("store_results", create=True)
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
    return _append(con, "results", table_or_rows)


def write_predictions(con: Connection, table) -> int:
    """Append the out-of-fold predictions of an evaluation run (one row per video and fold).

    Written before the run's ``results`` rows, so that a run seen in ``results`` has its
    predictions on disk.

    Parameters
    ----------
    con : Connection
        The store's connections.
    table : pyarrow.Table or dict of columns
        Columns run_id, recipe, target, protocol, fold, video_id, prediction, label;
        created_at defaults to now (UTC).

    Returns
    -------
    int
        Number of rows written.

    Examples
    --------
    >>> from amnetvid_sk import FeatureStore
    >>> fs = FeatureStore("store_predictions", create=True)
    >>> fs.write_predictions({"run_id": ["r1", "r1"], "recipe": ["mean_score"] * 2, "target": ["short"] * 2,
    ...                       "protocol": ["cv"] * 2, "fold": [0, 1], "video_id": ["v1", "v2"],
    ...                       "prediction": [0.8, 0.7], "label": [0.9, 0.6]})
    2
    """
    return _append(con, "predictions", table)


def _append(con: Connection, name: str, table) -> int:
    """One part file of rows appended to a table that keeps every row (results, predictions)."""
    tbl = to_table(name, table, {"created_at": now()})
    if tbl.num_rows:
        write_part(con.path, name, tbl, SCHEMAS[name])
    return tbl.num_rows
