"""The read-only guard of ``FeatureStore.sql``: users' SQL runs only if it is a query over the store.

Three layers, the first two before anything runs:

1. each statement's kind (``duckdb.extract_statements``): only queries (SELECT, WITH, FROM,
   VALUES, DESCRIBE, SHOW, SUMMARIZE, PIVOT, and EXPLAIN of these); one statement per call;
2. what each query reads, from DuckDB's own parse tree (``json_serialize_sql``): table
   functions only from a list that reads nothing but the catalog or its arguments
   (``range``, ``unnest``, ``duckdb_views``, ...), Parquet readers (``read_parquet``, ...)
   only with constant paths inside the store folder, and no table name that DuckDB would
   read as a file or URL (``FROM 'x.csv'``, a replacement scan). So ``read_csv``,
   ``read_text``, ``glob``, ``query()``, ``checkpoint()`` and the like are refused, also
   inside subqueries, CTEs, DESCRIBE, SUMMARIZE and EXPLAIN ANALYZE;
3. the connection itself (``connection.py``) opens no file outside the store folder (an S3
   store's none at all: pyarrow reads its objects), has external access off and its
   configuration locked.
"""

from __future__ import annotations

import json
import os
import re
from typing import Mapping, Sequence

import duckdb
import pyarrow as pa

from ..errors import ReadOnlyQueryError, StoreError
from .connection import VIEWS, Connection

__all__ = ["run_read_only"]

_EXPLAIN_RE = re.compile(r"^\s*EXPLAIN\s+(?:ANALY[SZ]E\s+)?(.*)$", re.IGNORECASE | re.DOTALL)
_KINDS = "SELECT, WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN"
_FIX = "The store is written by `amnetvid extract` and `amnetvid labels import`, never by SQL."
#: table functions that read only the catalog or their own arguments, and change nothing
SAFE_TABLE_FUNCTIONS = frozenset({
    "range", "generate_series", "unnest", "repeat", "repeat_row", "json_each", "json_tree",
    "duckdb_columns", "duckdb_constraints", "duckdb_databases", "duckdb_functions", "duckdb_indexes",
    "duckdb_keywords", "duckdb_schemas", "duckdb_tables", "duckdb_types", "duckdb_views",
    "pragma_table_info", "pragma_version", "pragma_platform", "pg_timezone_names", "icu_calendar_names",
})
#: table functions that read Parquet files: allowed on the store's own part files only
STORE_FILE_FUNCTIONS = frozenset({
    "read_parquet", "parquet_scan", "parquet_metadata", "parquet_schema", "parquet_file_metadata",
    "parquet_kv_metadata",
})
# characters of a name that DuckDB reads as a file, glob or URL when no table has that name
_FILE_LIKE = re.compile(r"[./\\:*?~\[\]{}]")


def _parse(query: str) -> list:
    try:
        return duckdb.extract_statements(query)
    except duckdb.ParserException as e:
        raise StoreError(f"SQL syntax error: {e}") from None
    except duckdb.Error as e:
        raise StoreError(f"cannot parse the query: {e}") from None


def _refuse(what: str, text: str) -> ReadOnlyQueryError:
    text = " ".join(text.split())
    text = text if len(text) <= 60 else text[:57] + "..."
    return ReadOnlyQueryError(f"FeatureStore.sql runs read-only queries ({_KINDS}) that only read the store; "
                              f"refused {what}: {text!r}. {_FIX}")


def _query_text(statement) -> str:
    """The query a statement runs (EXPLAIN's inner one), or ReadOnlyQueryError if it is no query."""
    try:
        kind = statement.type
    except ValueError:
        # DuckDB parsed a statement of a kind its Python client has no name for
        # (UPDATE EXTENSIONS, for one): not a query.
        raise _refuse("a statement of a kind that is not a query", statement.query) from None
    if kind == duckdb.StatementType.SELECT:
        return statement.query
    if kind == duckdb.StatementType.EXPLAIN:
        # EXPLAIN ANALYZE runs its statement: the explained statement must be a query too.
        m = _EXPLAIN_RE.match(statement.query)
        inner = _parse(m.group(1)) if m else []
        if len(inner) == 1:
            return _query_text(inner[0])
    raise _refuse(f"a {kind.name} statement", statement.query)


def _walk(node, refs: list) -> None:
    """The table references (FROM items) anywhere in a parse tree: subqueries, CTEs, SHOW included."""
    if isinstance(node, dict):
        # table references carry a "type" and no expression "class"
        if "class" not in node and node.get("type") in ("BASE_TABLE", "TABLE_FUNCTION", "SHOW_REF"):
            refs.append(node)
        for value in node.values():
            _walk(value, refs)
    elif isinstance(node, list):
        for value in node:
            _walk(value, refs)


def _named(expr: dict) -> bool:
    # a named parameter (union_by_name = true) parses as a comparison with a column
    return expr.get("class") == "COMPARISON" and (expr.get("left") or {}).get("class") == "COLUMN_REF"


def _positional(function: dict) -> list:
    if "arguments" in function:  # DuckDB 2: [{"name": ..., "expression": ...}]
        args = [a.get("expression") or {} for a in function["arguments"] if not a.get("name")]
    else:
        args = list(function.get("children") or [])
    return [a for a in args if not _named(a)]


