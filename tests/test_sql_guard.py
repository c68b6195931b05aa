"""The read-only guard of ``FeatureStore.sql``: every statement that writes, changes the
connection or reads outside the store is refused, and the store is unchanged afterwards;
queries over the store keep working."""

from __future__ import annotations

import os

import pytest

from amnetvid_sk.errors import ReadOnlyQueryError, StoreError
from amnetvid_sk.store import FeatureStore
from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store

from conftest import run_cli

# {store}: the store folder; {secret}: a CSV beside the store; {part}: one of the store's part files.
# The working directory is the folder holding both, where relative paths (and writes) would land.
WRITES = [
    "COPY (SELECT 1 AS x) TO 'x.csv'",
    "COPY videos TO 'videos.csv'",
    "COPY videos_all FROM '{secret}'",
    "COPY (SELECT 1 AS x) TO '{store}/videos/part-x.parquet' (FORMAT parquet)",
    "EXPORT DATABASE 'dump'",
    "IMPORT DATABASE '{store}'",
    "CREATE TABLE t AS SELECT * FROM videos",
    "CREATE TEMP TABLE t (x INT)",
    "CREATE VIEW w AS SELECT 1",
    "CREATE OR REPLACE VIEW videos AS SELECT 1 AS video_id",
    "CREATE MACRO m(x) AS x + 1",
    "CREATE SEQUENCE s",
    "CREATE TYPE mood AS ENUM ('a', 'b')",
    "CREATE SECRET s (TYPE s3, KEY_ID 'k', SECRET 's')",
    "CREATE INDEX i ON videos (video_id)",
    "INSERT INTO videos_all SELECT * FROM videos_all",
    "INSERT OR REPLACE INTO labels_all SELECT * FROM labels_all",
    "UPDATE labels SET short_term = 0",
    "DELETE FROM labels",
    "TRUNCATE labels",
    "MERGE INTO labels USING labels AS l ON labels.video_id = l.video_id WHEN MATCHED THEN DELETE",
    "DROP VIEW videos",
    "DROP TABLE IF EXISTS t",
    "ALTER VIEW videos RENAME TO v2",
    "COMMENT ON VIEW videos IS 'x'",
    "CHECKPOINT",
    "FORCE CHECKPOINT",
    "VACUUM",
    "ANALYZE",
]
CONNECTION = [
    "ATTACH 'evil.db' AS evil",
    "ATTACH '{store}/evil.db' AS evil",
    "DETACH memory",
    "USE system",
    "INSTALL httpfs",
    "FORCE INSTALL httpfs",
    "LOAD httpfs",
    "LOAD '{store}/x.duckdb_extension'",
    "UPDATE EXTENSIONS",
    "SET threads = 1",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "SET VARIABLE x = 1",
    "RESET threads",
    "RESET VARIABLE x",
    "PRAGMA enable_profiling",
    "PRAGMA threads = 1",
    "PRAGMA table_info('videos')",
    "CALL checkpoint()",
    "CALL enable_profiling()",
    "CALL pragma_table_info('videos')",
    "BEGIN TRANSACTION",
    "PREPARE p AS SELECT 1",
    "EXECUTE p",
    "DEALLOCATE p",
    "SELECT 1; DROP VIEW frames",
    "SELECT 1; SELECT 2; COPY videos TO 'x.csv'",
    "/* a comment */ COPY videos TO 'x.csv'",
    "-- a comment\nDROP VIEW videos",
    "SELECT 1 /* ; */; DROP VIEW videos",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO 'y.csv'",
    "EXPLAIN ANALYZE DELETE FROM labels",
    "SELECT * FROM checkpoint()",
    "SELECT * FROM force_checkpoint()",
    "SELECT * FROM enable_profiling()",
    "SELECT * FROM enable_logging()",
    "SELECT * FROM truncate_duckdb_logs()",
    "SELECT * FROM query('SELECT 1')",
    "SELECT * FROM query_table('videos')",
    "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1'))",
]
READS = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv('{secret}')",
    "SELECT * FROM read_csv_auto('{secret}')",
    "SELECT * FROM read_text('{secret}')",
    "SELECT * FROM read_text('{store}/../secret.csv')",
    "SELECT * FROM read_text('{part}')",
    "SELECT * FROM read_blob('{part}')",
    "SELECT * FROM read_json('{secret}')",
    "SELECT * FROM read_json_auto('{secret}')",
    "SELECT * FROM read_json_objects('{secret}')",
    "SELECT * FROM read_ndjson('{secret}')",
    "SELECT * FROM read_duckdb('{store}/x.db')",
    "SELECT * FROM sniff_csv('{secret}')",
    "SELECT * FROM glob('*')",
    "SELECT * FROM glob('{store}/**')",
    "SELECT * FROM read_parquet('/etc/*.parquet')",
    "SELECT * FROM read_parquet('{store}/../outside.parquet')",
    "SELECT * FROM read_parquet(['{part}', '/etc/x.parquet'])",
    "SELECT * FROM read_parquet('{store}/*/../../outside.parquet')",
    "SELECT * FROM read_parquet('https://example.com/x.parquet')",
    "SELECT * FROM read_parquet('s3://bucket/x.parquet')",
    "SELECT * FROM read_parquet('~/x.parquet')",
    "SELECT * FROM parquet_scan('/etc/x.parquet')",
    "SELECT * FROM parquet_metadata('/etc/x.parquet')",
    "SELECT * FROM read_parquet((SELECT '/etc/x.parquet'))",
    "SELECT * FROM videos, read_parquet(videos.path)",
    "SELECT * FROM main.read_csv('{secret}')",
    "SELECT * FROM 'secret.csv'",
    "SELECT * FROM '{secret}'",
    'SELECT * FROM "secret.csv"',
    "SELECT * FROM '{part}'",
    "SELECT * FROM 'https://example.com/x.csv'",
    "FROM '{secret}'",
    "DESCRIBE '{secret}'",
    "SUMMARIZE '{secret}'",
    "SUMMARIZE SELECT * FROM read_csv('{secret}')",
    "SHOW 'secret.csv'",
    "EXPLAIN SELECT * FROM read_csv('{secret}')",
    "EXPLAIN ANALYZE SELECT * FROM read_text('{secret}')",
    "WITH c AS (SELECT * FROM read_text('{secret}')) SELECT * FROM c",
    "SELECT * FROM videos WHERE video_id IN (SELECT content FROM read_text('{secret}'))",
    "SELECT (SELECT count(*) FROM read_csv('{secret}')) AS n",
    "SELECT * FROM videos UNION ALL SELECT * FROM 'secret.csv'",
    "SELECT * FROM (WITH \"secret.csv\" AS (SELECT 1) SELECT 1), \"secret.csv\"",
]
REFUSED = WRITES + CONNECTION + READS
# refused as well, outside the closing note's count: a COPY into a store folder under a name the store does not read
MORE_WRITES = ["COPY (SELECT 1 AS x) TO '{store}/videos/x.parquet' (FORMAT parquet)"]

