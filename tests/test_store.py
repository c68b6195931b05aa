"""Feature store: real Parquet part files on disk, read through real DuckDB."""

from __future__ import annotations

import math
import os
import pickle
import re
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from amnetvid_sk.errors import MissingVideosError, StoreError
from amnetvid_sk.store import FeatureStore, embeddings_table, frames_table, new_extraction_id
from amnetvid_sk.store import cache as cache_module
from amnetvid_sk.store import read as read_module
from amnetvid_sk.store import scan as scan_module
from amnetvid_sk.store.connection import Connection
from amnetvid_sk.store.write import write_part

from conftest import in_threads

README = Path(__file__).resolve().parents[1] / "store" / "README.md"
SHAPE = (3, 14, 14)


def _video_row(vid, n, model="m1", sampling="frames=28", eid=None, size=1000, mtime=1.5e9):
    return {
        "extraction_id": eid or new_extraction_id(), "video_id": vid, "path": f"/data/{vid}.webm",
        "size": size, "mtime": mtime, "duration": 7.0, "fps": 30.0, "frame_count": 210, "width": 64,
        "height": 48, "model": model, "sampling": sampling, "n_frames": n, "short": False,
    }


def _softmax_maps(rng, n):
    x = rng.normal(size=(n, 3, 196))
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32).reshape(n, *SHAPE)


def write_videos(fs, counts: dict, model="m1", sampling="frames=28", seed=0, **row):
    """Write one extraction per video (frame count from ``counts``); return what was written."""
    rng = np.random.default_rng(seed)
    if fs.write_model(model, "toy-" + model, {"seed": 1}, SHAPE) is None:
        raise AssertionError("write_model must return a bool")
    rows, tables, truth = [], [], {}
    for vid, n in counts.items():
        r = _video_row(vid, n, model=model, sampling=sampling, **row)
        scores = rng.random(n, dtype=np.float32)
        maps = _softmax_maps(rng, n)
        index = np.arange(n) * 7
        rows.append(r)
        tables.append(frames_table(r["extraction_id"], index, index / 30.0, scores, maps))
        truth[vid] = (scores, maps, r["extraction_id"])
    fs.write_extractions(rows, pa.concat_tables(tables))
    return truth


