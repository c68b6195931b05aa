"""The read-only guard of ``FeatureStore.sql``: users' SQL runs only if it is a query.

Two layers: each statement's kind is checked with ``duckdb.extract_statements``
before anything runs, and the connection itself (``connection.py``) can open no
file outside the store folder and has its configuration locked.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import duckdb
import pyarrow as pa

from ..errors import ReadOnlyQueryError, StoreError
from .connection import Connection

__all__ = ["run_read_only"]

_EXPLAIN_RE = re.compile(r"^\s*EXPLAIN\s+(?:ANALY[SZ]E\s+)?(.*)$", re.IGNORECASE | re.DOTALL)


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


def run_read_only(con: Connection, query: str, params: Sequence | Mapping | None = None) -> pa.Table:
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
        The statement is not a query, or it tried to open a file outside the store.
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
    for st in statements:
        _check_read_only(st)
    if len(statements) > 1:
        raise StoreError(f"give one statement at a time; got {len(statements)}")
    if params is not None and not isinstance(params, (list, tuple, dict)):
        raise TypeError(f"params must be a list, tuple or dict; got {type(params).__name__}")
    try:
        return con.query(query, params)
    except duckdb.PermissionException as e:
        raise ReadOnlyQueryError(
            f"queries may only read the store's own tables (files under {str(con.path)!r}): {e}"
        ) from None
    except duckdb.Error as e:
        raise StoreError(f"query failed: {e}") from None
