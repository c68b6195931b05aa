"""Compaction: each table's visible rows rewritten into one part file (per frame model for ``frames``
and ``embeddings``), and the temporary files of writes killed long ago removed.

Every query of one compaction reads the same listing (the one taken when it starts): only
the part files of that listing are deleted afterwards, so rows that a writer adds while it
runs are neither copied nor lost.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

import pyarrow as pa

from ..errors import StoreError, allowed_values
from . import cache, location
from .connection import VIEWS, Connection
from .resolve import map_shapes
from .schema import SCHEMAS, TABLES, embeddings_schema, frames_schema, map_size
from .write import write_part

__all__ = ["compact", "temp_files", "TEMP_AGE_S"]

# A temporary part file untouched this long belongs to a write that was killed: a live writer
# touches its file at every row group (about 32 MB of rows) and renames it when done.
TEMP_AGE_S = 3600.0

# frames and embeddings before videos: those of visible extractions are found through videos
_ORDER = ("frames", "embeddings", "videos", "models", "labels", "failures", "results", "predictions")


def temp_files(path: Path | str, older_than: float | None = None) -> list[str]:
    """The hidden temporary part files (``.part-*.parquet.tmp``) in the table folders of the store
    ``path``; with ``older_than``, only those not modified for that many seconds.

    Readers never list them (the part list matches ``part-*.parquet`` only); one is left when a
    write is killed between creating it and renaming it into place.

    Examples
    --------
    >>> temp_files(Path("/no/such/store"))
    []
    """
    found, now = [], time.time()
    if location.is_remote(path):
        return found  # an S3 write leaves no temporary object: an upload appears whole or not at all
    for table in TABLES:
        try:
            entries = list(os.scandir(path / table))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for e in entries:
            if not (e.name.startswith(".part-") and e.name.endswith(".parquet.tmp")):
                continue
            try:
                if older_than is None or now - e.stat().st_mtime > older_than:
                    found.append(e.path)
            except FileNotFoundError:
                pass  # renamed into place (or removed) since the scan
    return sorted(found)


def _frame_jobs(con: Connection, duck, shapes: dict, drop_orphans: bool,
                table: str = "frames") -> list[tuple[str, dict, pa.Schema]]:
    """One query per frame model of ``frames`` or ``embeddings``: its rows to keep, with their schema.

    ``duck`` is the connection whose views show compact()'s listing (``con``'s, for this thread);
    nothing here lists the store again (a listing taken later would copy parts written since,
    which are not deleted).
    """
    known = map_shapes(con, shapes, refresh=False)
    dims = dict(duck.sql("SELECT model, embedding_dim FROM models").fetchall())
    models = [r[0] for r in duck.sql(f"SELECT DISTINCT model FROM {table}_all ORDER BY 1").fetchall()]
    keep = "extraction_id IN (SELECT extraction_id FROM videos)"
    if not drop_orphans:
        keep += " OR extraction_id NOT IN (SELECT extraction_id FROM videos_all)"
    if table == "embeddings":
        # the view's rule: an extraction's embeddings from the first part file that has them. As a
        # correlated EXISTS the rows stream; as `(extraction_id, filename) IN (...)` DuckDB held them
        # all (2.9 GB for a 1.6 GB table: out of memory at 100,000 videos)
        dedup = (" AND EXISTS (SELECT 1 FROM (SELECT extraction_id AS eid, min(filename) AS first "
                 "FROM embeddings_all GROUP BY extraction_id) AS d "
                 "WHERE d.eid = stored.extraction_id AND d.first = stored.filename)")
    else:
        dupes = duck.sql("SELECT count(*) <> count(DISTINCT (extraction_id, frame_index)) "
                         "FROM frames_all").fetchall()[0][0]
        # the window costs memory, so only when an interrupted compaction left duplicates
        dedup = " QUALIFY row_number() OVER (PARTITION BY extraction_id, frame_index) = 1" if dupes else ""
    jobs = []
    for model in models:
        if model not in known or (table == "embeddings" and not dims.get(model)):
            raise StoreError(f"{table} of model {model!r} have no models row; cannot compact them")
        query = f"SELECT * EXCLUDE (filename) FROM {table}_all AS stored WHERE model = $model AND ({keep})" + dedup
        schema = embeddings_schema(dims[model]) if table == "embeddings" else frames_schema(map_size(known[model]))
        jobs.append((query, {"model": model}, schema))
    return jobs


def _table_names(tables: Sequence[str] | None) -> list[str]:
    """The tables to compact (all when None), each checked to be a table of the store."""
    names = list(TABLES) if tables is None else list(tables)
    bad = [t for t in names if t not in TABLES]
    if bad:
        raise ValueError(f"The 'tables' parameter of FeatureStore.compact must list tables among "
                         f"{allowed_values(TABLES)}. Got {bad!r} instead.")
    return names


def _table_jobs(con: Connection, duck, shapes: dict, drop_orphans: bool, table: str,
                files: list[str]) -> list[tuple[str, dict | None, pa.Schema]] | None:
    """The queries of the rows of ``table`` to keep, with their schema; None when the table is one
    part file with nothing superseded (nothing to do)."""
    if table in ("frames", "embeddings"):
        return _frame_jobs(con, duck, shapes, drop_orphans, table)
    # failures, results and predictions keep every row, but a row stored twice (by a compaction
    # killed between writing its parts and deleting the old ones) is kept once
    visible = VIEWS[table] if table in ("videos", "models", "labels") else \
        f"SELECT DISTINCT * EXCLUDE (filename) FROM {table}_all"
    if len(files) == 1 and duck.sql(f"SELECT (SELECT count(*) FROM ({visible})) = "
                                    f"(SELECT count(*) FROM {table}_all)").fetchall()[0][0]:
        return None  # one part, nothing superseded
    return [(visible, None, SCHEMAS[table])]


def _write_new_parts(path, duck, table: str, jobs) -> list:
    """Write the rows of each job of ``table`` into a new part file; on any failure delete the new
    parts written and re-raise (the old files are untouched)."""
    new = []
    try:
        for query, params, schema in jobs:
            reader = duck.sql(query, params=params).to_arrow_reader(batch_size=8192)
            part = write_part(path, table, (b.select(schema.names).cast(schema) for b in reader),
                              schema)
            if part is not None:
                new.append(part)
    except BaseException:
        for part in new:  # this table's old files are untouched: undo
            location.delete(part)
        raise
    return new


def _delete_old_parts(files: list[str]) -> None:
    """Delete the part files ``files`` of a table just rewritten."""
    # Each table is replaced on its own and its old parts deleted at once, so its rows are
    # stored twice only between its new part's rename and these deletes (a kill there leaves
    # them twice until the next compact). No later query reads the deleted files: frames and
    # embeddings go first and nothing after them reads them; they read videos, which follow.
    for path in files:
        location.delete(path)


def compact(con: Connection, shapes: dict, tables: Sequence[str] | None = None, *,
            drop_orphans: bool = False) -> dict[str, tuple[int, int]]:
    """Rewrite each table's rows into one part file (per frame model for ``frames`` and ``embeddings``).

    Superseded rows are dropped: older extractions of a video and their
    frames, older label imports, repeated model rows. ``failures`` and
    ``results`` keep every row (a row stored twice is kept once). Table by
    table, the new part files are written first and the old ones deleted
    right after, so a crash leaves each table's old files, or its new ones,
    or, killed between the two steps, both: rows then appear twice in the raw
    tables (``frames_all``, ``results_all``, ...), not in the views nor in
    ``read_arrays`` (the ``frames`` view takes each extraction's frames from one
    part file, ``results`` shows each distinct row once); the next ``compact``
    keeps each once. The array cache files are deleted (they belong to the
    listing before), and so are temporary part files untouched for
    ``TEMP_AGE_S`` seconds (left by killed writes; a younger one may be a
    running writer's).

    Run it when no other process reads the store: a reader that lists the
    files just before they are deleted can fail or, for the raw tables, see
    rows twice. Writers may keep running: part files written after the
    listing are not touched, and frames without a videos row (an extraction
    being written) are kept unless ``drop_orphans=True``, which removes the
    frames of interrupted writes and must only be used when no writer runs.

    Parameters
    ----------
    con : Connection
        The store's connections.
    shapes : dict
        Known map shapes per fingerprint (filled in place).
    tables : sequence of str, default=None
        Tables to compact; None means all.
    drop_orphans : bool, default=False

    Returns
    -------
    dict
        ``{table: (part files before, part files after)}`` for the tables rewritten.

    Examples
    --------
    >>> from amnetvid_sk import FeatureStore
    >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store
    >>> for seed in (0, 1):  # the second extraction of each video hides the first
    ...     ids = write_synthetic_store("store_compact", *make_moving_peak_dataset(2, seed=seed))
    >>> fs = FeatureStore("store_compact")
    >>> fs.compact()
    {'frames': (2, 1), 'videos': (2, 1), 'labels': (2, 1)}
    >>> fs.compact(["labels"])  # one part file already: nothing to do
    {}
    """
    names = _table_names(tables)
    for tmp in temp_files(con.path, older_than=TEMP_AGE_S):
        location.delete(tmp)
    duck = con.refresh()
    snapshot = con.files  # the listing every query below reads, and the only files deleted
    report = {}
    try:
        for table in _ORDER:
            files = snapshot[table]
            if table not in names or not files:
                continue
            jobs = _table_jobs(con, duck, shapes, drop_orphans, table, files)
            if jobs is None:
                continue  # one part, nothing superseded
            new = _write_new_parts(con.path, duck, table, jobs)
            _delete_old_parts(files)
            report[table] = (len(files), len(new))
    finally:
        con.forget_listing()
        if report:
            cache.clear(con.path)
    return report