def listing(root: Path) -> dict:
    """Every file under root with its size and mtime."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            st = os.stat(os.path.join(dirpath, name))
            out[os.path.join(dirpath, name)] = (st.st_size, st.st_mtime_ns)
    return out


def readme_sql_blocks() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", README.read_text(), flags=re.DOTALL)


@pytest.fixture
def store(tmp_path):
    return FeatureStore(tmp_path / "store", create=True)


def test_empty_store_gives_empty_tables(tmp_path):
    """An absent store is an error naming it (a typo is not an empty store), and opening it does not
    create it; create=True makes the folder, which reads as empty tables."""
    with pytest.raises(StoreError, match=r"absent' does not exist.*create=True"):
        FeatureStore(tmp_path / "absent")
    assert not (tmp_path / "absent").exists()
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        FeatureStore(tmp_path / "a_file", create=True)
    fs = FeatureStore(tmp_path / "absent", create=True)
    assert (tmp_path / "absent").is_dir()
    for table in ("videos", "frames", "models", "labels", "failures", "results", "frames_all"):
        assert fs.sql(f"SELECT count(*) AS n FROM {table}").to_pylist() == [{"n": 0}]
    assert fs.sql("SELECT * FROM frames").schema.field("attention").type == pa.list_(pa.float32())
    assert len(fs.video_ids()) == 0
    assert fs.info()["size_bytes"] == 0
    assert fs.extracted_keys("m1", "frames=28") == set()


def test_round_trip_and_read_arrays_order(store):
    """Written scores and maps come back exactly, in the order of the ids, repeats included."""
    truth = write_videos(store, {"v1": 5, "v2": 5, "v3": 5})
    assert store.sql("SELECT count(*) AS n FROM frames").to_pylist() == [{"n": 15}]
    ids = ["v3", "v1", "v3", "v2"]
    scores, maps = store.read_arrays(ids)
    assert scores.dtype == np.float32 and maps.dtype == np.float32
    assert scores.shape == (4, 5) and maps.shape == (4, 5, *SHAPE)
    for i, vid in enumerate(ids):
        np.testing.assert_array_equal(scores[i], truth[vid][0])
        np.testing.assert_array_equal(maps[i], truth[vid][1])
    only_scores, none = store.read_arrays(ids, maps=False)
    assert none is None
    np.testing.assert_array_equal(only_scores, scores)
    np.testing.assert_array_equal(store.video_ids(), ["v1", "v2", "v3"])
    keys = store.extracted_keys("m1", "frames=28")
    assert ("/data/v1.webm", 1000, 1.5e9) in keys and len(keys) == 3


def test_read_arrays_n_frames_picks_uniformly_and_never_repeats(store):
    """n_frames=T picks round(k*(cnt-1)/(T-1)) of the stored frames; T > cnt is an error naming cnt."""
    truth = write_videos(store, {"a": 28, "b": 3})
    scores, maps = store.read_arrays(["a", "b"], n_frames=3)
    np.testing.assert_array_equal(scores[0], truth["a"][0][[0, 14, 27]])  # k*27/2 = 0, 13.5, 27
    np.testing.assert_array_equal(maps[0], truth["a"][1][[0, 14, 27]])
    np.testing.assert_array_equal(scores[1], truth["b"][0])
    four, _ = store.read_arrays(["a"], n_frames=4, maps=False)
    np.testing.assert_array_equal(four[0], truth["a"][0][[0, 9, 18, 27]])
    middle, _ = store.read_arrays(["a", "b"], n_frames=1, maps=False)
    np.testing.assert_array_equal(middle[:, 0], [truth["a"][0][14], truth["b"][0][1]])
    # a first read of the pair and a second one, answered by the array cache
    for _ in range(2):
        with pytest.raises(StoreError, match=r"n_frames=4 .*1 of the 2 requested videos.*fewest: 3.*'b'"):
            store.read_arrays(["a", "b"], n_frames=4)
    with pytest.raises(StoreError, match="n_frames=T"):
        store.read_arrays(["a", "b"])  # 28 and 3 stored frames
    with pytest.raises(ValueError, match="n_frames"):
        store.read_arrays(["a"], n_frames=0)


def test_more_frames_than_stored_is_an_error_without_the_cache(store, monkeypatch):
    """With the cache off, T > stored frames is refused with the same message."""
    monkeypatch.setenv("AMNETVID_CACHE_BYTES", "0")
    write_videos(store, {"a": 5, "b": 3})
    assert store.read_arrays(["a", "b"], n_frames=3)[0].shape == (2, 3)
    with pytest.raises(StoreError, match=r"n_frames=5 .*fewest: 3.*'b'"):
        store.read_arrays(["b", "a"], n_frames=5)


def test_missing_ids_error_counts_and_names_them(store):
    """Ids not in the store raise MissingVideosError saying how many and which."""
    write_videos(store, {"v1": 2})
    with pytest.raises(MissingVideosError, match=r"2 of 3 requested video ids .*'nope', 'gone'"):
        store.read_arrays(["v1", "nope", "gone", "nope"])
    with pytest.raises(LookupError):
        store.read_arrays(["x"], model="m1")


def test_model_and_sampling_resolution(store):
    """model=None needs a single model; prefixes and names resolve; samplings must be unambiguous."""
    write_videos(store, {"v1": 2}, model="alpha-123")
    assert store.resolve_model() == "alpha-123"
    write_videos(store, {"v1": 2}, model="beta-456")
    with pytest.raises(StoreError, match="alpha-123.*beta-456"):
        store.resolve_model()
    assert store.resolve_model("bet") == "beta-456"
    assert store.resolve_model("toy-alpha-123") == "alpha-123"
    with pytest.raises(StoreError, match="no frame model 'zeta'"):
        store.resolve_model("zeta")
    write_videos(store, {"v1": 3}, model="beta-456", sampling="fps=4")
    with pytest.raises(StoreError, match=r"\['fps=4', 'frames=28'\]"):
        store.read_arrays(["v1"], model="beta-456")
    assert store.read_arrays(["v1"], model="beta", sampling="fps=4")[0].shape == (1, 3)
    assert {m["model"] for m in store.models()} == {"alpha-123", "beta-456"}
    assert store.write_model("alpha-123", "toy", {}, SHAPE) is False


def test_reextraction_hides_old_rows(store):
    """A video extracted again shows only its newest extraction; the raw tables keep both."""
    old = write_videos(store, {"v1": 4, "v2": 4}, seed=1)
    new = write_videos(store, {"v1": 6}, seed=2, size=2000)
    assert store.sql("SELECT count(*) AS n FROM videos").to_pylist() == [{"n": 2}]
    assert store.sql("SELECT count(*) AS n FROM videos_all").to_pylist() == [{"n": 3}]
    rows = store.sql("SELECT video_id, count(*) AS n FROM frames GROUP BY 1 ORDER BY 1").to_pylist()
    assert rows == [{"video_id": "v1", "n": 6}, {"video_id": "v2", "n": 4}]
    scores, _ = store.read_arrays(["v1"])
    np.testing.assert_array_equal(scores[0], new["v1"][0])
    assert not np.array_equal(old["v1"][0][:4], scores[0][:4])
    assert ("/data/v1.webm", 1000, 1.5e9) not in store.extracted_keys("m1", "frames=28")


def test_two_writers_same_video_leave_one_visible(store):
    """Two threads extracting the same video at once leave exactly one visible extraction."""
    write_videos(store, {"other": 2})
    barrier = threading.Barrier(2)

    def writer(seed):
        barrier.wait()
        write_videos(store, {"same": 3 + seed}, seed=seed)

    assert in_threads(writer, [1, 2]) == []
    assert store.sql("SELECT count(*) AS n FROM videos_all WHERE video_id = 'same'").to_pylist() == [{"n": 2}]
    visible = store.sql("SELECT extraction_id, n_frames FROM videos WHERE video_id = 'same'").to_pylist()
    assert len(visible) == 1
    frames = store.sql("SELECT DISTINCT extraction_id, count(*) OVER () AS n FROM frames "
                       "WHERE video_id = 'same'").to_pylist()
    assert frames == [{"extraction_id": visible[0]["extraction_id"], "n": visible[0]["n_frames"]}]


def test_writes_list_only_the_models_table(store, monkeypatch):
    """Registering a model (known or new) and writing extractions look at the small models table only:
    no listing and binding of every frames part, a cost per write that grew with the store."""
    from amnetvid_sk.store import connection

    write_videos(store, {"v1": 2, "v2": 3})
    listed, real = [], connection.list_parts
    monkeypatch.setattr(connection, "list_parts",
                        lambda path, tables=connection.TABLES: listed.append(tuple(tables)) or real(path, tables))
    fresh = FeatureStore(store.path)
    assert fresh.write_model("m1", "toy-m1", {"seed": 1}, SHAPE) is False
    assert fresh.write_model("m9", "toy-m9", {}, SHAPE, embedding_dim=4) is True
    r = _video_row("v3", 2, model="m9")
    emb = embeddings_table(r["extraction_id"], [0, 7], np.ones((2, 4)))
    assert fresh.write_extractions([r], frames_table(r["extraction_id"], [0, 7], [0.0, 0.2], [0.5, 0.6],
                                                     _softmax_maps(np.random.default_rng(0), 2)), emb) == 1
    assert listed and set(listed) == {("models",)}
    monkeypatch.undo()
    assert sorted(m["model"] for m in fresh.models()) == ["m1", "m9"]
    assert fresh.sql("SELECT count(*) AS n FROM embeddings").to_pylist() == [{"n": 2}]


def test_temp_files_and_uncommitted_frames_are_invisible(store):
    """A half-written temp file is ignored, and frames without their videos row stay hidden."""
    write_videos(store, {"v1": 3})
    for table in ("videos", "frames"):
        (store.path / table / ".part-deadbeef.parquet.tmp").write_bytes(b"PAR1 half a file")
    # a crash between the frames part and the videos part: write only the frames part
    eid = new_extraction_id()
    orphan = frames_table(eid, [0, 1], [0.0, 0.1], [0.5, 0.5], np.ones((2, *SHAPE)) / 196,
                          video_id="v9", model="m1", sampling="frames=28")
    write_part(store.path, "frames", orphan, pa.schema([*orphan.schema]))
    assert store.sql("SELECT count(*) AS n FROM frames").to_pylist() == [{"n": 3}]
    assert store.sql("SELECT count(*) AS n FROM frames_all").to_pylist() == [{"n": 5}]
    np.testing.assert_array_equal(store.video_ids(), ["v1"])
    assert store.info()["temp_files"] == 2


def test_sql_binds_parameters(store):
    """? and $name parameters are bound as values, never spliced into the SQL."""
    write_videos(store, {"v1": 2, "v2": 3})
    q = "SELECT video_id FROM videos WHERE video_id = ?"
    assert store.sql(q, ["v2"]).to_pylist() == [{"video_id": "v2"}]
    assert store.sql(q, ["v2' OR '1'='1"]).num_rows == 0
    named = store.sql("SELECT count(*) AS n FROM frames WHERE video_id = $vid AND score >= $low",
                      {"vid": "v2", "low": 0.0})
    assert named.to_pylist() == [{"n": 3}]


def test_readme_sql_examples_run(store):
    """Every ```sql block of store/README.md runs on a store and gives the expected figures."""
    counts = {f"v{i:02d}": 4 for i in range(12)}
    truth = write_videos(store, counts)
    # one video with flat maps, whose entropy is exactly ln 196
    flat = _video_row("flat", 2)
    store.write_extractions([flat], frames_table(flat["extraction_id"], [0, 1], [0, 0.1], [0.1, 0.2],
                                                 np.full((2, *SHAPE), 1 / 196)))
    store.write_labels({"video_id": list(counts), "short_term": np.linspace(0.6, 0.9, 12),
                        "n_short": [30] * 12, "long_term": [0.5] * 11 + [None], "n_long": [9] * 12,
                        "source": ["dev.csv"] * 12})
    store.write_failure("/data/broken.webm", "truncated file", "m1", "frames=28")
    # a second frame model, scores only, with embeddings (the embeddings example reads them)
    store.write_model("m2", "toy", {}, (), maps="none", embedding_dim=4)
    emb_rows = [_video_row(f"v{i:02d}", 3, model="m2") for i in range(3)]
    store.write_extractions(emb_rows, pa.concat_tables([
        frames_table(r["extraction_id"], [0, 1, 2], [0, 0.1, 0.2], [0.5] * 3) for r in emb_rows]),
        pa.concat_tables([embeddings_table(r["extraction_id"], [0, 1, 2], np.full((3, 4), i + 1.0) + np.eye(3, 4))
                          for i, r in enumerate(emb_rows)]))
    # an evaluation run: its fold rows and its out-of-fold predictions (the predictions example reads them)
    pred, label = np.linspace(0.2, 0.8, 12), np.r_[np.linspace(0.6, 0.9, 6), np.linspace(0.9, 0.6, 6)]
    run = {"run_id": ["r1"] * 12, "recipe": ["mean_score"] * 12, "target": ["short"] * 12,
           "protocol": ["cv"] * 12, "fold": [0] * 6 + [1] * 6}
    store.write_predictions({**run, "video_id": list(counts), "prediction": pred, "label": label})
    store.write_results([{"run_id": "r1", "recipe": "mean_score", "target": "short", "protocol": "cv", "fold": f,
                          "spearman": 1.0 - 2 * f} for f in (0, 1)])
    blocks = readme_sql_blocks()
    assert len(blocks) >= 6
    results = [store.sql(b) for b in blocks]
    folds_sql = next(b for b in blocks if "FROM predictions" in b)
    assert store.sql(folds_sql).to_pylist() == [{"fold": 0, "spearman": 1.0}, {"fold": 1, "spearman": -1.0}]
    assert all(r.num_rows > 0 for r in results)
    by_sql = dict(zip(blocks, results))
    mean_sql = next(b for b in blocks if "count(*) AS n_frames" in b)
    means = {r["video_id"]: r["mean_score"] for r in by_sql[mean_sql].to_pylist()}
    assert means["v03"] == pytest.approx(float(truth["v03"][0].astype(np.float64).mean()))
    top_sql = next(b for b in blocks if "LIMIT 10" in b)
    top = by_sql[top_sql]["mean_score"].to_pylist()
    assert len(top) == 10 and top == sorted(top, reverse=True)
    ent_sql = next(b for b in blocks if "unnest" in b)
    ent = by_sql[ent_sql].filter(pc.equal(by_sql[ent_sql]["video_id"], "flat"))
    assert ent.num_rows == 6
    np.testing.assert_allclose(ent["entropy"].to_numpy(), math.log(196), rtol=1e-5)
    ent0_sql = next(b for b in blocks if "entropy_map0" in b)
    flat0 = [r for r in by_sql[ent0_sql].to_pylist() if r["video_id"] == "flat"]
    assert flat0[0]["entropy_map0"] == pytest.approx(math.log(196), rel=1e-5)
    cos_sql = next(b for b in blocks if "cosine_to_v00" in b)
    near = by_sql[cos_sql].to_pylist()
    assert [r["video_id"] for r in near][0] == "v00" and near[0]["cosine_to_v00"] == pytest.approx(1.0)
    assert {(r["n_frames"], r["dim"]) for r in near} == {(3, 4)} and len(near) == 3
    spearman_sql = next(b for b in blocks if "corr(a, b)" in b)
    row = by_sql[spearman_sql].to_pylist()[0]
    assert row["n_videos"] == 12 and -1 <= row["spearman"] <= 1


def test_reader_sees_only_whole_videos_while_a_writer_writes(store):
    """A reader thread running during writes sees every visible video with exactly its n_frames frames."""
    write_videos(store, {"seed": 2})
    done = threading.Event()
    problems, reads = [], [0]

    def reader():
        while not done.is_set() or reads[0] < 3:
            rows = store.sql("""
                SELECT v.video_id, v.n_frames, count(f.extraction_id) AS n
                FROM videos AS v LEFT JOIN frames AS f ON f.extraction_id = v.extraction_id
                GROUP BY ALL""").to_pylist()
            problems.extend(r for r in rows if r["n"] != r["n_frames"])
            ids = [r["video_id"] for r in rows]
            scores, maps = store.read_arrays(ids, n_frames=2)
            if maps.shape != (len(ids), 2, *SHAPE):
                problems.append(maps.shape)
            reads[0] += 1

    t = threading.Thread(target=reader)
    t.start()
    try:
        for batch in range(15):
            # new videos and re-extractions of earlier ones, with varying frame counts
            write_videos(store, {f"w{batch}": 2 + batch % 4, f"w{batch // 2}": 3 + batch % 3}, seed=batch)
    finally:
        done.set()
        t.join()
    assert reads[0] >= 3
    assert problems == []


def test_labels_alignment_and_errors(store):
    """labels() follows the ids' order; missing ids and missing long-term labels are errors."""
    store.write_labels(pa.table({"video_id": ["a", "b", "c"], "short_term": [0.7, 0.8, 0.9],
                                 "n_short": [30, 31, 32], "long_term": [0.4, None, 0.6],
                                 "n_long": [9, 0, 9], "source": ["x.csv"] * 3}))
    np.testing.assert_array_equal(store.labels(["c", "a", "c"]), [0.9, 0.7, 0.9])
    np.testing.assert_array_equal(store.labelled_ids("long"), ["a", "c"])
    np.testing.assert_array_equal(store.labels(target="long"), [0.4, 0.6])
    with pytest.raises(StoreError, match="no long-term label: 'b'"):
        store.labels(["a", "b"], target="long")
    with pytest.raises(MissingVideosError, match="1 video ids have no labels.*'zz'"):
        store.labels(["a", "zz"])
    # a later import of a video wins
    store.write_labels([{"video_id": "a", "short_term": 0.1, "n_short": 5, "source": "y.csv"}])
    assert store.labels(["a"])[0] == 0.1
    with pytest.raises(StoreError, match="more than once"):
        store.write_labels({"video_id": ["q", "q"], "short_term": [0.1, 0.2]})


def test_write_extractions_validates_and_writes_nothing_on_error(store):
    """Bad extractions are refused with a message naming the problem, and no file is written."""
    store.write_model("m1", "toy", {}, SHAPE)
    before = listing(store.path)
    row = _video_row("v1", 3)
    good = frames_table(row["extraction_id"], [0, 1, 2], [0, 0.1, 0.2], [0.1, 0.2, 0.3],
                        np.ones((3, *SHAPE)) / 196)
    with pytest.raises(StoreError, match="n_frames"):
        store.write_extractions([{**row, "n_frames": 4}], good)
    with pytest.raises(StoreError, match="not registered"):
        store.write_extractions([{**row, "model": "other"}], good)
    with pytest.raises(StoreError, match="588"):
        store.write_extractions([row], frames_table(row["extraction_id"], [0, 1, 2], [0] * 3, [0] * 3,
                                                    np.ones((3, 2, 7, 7))))
    with pytest.raises(StoreError, match="unknown column"):
        store.write_extractions([{**row, "colour": "red"}], good)
    with pytest.raises(StoreError, match="no videos row"):
        store.write_extractions([_video_row("v2", 3)], good)
    assert listing(store.path) == before
    assert store.write_extractions([row], good) == 1


def test_failures_results_info_and_pickle(store):
    """Failures hide once a file is extracted later; results append; info counts; stores pickle."""
    store.write_failure("/data/v1.webm", "no video stream", "m1", "frames=28")
    store.write_failure("/data/bad.webm", "truncated", "m1", "frames=28")
    write_videos(store, {"v1": 2})
    assert store.sql("SELECT video_id FROM failures").to_pylist() == [{"video_id": "bad"}]
    n = store.write_results([{"run_id": "r1", "recipe": "mean_score", "target": "short", "protocol": "cv",
                              "fold": f, "spearman": 0.4 + f / 100, "n_train": 80, "n_test": 20,
                              "params": {"n_frames": 28}} for f in range(3)])
    assert n == 3
    assert store.sql("SELECT params FROM results LIMIT 1").to_pylist() == [{"params": '{"n_frames": 28}'}]
    info = store.info()
    assert info["tables"]["videos"] == 1 and info["tables"]["failures"] == 1
    assert info["tables_all"]["failures"] == 2 and info["tables"]["results"] == 3
    assert info["size_bytes"] > 0 and info["models"][0]["model"] == "m1"
    copy = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(copy.video_ids(), ["v1"])


def test_compact_rewrites_visible_rows_into_one_part(store):
    """compact() leaves one part per table, drops superseded rows and changes no visible row."""
    for batch in range(4):
        write_videos(store, {f"v{batch}": 3, "again": 2 + batch}, seed=batch)
    store.write_labels({"video_id": ["v0"], "short_term": [0.5]})
    store.write_labels({"video_id": ["v0"], "short_term": [0.6]})
    ids = store.video_ids()
    scores, maps = store.read_arrays(ids, n_frames=3)
    visible = store.sql("SELECT * FROM videos ORDER BY video_id")
    report = store.compact()
    assert report["videos"] == (4, 1) and report["frames"] == (4, 1) and report["labels"] == (2, 1)
    assert store.info()["files"] == {"videos": 1, "frames": 1, "embeddings": 0, "models": 1, "labels": 1,
                                     "failures": 0, "results": 0, "predictions": 0}
    assert store.sql("SELECT count(*) AS n FROM videos_all").to_pylist() == [{"n": 5}]
    assert store.sql("SELECT count(*) AS n FROM frames_all").to_pylist() == [{"n": 4 * 3 + 5}]
    assert store.sql("SELECT * FROM videos ORDER BY video_id").equals(visible)
    scores2, maps2 = store.read_arrays(ids, n_frames=3)
    np.testing.assert_array_equal(scores2, scores)
    np.testing.assert_array_equal(maps2, maps)
    assert store.labels(["v0"])[0] == 0.6
    assert store.compact(["videos"]) == {}  # nothing left to do


def test_frames_left_twice_by_interrupted_compaction_are_tolerated(store):
    """A frames part present twice (as an interrupted compact() can leave) reads right and compacts away."""
    truth = write_videos(store, {"v1": 4, "v2": 5})
    part = next((store.path / "frames").glob("part-*.parquet"))
    (store.path / "frames" / "part-zz-copy.parquet").write_bytes(part.read_bytes())
    assert store.sql("SELECT count(*) AS n FROM frames_all").to_pylist() == [{"n": 18}]
    scores, maps = store.read_arrays(["v2", "v1"], n_frames=4)
    np.testing.assert_array_equal(scores[0], truth["v2"][0][[0, 1, 3, 4]])  # round(k*4/3) = 0, 1, 3, 4
    np.testing.assert_array_equal(maps[1], truth["v1"][1])
    store.compact(["frames"])
    assert store.sql("SELECT count(*) AS n FROM frames_all").to_pylist() == [{"n": 9}]
    np.testing.assert_array_equal(store.read_arrays(["v1"])[1][0], truth["v1"][1])


@pytest.mark.parametrize("limit", ["0", None])
def test_read_arrays_dedups_as_the_frames_view(store, monkeypatch, limit):
    """Two part files holding an extraction's frames with other scores: read_arrays takes the
    first file's, as the frames view does (with the array cache and without)."""
    if limit is None:
        monkeypatch.delenv("AMNETVID_CACHE_BYTES", raising=False)
    else:
        monkeypatch.setenv("AMNETVID_CACHE_BYTES", limit)
    truth = write_videos(store, {"v1": 4, "v2": 5})
    part = next((store.path / "frames").glob("part-*.parquet"))
    table = pq.read_table(part)
    table = table.set_column(table.schema.get_field_index("score"), "score",
                             pa.array(np.ones(table.num_rows, np.float32)))
    pq.write_table(table, store.path / "frames" / "part-zz-copy.parquet")
    view = store.sql("SELECT score FROM frames WHERE video_id = ? ORDER BY frame_index", ["v2"])
    scores, _ = store.read_arrays(["v2"], n_frames=5)
    np.testing.assert_array_equal(scores[0], truth["v2"][0])
    np.testing.assert_array_equal(scores[0], np.array(view["score"].to_pylist(), np.float32))


def test_compact_keeps_uncommitted_frames_unless_asked(store):
    """compact() keeps frames without a videos row (a write in progress) unless drop_orphans=True."""
    write_videos(store, {"v1": 2})
    orphan = frames_table(new_extraction_id(), [0, 1, 2], [0.0, 0.1, 0.2], [0.5] * 3,
                          np.ones((3, *SHAPE)) / 196, video_id="v9", model="m1", sampling="frames=28")
    write_part(store.path, "frames", orphan, pa.schema([*orphan.schema]))
    store.compact()
    assert store.sql("SELECT count(*) AS n FROM frames_all").to_pylist() == [{"n": 5}]
    store.compact(drop_orphans=True)
    assert store.sql("SELECT count(*) AS n FROM frames_all").to_pylist() == [{"n": 2}]
    assert store.sql("SELECT count(*) AS n FROM frames").to_pylist() == [{"n": 2}]


def test_extractor_style_rows_with_numpy_values(store):
    """Video rows holding numpy scalars and a numpy datetime64 (as the extractor writes them) are accepted."""
    store.write_model("m1", "toy", {}, SHAPE)
    row = _video_row("v1", 2)
    row.update(size=np.int64(5), n_frames=np.int64(2), short=np.bool_(True),
               extracted_at=np.datetime64("now", "us"))
    table = frames_table(row["extraction_id"], [0, 9], [0.0, 0.3], np.float32([0.1, 0.2]),
                         np.ones((2, *SHAPE), np.float32) / 196, video_id="v1", model="m1",
                         sampling="frames=28")
    assert store.write_extractions([row], table) == 1
    assert store.sql("SELECT short, size FROM videos").to_pylist() == [{"short": True, "size": 5}]


# ---------------------------------------------------------------------- array cache
@pytest.fixture
def cache(monkeypatch):
    """The array cache on (default limit), this process's held arrays let go before and after."""
    monkeypatch.delenv("AMNETVID_CACHE_BYTES", raising=False)
    cache_module._HELD.clear()
    yield cache_module
    cache_module._HELD.clear()


def cache_files(fs, suffix=".arrow") -> list[Path]:
    """The array cache files of a store (temporary files left out)."""
    folder = fs.path / cache_module.CACHE_DIR
    return sorted(p for p in folder.glob(f"*{suffix}") if not p.name.startswith(".")) if folder.is_dir() else []


def new_process():
    """Forget what this process holds, as a new process would: only the cache files are left."""
    cache_module._HELD.clear()


def no_parquet(monkeypatch):
    """Make any decoding of a frames part file fail."""
    def refuse(*args, **kwargs):
        raise AssertionError("a frames part file was decoded")

    monkeypatch.setattr(scan_module, "read_group", refuse)


def _read_both(fs, monkeypatch, ids, **kwargs):
    """read_arrays through the cache (built by a read of every video first), from its file in a
    "new process", and without any cache."""
    fs.read_arrays(list(fs.video_ids()), **kwargs)
    cached = fs.read_arrays(ids, **kwargs)
    new_process()
    from_file = fs.read_arrays(ids, **kwargs)
    monkeypatch.setenv("AMNETVID_CACHE_BYTES", "0")
    plain = fs.read_arrays(ids, **kwargs)
    monkeypatch.delenv("AMNETVID_CACHE_BYTES")
    return cached, from_file, plain


@pytest.mark.parametrize("n_frames", [None, 1, 2, 4, 7])
@pytest.mark.parametrize("maps", [True, False])
def test_cache_gives_the_uncached_arrays(store, cache, monkeypatch, n_frames, maps):
    """Reads through the cache (held, or from its file) equal reads without it, for n_frames
    None/1/2/4/7, with repeated ids, maps or not."""
    counts = {"a": 28, "b": 7, "c": 9, "d": 8, "e": 7} if n_frames else {"a": 5, "b": 5, "c": 5}
    write_videos(store, counts)
    ids = ["c", "a", "c", "b", "a"]
    (s1, m1), (s2, m2), (s3, m3) = _read_both(store, monkeypatch, ids, n_frames=n_frames, maps=maps)
    assert len(cache_files(store)) == 1
    assert s1.dtype == s2.dtype == s3.dtype == np.float32 and s1.shape == s3.shape
    np.testing.assert_array_equal(s1, s3)
    np.testing.assert_array_equal(s2, s3)
    if maps:
        for m in (m1, m2):
            assert m.flags.writeable and m.flags.c_contiguous and m.shape == m3.shape
            np.testing.assert_array_equal(m, m3)
    else:
        assert m1 is None and m2 is None and m3 is None


def test_cache_file_answers_without_duckdb_or_parquet(store, cache, monkeypatch):
    """Once the file is written, a new process reads any ids from it with no query and no decoding."""
    truth = write_videos(store, {f"v{i}": 6 for i in range(10)})
    store.read_arrays(list(truth), n_frames=3)
    new_process()

    def no_query(*args, **kwargs):
        raise AssertionError("DuckDB was queried")

    monkeypatch.setattr(Connection, "query", no_query)
    no_parquet(monkeypatch)
    scores, maps = FeatureStore(store.path).read_arrays(["v7", "v2", "v7"], n_frames=3)
    for i, vid in enumerate(["v7", "v2", "v7"]):
        np.testing.assert_array_equal(maps[i], truth[vid][1][[0, 3, 5]])
        np.testing.assert_array_equal(scores[i], truth[vid][0][[0, 3, 5]])
    assert FeatureStore(store.path).resolve_sampling() == "frames=28"
    maps[0] += 1  # a new array: the cache is untouched
    np.testing.assert_array_equal(FeatureStore(store.path).read_arrays(["v7"], n_frames=3)[1][0],
                                  truth["v7"][1][[0, 3, 5]])


CHILD_READ = """
import sys
import numpy as np
from amnetvid_sk.store import FeatureStore, scan

def refuse(*args, **kwargs):
    raise AssertionError("a frames part file was decoded")

scan.read_group = refuse
scores, maps = FeatureStore(sys.argv[1]).read_arrays(["v2", "v1"], n_frames=2)
np.save(sys.argv[2], maps)
"""


def test_cache_file_serves_another_process(store, cache, tmp_path):
    """A second process reads the arrays from the cache file without decoding any Parquet."""
    import subprocess
    import sys

    truth = write_videos(store, {"v1": 4, "v2": 5})
    store.read_arrays(["v1", "v2"], n_frames=2)
    out = tmp_path / "maps.npy"
    subprocess.run([sys.executable, "-c", CHILD_READ, str(store.path), str(out)], check=True,
                   env={k: v for k, v in os.environ.items() if k != "AMNETVID_CACHE_BYTES"})
    maps = np.load(out)
    np.testing.assert_array_equal(maps[0], truth["v2"][1][[0, 4]])
    np.testing.assert_array_equal(maps[1], truth["v1"][1][[0, 3]])


def test_cache_missing_ids_and_errors_as_without_it(store, cache, monkeypatch):
    """Missing ids raise MissingVideosError naming them; other errors keep their messages."""
    write_videos(store, {"v1": 2, "v2": 3})
    store.read_arrays(["v1", "v2"], n_frames=2)
    store.read_arrays(["v1"])
    assert len(cache_files(store)) == 2
    messages = []
    for limit in (None, "0"):
        if limit:
            monkeypatch.setenv("AMNETVID_CACHE_BYTES", limit)
        with pytest.raises(MissingVideosError, match=r"2 of 3 requested video ids .*'nope', 'gone'") as e:
            store.read_arrays(["v1", "nope", "gone", "nope"])
        messages.append(str(e.value))
        with pytest.raises(StoreError, match="different numbers of stored frames") as e:
            store.read_arrays(["v1", "v2"])
        messages.append(str(e.value))
        with pytest.raises(StoreError, match=r"n_frames=3 .*fewest: 2.*'v1'") as e:
            store.read_arrays(["v2", "v1"], n_frames=3)
        messages.append(str(e.value))
        with pytest.raises(StoreError, match="no frame model 'zz'"):
            store.read_arrays(["v1"], model="zz")
        with pytest.raises(StoreError, match="with sampling 'fps=1'"):
            store.read_arrays(["v1"], sampling="fps=1")
    assert messages[:3] == messages[3:]
    empty_scores, empty_maps = store.read_arrays([], n_frames=2)
    assert empty_scores.shape == (0, 2) and empty_maps.shape == (0, 2, *SHAPE)


def test_cache_sees_writes_and_compaction(store, cache):
    """A write or compaction after a read makes a new key: the next read sees the new data,
    the files of older listings are removed, and compact() empties the cache folder."""
    truth = write_videos(store, {"v1": 4, "v2": 4})
    store.read_arrays(["v1", "v2"])
    before = cache_files(store)
    newer = write_videos(FeatureStore(store.path), {"v2": 4, "v3": 4}, seed=5)
    scores, maps = store.read_arrays(["v1", "v2", "v3"])
    np.testing.assert_array_equal(maps[0], truth["v1"][1])
    np.testing.assert_array_equal(maps[1], newer["v2"][1])
    np.testing.assert_array_equal(scores[2], newer["v3"][0])
    after = cache_files(store)
    assert len(after) == 1 and not set(before) & set(after)
    assert len(cache_files(store, ".json")) == 1  # the catalog of the current listing only
    info = store.info()  # the cache folder is no part of the store's data
    assert info["size_bytes"] == sum(info["bytes"].values()) and info["temp_files"] == 0
    store.compact()
    assert cache_files(store) == [] and cache_files(store, ".json") == []
    np.testing.assert_array_equal(store.read_arrays(["v2"])[1][0], newer["v2"][1])


def test_cache_limit_from_the_environment(store, cache, monkeypatch):
    """AMNETVID_CACHE_BYTES: arrays over it are not cached (read the same); 0 writes and reads
    no cache file; a bad value is an error."""
    write_videos(store, {"v1": 10, "v2": 10})
    first, _ = store.read_arrays(["v1", "v2"])
    assert len(cache_files(store)) == 1
    new_process()
    monkeypatch.setenv("AMNETVID_CACHE_BYTES", "0")

    def no_cache(*args, **kwargs):
        raise AssertionError("the cache was used")

    monkeypatch.setattr(cache_module, "load", no_cache)
    monkeypatch.setattr(cache_module, "save", no_cache)
    np.testing.assert_array_equal(store.read_arrays(["v1", "v2"])[0], first)
    monkeypatch.undo()
    store.compact()  # a new listing, no cache file
    monkeypatch.setenv("AMNETVID_CACHE_BYTES", "1000")  # smaller than the arrays
    for _ in range(2):
        again, _ = store.read_arrays(["v1", "v2"])
        np.testing.assert_array_equal(again, first)
    assert cache_files(store) == []
    monkeypatch.setenv("AMNETVID_CACHE_BYTES", "lots")
    with pytest.raises(StoreError, match="AMNETVID_CACHE_BYTES .* got 'lots'"):
        store.read_arrays(["v1"])


def test_cache_skips_a_first_small_read(store, cache):
    """A first read of a few of many videos decodes only those; a second one writes the cache file."""
    truth = write_videos(store, {f"v{i:02d}": 3 for i in range(20)})
    for expect_cached in (False, True):
        scores, _ = store.read_arrays(["v05"], maps=False)
        np.testing.assert_array_equal(scores[0], truth["v05"][0])
        assert bool(cache_files(store)) == expect_cached


def test_cache_scores_first_then_maps(store, cache, monkeypatch):
    """A maps=False read caches scores only; a maps=True read adds the maps, which also serve scores."""
    truth = write_videos(store, {"v1": 3, "v2": 3})
    store.read_arrays(["v1", "v2"], maps=False)
    only_scores = cache_files(store)
    _, maps = store.read_arrays(["v2", "v1"])
    assert len(only_scores) == 1 and len(cache_files(store)) == 2
    np.testing.assert_array_equal(maps[0], truth["v2"][1])
    only_scores[0].unlink()
    new_process()
    no_parquet(monkeypatch)
    scores, none = store.read_arrays(["v2"], maps=False)
    assert none is None
    np.testing.assert_array_equal(scores[0], truth["v2"][0])


def test_cache_is_thread_safe(store, cache):
    """Threads reading at once (each may build the cache) all get the right arrays."""
    truth = write_videos(store, {f"v{i}": 5 for i in range(12)})
    ids = [[f"v{(i * 5 + j) % 12}" for j in range(9)] for i in range(6)]
    results = [None] * len(ids)

    def work(k):
        results[k] = FeatureStore(store.path).read_arrays(ids[k], n_frames=2)

    assert in_threads(work, list(range(len(ids)))) == []
    for k, (scores, maps) in enumerate(results):
        for i, vid in enumerate(ids[k]):
            np.testing.assert_array_equal(maps[i], truth[vid][1][[0, 4]])
    assert len(cache_files(store)) == 1


def _child_read(path, queue):
    from amnetvid_sk.store import cache as module

    held = FeatureStore(path).read_arrays(["v2", "v1"])  # what the parent held, inherited
    module._HELD.clear()
    from_file = FeatureStore(path).read_arrays(["v2", "v1"])
    queue.put((held, from_file))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_cache_in_a_forked_child(store, cache):
    """A forked child reads right, from what it inherited and from the cache file."""
    import multiprocessing

    truth = write_videos(store, {"v1": 3, "v2": 3})
    store.read_arrays(["v1", "v2"])
    assert cache_files(store)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_read, args=(store.path, queue))
    child.start()
    got = queue.get(timeout=60)
    child.join(60)
    assert child.exitcode == 0
    for scores, maps in got:
        np.testing.assert_array_equal(maps[0], truth["v2"][1])
        np.testing.assert_array_equal(scores[1], truth["v1"][0])


def _read_together(path, barrier, decodes, queue):
    real = read_module.decode

    def counted(*args, **kwargs):
        with decodes.get_lock():
            decodes.value += 1
        time.sleep(0.5)  # a decode long enough for the others to want the same file meanwhile
        return real(*args, **kwargs)

    read_module.decode = counted
    barrier.wait(30)
    scores, maps = FeatureStore(path).read_arrays(["v1", "v2", "v3"], n_frames=2)
    queue.put((scores, maps))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_processes_reading_at_once_decode_once(store, cache):
    """Grid-search workers starting together: one builds the cache file, the others wait and map it."""
    import multiprocessing

    truth = write_videos(store, {"v1": 4, "v2": 4, "v3": 4})
    store.sql("SELECT 1")  # the parent's connection exists before the fork, as in a worker pool
    ctx = multiprocessing.get_context("fork")
    barrier, decodes, queue = ctx.Barrier(3), ctx.Value("i", 0), ctx.Queue()
    children = [ctx.Process(target=_read_together, args=(store.path, barrier, decodes, queue))
                for _ in range(3)]
    for child in children:
        child.start()
    got = [queue.get(timeout=120) for _ in children]
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    assert decodes.value == 1
    assert len(cache_files(store)) == 1
    for scores, maps in got:
        np.testing.assert_array_equal(maps[2], truth["v3"][1][[0, 3]])
        np.testing.assert_array_equal(scores[0], truth["v1"][0][[0, 3]])


def _read_only(fs, how):
    """Make the store refuse a cache file: its folders read-only, or the cache folder's name taken."""
    if how == "read-only folder":
        for folder in [fs.path, *(p for p in fs.path.iterdir() if p.is_dir())]:
            folder.chmod(0o555)
        if os.access(fs.path, os.W_OK):  # root writes anyway
            pytest.skip("this user can write a read-only folder")
    else:
        (fs.path / cache_module.CACHE_DIR).write_text("not a folder")


@pytest.mark.parametrize("how", ["read-only folder", "cache folder blocked"])
def test_a_store_that_cannot_be_written_still_reads(store, cache, monkeypatch, how):
    """Without a cache file the decoded arrays are held in memory: reads are right and decode once."""
    truth = write_videos(store, {"v1": 4, "v2": 4, "v3": 4})
    _read_only(store, how)
    try:
        scores, maps = store.read_arrays(["v3", "v1"], n_frames=2)
        assert cache_files(store) == []
        no_parquet(monkeypatch)
        again, maps_again = FeatureStore(store.path).read_arrays(["v1", "v2"], n_frames=2)
    finally:
        for folder in [store.path, *(p for p in store.path.iterdir() if p.is_dir())]:
            folder.chmod(0o755)
    np.testing.assert_array_equal(maps[0], truth["v3"][1][[0, 3]])
    np.testing.assert_array_equal(scores[1], truth["v1"][0][[0, 3]])
    np.testing.assert_array_equal(maps_again[1], truth["v2"][1][[0, 3]])
    np.testing.assert_array_equal(again[0], truth["v1"][0][[0, 3]])


def test_a_damaged_cache_file_is_built_again(store, cache):
    """A truncated cache file (or catalog) is deleted and built again, never a crash."""
    truth = write_videos(store, {"v1": 4, "v2": 6})
    store.read_arrays(["v1", "v2"], n_frames=3)
    [arrow], [catalog] = cache_files(store), cache_files(store, ".json")
    size = arrow.stat().st_size
    arrow.write_bytes(arrow.read_bytes()[: size // 2])
    catalog.write_text('{"extracted": [')
    new_process()
    scores, maps = store.read_arrays(["v2", "v1"], n_frames=3)
    np.testing.assert_array_equal(maps[0], truth["v2"][1][[0, 3, 5]])
    np.testing.assert_array_equal(scores[1], truth["v1"][0][[0, 2, 3]])
    assert arrow.stat().st_size == size and catalog.read_text().startswith('{"extracted": ["m1"]')


def test_frames_parts_store_maps_as_lz4_non_null_floats(store):
    """Attention maps are written LZ4 + byte-stream-split as non-null floats; null floats are refused."""
    write_videos(store, {"v1": 2})
    part = pq.ParquetFile(next((store.path / "frames").glob("part-*.parquet")))
    assert part.schema_arrow.field("attention").type == pa.list_(pa.field("element", pa.float32(), False), 588)
    column = {c.path_in_schema: c for c in (part.metadata.row_group(0).column(i)
                                            for i in range(part.metadata.num_columns))}
    assert column["attention.list.element"].compression == "LZ4"
    assert "BYTE_STREAM_SPLIT" in column["attention.list.element"].encodings
    assert column["extraction_id"].compression == "ZSTD"
    row = _video_row("v9", 1)
    bad = pa.table({"extraction_id": [row["extraction_id"]], "frame_index": [0], "timestamp": [0.0],
                    "score": pa.array([0.5], pa.float32()),
                    "attention": pa.array([[None] + [0.0] * 587], pa.list_(pa.float32()))})
    with pytest.raises(StoreError, match="missing values"):
        store.write_extractions([row], bad)
