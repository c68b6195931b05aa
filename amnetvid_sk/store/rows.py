"""Callers' rows -> Arrow tables of the store's schemas, checked before anything is written:
column types, required columns, extraction ids, frame counts, list sizes.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import StoreError
from .connection import Connection
from .schema import (REQUIRED, SCHEMAS, attention_type, embedding_type, embeddings_schema, fmt_ids, map_size,
                     now, unique_in_order)

__all__ = ["check_columns", "to_table", "videos_rows", "frames_of", "frames_part", "embeddings_parts"]


def check_columns(table: str, given: set) -> None:
    unknown = sorted(given - set(SCHEMAS[table].names))
    if unknown:
        raise StoreError(f"unknown column(s) {unknown} for table {table!r}; its columns are "
                         f"{SCHEMAS[table].names}")


def rows_to_table(table: str, data: Sequence[Mapping], defaults: Mapping[str, Any]) -> pa.Table:
    if not all(isinstance(r, Mapping) for r in data):
        raise StoreError(f"rows for table {table!r} must be dicts")
    given = set().union(*(r.keys() for r in data)) if data else set()
    check_columns(table, given)
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
        tbl, n = rows_to_table(table, data, defaults), len(data)
    else:
        if not isinstance(data, pa.Table):
            try:
                data = pa.table(data)  # pandas DataFrame, dict of arrays, ...
            except Exception as e:
                raise StoreError(f"cannot read the rows for table {table!r} as a table: {e}") from None
        check_columns(table, set(data.column_names))
        tbl, n = data, data.num_rows
    out = {}
    for field in schema:
        if field.name in ("attention", "embedding") and field.name in tbl.column_names:
            out[field.name] = tbl[field.name]  # cast by the writer, which knows the list size
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


def videos_rows(videos) -> pa.Table:
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


def frames_of(vids: pa.Table, frames) -> pa.Table:
    """``frames`` checked against the videos rows, video_id/model/sampling filled from them."""
    if not isinstance(frames, pa.Table):
        try:
            frames = pa.table(frames)
        except Exception as e:
            raise StoreError(f"frames must be a pyarrow.Table: {e}") from None
    missing = [c for c in ("extraction_id", "frame_index", "timestamp", "score")
               if c not in frames.column_names]
    if missing:
        raise StoreError(f"frames table lacks column(s) {missing}")
    check_columns("frames", set(frames.column_names))
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


def frames_part(frames: pa.Table, model: str, shape: tuple[int, ...]) -> pa.Table:
    """The frames of one model with the attention lists cast to their fixed size (null for a
    scores-only model, whose map shape is ``()``)."""
    size = map_size(shape)
    part = to_table("frames", frames, {})
    if size == 0:
        if part["attention"].null_count != part.num_rows:
            raise StoreError(f"frame model {model!r} stores scores only (maps='none'); its frames must "
                             "have no attention maps")
        return part
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


def _embeddings_of_videos(vids: pa.Table, embeddings) -> pa.Table:
    """The columns of ``embeddings`` checked, with video_id/model/sampling filled from the videos
    rows ``vids`` of their extractions."""
    if not isinstance(embeddings, pa.Table):
        raise StoreError(f"embeddings must be a pyarrow.Table (see embeddings_table); got "
                         f"{type(embeddings).__name__}")
    missing = [c for c in ("extraction_id", "frame_index", "embedding") if c not in embeddings.column_names]
    if missing:
        raise StoreError(f"embeddings table lacks column(s) {missing}")
    check_columns("embeddings", set(embeddings.column_names))
    emb = embeddings.select(["extraction_id", "frame_index", "embedding"])
    where = pc.index_in(emb["extraction_id"].cast(pa.string()), value_set=vids["extraction_id"])
    if where.null_count:
        orphan = pc.filter(emb["extraction_id"], pc.is_null(where)).unique().to_pylist()
        raise StoreError(f"embeddings reference extraction ids with no visible videos row: {fmt_ids(orphan)}")
    for name in ("video_id", "model", "sampling"):
        emb = emb.append_column(name, pc.take(vids[name], where))
    return emb


def _check_one_per_frame(con: Connection, vids: pa.Table, emb: pa.Table, frames: pa.Table | None) -> None:
    """Raise unless every frame of each extraction in ``emb`` (the frames ``frames``, or the store's
    when None) has exactly one embedding."""
    if frames is None:
        frames = con.query("SELECT f.extraction_id, f.frame_index FROM frames AS f "
                           "JOIN _eids AS e USING (extraction_id)", _eids=vids.select(["extraction_id"]))
    want = frames.select(["extraction_id", "frame_index"]).cast(
        pa.schema([("extraction_id", pa.string()), ("frame_index", pa.int64())]))
    # the extractions given embeddings (new extractions may also come without them)
    want = want.filter(pc.is_in(want["extraction_id"], value_set=emb["extraction_id"].unique().cast(pa.string())))
    got = emb.select(["extraction_id", "frame_index"]).cast(want.schema)
    matched = got.join(want, ["extraction_id", "frame_index"], join_type="inner").num_rows
    if matched != want.num_rows or got.num_rows != want.num_rows:
        bad = sorted(set(want["extraction_id"].to_pylist()) ^ set(got["extraction_id"].to_pylist())) or \
            unique_in_order(vids["video_id"].to_pylist())
        raise StoreError(f"the embeddings of {len(bad)} extraction(s) are not one per stored frame (every "
                         f"frame of an extraction needs exactly one embedding): {fmt_ids(bad)}")


def _embedding_dims(con: Connection) -> dict:
    """``{model: embedding_dim}`` of the store's models table."""
    return {r["model"]: r["embedding_dim"] for r in con.query(
        "SELECT model, embedding_dim FROM models", tables=("models",)).to_pylist()}


def _model_part(emb: pa.Table, model: str, dim: int) -> pa.Table:
    """The embeddings of one frame model as an ``embeddings`` table, their lists cast to ``dim`` values."""
    part = to_table("embeddings", emb.filter(pc.equal(emb["model"], model)), {})
    try:
        values = part["embedding"].cast(embedding_type(dim))
    except (pa.ArrowException, TypeError, ValueError):
        lengths = pc.list_value_length(part["embedding"])
        raise StoreError(f"embeddings of model {model!r} must hold embedding_dim = {dim} values; got "
                         f"lengths between {pc.min(lengths).as_py()} and {pc.max(lengths).as_py()}") from None
    if values.null_count or pc.list_flatten(part["embedding"]).null_count:
        raise StoreError("column 'embedding' of table 'embeddings' has missing values")
    return part.set_column(part.schema.get_field_index("embedding"), "embedding", values)


def embeddings_parts(con: Connection, vids: pa.Table, embeddings, frames: pa.Table | None) -> list:
    """``(part, schema)`` per frame model of ``embeddings``, checked against the extractions ``vids``:
    every frame of each extraction given embeddings (the frame indices of ``frames``, or of the
    store's frames when None) has one embedding of the model's ``embedding_dim`` values."""
    emb = _embeddings_of_videos(vids, embeddings)
    _check_one_per_frame(con, vids, emb, frames)
    dims = _embedding_dims(con)
    parts = []
    for model in unique_in_order(emb["model"].to_pylist()):
        dim = dims.get(model) or 0
        if dim < 1:
            raise StoreError(f"frame model {model!r} has no embedding_dim in the store's models table; "
                             "register it with write_model(..., embedding_dim=D) to store embeddings")
        parts.append((_model_part(emb, model, dim), embeddings_schema(dim)))
    return parts