def _strings(expr: dict) -> list[str] | None:
    """The constant text(s) of a path argument ('a', ['a', 'b']); None for anything computed."""
    if expr.get("class") == "CONSTANT":
        literal, value = expr.get("literal"), expr.get("value")
        if isinstance(literal, dict):  # DuckDB 2
            return [literal["text"]] if literal.get("kind") == "STRING" else None
        if isinstance(value, dict) and (value.get("type") or {}).get("id") == "VARCHAR" and not value.get("is_null"):
            return [value["value"]]
        return None
    if expr.get("class") == "FUNCTION" and expr.get("function_name") == "list_value":
        items = [_strings(a) for a in _positional(expr)]
        return None if any(i is None for i in items) else [s for i in items for s in i]
    return None


def _inside(root: str, path: str) -> bool:
    if "://" in path or path.startswith("~"):
        return False
    # DuckDB opens a relative path from the working directory
    full = os.path.realpath(os.path.join(os.getcwd(), path))
    return full == root or full.startswith(root.rstrip(os.sep) + os.sep)


def _check_sources(con: Connection, text: str) -> None:
    """Refuse a query that reads anything but the store's views, its part files and the catalog."""
    try:
        tree = json.loads(con.query("SELECT json_serialize_sql($q) AS tree", {"q": text})["tree"][0].as_py())
    except duckdb.Error as e:
        raise StoreError(f"cannot parse the query: {e}") from None
    if tree.get("error"):
        # a query the serializer cannot write out cannot be checked: not run
        raise _refuse(f"a query whose sources cannot be checked ({tree.get('error_message')})", text)
    refs = []
    _walk(tree.get("statements"), refs)
    tables = ", ".join(VIEWS)
    # an S3 store's connection reads its tables through pyarrow and no file at all
    root = None if con.remote else os.path.realpath(con.path)
    for ref in refs:
        if ref["type"] == "TABLE_FUNCTION":
            function = ref.get("function") or {}
            name = str(function.get("function_name", "")).lower()
            if name in SAFE_TABLE_FUNCTIONS:
                continue
            if name not in STORE_FILE_FUNCTIONS:
                raise _refuse(f"the table function {name}(), which reads files, runs SQL or changes state "
                              f"(queries read the store's tables: {tables}; and read_parquet() of the "
                              "store's own part files)", text)
            if root is None:
                raise _refuse(f"{name}() on an S3 store (its part files are read through its tables: "
                              f"{tables})", text)
            args = _positional(function)
            paths = _strings(args[0]) if args else None
            if not paths:
                raise _refuse(f"{name}() of a computed path (give the path of a part file as a constant)", text)
            outside = [p for p in paths if not _inside(root, p)]
            if outside:
                raise _refuse(f"{name}() of {outside[0]!r}, outside the store {root!r}", text)
        elif ref["type"] == "BASE_TABLE" or ref.get("show_type") == "SHOW":
            name = str(ref.get("table_name", ""))
            if _FILE_LIKE.search(name):
                raise _refuse(f"the table name {name!r}, which DuckDB would read as a file or URL "
                              f"(the store's tables: {tables})", text)


def run_read_only(con: Connection, query: str, params: Sequence | Mapping | None = None) -> pa.Table:
    """Run one read-only SQL query on the store's views and return the result.

    Views: ``videos``, ``frames``, ``models``, ``labels``, ``failures``,
    ``results`` (deduplicated) and the raw ``videos_all``, ``frames_all``, ...
    ``frames.attention`` is a ``FLOAT[]``; cast it (``attention::FLOAT[588]``) for
    a fixed-size list.

    Only queries run: ``SELECT``/``WITH``/``FROM``/``VALUES``, ``DESCRIBE``,
    ``SHOW``, ``SUMMARIZE``, ``PIVOT`` with an ``IN`` list, and ``EXPLAIN`` of
    these, reading the views, the catalog (``information_schema``,
    ``duckdb_views()``, ...), ``range``/``unnest``, and the store's own part files
    (``read_parquet``). Any other statement (``COPY``, ``CREATE``, ``DROP``,
    ``INSERT``, ``ATTACH``, ``SET``, ``PRAGMA``, ``INSTALL``/``LOAD``, ``EXPORT``,
    ``CALL``, ...), file reader (``read_csv``, ``read_text``, ``glob``, ...),
    ``FROM 'file.csv'`` and URL is refused before it runs. Independently, the
    connection can open no file outside the store folder and its configuration is
    locked.

    Parameters
    ----------
    con : Connection
        The store's connections.
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
        The statement is not a query, or it reads outside the store.
    StoreError
        A syntax error or a failing query (DuckDB's message is kept).

    Examples
    --------
    >>> from pathlib import Path
    >>> run_read_only(Connection(Path("/no/such/store")), "SELECT ? AS x", [1]).to_pylist()
    [{'x': 1}]
    """
    if not isinstance(query, str):
        raise TypeError(f"query must be a str; got {type(query).__name__}")
    statements = _parse(query)
    if not statements:
        raise StoreError("the query is empty; give one SELECT statement")
    texts = [_query_text(st) for st in statements]
    if len(statements) > 1:
        raise StoreError(f"give one statement at a time; got {len(statements)}")
    if params is not None and not isinstance(params, (list, tuple, dict)):
        raise TypeError(f"params must be a list, tuple or dict; got {type(params).__name__}")
    _check_sources(con, texts[0])
    try:
        return con.query(query, params)
    except duckdb.PermissionException as e:
        raise ReadOnlyQueryError(
            f"queries may only read the store's own tables (files under {str(con.path)!r}): {e}"
        ) from None
    except duckdb.Error as e:
        raise StoreError(f"query failed: {e}") from None
