"""Feature store: Parquet part files under one folder, read through DuckDB views.

Layout: one folder per table under the store folder (``videos``, ``frames``,
``models``, ``labels``, ``failures``, ``results``), each holding Parquet part
files ``part-<time>-<uuid>.parquet`` written by pyarrow: zstd, except the
attention maps (``frames.attention``, non-null floats, byte-stream-split), which
are LZ4: they decode about 1.6 times as fast as under zstd and take about 8%
more bytes on disk (``bench/bench_store_size.py``). A part file is
written under a hidden temporary name (``.part-....parquet.tmp``) in the same
folder, synced, then renamed: the rename is atomic, so a reader never sees half
a file, and the read list (``part-*.parquet``) never matches a temporary file.

Nothing is ever updated in place. Idempotent reruns and concurrent writers are
made safe by deduplicating on read:

- ``videos`` shows, per (video_id, model, sampling), only the latest extraction
  (greatest ``extracted_at``; ties broken by the later part file, then by
  ``extraction_id``). A changed file extracted again hides its old rows.
- ``frames`` shows only the frames of visible extractions. ``write_extractions``
  writes the frames part first and the videos part second, so the videos row is
  the commit record: a crash between the two leaves nothing visible.
- ``labels`` shows the latest import per video_id; ``models`` one row per
  fingerprint (the first registered); ``failures`` the latest failure per
  (path, model, sampling) not followed by a successful extraction.

The raw tables stay reachable as ``videos_all``, ``frames_all``, ... (with a
``filename`` column naming the part file of each row). Each writer writes its
own uniquely named part files, so two writers never touch the same file and no
lock is needed.

Each thread gets its own in-memory DuckDB connection (a connection is not safe to
share between threads), whose views are refreshed whenever the part files change.
That connection can only read files inside the store folder and its configuration
is locked; :meth:`FeatureStore.sql` also refuses every statement that is not a query.

Array cache. :meth:`FeatureStore.read_arrays` keeps, per process, the frames it
has decoded. The first read of a (model, sampling) decodes the frames of all its
visible videos (pyarrow, memory-mapped, several row groups at once) and keeps
the scores of every frame plus the maps that reads with that ``n_frames`` return:
for ``n_frames=T`` the T picked frames of every video (the picked positions depend
only on a video's frame count and T), for ``n_frames=None`` every frame. Later
reads of any ids, through any ``FeatureStore`` of the same folder
(cross-validation folds, grid-search fits, transform after fit), are numpy
indexing with no DuckDB query; another ``n_frames`` decodes its maps once more
(every frame answers any ``n_frames``). A first read of fewer than 1/8 of the
videos is answered through SQL instead (it decodes only those), and a second
such read fills the cache.

- Key: (store path, names of the ``videos``, ``frames`` and ``models`` part
  files, model, sampling). Part files never change once renamed into place
  (writers add files; ``compact`` replaces them), so one listing always holds
  the same rows. Every read lists the store's folders (no file is opened); any
  write or compaction changes the listing, so the next read misses and decodes
  again, and the entries of older listings of that store are dropped.
- Memory: at most ``AMNETVID_CACHE_BYTES`` bytes of decoded frames (default
  2 GiB; 0 turns the cache off), least recently used dropped first. What would
  not fit is read through SQL every time. For 8,000 videos x 28 frames of
  3 x 14 x 14 maps: 75 MB for ``n_frames=4``, 530 MB for every frame; while
  they are decoded, a few row groups' Arrow buffers (about 32 MB each) come on top.
- Threads share the cache (one decodes, the others wait for it). A forked child
  starts with it empty; each process (joblib workers included) fills its own,
  within its own budget.
- The arrays returned are new; the cached ones are read-only.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import MissingVideosError, ReadOnlyQueryError, StoreError
from ..video_ids import video_id_from_name

__all__ = ["FeatureStore", "SCHEMAS", "TABLES", "frames_table", "new_extraction_id"]

_TS = pa.timestamp("us")  # naive timestamps, in UTC

#: Column types of each table as written to Parquet. ``frames.attention`` is written
#: as ``fixed_size_list<float32, prod(map_shape)>``; the list type here stands for any size.
SCHEMAS: dict[str, pa.Schema] = {
    "videos": pa.schema([
        ("extraction_id", pa.string()), ("video_id", pa.string()), ("path", pa.string()),
        ("size", pa.int64()), ("mtime", pa.float64()), ("duration", pa.float64()), ("fps", pa.float64()),
        ("frame_count", pa.int64()), ("width", pa.int64()), ("height", pa.int64()),
        ("model", pa.string()), ("sampling", pa.string()), ("n_frames", pa.int32()), ("short", pa.bool_()),
        ("extracted_at", _TS),
    ]),
    "frames": pa.schema([
        ("extraction_id", pa.string()), ("video_id", pa.string()), ("model", pa.string()),
        ("sampling", pa.string()), ("frame_index", pa.int64()), ("timestamp", pa.float64()),
        ("score", pa.float32()), ("attention", pa.list_(pa.float32())),
    ]),
    "models": pa.schema([
        ("model", pa.string()), ("name", pa.string()), ("config", pa.string()),
        ("map_shape", pa.list_(pa.int32())), ("created_at", _TS),
    ]),
    "labels": pa.schema([
        ("video_id", pa.string()), ("short_term", pa.float64()), ("n_short", pa.int64()),
        ("long_term", pa.float64()), ("n_long", pa.int64()), ("source", pa.string()), ("imported_at", _TS),
    ]),
    "failures": pa.schema([
        ("path", pa.string()), ("video_id", pa.string()), ("model", pa.string()), ("sampling", pa.string()),
        ("reason", pa.string()), ("failed_at", _TS),
    ]),
    "results": pa.schema([
        ("run_id", pa.string()), ("recipe", pa.string()), ("target", pa.string()), ("protocol", pa.string()),
        ("fold", pa.int64()), ("spearman", pa.float64()), ("n_train", pa.int64()), ("n_test", pa.int64()),
        ("params", pa.string()), ("created_at", _TS),
    ]),
}

#: Table names, in the order their folders are listed. ``videos`` comes before
#: ``frames`` on purpose: a videos part is renamed into place after its frames
#: part, so any videos part seen in the listing has its frames part on disk
#: when ``frames`` is listed next.
TABLES: tuple[str, ...] = ("videos", "frames", "models", "labels", "failures", "results")

# columns that may not be null, per table
_REQUIRED = {
    "videos": ("extraction_id", "video_id", "path", "size", "mtime", "duration", "fps", "frame_count",
               "width", "height", "model", "sampling", "n_frames", "short", "extracted_at"),
    "frames": ("extraction_id", "video_id", "model", "sampling", "frame_index", "timestamp", "score",
               "attention"),
    "models": ("model", "name", "config", "map_shape", "created_at"),
    "labels": ("video_id", "imported_at"),
    "failures": ("path", "video_id", "model", "sampling", "reason", "failed_at"),
    "results": ("run_id", "recipe", "target", "protocol", "fold", "created_at"),
}

# the timestamp column each writer fills with the write time when it is not given
_STAMP = {"videos": "extracted_at", "models": "created_at", "labels": "imported_at",
          "failures": "failed_at", "results": "created_at"}

# The visible (deduplicated) views. The raw ``<table>_all`` views they read are
# replaced whenever the part files change; these definitions never change.
_VIEWS = {
    "videos": """
        SELECT * EXCLUDE (filename) FROM videos_all
        QUALIFY row_number() OVER (
            PARTITION BY video_id, model, sampling
            ORDER BY extracted_at DESC, filename DESC, extraction_id DESC) = 1""",
    "frames": """
        SELECT * EXCLUDE (filename) FROM frames_all
        WHERE extraction_id IN (SELECT extraction_id FROM videos)""",
    "models": """
        SELECT * EXCLUDE (filename) FROM models_all
        QUALIFY row_number() OVER (PARTITION BY model ORDER BY created_at, filename) = 1""",
    "labels": """
        SELECT * EXCLUDE (filename) FROM labels_all
        QUALIFY row_number() OVER (PARTITION BY video_id ORDER BY imported_at DESC, filename DESC) = 1""",
    "failures": """
        SELECT * EXCLUDE (filename) FROM failures_all AS f
        WHERE NOT EXISTS (
            SELECT 1 FROM videos AS v
            WHERE v.path = f.path AND v.model = f.model AND v.sampling = f.sampling
              AND v.extracted_at >= f.failed_at)
        QUALIFY row_number() OVER (
            PARTITION BY path, model, sampling ORDER BY failed_at DESC, filename DESC) = 1""",
    "results": "SELECT * EXCLUDE (filename) FROM results_all",
}

_DUCK_TYPES = {
    pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.float64(): "DOUBLE",
    pa.float32(): "FLOAT", pa.bool_(): "BOOLEAN", _TS: "TIMESTAMP",
}

_TARGETS = {"short": "short_term", "long": "long_term"}
_PART_RE = re.compile(r"^part-.*\.parquet$")
_EXPLAIN_RE = re.compile(r"^\s*EXPLAIN\s+(?:ANALY[SZ]E\s+)?(.*)$", re.IGNORECASE | re.DOTALL)
_ROW_GROUP_BYTES = 32 << 20  # about 32 MB of raw data per Parquet row group
# Codec of float lists (the attention maps), written byte-stream-split: LZ4 decodes
# about 1.6 times as fast as zstd and costs about 8% more bytes on disk (see
# bench/bench_store_size.py). Every other column is zstd.
_LIST_CODEC = "lz4"


def new_extraction_id() -> str:
    """A fresh extraction id (a random UUID as 32 hex digits).

    Examples
    --------
    >>> len(new_extraction_id())
    32
    """
    return uuid.uuid4().hex


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _duck_type(t: pa.DataType) -> str:
    if pa.types.is_list(t) or pa.types.is_fixed_size_list(t):
        return _duck_type(t.value_type) + "[]"
    return _DUCK_TYPES[t]


def _attention_type(size: int) -> pa.DataType:
    """Parquet type of ``frames.attention`` for maps of ``size`` floats. The elements
    are declared non-null, which saves Parquet a definition level per float on read."""
    return pa.list_(pa.field("element", pa.float32(), nullable=False), int(size))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _empty_view_sql(table: str) -> str:
    # Only names and types from SCHEMAS go in here, never user input.
    cols = [f"CAST(NULL AS {_duck_type(f.type)}) AS {_quote(f.name)}" for f in SCHEMAS[table]]
    cols.append("CAST(NULL AS VARCHAR) AS filename")
    return "SELECT " + ", ".join(cols) + " LIMIT 0"


def _fmt_ids(ids: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(str(i)) for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _unique_in_order(values) -> list:
    return list(dict.fromkeys(values))


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


class FeatureStore:
    """Frame scores and attention maps of videos, as Parquet tables queried with DuckDB.

    Nothing is created until the first write; reading an absent or empty store
    gives empty tables. See the module docstring (and ``store/README.md``) for the
    layout and how rows are deduplicated on read.

    Parameters
    ----------
    path : str or Path
        The store folder.

    Examples
    --------
    >>> import numpy as np
    >>> from amnetvid_sk import FeatureStore
    >>> fs = FeatureStore(tmp_path / "store")  # doctest: +SKIP
    >>> fs.write_model("m1", "toy", {}, (3, 14, 14))  # doctest: +SKIP
    True
    >>> fs.sql("SELECT count(*) AS n FROM videos").to_pylist()  # doctest: +SKIP
    [{'n': 0}]
    >>> scores, maps = fs.read_arrays(["video10"], n_frames=4)  # doctest: +SKIP
    >>> maps.shape  # doctest: +SKIP
    (1, 4, 3, 14, 14)
    """

    def __init__(self, path: str | os.PathLike):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"FeatureStore path must be a str or Path; got {type(path).__name__}")
        self.path = Path(os.path.abspath(os.fspath(path)))
        self._local = threading.local()
        self._shapes: dict[str, tuple[int, ...]] = {}

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r})"

    # A store travels to worker processes as its path; each process opens its own connections.
    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.path = state["path"]
        self._local = threading.local()
        self._shapes = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Close this thread's DuckDB connection (a later call opens a new one)."""
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
        self._local.con = None

    # ------------------------------------------------------------------ connection
    def _open(self) -> duckdb.DuckDBPyConnection:
        # temp_directory '' keeps DuckDB from spilling into the working directory.
        con = duckdb.connect(":memory:", config={
            "autoinstall_known_extensions": False, "autoload_known_extensions": False, "temp_directory": "",
        })
        # Part files never change once written (new data gets new names), so caching
        # their Parquet footers is safe and saves re-reading them at every query.
        con.execute("SET parquet_metadata_cache = true")
        roots = _unique_in_order([str(self.path), os.path.realpath(self.path)])
        con.execute("SET allowed_directories = $dirs", {"dirs": [r.rstrip(os.sep) + os.sep for r in roots]})
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        for table in TABLES:
            con.execute(f"CREATE VIEW {table}_all AS {_empty_view_sql(table)}")
        for table in TABLES:
            con.execute(f"CREATE VIEW {table} AS {_VIEWS[table]}")
        return con

    def _list_parts(self) -> dict[str, tuple[str, ...]]:
        listing = {}
        for table in TABLES:  # videos before frames: see TABLES
            folder = os.path.join(self.path, table)
            try:
                with os.scandir(folder) as it:
                    names = sorted(e.name for e in it if _PART_RE.match(e.name) and e.is_file())
            except (FileNotFoundError, NotADirectoryError):
                names = []
            # os.path.join, not Path: every read_arrays lists the store, even when cached
            listing[table] = tuple(os.path.join(folder, n) for n in names)
        return listing

    def _connection(self, force_refresh: bool = False) -> duckdb.DuckDBPyConnection:
        loc = self._local
        # a forked child must not reuse its parent's connection
        if getattr(loc, "con", None) is None or loc.pid != os.getpid():
            loc.con, loc.pid, loc.files = self._open(), os.getpid(), {}
        if force_refresh:
            loc.files = {}
        listing = self._list_parts()
        for table, files in listing.items():
            if loc.files.get(table) == files:
                continue
            if files:
                # An explicit file list (not a glob) makes the view a snapshot of this listing.
                rel = loc.con.read_parquet(list(files), union_by_name=True, filename=True)
                rel.create_view(f"{table}_all", replace=True)
            else:
                loc.con.execute(f"CREATE OR REPLACE VIEW {table}_all AS {_empty_view_sql(table)}")
            loc.files[table] = files
        return loc.con

    def _query(self, query: str, params=None, refresh: bool = True, **arrow_tables: pa.Table) -> pa.Table:
        """Run our own SQL (no read-only check) and fetch the result as Arrow.

        ``refresh=False`` keeps the views of the previous call, so that several
        queries of one read see the same files.
        """
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"the store {str(self.path)!r} is a file, not a folder; give a store folder")
        try:
            for attempt in (0, 1):
                if attempt == 0 and not refresh and getattr(self._local, "con", None) is not None \
                        and self._local.pid == os.getpid():
                    con = self._local.con
                else:
                    con = self._connection(force_refresh=attempt == 1)
                for name, tbl in arrow_tables.items():
                    con.register(name, tbl)
                try:
                    return con.sql(query, params=params).to_arrow_table()
                except duckdb.IOException:
                    # a part file listed a moment ago was removed (by compact): list again, once
                    if attempt == 1:
                        raise
                finally:
                    for name in arrow_tables:
                        con.unregister(name)
        except (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException):
            raise  # the SQL text is at fault, not a file (sql() says so)
        except duckdb.Error as e:
            damaged = self._damaged_parts(f for files in self._list_parts().values() for f in files)
            if not damaged:
                raise
            named = "; ".join(f"{f} ({why})" for f, why in damaged[:3])
            more = f" and {len(damaged) - 3} more" if len(damaged) > 3 else ""
            raise StoreError(
                f"the store {str(self.path)!r} has {len(damaged)} damaged part file(s) that cannot be read: "
                f"{named}{more}; restore them from a copy, or move them out of the store (their rows "
                "are lost)") from e
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ user SQL
    def sql(self, query: str, params: Sequence | Mapping | None = None) -> pa.Table:
        """Run one read-only SQL query on the store's views and return the result.

        Views: ``videos``, ``frames``, ``models``, ``labels``, ``failures``,
        ``results`` (deduplicated) and the raw ``videos_all``, ``frames_all``, ...
        ``frames.attention`` is a ``FLOAT[]``; cast it (``attention::FLOAT[588]``) for
        a fixed-size list.

        Only queries run: ``SELECT``/``WITH``/``FROM``/``VALUES``, ``DESCRIBE``,
        ``SHOW``, ``SUMMARIZE``, ``PIVOT`` with an ``IN`` list, and ``EXPLAIN`` of
        these. Any other statement (``COPY``, ``CREATE``, ``DROP``, ``INSERT``,
        ``ATTACH``, ``SET``, ``PRAGMA``, ``INSTALL``/``LOAD``, ``EXPORT``, ``CALL``,
        ...) is refused before it runs. Independently, the connection can open no
        file outside the store folder and its configuration is locked.

        Parameters
        ----------
        query : str
            One SQL statement.
        params : list or dict, default=None
            Values bound to ``?`` (list) or ``$name`` (dict) placeholders; never
            pasted into the SQL text.

        Returns
        -------
        pyarrow.Table

        Raises
        ------
        ReadOnlyQueryError
            The statement is not a query, or it tried to open a file outside the store.
        StoreError
            A syntax error or a failing query (DuckDB's message is kept).

        Examples
        --------
        >>> fs.sql("SELECT video_id, avg(score) AS mean FROM frames GROUP BY video_id "
        ...        "HAVING avg(score) > ?", [0.8])  # doctest: +SKIP
        """
        if not isinstance(query, str):
            raise TypeError(f"query must be a str; got {type(query).__name__}")
        statements = _parse(query)
        if not statements:
            raise StoreError("the query is empty; give one SELECT statement")
        for st in statements:
            _check_read_only(st)
        if len(statements) > 1:
            raise StoreError(f"give one statement at a time; got {len(statements)}")
        if params is not None and not isinstance(params, (list, tuple, dict)):
            raise TypeError(f"params must be a list, tuple or dict; got {type(params).__name__}")
        try:
            return self._query(query, params)
        except duckdb.PermissionException as e:
            raise ReadOnlyQueryError(
                f"queries may only read the store's own tables (files under {str(self.path)!r}): {e}"
            ) from None
        except duckdb.Error as e:
            raise StoreError(f"query failed: {e}") from None

    # ------------------------------------------------------------------ writing
    def _write_part(self, table: str, data: pa.Table | Iterable[pa.RecordBatch],
                    schema: pa.Schema) -> Path | None:
        """Write one part file of ``table`` atomically; None when there were no rows."""
        folder = self.path / table
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

    def _to_table(self, table: str, data, defaults: Mapping[str, Any]) -> pa.Table:
        """Rows (list of dicts) or a table-like object -> an Arrow table of ``table``'s schema."""
        schema = SCHEMAS[table]
        if isinstance(data, Mapping) and not isinstance(data, pa.Table):
            data = pa.table(dict(data)) if all(np.ndim(v) == 1 for v in data.values()) else [data]
        if isinstance(data, (list, tuple)):
            if not all(isinstance(r, Mapping) for r in data):
                raise StoreError(f"rows for table {table!r} must be dicts")
            given = set().union(*(r.keys() for r in data)) if data else set()
            _check_columns(table, given)
            columns = {}
            for field in schema:
                if field.name not in given and field.name not in defaults:
                    continue
                values = [r.get(field.name, defaults.get(field.name)) for r in data]
                if field.name == "attention":
                    continue
                try:
                    columns[field.name] = pa.array(values, type=field.type)
                except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
                    raise StoreError(f"column {field.name!r} of table {table!r}: {e}") from None
            tbl = pa.table(columns) if columns else pa.table({})
            n = len(data)
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
                out[field.name] = tbl[field.name]
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
        for name in _REQUIRED[table]:
            if name in result.column_names and result[name].null_count:
                raise StoreError(f"column {name!r} of table {table!r} has {result[name].null_count} "
                                 f"missing value(s); it is required")
        return result

    def _map_shapes(self, refresh: bool = True, models: Iterable[str] = ()) -> dict[str, tuple[int, ...]]:
        """Map shape per fingerprint. A fingerprint's map shape never changes (the
        fingerprint covers the map size), so known ones are cached and a writer
        that asks only for known models does not touch DuckDB."""
        cache = self._shapes
        wanted = list(models)
        if not wanted or any(m not in cache for m in wanted):
            rows = self._query("SELECT model, map_shape FROM models", refresh=refresh).to_pylist()
            cache.update({r["model"]: tuple(r["map_shape"]) for r in rows})
        return dict(cache)

    def write_extractions(self, videos: Sequence[Mapping] | pa.Table, frames: pa.Table) -> int:
        """Add extractions: one ``videos`` row and its frames per extracted video.

        The frames are written first and the videos rows second; the videos row
        is the commit record, so frames without one stay invisible (a crash in
        between leaves nothing visible). An extraction of a (video_id, model,
        sampling) already in the store hides the older one.

        Parameters
        ----------
        videos : list of dict or pyarrow.Table
            One row per extraction with the columns of ``SCHEMAS["videos"]``:
            extraction_id (see :func:`new_extraction_id`), video_id, path (stored
            as its absolute form), size, mtime, duration, fps, frame_count, width,
            height, model (a fingerprint registered with :meth:`write_model`),
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
        >>> eid = new_extraction_id()  # doctest: +SKIP
        >>> fs.write_extractions([{"extraction_id": eid, "video_id": "video10", ...}],
        ...                      frames_table(eid, idx, ts, scores, maps))  # doctest: +SKIP
        """
        vids = self._to_table("videos", videos, {"extracted_at": _now(), "short": False})
        if vids.num_rows == 0:
            return 0
        vids = vids.set_column(vids.schema.get_field_index("path"), "path",
                               pa.array([os.path.abspath(p) for p in vids["path"].to_pylist()], pa.string()))
        if pc.count_distinct(vids["extraction_id"]).as_py() != vids.num_rows:
            raise StoreError("extraction_id must be unique per videos row; got repeated ids")
        if pc.min(vids["n_frames"]).as_py() < 1:
            raise StoreError("n_frames must be >= 1 for every extraction")
        models = _unique_in_order(vids["model"].to_pylist())
        shapes = self._map_shapes(models=models)
        unknown = [m for m in models if m not in shapes]
        if unknown:
            raise StoreError(f"frame model(s) {_fmt_ids(unknown)} are not registered in the store; "
                             "call write_model(fingerprint, name, config, map_shape) first")

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
            raise StoreError(f"frames reference extraction ids with no videos row: {_fmt_ids(orphan)}")
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
                             f"(every extraction needs exactly n_frames frame rows): {_fmt_ids(bad)}")
        if (distinct.astype(np.int64) != got).any():
            raise StoreError("an extraction has the same frame_index twice")

        parts = []
        for model in models:
            size = math.prod(shapes[model])
            part = frames.filter(pc.equal(frames["model"], model)) if len(models) > 1 else frames
            target = SCHEMAS["frames"].set(7, pa.field("attention", _attention_type(size)))
            part = self._to_table("frames", part, {})
            try:
                att = part["attention"].cast(_attention_type(size))
            except (pa.ArrowException, TypeError, ValueError):
                lengths = pc.list_value_length(part["attention"])
                raise StoreError(
                    f"attention lists of model {model!r} must hold prod(map_shape) = {size} floats "
                    f"(map_shape {shapes[model]}); got lengths between {pc.min(lengths).as_py()} and "
                    f"{pc.max(lengths).as_py()}") from None
            # the cast to non-null floats does not check: a null float would be written as garbage
            if att.null_count or pc.list_flatten(part["attention"]).null_count:
                raise StoreError("column 'attention' of table 'frames' has missing values")
            parts.append((part.set_column(7, "attention", att), target))
        written = []
        try:
            for part, target in parts:
                written.append(self._write_part("frames", part, target))
            self._write_part("videos", vids, SCHEMAS["videos"])  # the commit record, last
        except BaseException:
            # Frames without their videos row are invisible; removing them keeps a failed
            # write (a full disk, Ctrl-C) from leaving dead files behind.
            for path in written:
                if path is not None:
                    path.unlink(missing_ok=True)
            raise
        return vids.num_rows

    def write_model(self, fingerprint: str, name: str, config: Mapping | None,
                    map_shape: Sequence[int]) -> bool:
        """Register a frame model (idempotent: a known fingerprint is not written again).

        Parameters
        ----------
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
        >>> fs.write_model("resmem-ab12", "resmem", {"layers": ["layer4"]}, (3, 14, 14))  # doctest: +SKIP
        True
        """
        if not isinstance(fingerprint, str) or not fingerprint:
            raise StoreError(f"fingerprint must be a non-empty str; got {fingerprint!r}")
        shape = tuple(map_shape)
        if not shape or not all(isinstance(s, (int, np.integer)) and s > 0 for s in shape):
            raise StoreError(f"map_shape must be a sequence of positive ints; got {map_shape!r}")
        if self._query("SELECT 1 FROM models_all WHERE model = ? LIMIT 1", [fingerprint]).num_rows:
            return False
        row = {"model": fingerprint, "name": str(name),
               "config": config if isinstance(config, str) else json.dumps(config or {}, sort_keys=True,
                                                                             default=str),
               "map_shape": [int(s) for s in shape]}
        self._write_part("models", self._to_table("models", [row], {"created_at": _now()}), SCHEMAS["models"])
        return True

    def write_failure(self, path: str | os.PathLike, reason: str, model: str, sampling: str,
                      video_id: str | None = None) -> None:
        """Record that a video could not be extracted, and why.

        ``video_id`` defaults to the file name without its extension.

        Examples
        --------
        >>> fs.write_failure("clips/broken.mp4", "truncated file", "resmem-ab12", "frames=28")  # doctest: +SKIP
        """
        path = os.path.abspath(os.fspath(path))
        if video_id is None:
            video_id = video_id_from_name(path)
        row = {"path": path, "video_id": video_id, "model": model, "sampling": sampling,
               "reason": str(reason)}
        self._write_part("failures", self._to_table("failures", [row], {"failed_at": _now()}),
                         SCHEMAS["failures"])

    def write_labels(self, table) -> int:
        """Import labels (the table of ``labels.read_labels``); a later import of a video wins.

        Parameters
        ----------
        table : pyarrow.Table, pandas.DataFrame, dict of columns or list of dicts
            Columns video_id, short_term, n_short, long_term (may be null),
            n_long, source; imported_at defaults to now (UTC).

        Returns
        -------
        int
            Number of rows written.

        Examples
        --------
        >>> fs.write_labels({"video_id": ["video10"], "short_term": [0.95], "n_short": [34],
        ...                  "long_term": [0.9], "n_long": [10], "source": ["dev.csv"]})  # doctest: +SKIP
        1
        """
        tbl = self._to_table("labels", table, {"imported_at": _now()})
        if tbl.num_rows == 0:
            return 0
        if pc.count_distinct(tbl["video_id"]).as_py() != tbl.num_rows:
            counts = pc.value_counts(tbl["video_id"])
            dup = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1)).to_pylist()
            raise StoreError(f"labels name video id(s) more than once: {_fmt_ids(dup)}")
        self._write_part("labels", tbl, SCHEMAS["labels"])
        return tbl.num_rows

    def write_results(self, table_or_rows) -> int:
        """Append evaluation results (one row per fold).

        Parameters
        ----------
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
        >>> fs.write_results([{"run_id": "r1", "recipe": "mean_score", "target": "short",
        ...                    "protocol": "cv", "fold": 0, "spearman": 0.42}])  # doctest: +SKIP
        1
        """
        if isinstance(table_or_rows, (list, tuple)):
            table_or_rows = [
                {**r, "params": json.dumps(r["params"], sort_keys=True, default=str)}
                if isinstance(r, Mapping) and isinstance(r.get("params"), Mapping) else r
                for r in table_or_rows
            ]
        tbl = self._to_table("results", table_or_rows, {"created_at": _now()})
        if tbl.num_rows:
            self._write_part("results", tbl, SCHEMAS["results"])
        return tbl.num_rows

    # ------------------------------------------------------------------ reading
    def extracted_keys(self, model: str, sampling: str) -> set[tuple[str, int, float]]:
        """``(path, size, mtime)`` of the visible extractions of ``model`` with ``sampling``.

        The extractor skips a file whose ``(os.path.abspath(path), size, mtime)`` is in
        this set; a changed file (other size or mtime) is extracted again.

        Examples
        --------
        >>> ("/data/video10.webm", 1234, 1.7e9) in fs.extracted_keys("resmem-ab12", "frames=28")  # doctest: +SKIP
        False
        """
        tbl = self.extracted_files(model, sampling)
        return set(zip(tbl["path"].to_pylist(), tbl["size"].to_pylist(), tbl["mtime"].to_pylist()))

    def video_paths(self, ids) -> dict[str, set[str]]:
        """The file paths each of ``ids`` was extracted from (any model or sampling); unknown ids are left out.

        Examples
        --------
        >>> fs.video_paths(["video10"])  # doctest: +SKIP
        {'video10': {'/data/videos/video10.webm'}}
        """
        req = pa.table({"video_id": _id_array(ids)})
        tbl = self._query("SELECT DISTINCT v.video_id, v.path FROM videos AS v "
                          "JOIN (SELECT DISTINCT video_id FROM _ids) AS r USING (video_id)", _ids=req)
        out: dict[str, set[str]] = {}
        for vid, path in zip(tbl["video_id"].to_pylist(), tbl["path"].to_pylist()):
            out.setdefault(vid, set()).add(path)
        return out

    def extracted_files(self, model: str, sampling: str) -> pa.Table:
        """video_id, path, size and mtime of the visible extractions of ``model`` with ``sampling``."""
        return self._query("SELECT video_id, path, size, mtime FROM videos WHERE model = ? AND sampling = ?",
                           [model, sampling])

    def models(self) -> list[dict]:
        """The registered frame models: model (fingerprint), name, config (dict),
        map_shape (tuple), created_at, n_videos (visible), samplings.

        Examples
        --------
        >>> [m["name"] for m in fs.models()]  # doctest: +SKIP
        ['resmem']
        """
        rows = self._query("""
            SELECT m.model, m.name, m.config, m.map_shape, m.created_at,
                   count(DISTINCT v.video_id) AS n_videos,
                   list(DISTINCT v.sampling ORDER BY v.sampling)
                       FILTER (WHERE v.sampling IS NOT NULL) AS samplings
            FROM models AS m LEFT JOIN videos AS v ON v.model = m.model
            GROUP BY ALL ORDER BY m.created_at, m.model""").to_pylist()
        for r in rows:
            r["config"] = json.loads(r["config"]) if r["config"] else {}
            r["map_shape"] = tuple(r["map_shape"])
            r["samplings"] = r["samplings"] or []
        return rows

    def _fingerprints(self) -> tuple[list[str], dict[str, str]]:
        return _fingerprint_lists(self._query(_FINGERPRINTS_SQL).to_pylist())

    def resolve_model(self, model: str | None = None) -> str:
        """The full fingerprint of a frame model in the store.

        Parameters
        ----------
        model : str, default=None
            A fingerprint, a unique fingerprint prefix, or a model name that only
            one stored model has. None takes the store's only model with
            extracted videos.

        Returns
        -------
        str

        Raises
        ------
        StoreError
            No model matches, several do, or (with None) the store holds several
            or no extracted models; the message lists the fingerprints.

        Examples
        --------
        >>> fs.resolve_model("resmem")  # doctest: +SKIP
        'resmem-ab12...'
        """
        # The array cache's snapshot of this listing knows the fingerprints: a pipeline
        # step's fit then needs no DuckDB query either.
        snap = _CACHE.snapshot(self) if _cache_budget() > 0 else None
        extracted, names = (snap.extracted, snap.names) if snap is not None else self._fingerprints()
        return _pick_model(self.path, extracted, names, model)

    def resolve_sampling(self, model: str | None = None, sampling: str | None = None) -> str:
        """The sampling key to read for a frame model: ``sampling`` if the model has it, or its only one.

        Raises
        ------
        StoreError
            The model has no videos with that sampling, or (with None) several
            samplings; the message lists them.

        Examples
        --------
        >>> fs.resolve_sampling()  # doctest: +SKIP
        'frames=28'
        """
        model = self.resolve_model(model)
        # as resolve_model: the cache's snapshot knows the samplings, so a step's fit needs no query
        snap = _CACHE.snapshot(self) if _cache_budget() > 0 else None
        if snap is not None:
            return _pick_sampling(self.path, model, snap.samplings.get(model, []), sampling)
        return self._resolve_sampling(model, sampling)

    def _resolve_sampling(self, model: str, sampling: str | None) -> str:
        samplings = self._query("SELECT DISTINCT sampling FROM videos WHERE model = ? ORDER BY 1",
                                [model], refresh=False)["sampling"].to_pylist()
        return _pick_sampling(self.path, model, samplings, sampling)

    def video_ids(self, model: str | None = None, sampling: str | None = None) -> np.ndarray:
        """Sorted ids of the videos extracted by a model (all samplings unless one is given).

        An empty store gives an empty array.

        Examples
        --------
        >>> fs.video_ids()[:3]  # doctest: +SKIP
        array(['video10', 'video11', 'video12'], dtype=object)
        """
        if model is None and not self._fingerprints()[0]:
            return np.array([], dtype=object)
        model = self.resolve_model(model)
        if sampling is None:
            tbl = self._query("SELECT DISTINCT video_id FROM videos WHERE model = ? ORDER BY video_id", [model])
        else:
            tbl = self._query("SELECT DISTINCT video_id FROM videos WHERE model = ? AND sampling = ? "
                              "ORDER BY video_id", [model, sampling])
        return np.array(tbl["video_id"].to_pylist(), dtype=object)

    def read_arrays(self, ids, model: str | None = None, n_frames: int | None = None, maps: bool = True,
                    sampling: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Frame scores and attention maps of videos, in the order of ``ids``.

        The first read of a (model, sampling) decodes the frames of all its
        visible videos into a per-process cache; later reads, of any ids, pick
        their rows from it until a part file is added or removed (see the
        module docstring; ``AMNETVID_CACHE_BYTES=0`` turns the cache off).

        Parameters
        ----------
        ids : sequence of str
            Video ids; repeats are allowed (and returned twice).
        model : str, default=None
            Frame model (fingerprint, unique prefix or name); None takes the
            store's only model. See :meth:`resolve_model`.
        n_frames : int, default=None
            None returns every stored frame (all videos must have the same number
            of stored frames). ``T`` picks T frames spread uniformly over those
            stored for each video: positions ``round(k * (cnt - 1) / (T - 1))`` for
            k in 0..T-1 (rounding halves up; T=1 takes the middle one,
            ``round((cnt - 1) / 2)``). A video with fewer stored frames than T
            is an error that names the stored count (frames are never repeated).
        maps : bool, default=True
            Also return the attention maps (False reads much less).
        sampling : str, default=None
            Sampling key (``"frames=28"``); None takes the model's only one.

        Returns
        -------
        scores : numpy.ndarray of float32, shape (n, T)
        maps : numpy.ndarray of float32, shape (n, T, K, h, w), or None
            Both arrays are new and writable.

        Raises
        ------
        MissingVideosError
            Some ids have no extraction for that model and sampling (the message
            says how many and names the first few).
        StoreError
            The model or sampling is ambiguous, or (n_frames=None) the videos
            have different numbers of stored frames.

        Examples
        --------
        >>> scores, maps = fs.read_arrays(["video10", "video11"], n_frames=4)  # doctest: +SKIP
        >>> scores.shape, maps.shape  # doctest: +SKIP
        ((2, 4), (2, 4, 3, 14, 14))
        """
        if n_frames is not None and (isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer))
                                     or n_frames < 1):
            raise ValueError("The 'n_frames' parameter of FeatureStore.read_arrays must be None or an int >= 1. "
                             f"Got {n_frames!r} instead.")
        ids_arr = _id_array(ids)
        budget = _cache_budget()
        if budget > 0:
            got = _CACHE.read(self, ids_arr, model, n_frames, bool(maps), sampling, budget)
            if got is not None:
                return got
        return self._read_arrays_sql(ids_arr, model, n_frames, bool(maps), sampling)

    def _read_arrays_sql(self, ids_arr: pa.Array, model, n_frames, maps: bool, sampling):
        """``read_arrays`` through DuckDB, reading only the frames asked for (no cache)."""
        n = len(ids_arr)
        model = self.resolve_model(model)
        sampling = self._resolve_sampling(model, sampling)
        shape = self._map_shapes(refresh=False, models=[model]).get(model)
        if shape is None:
            raise _no_shape_error(model)
        req = pa.table({"ord": pa.array(np.arange(n, dtype=np.int64)), "video_id": ids_arr})
        sel = self._query("""
            SELECT r.ord, v.n_frames FROM _ids AS r JOIN videos AS v ON v.video_id = r.video_id
            WHERE v.model = $model AND v.sampling = $sampling""",
                          {"model": model, "sampling": sampling}, refresh=False, _ids=req)
        found = np.zeros(n, dtype=bool)
        found[sel["ord"].to_numpy()] = True
        if not found.all():
            raise _missing_error(self.path, ids_arr, found, model, sampling)
        n_stored = np.empty(n, dtype=np.int64)
        n_stored[sel["ord"].to_numpy()] = sel["n_frames"].to_numpy()
        t = _frames_wanted(n_stored, n_frames, n, ids_arr)
        size = math.prod(shape)
        if n == 0:
            return (np.zeros((0, t), np.float32), np.zeros((0, t, *shape), np.float32) if maps else None)
        # Positions are numbered on the narrow (extraction_id, frame_index) pairs, so
        # the wide attention lists go through one hash join and no window or sort.
        # DISTINCT: an interrupted compact() may have left a frame in two part files.
        # The cast gives back the fixed-size list that Parquet stored as a plain list;
        # {size} is an int computed from the stored map shape, not user input.
        attention = f", f.attention::FLOAT[{int(size)}] AS attention" if maps else ""
        tbl = self._query(f"""
            WITH sel AS (
                SELECT r.ord, v.extraction_id, v.n_frames AS cnt
                FROM _ids AS r JOIN videos AS v ON v.video_id = r.video_id
                WHERE v.model = $model AND v.sampling = $sampling),
            pos AS (
                SELECT extraction_id, frame_index,
                       row_number() OVER (PARTITION BY extraction_id ORDER BY frame_index) - 1 AS pos
                FROM (SELECT DISTINCT extraction_id, frame_index FROM frames_all
                      WHERE extraction_id IN (SELECT extraction_id FROM sel))),
            pick AS (
                SELECT s.ord * $t + k.range AS dest, p.extraction_id, p.frame_index
                FROM sel AS s CROSS JOIN range($t) AS k
                JOIN pos AS p ON p.extraction_id = s.extraction_id
                 AND p.pos = CASE WHEN $t = 1 THEN s.cnt // 2
                                  ELSE (2 * k.range * (s.cnt - 1) + ($t - 1)) // (2 * ($t - 1)) END)
            SELECT pick.dest, f.score{attention}
            FROM frames_all AS f
            JOIN pick ON f.extraction_id = pick.extraction_id AND f.frame_index = pick.frame_index""",
                          {"model": model, "sampling": sampling, "t": t}, refresh=False, _ids=req)
        # Rows come in storage order: each goes to row `dest` (= ord * T + k) of the output.
        # A frame left twice by an interrupted compact() fills the same row twice.
        dest = tbl["dest"].to_numpy()
        filled = np.zeros(n * t, dtype=bool)
        filled[dest] = True
        if not filled.all():
            raise StoreError(f"found frames for {int(filled.sum())} of {n} videos x {t} frames; "
                             "frames are missing from the store, or it changed during the read")
        scores = np.empty(n * t, dtype=np.float32)
        scores[dest] = tbl["score"].to_numpy()
        if not maps:
            return scores.reshape(n, t), None
        col = tbl["attention"]
        out = np.empty((n * t, size), dtype=np.float32)
        for chunk, rows in zip(col.chunks, _split(dest, [len(c) for c in col.chunks])):
            # a zero-copy numpy view of each Arrow chunk, scattered straight into place
            out[rows] = chunk.flatten().to_numpy(zero_copy_only=True).reshape(-1, size)
        return scores.reshape(n, t), out.reshape(n, t, *shape)

    def labels(self, ids=None, target: str = "short") -> np.ndarray:
        """Memorability labels of videos, aligned to ``ids``.

        Parameters
        ----------
        ids : sequence of str, default=None
            Video ids; None means :meth:`labelled_ids` of the target.
        target : {"short", "long"}, default="short"

        Returns
        -------
        numpy.ndarray of float64

        Raises
        ------
        MissingVideosError
            Some ids have no labels.
        StoreError
            Some ids have no label for this target (long-term is often missing).

        Examples
        --------
        >>> fs.labels(["video10"], target="short")  # doctest: +SKIP
        array([0.95])
        """
        column = _target_column(target)
        if ids is None:
            ids = self.labelled_ids(target)
        ids_arr = _id_array(ids)
        req = pa.table({"ord": pa.array(np.arange(len(ids_arr), dtype=np.int64)), "video_id": ids_arr})
        tbl = self._query("""
            SELECT r.ord, l.video_id IS NOT NULL AS found, l.short_term, l.long_term
            FROM _ids AS r LEFT JOIN labels AS l ON l.video_id = r.video_id ORDER BY r.ord""", _ids=req)
        found = tbl["found"].to_numpy(zero_copy_only=False)
        if not found.all():
            missing = _unique_in_order(pc.filter(ids_arr, pa.array(~found)).to_pylist())
            raise MissingVideosError(f"{len(missing)} video ids have no labels in the store "
                                     f"{str(self.path)!r}: {_fmt_ids(missing)}")
        values = tbl[column].to_numpy(zero_copy_only=False).astype(np.float64)
        if np.isnan(values).any():
            bad = _unique_in_order(pc.filter(ids_arr, pa.array(np.isnan(values))).to_pylist())
            raise StoreError(f"{len(bad)} video ids have no {target}-term label: {_fmt_ids(bad)}; "
                             f"use labelled_ids({target!r}) to choose ids that have one")
        return values

    def labelled_ids(self, target: str = "short", *, extracted: bool = False, model: str | None = None,
                     sampling: str | None = None) -> np.ndarray:
        """Sorted ids of the videos that have a label for ``target`` (and, if asked, features).

        Parameters
        ----------
        target : {"short", "long"}, default="short"
        extracted : bool, default=False
            Keep only the videos that also have features of ``model`` with ``sampling``:
            the ids a pipeline can read. A labelled video that could not be decoded has
            a label but no features (the ``failures`` table says why).
        model : str, default=None
            With ``extracted=True``: the frame model (fingerprint, unique prefix or
            name); None takes the store's only one (see :meth:`resolve_model`). A
            store with no extracted videos gives an empty array.
        sampling : str, default=None
            With ``extracted=True``: the sampling key (``"frames=28"``, ``"fps=4"``);
            None takes the model's only one, and several are an error that lists them.

        Returns
        -------
        numpy.ndarray of str (object)

        Raises
        ------
        StoreError
            ``extracted=True`` and the model or sampling is ambiguous or unknown.

        Examples
        --------
        >>> fs.labelled_ids("long")[:2]  # doctest: +SKIP
        array(['video10', 'video11'], dtype=object)
        >>> ids = fs.labelled_ids("short", extracted=True)  # doctest: +SKIP
        >>> y = fs.labels(ids, target="short")  # doctest: +SKIP
        """
        column = _target_column(target)
        if not isinstance(extracted, (bool, np.bool_)):
            raise TypeError(f"extracted must be a bool; got {extracted!r}")
        if not extracted and (model is not None or sampling is not None):
            raise ValueError("model= and sampling= choose which features a video must have: "
                             "pass extracted=True with them")
        tbl = self._query("SELECT video_id, short_term, long_term FROM labels ORDER BY video_id")
        keep = pc.is_valid(tbl[column])
        keep = pc.and_(keep, pc.invert(pc.is_nan(tbl[column].fill_null(0.0))))
        ids = pc.filter(tbl["video_id"], keep)
        if extracted:
            if model is None and not self._fingerprints()[0]:
                return np.array([], dtype=object)
            model = self.resolve_model(model)
            sampling = self._resolve_sampling(model, sampling)
            have = self._query("SELECT DISTINCT video_id FROM videos WHERE model = ? AND sampling = ?",
                               [model, sampling], refresh=False)["video_id"]
            ids = pc.filter(ids, pc.is_in(ids, value_set=have))
        return np.array(ids.to_pylist(), dtype=object)

    def _damaged_parts(self, files: Iterable[str]) -> list[tuple[str, str]]:
        """``(file, reason)`` of the part files whose Parquet footer cannot be read.

        Only called after a failed query (one footer read per file): DuckDB does not
        always say which file it could not read ("Variable-length int over 10 bytes").
        """
        damaged = []
        for f in files:
            try:
                pq.read_metadata(f)
            except FileNotFoundError:
                continue  # removed by compact() since the listing; not damage
            except (OSError, pa.ArrowException) as e:
                damaged.append((f, " ".join(str(e).split())))
        return damaged

    def info(self) -> dict:
        """A summary: visible rows per table (``tables``), raw rows (``tables_all``),
        part files and bytes per table, models, and the size on disk in bytes.

        Examples
        --------
        >>> fs.info()["tables"]["videos"]  # doctest: +SKIP
        8000
        """
        self._connection()
        files = dict(self._local.files)
        tables, tables_all, nbytes = {}, {}, {}
        for table in TABLES:
            counts = self._query(f"SELECT (SELECT count(*) FROM {table}) AS visible, "
                                 f"(SELECT count(*) FROM {table}_all) AS raw").to_pylist()[0]
            tables[table], tables_all[table] = counts["visible"], counts["raw"]
            nbytes[table] = sum(_size(p) for p in files[table])
        size, temp = 0, 0
        if self.path.is_dir():
            for root, _, names in os.walk(self.path):
                for name in names:
                    size += _size(os.path.join(root, name))
                    temp += name.endswith(".parquet.tmp")
        return {"path": str(self.path), "tables": tables, "tables_all": tables_all,
                "files": {t: len(f) for t, f in files.items()}, "bytes": nbytes,
                "models": self.models(), "size_bytes": size, "temp_files": temp}

    # ------------------------------------------------------------------ maintenance
    def compact(self, tables: Sequence[str] | None = None, *,
                drop_orphans: bool = False) -> dict[str, tuple[int, int]]:
        """Rewrite each table's rows into one part file (per frame model for ``frames``).

        Superseded rows are dropped: older extractions of a video and their
        frames, older label imports, repeated model rows. ``failures`` and
        ``results`` keep every row. New part files are written first and the old
        ones deleted after, so a crash leaves the old files (plus perhaps new
        ones: rows then appear twice in the raw tables, which the views and
        ``read_arrays`` tolerate; run ``compact`` again).

        Run it when no other process reads the store: a reader that lists the
        files just before they are deleted can fail or, for the raw tables, see
        rows twice. Writers may keep running: part files written after the
        listing are not touched, and frames without a videos row (an extraction
        being written) are kept unless ``drop_orphans=True``, which removes the
        frames of interrupted writes and must only be used when no writer runs.

        Parameters
        ----------
        tables : sequence of str, default=None
            Tables to compact; None means all.
        drop_orphans : bool, default=False

        Returns
        -------
        dict
            ``{table: (part files before, part files after)}`` for the tables rewritten.

        Examples
        --------
        >>> fs.compact()  # doctest: +SKIP
        {'videos': (250, 1), 'frames': (250, 1), ...}
        """
        names = list(TABLES) if tables is None else list(tables)
        bad = [t for t in names if t not in TABLES]
        if bad:
            raise ValueError(f"The 'tables' parameter of FeatureStore.compact must list tables among "
                             f"{set(TABLES)}. Got {bad!r} instead.")
        con = self._connection()
        snapshot = dict(self._local.files)
        new, old, report = [], [], {}
        try:
            for table in ("frames", "videos", "models", "labels", "failures", "results"):
                files = snapshot[table]
                if table not in names or not files:
                    continue
                if table == "frames":
                    jobs = self._frame_compaction_jobs(drop_orphans)
                else:
                    visible = _VIEWS[table] if table in ("videos", "models", "labels") else \
                        f"SELECT * EXCLUDE (filename) FROM {table}_all"
                    jobs = [(visible, None, SCHEMAS[table])]
                    if len(files) == 1:
                        counts = con.sql(f"SELECT (SELECT count(*) FROM ({visible})) = "
                                         f"(SELECT count(*) FROM {table}_all)").fetchall()[0]
                        if counts[0]:
                            continue
                written = 0
                for query, params, schema in jobs:
                    reader = con.sql(query, params=params).to_arrow_reader(batch_size=8192)
                    batches = (b.select(schema.names).cast(schema) for b in reader)
                    part = self._write_part(table, batches, schema)
                    if part is not None:
                        new.append(part)
                        written += 1
                old.extend(files)
                report[table] = (len(files), written)
        except BaseException:
            for part in new:  # the old files are untouched: undo
                part.unlink(missing_ok=True)
            raise
        for path in old:
            Path(path).unlink(missing_ok=True)
        self._local.files = {}
        return report

    def _frame_compaction_jobs(self, drop_orphans: bool):
        con = self._connection()
        shapes = self._map_shapes()
        jobs = []
        models = [r[0] for r in con.sql("SELECT DISTINCT model FROM frames_all ORDER BY 1").fetchall()]
        keep = "extraction_id IN (SELECT extraction_id FROM videos)"
        if not drop_orphans:
            keep += " OR extraction_id NOT IN (SELECT extraction_id FROM videos_all)"
        dupes = con.sql("SELECT count(*) <> count(DISTINCT (extraction_id, frame_index)) "
                        "FROM frames_all").fetchall()[0][0]
        # the window costs memory, so only when an interrupted compaction left duplicates
        dedup = " QUALIFY row_number() OVER (PARTITION BY extraction_id, frame_index) = 1" if dupes else ""
        for model in models:
            if model not in shapes:
                raise StoreError(f"frames of model {model!r} have no models row; cannot compact them")
            size = math.prod(shapes[model])
            schema = SCHEMAS["frames"].set(7, pa.field("attention", _attention_type(size)))
            query = (f"SELECT * EXCLUDE (filename) FROM frames_all WHERE model = $model AND ({keep})"
                     + dedup)
            jobs.append((query, {"model": model}, schema))
        return jobs


# ---------------------------------------------------------------------- helpers
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


def _split(values: np.ndarray, lengths: Sequence[int]) -> list[np.ndarray]:
    return np.split(values, np.cumsum(lengths)[:-1])


def _size(path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _target_column(target: str) -> str:
    if target not in _TARGETS:
        raise ValueError(f"The 'target' parameter must be a str among {{'long', 'short'}}. Got {target!r} instead.")
    return _TARGETS[target]


def _id_array(ids) -> pa.Array:
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


_FINGERPRINTS_SQL = """
    SELECT model, max(name) AS name, bool_or(extracted) AS extracted FROM (
        SELECT model, name, false AS extracted FROM models
        UNION ALL SELECT DISTINCT model, NULL, true FROM videos)
    GROUP BY model ORDER BY model"""


def _fingerprint_lists(rows: list[dict]) -> tuple[list[str], dict[str, str]]:
    """(fingerprints with extracted videos, {fingerprint: name}) from the rows of _FINGERPRINTS_SQL."""
    return [r["model"] for r in rows if r["extracted"]], {r["model"]: r["name"] for r in rows}


def _pick_model(path: Path, extracted: list[str], names: dict[str, str], model: str | None) -> str:
    """``FeatureStore.resolve_model`` on the fingerprints of one listing of the store."""

    def listing(fps):
        return ", ".join(f"{f} ({names.get(f) or '?'})" for f in fps)

    if model is None:
        if len(extracted) == 1:
            return extracted[0]
        if not extracted:
            raise StoreError(f"the store {str(path)!r} holds no extracted videos; "
                             "run `amnetvid extract` first")
        raise StoreError(f"the store {str(path)!r} holds {len(extracted)} frame models; pass "
                         f"model= (a fingerprint, a unique prefix or a name) among: {listing(extracted)}")
    if not isinstance(model, str):
        raise TypeError(f"model must be a str or None; got {type(model).__name__}")
    if model in names:
        return model
    for matches, how in (([f for f in names if f.startswith(model)], "fingerprint prefix"),
                         ([f for f, n in names.items() if n == model], "model name")):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise StoreError(f"the {how} {model!r} matches {len(matches)} frame models; give a "
                             f"longer fingerprint among: {listing(matches)}")
    raise StoreError(f"no frame model {model!r} in the store {str(path)!r}; known: "
                     f"{listing(sorted(names)) or 'none'}")


def _pick_sampling(path: Path, model: str, samplings: list[str], sampling: str | None) -> str:
    """The sampling key to read, among the (sorted) samplings of ``model``'s visible videos."""
    if sampling is None and len(samplings) == 1:
        return samplings[0]
    if sampling is not None and sampling in samplings:
        return sampling
    if not samplings:
        raise StoreError(f"frame model {model!r} has no extracted videos in {str(path)!r}")
    if sampling is None:
        raise StoreError(f"frame model {model!r} has videos extracted with {len(samplings)} samplings; "
                         f"pass sampling= among {samplings}")
    raise StoreError(f"no videos extracted by frame model {model!r} with sampling {sampling!r}; "
                     f"available: {samplings}")


def _no_shape_error(model: str) -> StoreError:
    return StoreError(f"frame model {model!r} has extractions but no models row; its map shape is unknown")


def _missing_error(path: Path, ids_arr: pa.Array, found: np.ndarray, model: str,
                   sampling: str) -> MissingVideosError:
    missing = _unique_in_order(pc.filter(ids_arr, pa.array(~found)).to_pylist())
    return MissingVideosError(
        f"{len(missing)} of {len(_unique_in_order(ids_arr.to_pylist()))} requested video ids are not in "
        f"the store {str(path)!r} for frame model {model!r} with sampling {sampling!r}: "
        f"{_fmt_ids(missing)}")


def _frames_wanted(stored: np.ndarray, n_frames: int | None, n: int, ids_arr: pa.Array | None = None) -> int:
    """T, the frames per video to return, given the stored frame counts of the videos asked for.

    More frames than a video has stored is an error: repeating frames would feed a
    sequence model a clip it never saw.
    """
    if n_frames is not None:
        if n and int(stored.min()) < n_frames:
            short = np.flatnonzero(stored < n_frames)
            fewest = int(stored.min())
            named = "" if ids_arr is None else ": " + _fmt_ids(
                _unique_in_order(ids_arr.take(pa.array(short[:50])).to_pylist()))
            raise StoreError(
                f"n_frames={int(n_frames)} asks for more frames than {len(short)} of the {n} requested videos "
                f"have stored (fewest: {fewest}){named}; pass n_frames <= {fewest}, or extract again with "
                f"--frames {int(n_frames)} or more")
        return int(n_frames)
    counts = np.unique(stored)
    if len(counts) > 1:
        raise StoreError(
            f"the requested videos have different numbers of stored frames ({len(counts)} distinct: "
            f"{', '.join(map(str, counts[:5]))}{'...' if len(counts) > 5 else ''}); pass n_frames=T to "
            "pick T frames per video")
    return int(counts[0]) if n else 0


def _positions(counts: np.ndarray, t: int) -> np.ndarray:
    """[n, t] positions among the stored frames of each video: round(k * (cnt - 1) / (t - 1))
    rounding halves up (t=1: the middle one), as the SQL of ``_read_arrays_sql`` computes them."""
    cnt = counts.astype(np.int64)[:, None]
    if t == 1:
        return cnt // 2
    k = np.arange(t, dtype=np.int64)[None, :]
    return (2 * k * (cnt - 1) + (t - 1)) // (2 * (t - 1))


# ---------------------------------------------------------------------- array cache
_CACHE_ENV = "AMNETVID_CACHE_BYTES"
_CACHE_DEFAULT_BYTES = 2 << 30  # 2 GiB
_CACHE_SNAPSHOTS = 16  # store listings whose metadata is kept (a few kB to a few MB each)
# A first read of fewer than 1/_CACHE_SMALL_READ of a (model, sampling)'s videos goes
# through SQL (which decodes only those) instead of decoding them all; a second one fills the cache.
_CACHE_SMALL_READ = 8


def _cache_budget() -> int:
    """Bytes of decoded frames the array cache may hold (``AMNETVID_CACHE_BYTES``; 0 = off)."""
    raw = os.environ.get(_CACHE_ENV, "").strip()
    if not raw:
        return _CACHE_DEFAULT_BYTES
    try:
        value = float(raw)  # "2000000000" and "2e9" alike
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise StoreError(f"the environment variable {_CACHE_ENV} must be a number of bytes >= 0 (0 turns "
                         f"the array cache of FeatureStore.read_arrays off); got {raw!r}")
    return int(value)


class _Videos:
    """The visible extractions of one (model, sampling) in a snapshot, sorted by video_id."""

    __slots__ = ("ids", "eids", "n_frames")

    def __init__(self, ids: pa.Array, eids: pa.Array, n_frames: np.ndarray):
        self.ids, self.eids, self.n_frames = ids, eids, n_frames


class _Snapshot:
    """What read_arrays needs to know of one listing of a store's ``videos``,
    ``frames`` and ``models`` part files, and the frames decoded from it.

    ``key`` is (store path, the three listings). Part files never change once in
    place, so everything here stays true for as long as the listing is the same.
    ``frames`` maps (model, sampling) to a :class:`_Frames`; the cache's lock guards it.
    """

    __slots__ = ("key", "extracted", "names", "shapes", "samplings", "videos", "frames", "small_reads")

    def __init__(self, key, fingerprints: list[dict], shapes: list[dict], videos: pa.Table):
        self.key = key
        self.extracted, self.names = _fingerprint_lists(fingerprints)
        self.shapes = {r["model"]: tuple(r["map_shape"]) for r in shapes}
        self.videos: dict[tuple[str, str], _Videos] = {}
        self.samplings: dict[str, list[str]] = {}
        self.frames: dict[tuple[str, str], _Frames] = {}
        self.small_reads: set[tuple[str, str]] = set()  # pairs read once for a few ids, through SQL
        # videos comes sorted by (model, sampling, video_id): cut it where the pair changes
        pairs = list(zip(videos["model"].to_pylist(), videos["sampling"].to_pylist()))
        cuts = [0] + [i for i in range(1, len(pairs)) if pairs[i] != pairs[i - 1]] + [len(pairs)]
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            if lo == hi:
                continue
            part = videos.slice(lo, hi - lo)
            model, sampling = pairs[lo]
            self.videos[(model, sampling)] = _Videos(
                part["video_id"].combine_chunks(), part["extraction_id"].combine_chunks(),
                part["n_frames"].to_numpy().astype(np.int64))
            self.samplings.setdefault(model, []).append(sampling)
        for values in self.samplings.values():
            values.sort()


class _Frames:
    """The decoded frames of every visible video of one (model, sampling).

    Video ``v`` (its index in ``_Videos.ids``) has the scores of its stored
    frames, in frame_index order, at ``scores[start[v] : start[v] + count[v]]``.
    ``maps`` holds the attention maps in one or more layouts: ``"all"``, every
    stored frame in the order of ``scores``; an int ``T``, ``[videos, T, size]``
    with the T frames that ``n_frames=T`` picks for each video (since the picked
    positions depend only on the frame count and T, a read with ``n_frames=T``
    needs nothing else, and it holds T/28 of the maps of a 28-frame extraction).
    ``complete[v]`` is False when a video's frames did not all turn up
    (read_arrays then takes the SQL path, which reports it).
    """

    __slots__ = ("start", "count", "complete", "scores", "maps")

    @property
    def base_nbytes(self) -> int:
        return sum(getattr(self, a).nbytes for a in ("start", "count", "complete", "scores"))

    def take(self, v: np.ndarray, t: int, every_frame: bool, shape: tuple[int, ...], maps):
        """Scores (and maps, from the layout ``maps`` given) of videos ``v``, T = ``t`` each."""
        n = len(v)
        pos = np.arange(t, dtype=np.int64)[None, :] if every_frame else _positions(self.count[v], t)
        flat = (self.start[v][:, None] + pos).ravel()
        scores = self.scores[flat].reshape(n, t)
        if maps is None:
            return scores, None
        size = math.prod(shape)
        out = np.empty((n, t, size), dtype=np.float32)
        # the rows are known to be in range: "clip" spares numpy a buffered copy
        if maps.ndim == 3:  # the layout of T picked frames per video (every_frame: the count is T)
            np.take(maps, v, axis=0, out=out, mode="clip")
        else:
            np.take(maps, flat, axis=0, out=out.reshape(n * t, size), mode="clip")
        return scores, out.reshape(n, t, *shape)


def _snapshot_key(path: Path, listing: Mapping[str, tuple[str, ...]]):
    return (str(path), listing["videos"], listing["frames"], listing["models"])


def _may_hold(row_group, columns: dict[str, int], values: Mapping[str, str]) -> bool:
    """False when a row group's min/max statistics rule out every value asked for."""
    for name, value in values.items():
        i = columns.get(name)
        stats = row_group.column(i).statistics if i is not None else None
        if stats is None or not stats.has_min_max:
            continue
        lo, hi = stats.min, stats.max
        if isinstance(lo, bytes):
            lo, hi = lo.decode("utf-8", "replace"), hi.decode("utf-8", "replace")
        if not lo <= value <= hi:
            return False
    return True


def _frame_parts(files: Sequence[str], model: str, sampling: str) -> list[tuple[str, Any, int]]:
    """(path, footer, row group) of each row group of the frame part files that may hold
    (model, sampling): row groups whose statistics rule the pair out are skipped (a part
    file holds one model)."""
    parts = []
    for path in files:
        meta = pq.read_metadata(path)
        index = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
        parts += [(path, meta, g) for g in range(meta.num_row_groups)
                  if _may_hold(meta.row_group(g), index, {"model": model, "sampling": sampling})]
    return parts


def _read_part(part: tuple[str, Any, int], columns: list[str]) -> pa.Table:
    path, meta, group = part
    # Mapped, not read into buffers: that spares a copy of the file and much of the
    # kernel's page work. Part files are never truncated or rewritten, and what is
    # decoded is copied out before the mapping goes. One reader per call: a reader
    # is not shared between threads.
    return pq.ParquetFile(path, memory_map=True, metadata=meta).read_row_group(group, columns=columns,
                                                                               use_threads=False)


_READ_THREADS = 8  # at most this many row groups decoded at once (about 32 MB of raw data each)


def _in_parallel(func, items: Sequence) -> list:
    """``[func(x) for x in items]`` on a few threads (pyarrow and numpy copies release the GIL)."""
    workers = min(len(items), os.cpu_count() or 1, _READ_THREADS)
    if workers <= 1:
        return [func(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(func, items))


def _list_values(chunk: pa.Array, size: int, model: str) -> np.ndarray:
    """A zero-copy [rows, size] float32 view of a chunk of attention lists."""
    typ = chunk.type
    ok = chunk.null_count == 0 and (
        (pa.types.is_fixed_size_list(typ) and typ.list_size == size)
        or ((pa.types.is_list(typ) or pa.types.is_large_list(typ))
            and pc.all(pc.equal(pc.list_value_length(chunk), size)).as_py() is not False))
    if ok and typ.value_type == pa.float32():
        try:
            return chunk.flatten().to_numpy(zero_copy_only=True).reshape(-1, size)
        except (pa.ArrowException, ValueError):
            pass  # null floats
    raise StoreError(f"the attention maps of frame model {model!r} in the store are not lists of {size} "
                     f"floats without missing values; got {typ}")


def _maps_nbytes(videos: _Videos, size: int, layout) -> int:
    frames = int(videos.n_frames.sum()) if layout == "all" else len(videos.ids) * int(layout)
    return frames * size * 4


def _load_frames(files: Sequence[str], videos: _Videos, model: str, sampling: str, size: int,
                 layout) -> _Frames:
    """Decode the frames of every video in ``videos`` from the frame part files ``files``:
    the scores of every frame, and the maps in ``layout`` ("all", an int T, or None for none).

    The narrow columns are read first, to know which rows go where; then the
    maps of each row group are decoded (several row groups at once) and only the
    rows the layout needs are copied into their place, so at most a few row
    groups' decoded Arrow buffers are alive at a time.
    """
    parts = _frame_parts(files, model, sampling)
    narrow = _in_parallel(lambda part: _read_part(part, ["extraction_id", "frame_index", "score"]), parts)
    nv = len(videos.ids)
    if narrow:
        where = [pc.index_in(t["extraction_id"], value_set=videos.eids).fill_null(-1).to_numpy() for t in narrow]
        video = np.concatenate(where).astype(np.int64)
        index = np.concatenate([t["frame_index"].to_numpy() for t in narrow])
        score = np.concatenate([t["score"].to_numpy() for t in narrow]).astype(np.float32, copy=False)
    else:
        video, index, score = np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    # Rows of visible extractions of this (model, sampling), sorted by (video, frame_index);
    # a frame present twice (an interrupted compact()) keeps its first copy.
    rows = np.flatnonzero(video >= 0)
    rows = rows[np.lexsort((index[rows], video[rows]))]
    if len(rows) > 1:
        again = (video[rows[1:]] == video[rows[:-1]]) & (index[rows[1:]] == index[rows[:-1]])
        rows = rows[np.concatenate([[True], ~again])]
    count = np.bincount(video[rows], minlength=nv).astype(np.int64)
    entry = _Frames()
    entry.count = videos.n_frames
    entry.complete = count == videos.n_frames
    entry.start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    entry.scores = score[rows]
    entry.maps = {}
    if layout is not None:
        # (slot of the output, row of the part files) pairs: a frame fills several
        # slots when T exceeds its video's frame count.
        if layout == "all":
            slot, source = np.arange(len(rows), dtype=np.int64), rows
            out = np.empty((len(rows), size), dtype=np.float32)
        else:
            t = int(layout)
            ok = np.flatnonzero(entry.complete)  # the slots of incomplete videos stay unfilled, unused
            picked = entry.start[ok][:, None] + _positions(entry.count[ok], t)
            slot = (ok[:, None] * t + np.arange(t)).ravel()
            source = rows[picked.ravel()]
            out = np.empty((nv, t, size), dtype=np.float32)
        order = np.argsort(source, kind="stable")
        slot, source = slot[order], source[order]
        first = np.concatenate([[0], np.cumsum([t.num_rows for t in narrow])]).astype(np.int64)
        flat_out = out.reshape(-1, size)

        def fill(j):
            lo, hi = np.searchsorted(source, [first[j], first[j + 1]])
            if lo == hi:
                return
            table = _read_part(parts[j], ["attention"])
            offset = first[j]
            for chunk in table["attention"].chunks:
                a, b = np.searchsorted(source[lo:hi], [offset, offset + len(chunk)]) + lo
                if a < b:
                    flat_out[slot[a:b]] = _list_values(chunk, size, model)[source[a:b] - offset]
                offset += len(chunk)

        _in_parallel(fill, range(len(parts)))
        entry.maps[layout] = out
    for value in (entry.start, entry.count, entry.complete, entry.scores, *entry.maps.values()):
        value.flags.writeable = False  # shared by every reader in the process
    return entry


class _ArrayCache:
    """Decoded frames per (store listing, model, sampling), least recently used
    dropped first beyond ``AMNETVID_CACHE_BYTES``. One per process.

    The units counted and dropped are (snapshot key, (model, sampling), part),
    part being "scores" (the _Frames entry: dropping it drops its maps too) or a
    maps layout ("all" or T).
    """

    def __init__(self):
        self._snaps: OrderedDict = OrderedDict()  # snapshot key -> _Snapshot
        self._lru: OrderedDict = OrderedDict()  # (snapshot key, (model, sampling), part) -> bytes
        self._reset_locks()

    def _reset_locks(self):
        self._lock = threading.Lock()
        self._building: dict = {}  # (snapshot key, (model, sampling)) -> Lock
        self._pid = os.getpid()

    def _after_fork(self):
        # A forked child starts empty with fresh locks: another thread of the parent may
        # have held a lock at the fork, and the child builds its own entries.
        self._snaps, self._lru = OrderedDict(), OrderedDict()
        self._reset_locks()

    def clear(self) -> None:
        """Drop every cached array (tests and benchmarks use it for a cold read)."""
        with self._lock:
            self._snaps.clear()
            self._lru.clear()

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(self._lru.values())

    # -- snapshots
    def snapshot(self, fs: FeatureStore) -> _Snapshot | None:
        """What the store's current listing holds (built on a miss); None when it keeps changing."""
        key = _snapshot_key(fs.path, fs._list_parts())
        with self._lock:
            snap = self._snaps.get(key)
            if snap is not None:
                self._snaps.move_to_end(key)
                return snap
        snap = self._build_snapshot(fs)
        if snap is None:
            return None
        with self._lock:
            if snap.key in self._snaps:
                return self._snaps[snap.key]
            # older listings of the same store are stale: their entries can go
            for old in [k for k in self._snaps if k[0] == snap.key[0]]:
                self._drop_snapshot(old)
            self._snaps[snap.key] = snap
            while len(self._snaps) > _CACHE_SNAPSHOTS:
                self._drop_snapshot(next(iter(self._snaps)))
        return snap

    @staticmethod
    def _build_snapshot(fs: FeatureStore) -> _Snapshot | None:
        # The queries run on the views of one listing (refresh=False); if a part file
        # vanished meanwhile (compact), _query lists again and we start over.
        for _ in range(3):
            fs._connection()
            listing = dict(fs._local.files)
            fingerprints = fs._query(_FINGERPRINTS_SQL, refresh=False).to_pylist()
            shapes = fs._query("SELECT model, map_shape FROM models", refresh=False).to_pylist()
            videos = fs._query("SELECT model, sampling, video_id, extraction_id, n_frames FROM videos "
                               "ORDER BY model, sampling, video_id", refresh=False)
            if fs._local.files == listing:
                return _Snapshot(_snapshot_key(fs.path, listing), fingerprints, shapes, videos)
        return None  # the store keeps changing: read through SQL

    def _drop_snapshot(self, key) -> None:
        snap = self._snaps.pop(key)
        for unit in [u for u in self._lru if u[0] == key]:
            del self._lru[unit]
        snap.frames.clear()

    # -- frames
    def _drop(self, unit) -> None:
        """Drop one unit (lock held)."""
        self._lru.pop(unit, None)
        key, pair, part = unit
        snap = self._snaps.get(key)
        entry = snap.frames.get(pair) if snap is not None else None
        if entry is None:
            return
        if part == "scores":
            del snap.frames[pair]
            for other in [u for u in self._lru if u[:2] == unit[:2]]:
                del self._lru[other]
        else:
            entry.maps.pop(part, None)

    def _evict(self, budget: int, keep=()) -> None:
        """Drop least recently used units until the rest fits in ``budget`` bytes (lock held)."""
        total = sum(self._lru.values())
        for unit in list(self._lru):
            if total <= budget:
                break
            if unit in keep or unit not in self._lru:
                continue
            before = sum(self._lru.values())
            self._drop(unit)
            total -= before - sum(self._lru.values())

    def _touch(self, name, part) -> None:
        for unit in ((*name, "scores"), (*name, part)):
            if unit in self._lru:
                self._lru.move_to_end(unit)

    @staticmethod
    def _serving(entry: _Frames | None, layout, t: int):
        """The part of ``entry`` ("scores", "all" or T) that answers a read needing
        ``layout``, and its maps; (None, None) when there is none."""
        if entry is None:
            return None, None
        if layout is None:
            return "scores", None
        for part in (t, "all"):  # a T layout also answers n_frames=None when every count is T
            if part in entry.maps:
                return part, entry.maps[part]
        return None, None

    def _frames(self, snap: _Snapshot, model: str, sampling: str, size: int, layout, t: int, budget: int,
                n_ids: int):
        """(entry, maps) answering a read needing ``layout`` (None: scores only, "all", T),
        decoding what is missing; None when the cache cannot answer."""
        pair = (model, sampling)
        name = (snap.key, pair)
        with self._lock:
            entry = snap.frames.get(pair)
            part, maps = self._serving(entry, layout, t)
            if part is not None:
                self._touch(name, part)
                return entry, maps
            if entry is None and n_ids * _CACHE_SMALL_READ < len(snap.videos[pair].ids) \
                    and pair not in snap.small_reads:
                snap.small_reads.add(pair)
                return None
            building = self._building.setdefault(name, threading.Lock())
        with building:  # one thread decodes; the others wait for its result
            try:
                with self._lock:
                    entry = snap.frames.get(pair)
                    part, maps = self._serving(entry, layout, t)
                    if part is not None:
                        return entry, maps
                videos = snap.videos[pair]
                need = 0 if entry is not None else 4 * int(videos.n_frames.sum()) + 17 * len(videos.ids)
                need += _maps_nbytes(videos, size, layout) if layout is not None else 0
                if need > budget:
                    return None  # would not fit: read through SQL, which reads only the rows asked for
                with self._lock:
                    # make room first: decoding is the peak of memory
                    self._evict(budget - need, keep={(*name, "scores")})
                try:
                    new = _load_frames(snap.key[2], videos, model, sampling, size, layout)
                except FileNotFoundError:
                    return None  # compact() removed a part file: read through SQL, which lists again
                with self._lock:
                    entry = snap.frames.get(pair)
                    if entry is None:
                        entry = new
                        if snap.key in self._snaps:
                            snap.frames[pair] = entry
                            self._lru[(*name, "scores")] = entry.base_nbytes
                    elif layout is not None:
                        entry.maps[layout] = new.maps[layout]
                    if layout is not None and snap.frames.get(pair) is entry:
                        self._lru[(*name, layout)] = new.maps[layout].nbytes
                    self._touch(name, "scores" if layout is None else layout)
                    self._evict(budget, keep={(*name, "scores"), (*name, layout)})
                return entry, (new.maps[layout] if layout is not None else None)
            finally:
                with self._lock:
                    self._building.pop(name, None)

    def read(self, fs: FeatureStore, ids_arr: pa.Array, model, n_frames, maps: bool, sampling, budget: int):
        """``read_arrays`` from the cache; None when it cannot answer (read through SQL)."""
        if self._pid != os.getpid():  # forked by other means than os.fork
            self._after_fork()
        snap = self.snapshot(fs)
        if snap is None:
            return None
        model = _pick_model(fs.path, snap.extracted, snap.names, model)
        sampling = _pick_sampling(fs.path, model, snap.samplings.get(model, []), sampling)
        shape = snap.shapes.get(model)
        if shape is None:
            raise _no_shape_error(model)
        videos = snap.videos[(model, sampling)]
        n = len(ids_arr)
        where = pc.index_in(ids_arr, value_set=videos.ids)
        found = where.is_valid().to_numpy(zero_copy_only=False)
        if not found.all():
            raise _missing_error(fs.path, ids_arr, found, model, sampling)
        v = where.to_numpy(zero_copy_only=False).astype(np.int64)
        t = _frames_wanted(videos.n_frames[v], n_frames, n, ids_arr)
        if n == 0:
            return (np.zeros((0, t), np.float32), np.zeros((0, t, *shape), np.float32) if maps else None)
        layout = None if not maps else ("all" if n_frames is None else t)
        got = self._frames(snap, model, sampling, math.prod(shape), layout, t, budget, n)
        if got is None or not got[0].complete[v].all():
            return None
        entry, arr = got
        return entry.take(v, t, n_frames is None, shape, arr if maps else None)


_CACHE = _ArrayCache()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_CACHE._after_fork)


def _check_columns(table: str, given: set) -> None:
    unknown = sorted(given - set(SCHEMAS[table].names))
    if unknown:
        raise StoreError(f"unknown column(s) {unknown} for table {table!r}; its columns are "
                         f"{SCHEMAS[table].names}")


def _parse(query: str) -> list:
    try:
        return duckdb.extract_statements(query)
    except duckdb.ParserException as e:
        raise StoreError(f"SQL syntax error: {e}") from None
    except duckdb.Error as e:
        raise StoreError(f"cannot parse the query: {e}") from None
    except ValueError:
        # DuckDB parsed a statement of a kind its Python client has no name for
        # (UPDATE EXTENSIONS, for one): not a query.
        raise ReadOnlyQueryError("FeatureStore.sql runs read-only queries only; this statement is not "
                                 "a SELECT") from None


def _check_read_only(statement) -> None:
    kind = statement.type
    if kind == duckdb.StatementType.SELECT:
        return
    if kind == duckdb.StatementType.EXPLAIN:
        # EXPLAIN ANALYZE runs its statement: the explained statement must be a query too.
        m = _EXPLAIN_RE.match(statement.query)
        inner = _parse(m.group(1)) if m else []
        if len(inner) == 1 and inner[0].type == duckdb.StatementType.SELECT:
            return
    text = " ".join(statement.query.split())
    text = text if len(text) <= 60 else text[:57] + "..."
    raise ReadOnlyQueryError(
        f"FeatureStore.sql runs read-only queries only (SELECT, WITH, FROM, VALUES, DESCRIBE, SHOW, "
        f"SUMMARIZE, EXPLAIN); refused a {kind.name} statement: {text!r}. The store is written by "
        "`amnetvid extract` and `amnetvid labels import`, never by SQL."
    )
