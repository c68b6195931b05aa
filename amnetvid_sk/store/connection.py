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
import threading
from pathlib import Path
from typing import Iterable

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StoreError
from .schema import SCHEMAS, TABLES, duck_type, unique_in_order

__all__ = ["Connection", "VIEWS", "list_parts"]

# The dedup rules of the store (store/README.md, "Deduplication on read").
VIEWS = {
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
        folder = os.path.join(path, table)
        try:
            with os.scandir(folder) as it:
                names = sorted(e.name for e in it if PART_RE.match(e.name) and e.is_file())
        except (FileNotFoundError, NotADirectoryError):
            names = []
        # os.path.join, not Path: every read_arrays lists the store
        listing[table] = tuple(os.path.join(folder, n) for n in names)
    return listing


def damaged_parts(files: Iterable[str]) -> list[tuple[str, str]]:
    """``(file, reason)`` of the part files whose Parquet footer cannot be read.

    Only called after a failed read (one footer read per file): DuckDB does not
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


def damaged_error(path: Path, damaged: list[tuple[str, str]]) -> StoreError:
    """The error naming the damaged part files (at most three) and what to do."""
    named = "; ".join(f"{f} ({why})" for f, why in damaged[:3])
    more = f" and {len(damaged) - 3} more" if len(damaged) > 3 else ""
    return StoreError(
        f"the store {str(path)!r} has {len(damaged)} damaged part file(s) that cannot be read: "
        f"{named}{more}; restore them from a copy, or move them out of the store (their rows "
        "are lost)")


class Connection:
    """The DuckDB connections of one store folder, one per thread (and per process).

    Parameters
    ----------
    path : Path
        The store folder (absolute).

    Examples
    --------
    >>> con = Connection(Path("/no/such/store"))
    >>> con.query("SELECT count(*) AS n FROM videos").to_pylist()
    [{'n': 0}]
    """

    def __init__(self, path: Path):
        self.path = path
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
        roots = unique_in_order([str(self.path), os.path.realpath(self.path)])
        con.execute("SET allowed_directories = $dirs", {"dirs": [r.rstrip(os.sep) + os.sep for r in roots]})
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        for table in TABLES:
            con.execute(f"CREATE VIEW {table}_all AS {_empty_view_sql(table)}")
        for table in TABLES:
            con.execute(f"CREATE VIEW {table} AS {VIEWS[table]}")
        return con

    def refresh(self, force: bool = False) -> duckdb.DuckDBPyConnection:
        """This thread's connection, its raw views pointed at the current listing."""
        loc = self._local
        # a forked child must not reuse its parent's connection
        if getattr(loc, "con", None) is None or loc.pid != os.getpid():
            loc.con, loc.pid, loc.files = self._open(), os.getpid(), {}
        if force:
            loc.files = {}
        for table, files in list_parts(self.path).items():
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

    def forget_listing(self) -> None:
        """Make the next query list the part files again (after ``compact`` removed some)."""
        self._local.files = {}

    def query(self, query: str, params=None, refresh: bool = True, **arrow_tables: pa.Table) -> pa.Table:
        """Run our own SQL (no read-only check) and fetch the result as Arrow.

        ``refresh=False`` keeps the views of the previous call, so that several
        queries of one read see the same files. A damaged part file is named in
        the StoreError raised.
        """
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"the store {str(self.path)!r} is a file, not a folder; give a store folder")
        try:
            for attempt in (0, 1):
                if attempt == 0 and not refresh and getattr(self._local, "con", None) is not None \
                        and self._local.pid == os.getpid():
                    con = self._local.con
                else:
                    con = self.refresh(force=attempt == 1)
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
            damaged = damaged_parts(f for files in list_parts(self.path).values() for f in files)
            if not damaged:
                raise
            raise damaged_error(self.path, damaged) from e
        raise AssertionError("unreachable")  # pragma: no cover
