"""DuckDB over the part files: one connection per thread, the views, the listing.

Each thread gets its own in-memory DuckDB connection (a connection is not safe to
share between threads), whose views are refreshed whenever the part files change.
That connection can only read files inside the store folder and its configuration
is locked. The raw views ``<table>_all`` read an explicit list of part files (a
snapshot of one listing); the visible views (``VIEWS``) deduplicate them and
never change.
"""

from __future__ import annotations

import os
import re
import shlex
import threading
from pathlib import Path
from typing import Iterable

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StoreError
from . import location
from .schema import SCHEMAS, TABLES, duck_type, unique_in_order

__all__ = ["Connection", "VIEWS", "damaged_error", "damaged_parts", "list_parts", "part_damage", "part_error"]

# The dedup rules of the store (store/README.md, "Deduplication on read").
VIEWS = {
    "videos": """
        SELECT * EXCLUDE (filename) FROM videos_all
        QUALIFY row_number() OVER (
            PARTITION BY video_id, model, sampling
            ORDER BY extracted_at DESC, filename DESC, extraction_id DESC) = 1""",
    # One part file holds all the frames (and all the embeddings) of an extraction, so the first
    # file that has an extraction's rows is taken whole; another holds them twice (an interrupted
    # compact(), killed between writing its new part and deleting the old ones; for embeddings
    # also two runs that added them at once).
    "frames": """
        SELECT * EXCLUDE (filename) FROM frames_all
        SEMI JOIN (SELECT extraction_id, min(filename) AS filename FROM frames_all
                   WHERE extraction_id IN (SELECT extraction_id FROM videos)
                   GROUP BY extraction_id) AS first USING (extraction_id, filename)""",
    "embeddings": """
        SELECT * EXCLUDE (filename) FROM embeddings_all
        SEMI JOIN (SELECT extraction_id, min(filename) AS filename FROM embeddings_all
                   WHERE extraction_id IN (SELECT extraction_id FROM videos)
                   GROUP BY extraction_id) AS first USING (extraction_id, filename)""",
    # The first row of a model wins; a later row only gives it an embedding size that the first
    # lacked (a store written before embeddings existed, then extracted with --embeddings).
    "models": """
        SELECT * EXCLUDE (filename)
            REPLACE (max(embedding_dim) OVER (PARTITION BY model) AS embedding_dim) FROM models_all
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
    # a row stored twice only by an interrupted compact(): each fold's row holds its own run id and time
    "results": "SELECT DISTINCT * EXCLUDE (filename) FROM results_all",
    "predictions": "SELECT DISTINCT * EXCLUDE (filename) FROM predictions_all",
}

PART_RE = re.compile(r"^part-.*\.parquet$")

Listing = dict  # table -> tuple of part file paths, sorted by name


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _empty_view_sql(table: str) -> str:
    # Only names and types from SCHEMAS go in here, never user input.
    cols = [f"CAST(NULL AS {duck_type(f.type)}) AS {_quote(f.name)}" for f in SCHEMAS[table]]
    cols.append("CAST(NULL AS VARCHAR) AS filename")
    return "SELECT " + ", ".join(cols) + " LIMIT 0"


def list_parts(path: str | os.PathLike, tables: Iterable[str] = TABLES) -> Listing:
    """The part files of each table (videos before frames: see ``TABLES``); no file is opened.

    Examples
    --------
    >>> list_parts("/no/such/store")["videos"]
    ()
    """
    listing = {}
    for table in tables:
        folder = location.join(path, table)
        # location.join (os.path.join for a local store), not Path: every read_arrays lists the store
        listing[table] = tuple(location.join(folder, n) for n in location.list_names(folder, PART_RE.match))
    return listing


def part_damage(file: str) -> str | None:
    """Why the part file ``file`` cannot be read whole (its footer, then every column of every
    row group decoded and checked), or None when it can.

    A file found whole is remembered by its name, size and mtime: part files never change once
    written, so a second failed query of the same process does not decode it again.

    Examples
    --------
    >>> from pathlib import Path
    >>> Path("part-1.parquet").write_bytes(b"cut short")
    9
    >>> part_damage("part-1.parquet")
    'Parquet magic bytes not found in footer. Either the file is corrupted or this is not a parquet file.'
    """
    key = (file, *location.stat(file))  # FileNotFoundError: removed by compact() since the listing; not damage
    if key in _WHOLE:
        return None
    try:
        # checksums are checked where the writer stored them
        parquet = pq.ParquetFile(location.source(file), page_checksum_verification=True)
        for g in range(parquet.num_row_groups):
            parquet.read_row_group(g, use_threads=False).validate(full=True)
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException, ValueError) as e:
        return " ".join(str(e).split())
    _WHOLE.add(key)
    return None


_WHOLE: set[tuple[str, int, int]] = set()  # part files read whole by part_damage in this process

# DuckDB errors that a query's own values raise, never a file's bytes: they need no decode of the store.
_QUERY_VALUE_ERRORS = (duckdb.ConversionException, duckdb.OutOfRangeException)


def damaged_parts(files: Iterable[str], error: BaseException | None = None) -> list[tuple[str, str]]:
    """``(file, reason)`` of the damaged part files among ``files``, after a failed read.

    Only called after a failed read, as DuckDB does not always say which file it could not read
    ("Variable-length int over 10 bytes"). The files its message names are decoded first; else
    every footer is read (a cut or empty file); else every file is decoded whole (garbage inside
    a data page), unless ``error`` came from the query's own values.
    """
    files = list(files)
    named = [f for f in files if os.path.basename(f) in str(error or "")]
    passes = [(named, part_damage), (files, _footer_damage)]
    if not isinstance(error, _QUERY_VALUE_ERRORS):
        passes.append((files, part_damage))
    for group, check in passes:
        damaged = []
        for f in group:
            try:
                why = check(f)
            except FileNotFoundError:
                continue  # removed by compact() since the listing; not damage
            if why is not None:
                damaged.append((f, why))
        if damaged:
            return damaged
    return []


def _footer_damage(file: str) -> str | None:
    try:
        pq.read_metadata(location.source(file))
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as e:
        return " ".join(str(e).split())
    return None


def damaged_error(path: Path | str, damaged: list[tuple[str, str]]) -> StoreError:
    """The one-line error naming the damaged part files (at most three) and the way out.

    Examples
    --------
    >>> err = damaged_error(Path("/data/store"), [("/data/store/videos/part-1.parquet", "cut short")])
    >>> "part-1.parquet (cut short)" in str(err), "amnetvid verify --store /data/store --repair" in str(err)
    (True, True)
    """
    named = "; ".join(f"{f} ({why})" for f, why in damaged[:3])
    more = f" and {len(damaged) - 3} more" if len(damaged) > 3 else ""
    return StoreError(
        f"the store {str(path)!r} has {len(damaged)} damaged part file(s) that cannot be read: "
        f"{named}{more}; run `amnetvid verify --store {shlex.quote(str(path))} --repair` "
        "(or FeatureStore.verify(repair=True)) to move them into the store's quarantine folder "
        "(the next `amnetvid extract` redoes their videos), or restore them from a copy")


def part_error(file: str, error: BaseException) -> BaseException:
    """What to raise when pyarrow failed on the part file ``file`` (the array reads of scan.py):
    the damaged-file error when the file is damaged, else ``error`` itself."""
    try:
        why = part_damage(file)
    except FileNotFoundError:
        return error
    if why is None:
        return error
    return damaged_error(os.path.dirname(os.path.dirname(file)), [(file, why)])  # <store>/<table>/<part>


class Connection:
    """The DuckDB connections of one store folder, one per thread (and per process).

    Parameters
    ----------
    path : Path or str
        The store folder (absolute), or an S3 store's ``s3://bucket/prefix``
        (see :func:`.location.store_root`).

    Examples
    --------
    >>> con = Connection(Path("/no/such/store"))
    >>> con.query("SELECT count(*) AS n FROM videos").to_pylist()
    [{'n': 0}]
    """

    def __init__(self, path: Path | str):
        self.path = path
        self.remote = location.is_remote(path)
        self._local = threading.local()

    @property
    def files(self) -> Listing:
        """The listing this thread's views show (empty before the first query)."""
        return dict(getattr(self._local, "files", {}))

    def close(self) -> None:
        """Close this thread's connection (a later query opens a new one)."""
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
        self._local.con = None

    def _open(self) -> duckdb.DuckDBPyConnection:
        # temp_directory '' keeps DuckDB from spilling into the working directory.
        con = duckdb.connect(":memory:", config={
            "autoinstall_known_extensions": False, "autoload_known_extensions": False, "temp_directory": "",
        })
        # Part files never change once written (new data gets new names), so caching
        # their Parquet footers is safe and saves re-reading them at every query.
        con.execute("SET parquet_metadata_cache = true")
        # DuckDB prints a progress bar to stdout for a query over 2 s (a large store's verify or sql):
        # it would end up in `amnetvid sql --format csv` output
        con.execute("SET enable_progress_bar = false")
        # an S3 store's tables are read through Arrow datasets (refresh): its connection opens no file at all
        roots = [] if self.remote else unique_in_order([str(self.path), os.path.realpath(self.path)])
        con.execute("SET allowed_directories = $dirs", {"dirs": [r.rstrip(os.sep) + os.sep for r in roots]})
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        for table in TABLES:
            con.execute(f"CREATE VIEW {table}_all AS {_empty_view_sql(table)}")
        for table in TABLES:
            con.execute(f"CREATE VIEW {table} AS {VIEWS[table]}")
        return con

    def refresh(self, force: bool = False, tables: Iterable[str] = TABLES) -> duckdb.DuckDBPyConnection:
        """This thread's connection, its raw views pointed at the current listing.

        ``tables`` lists and binds only those tables (a writer's look at the small ``models``
        table need not list and bind the thousands of parts of ``frames``); the others keep the
        views of an earlier listing until a refresh of all tables.
        """
        loc = self._local
        # a forked child must not reuse its parent's connection
        if getattr(loc, "con", None) is None or loc.pid != os.getpid():
            loc.con, loc.pid, loc.files = self._open(), os.getpid(), {}
        if force:
            loc.files = {}
        for table, files in list_parts(self.path, tables).items():
            if loc.files.get(table) == files:
                continue
            if files:
                # An explicit file list (not a glob) makes the view a snapshot of this listing.
                try:
                    if self.remote:  # DuckDB reads S3 through pyarrow: no extension to load
                        rel = loc.con.from_arrow(location.table_dataset(files, SCHEMAS[table]))
                    else:
                        rel = loc.con.read_parquet(list(files), union_by_name=True, filename=True)
                except duckdb.Error as e:  # the footers are read here: a cut or empty part file
                    damaged = damaged_parts(files, e)
                    if not damaged:
                        raise
                    raise damaged_error(self.path, damaged) from e
                rel.create_view(f"{table}_all", replace=True)
            else:
                loc.con.execute(f"CREATE OR REPLACE VIEW {table}_all AS {_empty_view_sql(table)}")
            loc.files[table] = files
        return loc.con

    def forget_listing(self) -> None:
        """Make the next query list the part files again (after ``compact`` removed some)."""
        self._local.files = {}

    def query(self, query: str, params=None, refresh: bool = True, tables: Iterable[str] = TABLES,
              **arrow_tables: pa.Table) -> pa.Table:
        """Run our own SQL (no read-only check) and fetch the result as Arrow.

        ``refresh=False`` keeps the views of the previous call, so that several
        queries of one read see the same files; ``tables`` refreshes only those
        (the query must read no other). A damaged part file is named in the
        StoreError raised.
        """
        if not self.remote and self.path.exists() and not self.path.is_dir():
            raise StoreError(f"the store {str(self.path)!r} is a file, not a folder; give a store folder")
        # A compact() beside this read deletes the parts it rewrote table by table: locally the
        # window is a few unlinks wide (one retry), on S3 a request per part (a retry per table).
        attempts = len(TABLES) + 1 if self.remote else 2
        try:
            for attempt in range(attempts):
                if attempt == 0 and not refresh and getattr(self._local, "con", None) is not None \
                        and self._local.pid == os.getpid():
                    con = self._local.con
                else:
                    con = self.refresh(force=attempt >= 1, tables=tables)
                for name, tbl in arrow_tables.items():
                    con.register(name, tbl)
                try:
                    return con.sql(query, params=params).to_arrow_table()
                except duckdb.IOException:
                    # a part file listed a moment ago was removed (by compact): list again
                    if attempt == attempts - 1:
                        raise
                except duckdb.Error:
                    # pyarrow's scan of a removed object fails as another error: list again if the
                    # listing changed
                    if attempt == attempts - 1 or not self.remote or all(
                            self._local.files.get(t) == f for t, f in list_parts(self.path, tables).items()):
                        raise
                finally:
                    for name in arrow_tables:
                        con.unregister(name)
        except (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException):
            raise  # the SQL text is at fault, not a file (sql() says so)
        except duckdb.Error as e:
            damaged = damaged_parts((f for files in list_parts(self.path).values() for f in files), e)
            if not damaged:
                raise
            raise damaged_error(self.path, damaged) from e
        raise AssertionError("unreachable")  # pragma: no cover