LEGITIMATE = [
    ("SELECT count(*) AS n FROM videos", [{"n": 3}]),
    ("FROM videos SELECT count(*) AS n", [{"n": 3}]),
    ("WITH v AS (SELECT * FROM videos) SELECT count(*) AS n FROM v", [{"n": 3}]),
    ("WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 3) SELECT max(i) AS n FROM r",
     [{"n": 3}]),
    ("SELECT count(*) AS n FROM read_parquet('{store}/videos/part-*.parquet')", [{"n": 3}]),
    ("SELECT count(*) AS n FROM parquet_scan(['{part}'])", [{"n": 3}]),
    ("SELECT count(*) > 0 AS ok FROM parquet_metadata('{part}')", [{"ok": True}]),
    ("SELECT count(*) AS n FROM range(3)", [{"n": 3}]),
    ("SELECT sum(x) AS n FROM unnest([1, 2]) AS t(x)", [{"n": 3}]),
    ("SELECT count(*) AS n FROM (VALUES (1), (2), (3)) AS t(x)", [{"n": 3}]),
    ("SELECT count(DISTINCT video_id) AS n FROM frames QUALIFY row_number() OVER () = 1", [{"n": 3}]),
    ("SELECT count(*) AS n FROM labels WHERE video_id = ? OR video_id LIKE 'syn%'", [{"n": 3}]),
    ("SELECT count(*) > 0 AS ok FROM information_schema.columns WHERE table_name = 'frames'", [{"ok": True}]),
    ("SELECT count(*) > 0 AS ok FROM duckdb_views() WHERE view_name = 'videos'", [{"ok": True}]),
    ("SELECT 'a.csv' AS name, '/etc/passwd' AS path", [{"name": "a.csv", "path": "/etc/passwd"}]),
    ("SELECT 1 AS x -- ; DROP VIEW videos", [{"x": 1}]),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A real store of 3 synthetic videos with labels and a secret CSV beside it (shared: every test
    checks that it left them unchanged)."""
    root = tmp_path_factory.mktemp("guard")
    maps, scores, y = make_moving_peak_dataset(3)
    write_synthetic_store(root / "store", maps, scores, y)
    (root / "secret.csv").write_text("password\nhunter2\n")
    return root


@pytest.fixture
def store(folder, monkeypatch):
    """The store, the paths the statements name, and the working directory set to their folder."""
    monkeypatch.chdir(folder)
    fs = FeatureStore(folder / "store", create=True)  # a new one each time: no connection state carries over
    part = sorted((fs.path / "videos").glob("part-*.parquet"))[0]
    return fs, {"store": str(fs.path), "secret": str(folder / "secret.csv"), "part": str(part)}


def _snapshot(fs, root):
    files = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            st = os.stat(os.path.join(dirpath, name))
            files[os.path.join(dirpath, name)] = (st.st_size, st.st_mtime_ns)
    tables = {t: fs.sql(f"SELECT * FROM {t} ORDER BY ALL").to_pylist() for t in ("videos", "labels", "models")}
    return files, tables, fs.sql("SELECT count(*) AS n FROM frames").to_pylist()


def test_the_refused_list_has_no_repeats():
    """The count in the closing note (113 statements: 29 writes, 40 connection changes, 44 outside reads) is of
    distinct statements."""
    assert len(set(REFUSED)) == len(REFUSED) == 113
    assert not set(MORE_WRITES) & set(REFUSED)


@pytest.mark.parametrize("statement", REFUSED + MORE_WRITES)
def test_statement_is_refused_and_nothing_changes(store, folder, statement):
    """Each statement raises ReadOnlyQueryError saying that queries are read-only and only read the store;
    every file in the folder and every table stay as they were."""
    fs, paths = store
    before = _snapshot(fs, folder)
    with pytest.raises(ReadOnlyQueryError, match="read-only") as info:
        fs.sql(statement.format(**paths))
    assert "only read the store" in str(info.value), str(info.value)
    assert _snapshot(fs, folder) == before
    assert "hunter2" not in str(before)


@pytest.mark.parametrize("query, expected", LEGITIMATE)
def test_queries_over_the_store_keep_working(store, query, expected):
    """SELECT/WITH/FROM/VALUES over the views, the store's own Parquet files and the catalog still run."""
    fs, paths = store
    params = ["syn0000"] if "?" in query else None
    assert fs.sql(query.format(**paths), params).to_pylist() == expected


def test_describe_summarize_show_and_explain_keep_working(store):
    """DESCRIBE, SUMMARIZE, SHOW TABLES, SHOW of a view, EXPLAIN and PIVOT with an IN list run."""
    fs, _ = store
    assert "attention" in fs.sql("DESCRIBE frames")["column_name"].to_pylist()
    assert "score" in fs.sql("SUMMARIZE SELECT score FROM frames")["column_name"].to_pylist()
    assert "videos" in fs.sql("SHOW TABLES")["name"].to_pylist()
    assert "video_id" in fs.sql("SHOW videos")["column_name"].to_pylist()
    assert fs.sql("EXPLAIN SELECT * FROM videos").num_rows >= 1
    assert fs.sql("EXPLAIN ANALYZE SELECT count(*) FROM frames").num_rows >= 1
    pivot = fs.sql("PIVOT (SELECT video_id, n_frames FROM videos) ON video_id IN ('syn0000') USING max(n_frames)")
    assert pivot.to_pylist() == [{"syn0000": 4}]


def test_refusals_say_what_is_allowed(store):
    """The messages name the refused function, name or path, and what queries may read."""
    fs, paths = store
    with pytest.raises(ReadOnlyQueryError, match=r"read_text\(\).*read_parquet") as info:
        fs.sql("SELECT * FROM read_text('{secret}')".format(**paths))
    assert "videos" in str(info.value)
    with pytest.raises(ReadOnlyQueryError, match=r"'secret\.csv'.*file"):
        fs.sql("SELECT * FROM 'secret.csv'")
    with pytest.raises(ReadOnlyQueryError, match=r"'/etc/x\.parquet'.*outside the store"):
        fs.sql("SELECT * FROM read_parquet('/etc/x.parquet')")


def test_sql_read_only_kinds_and_errors(store):
    """DESCRIBE/SHOW/EXPLAIN run; syntax errors and bad queries surface as StoreError."""
    fs, _ = store
    assert "attention" in fs.sql("DESCRIBE frames")["column_name"].to_pylist()
    assert fs.sql("EXPLAIN SELECT * FROM videos").num_rows >= 1
    assert fs.sql("FROM videos SELECT video_id ORDER BY 1").to_pylist() == [
        {"video_id": v} for v in ("syn0000", "syn0001", "syn0002")]
    with pytest.raises(StoreError, match="(?i)syntax"):
        fs.sql("SELEC * FROM videos")
    with pytest.raises(StoreError, match="no_such_table"):
        fs.sql("SELECT * FROM no_such_table")
    with pytest.raises(StoreError, match="one statement"):
        fs.sql("SELECT 1; SELECT 2")


def test_cli_sql_refuses_writes(store, folder):
    """``amnetvid sql`` with a writing statement is refused with exit 2 and the store is unchanged."""
    fs, paths = store
    before = _snapshot(fs, folder)
    proc = run_cli("sql", "DROP VIEW frames", "--store", paths["store"])
    assert proc.returncode == 2 and "error" in proc.stderr
    proc = run_cli("sql", f"COPY (SELECT 1) TO '{paths['store']}/x.csv'", "--store", paths["store"])
    assert proc.returncode == 2
    assert _snapshot(fs, folder) == before
