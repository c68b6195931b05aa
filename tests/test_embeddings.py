"""Frame embeddings and scores-only extractions: the store's embeddings table, FrameEmbeddings, the
embedding_ridge recipe, extract --embeddings / --maps none, FeatureStore.df. Real clips, real stores."""

import os
import pickle

import numpy as np
import pytest
from sklearn.base import clone

from amnetvid_sk import FeatureStore, FrameEmbeddings, FrameScores, StoreError
from amnetvid_sk.extraction import extract
from amnetvid_sk.pipelines import load_recipe
from amnetvid_sk.store import embeddings_table, frames_table, new_extraction_id
from amnetvid_sk.store.read import positions

from conftest import run_cli

DIM = 8
MODEL = "toy-emb"


def video_row(vid, n, model=MODEL, sampling=None):
    return {"extraction_id": new_extraction_id(), "video_id": vid, "path": f"/data/{vid}.mp4", "size": 1,
            "mtime": 0.0, "duration": float(n), "fps": 1.0, "frame_count": n, "width": 64, "height": 64,
            "model": model, "sampling": sampling or "frames=6", "n_frames": n, "short": False}


def frame_values(vid_number, n):
    """Embeddings exact in float16: frame k of video v holds v + k/8 in column 0, k in column 1."""
    e = np.zeros((n, DIM), np.float32)
    e[:, 0] = vid_number + np.arange(n) / 8
    e[:, 1] = np.arange(n)
    e[:, 2:] = (np.arange(DIM - 2)[None, :] % 5) - 2
    return e


def write_embedded(fs, counts, with_embeddings=None, model=MODEL, sampling=None):
    """Videos v0, v1, ... with counts[i] frames each, with embeddings unless left out."""
    rows, frames, embs = [], [], []
    for i, n in enumerate(counts):
        row = video_row(f"v{i}", n, model, sampling)
        rows.append(row)
        frames.append(frames_table(row["extraction_id"], np.arange(n) * 3, np.arange(n) / 2,
                                   np.linspace(0.5, 0.9, n)))
        if with_embeddings is None or i in with_embeddings:
            embs.append(embeddings_table(row["extraction_id"], np.arange(n) * 3, frame_values(i, n)))
    import pyarrow as pa

    fs.write_extractions(rows, pa.concat_tables(frames), pa.concat_tables(embs) if embs else None)
    return rows


@pytest.fixture()
def emb_store(tmp_path):
    fs = FeatureStore(tmp_path / "store", create=True)
    fs.write_model(MODEL, "toy", {}, (3, 14, 14), maps="none", embedding_dim=DIM)
    rows = write_embedded(fs, [6, 6, 6, 4])
    return fs, rows


def test_pooled_and_unpooled_embeddings_are_the_stored_values(emb_store):
    """mean/max pool every stored frame; pooling=None with n_frames gives the frames positions() picks."""
    fs, _ = emb_store
    ids = ["v2", "v0", "v3", "v2"]
    step = FrameEmbeddings(fs.path).fit(ids)
    got = step.transform(ids)
    want = np.stack([frame_values(i, n).mean(axis=0) for i, n in [(2, 6), (0, 6), (3, 4), (2, 6)]])
    assert got.dtype == np.float32 and got.shape == (4, DIM)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    top = FrameEmbeddings(fs.path, pooling="max").fit_transform(ids)
    np.testing.assert_array_equal(top[:, 0], [2 + 5 / 8, 5 / 8, 3 + 3 / 8, 2 + 5 / 8])
    seq = FrameEmbeddings(fs.path, n_frames=3, pooling=None).fit_transform(["v0", "v3"])
    assert seq.shape == (2, 3, DIM)
    picked = positions(np.array([6, 4]), 3)
    np.testing.assert_array_equal(seq[:, :, 1], picked)  # column 1 holds the frame's position
    assert step.model_ == MODEL and step.sampling_ is not None and os.path.isabs(step.store_)


def test_unpooled_without_n_frames_needs_equal_counts(emb_store):
    """pooling=None and n_frames=None over videos with different frame counts is the store's error."""
    fs, _ = emb_store
    fs.write_model("toy-two", "toy", {}, (), maps="none", embedding_dim=DIM)
    write_embedded(fs, [6, 4], model="toy-two", sampling="fps=1")
    assert FrameEmbeddings(fs.path, model="toy-two").fit_transform(["v0", "v1"]).shape == (2, DIM)
    with pytest.raises(StoreError, match="different numbers of stored frames"):
        FrameEmbeddings(fs.path, pooling=None, model="toy-two").fit_transform(["v0", "v1"])


def test_both_reads_start_again_when_a_part_goes_mid_read(emb_store, monkeypatch):
    """Frames and embeddings share one retry: a part file gone mid-read is read again, and a store
    that keeps changing is a StoreError after three attempts."""
    from amnetvid_sk.store import scan

    fs, _ = emb_store
    monkeypatch.setenv("AMNETVID_CACHE_BYTES", "0")
    real, calls = scan.read_group, []

    def gone_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise FileNotFoundError("removed by compact()")
        return real(*args, **kwargs)

    monkeypatch.setattr(scan, "read_group", gone_once)
    assert fs.read_embeddings(["v3"], pooling="max").shape == (1, DIM)
    calls.clear()
    assert fs.read_arrays(["v3"], maps=False)[0].shape == (1, 4)

    def always_gone(*args, **kwargs):
        raise FileNotFoundError("removed by compact()")

    monkeypatch.setattr(scan, "read_group", always_gone)
    for read in (lambda: fs.read_embeddings(["v3"]), lambda: fs.read_arrays(["v3"], maps=False)):
        with pytest.raises(StoreError, match="changed during 3 reads in a row"):
            read()


def test_a_video_without_embeddings_is_named_with_the_fix(tmp_path):
    """Reading embeddings of a video extracted without them names it and says extract --embeddings."""
    fs = FeatureStore(tmp_path / "store", create=True)
    fs.write_model(MODEL, "toy", {}, (), maps="none", embedding_dim=DIM)
    write_embedded(fs, [4, 4, 4], with_embeddings={0, 2})
    assert FrameEmbeddings(fs.path).fit_transform(["v0", "v2"]).shape == (2, DIM)
    with pytest.raises(StoreError, match=r"1 of 2 requested videos have no frame embeddings.*'v1'.*"
                                         r"amnetvid extract PATH --embeddings"):
        FrameEmbeddings(fs.path).fit_transform(["v0", "v1"])


def test_embeddings_table_in_sql_info_and_compact(emb_store):
    """The embeddings view is plain SQL (a FLOAT[] list); info counts it; compact keeps it whole."""
    fs, rows = emb_store
    got = fs.sql("SELECT video_id, count(*) AS n, avg(embedding[1]) AS first, len(any_value(embedding)) AS d "
                 "FROM embeddings GROUP BY video_id ORDER BY video_id").to_pylist()
    assert [(r["video_id"], r["n"], r["d"]) for r in got] == [("v0", 6, DIM), ("v1", 6, DIM), ("v2", 6, DIM),
                                                             ("v3", 4, DIM)]
    assert got[1]["first"] == pytest.approx(1 + 2.5 / 8)
    described = {r["column_name"]: r["column_type"] for r in
                 fs.sql("SELECT column_name, column_type FROM (DESCRIBE embeddings)").to_pylist()}
    assert described["embedding"] == "FLOAT[]"
    assert fs.info()["tables"]["embeddings"] == 22
    before = fs.read_embeddings(["v0", "v3"], pooling="mean")
    write_embedded(fs, [6, 6, 6, 4])  # a second extraction of each video hides the first
    assert fs.info()["tables"]["embeddings"] == 22 and fs.info()["tables_all"]["embeddings"] == 44
    report = fs.compact()
    assert report["embeddings"] == (2, 1)
    assert fs.info()["tables_all"]["embeddings"] == 22
    np.testing.assert_array_equal(fs.read_embeddings(["v0", "v3"], pooling="mean"), before)


def test_write_embeddings_adds_to_an_extraction_and_checks_it(tmp_path):
    """write_embeddings keys embeddings to an existing extraction; wrong frames, sizes or ids are refused."""
    fs = FeatureStore(tmp_path / "store", create=True)
    fs.write_model(MODEL, "toy", {}, (), maps="none", embedding_dim=DIM)
    rows = write_embedded(fs, [4, 4], with_embeddings=set())
    eid = rows[0]["extraction_id"]
    with pytest.raises(StoreError, match="not one per stored frame"):
        fs.write_embeddings(embeddings_table(eid, [0, 3, 6], frame_values(0, 3)))
    with pytest.raises(StoreError, match="embedding_dim = 8"):
        fs.write_embeddings(embeddings_table(eid, [0, 3, 6, 9], np.ones((4, 5))))
    with pytest.raises(StoreError, match="no visible videos row"):
        fs.write_embeddings(embeddings_table("nope", [0], np.ones((1, DIM))))
    with pytest.raises(StoreError, match="not finite in float16"):
        embeddings_table(eid, [0], np.full((1, DIM), 1e6))
    assert fs.write_embeddings(embeddings_table(eid, [0, 3, 6, 9], frame_values(0, 4))) == 1
    # the same embeddings added twice (two runs at once): the view and the read take one copy
    assert fs.write_embeddings(embeddings_table(eid, [0, 3, 6, 9], frame_values(0, 4) + 1)) == 1
    assert fs.sql("SELECT count(*) AS n FROM embeddings").to_pylist() == [{"n": 4}]
    np.testing.assert_array_equal(fs.read_embeddings(["v0"], pooling="max")[0], frame_values(0, 4).max(axis=0))
    assert fs.sql("SELECT count(*) AS n FROM frames_all").to_pylist() == [{"n": 8}]


def test_compact_keeps_the_first_copy_of_embeddings_added_twice(tmp_path):
    """Embeddings of one extraction written twice (two runs at once): compact keeps the copy the view
    shows, the first part file's, once."""
    fs = FeatureStore(tmp_path / "store", create=True)
    fs.write_model(MODEL, "toy", {}, (), maps="none", embedding_dim=DIM)
    eid = write_embedded(fs, [4, 4], with_embeddings=set())[0]["extraction_id"]
    fs.write_embeddings(embeddings_table(eid, [0, 3, 6, 9], frame_values(0, 4)))
    fs.write_embeddings(embeddings_table(eid, [0, 3, 6, 9], frame_values(0, 4) + 1))
    before = fs.read_embeddings(["v0"])
    assert fs.compact()["embeddings"] == (2, 1)
    assert fs.sql("SELECT count(*) AS n FROM embeddings_all").to_pylist() == [{"n": 4}]
    np.testing.assert_array_equal(fs.read_embeddings(["v0"]), before)
    np.testing.assert_array_equal(before[0], frame_values(0, 4).astype(np.float16).astype(np.float32))


def test_scores_only_model_has_no_maps_and_says_so(tmp_path):
    """A maps='none' model stores null attention; read_arrays(maps=True) explains; FrameScores reads it."""
    fs = FeatureStore(tmp_path / "store", create=True)
    fs.write_model("toy-scores", "toy", {}, (3, 14, 14), maps="none")
    write_embedded(fs, [4, 4], with_embeddings=set(), model="toy-scores")
    assert fs.models()[0]["maps"] == "none" and fs.models()[0]["map_shape"] == ()
    assert fs.sql("SELECT count(*) AS n FROM frames WHERE attention IS NULL").to_pylist() == [{"n": 8}]
    scores, maps = fs.read_arrays(["v1", "v0"], maps=False)
    assert scores.shape == (2, 4) and maps is None
    with pytest.raises(StoreError, match=r"holds scores only.*maps=False.*without --maps none"):
        fs.read_arrays(["v0"])
    np.testing.assert_allclose(FrameScores(fs.path).fit_transform(["v0"]), scores[1:])
    with pytest.raises(StoreError, match="stores no frame embeddings"):
        fs.read_embeddings(["v0"])
    with pytest.raises(StoreError, match="must have no attention maps"):
        row = video_row("v9", 2, "toy-scores")
        fs.write_extractions([row], frames_table(row["extraction_id"], [0, 1], [0, 1], [0.5, 0.5],
                                                 np.ones((2, 3, 14, 14))))


def test_embedding_ridge_recipe_learns_from_embeddings(tmp_path):
    """The recipe's pipeline cross-validates on ids; its grid names real parameters."""
    from sklearn.model_selection import cross_val_predict

    from amnetvid_sk.metrics import spearman

    fs = FeatureStore(tmp_path / "store", create=True)
    fs.write_model(MODEL, "toy", {}, (), maps="none", embedding_dim=DIM)
    rng = np.random.default_rng(0)
    import pyarrow as pa

    rows, frames, embs, y = [], [], [], []
    for i in range(40):
        row = video_row(f"v{i:02d}", 4)
        e = rng.normal(size=(4, DIM)).astype(np.float16).astype(np.float32)
        rows.append(row)
        frames.append(frames_table(row["extraction_id"], range(4), range(4), [0.5] * 4))
        embs.append(embeddings_table(row["extraction_id"], range(4), e))
        y.append(e[:, 0].mean() - 0.5 * e[:, 3].mean() + 0.05 * rng.normal())
    fs.write_extractions(rows, pa.concat_tables(frames), pa.concat_tables(embs))
    recipe = load_recipe("embedding_ridge")
    pipe = recipe.pipeline(str(fs.path))
    assert [type(s).__name__ for _, s in pipe.steps] == ["FrameEmbeddings", "StandardScaler", "RidgeCV"]
    assert set(recipe.param_grid) <= set(pipe.get_params())
    ids = np.array([r["video_id"] for r in rows], dtype=object)
    pred = cross_val_predict(pipe, ids, np.array(y), cv=4)
    assert spearman(np.array(y), pred) > 0.8


def test_frame_embeddings_validates_clones_and_pickles(emb_store):
    """check_param_validation on FrameEmbeddings; a fitted step pickles with the same output."""
    from sklearn.utils.estimator_checks import check_param_validation

    fs, _ = emb_store
    check_param_validation("FrameEmbeddings", FrameEmbeddings(str(fs.path)))
    with pytest.raises(ValueError, match=r"The 'pooling' parameter of FrameEmbeddings must be"):
        FrameEmbeddings(str(fs.path), pooling="sum").fit(["v0"])
    fitted = clone(FrameEmbeddings(str(fs.path), n_frames=2)).fit(["v0"])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fitted)).transform(["v1"]), fitted.transform(["v1"]))


def test_df_returns_a_dataframe_through_the_read_only_guard(emb_store):
    """FeatureStore.df gives a pandas DataFrame of the same query, and refuses what sql() refuses."""
    pytest.importorskip("pandas")
    from amnetvid_sk import ReadOnlyQueryError

    fs, _ = emb_store
    frame = fs.df("SELECT video_id, count(*) AS n FROM frames WHERE score > ? GROUP BY 1 ORDER BY 1", [0.0])
    assert frame["video_id"].tolist() == ["v0", "v1", "v2", "v3"] and frame["n"].tolist() == [6, 6, 6, 4]
    with pytest.raises(ReadOnlyQueryError):
        fs.df("DELETE FROM labels")


# ---------------------------------------------------------------------------- real extraction


@pytest.fixture(scope="module")
def amnet32():
    from amnetvid_sk.frame_models.amnet import AMNet

    return AMNet.from_random(seed=0, device="cpu", precision="float32", batch_size=8)


def test_extract_embeddings_after_a_plain_extract_adds_them_without_new_frames(clips, tmp_path, amnet32):
    """extract --embeddings over extracted videos writes embeddings only; the next run skips them all."""
    some = [clips / "clip0.mp4", clips / "clip1.mp4"]
    store = tmp_path / "store"
    extract(some, store=store, frame_model=amnet32, n_frames=3, progress=False)
    fs = FeatureStore(store)
    frames_before = fs.sql("SELECT * FROM frames_all ORDER BY extraction_id, frame_index")
    scores_before, _ = fs.read_arrays(["clip0", "clip1"], maps=False)
    added = extract(some, store=store, frame_model=amnet32, n_frames=3, progress=False, embeddings=True)
    assert len(added.extracted) == 2
    assert fs.sql("SELECT * FROM frames_all ORDER BY extraction_id, frame_index").equals(frames_before)
    assert fs.sql("SELECT count(*) AS n FROM videos_all").to_pylist() == [{"n": 2}]
    emb = fs.read_embeddings(["clip0", "clip1"])
    assert emb.shape == (2, 3, 1024) and np.isfinite(emb).all() and emb.std() > 0
    again = extract(some, store=store, frame_model=amnet32, n_frames=3, progress=False, embeddings=True)
    assert again.extracted == [] and len(again.skipped) == 2
    # the embeddings are the model's own, from the forward pass that gives these scores
    out = amnet32.predict_outputs(np.zeros((1, 48, 64, 3), np.uint8), embeddings=True)
    assert out.embeddings.shape == (1, 1024)
    np.testing.assert_array_equal(fs.read_arrays(["clip0", "clip1"], maps=False)[0], scores_before)


def test_extract_embeddings_asks_the_store_once_per_run_not_per_flush(clips, tmp_path, amnet32, monkeypatch):
    """A flush of videos new to the store runs no query over the whole store (a cost per flush that grew
    with the store): which videos lack embeddings is asked once per run, and again only for a flush that
    holds one of them, which then gets its embeddings alone."""
    calls = []
    real = FeatureStore.extracted_files
    monkeypatch.setattr(FeatureStore, "extracted_files", lambda self, *a: calls.append(a) or real(self, *a))
    store = tmp_path / "store"
    new = [clips / "clip0.mp4", clips / "clip1.mp4", clips / "clip3.mp4"]
    done = extract(new, store=store, frame_model=amnet32, n_frames=3, progress=False, embeddings=True,
                   flush_every=1)
    assert len(done.extracted) == 3
    assert len(calls) == 2  # the plan's look at the store, and the extractor's one for the run
    fs = FeatureStore(store)
    assert fs.read_embeddings(["clip0", "clip1", "clip3"]).shape == (3, 3, 1024)
    # a video extracted without embeddings, flushed among new ones: only its embeddings are added
    extract([clips / "clip4.mp4"], store=store, frame_model=amnet32, n_frames=3, progress=False)
    frames_before = fs.sql("SELECT * FROM frames_all WHERE video_id = 'clip4' ORDER BY frame_index")
    calls.clear()
    mixed = extract([clips / "clip5.webm", clips / "clip4.mp4", clips / "clip2.webm"], store=store,
                    frame_model=amnet32, n_frames=3, progress=False, embeddings=True, flush_every=1)
    assert len(mixed.extracted) == 3 and len(calls) <= 3  # plan, run, and at most the flush of clip4
    assert fs.sql("SELECT * FROM frames_all WHERE video_id = 'clip4' ORDER BY frame_index").equals(frames_before)
    assert fs.sql("SELECT count(*) AS n FROM videos_all WHERE video_id = 'clip4'").to_pylist() == [{"n": 1}]
    assert fs.read_embeddings(["clip4", "clip5", "clip2"]).shape == (3, 3, 1024)


def test_scores_only_extraction_never_mixes_with_maps(clips, tmp_path, amnet32):
    """extract(maps='none') writes another fingerprint with null attention; model=None then lists both."""
    from amnetvid_sk.frame_models.amnet import AMNet

    store = tmp_path / "store"
    some = [clips / "clip0.mp4", clips / "clip3.mp4"]
    extract(some, store=store, frame_model=amnet32, n_frames=3, progress=False)
    fast = AMNet.from_random(seed=0, device="cpu", precision="float32", batch_size=8, maps="none")
    summary = extract(some, store=store, frame_model=fast, n_frames=3, progress=False)
    assert len(summary.extracted) == 2  # not "already done": its own fingerprint
    fs = FeatureStore(store)
    assert fast.fingerprint != amnet32.fingerprint
    with pytest.raises(StoreError, match="holds 2 frame models"):
        FrameScores(store).fit(["clip0"])
    only = FrameScores(store, model=fast.fingerprint).fit_transform(["clip0", "clip3"])
    full = FrameScores(store, model=amnet32.fingerprint).fit_transform(["clip0", "clip3"])
    np.testing.assert_allclose(only, full, rtol=1e-5, atol=1e-6)  # same forward pass, no maps
    nulls = fs.sql("SELECT model, count(*) FILTER (WHERE attention IS NULL) AS n FROM frames GROUP BY 1 "
                   "ORDER BY 1").to_pylist()
    assert {r["model"]: r["n"] for r in nulls} == {amnet32.fingerprint: 0, fast.fingerprint: 6}
    mean_score = load_recipe("mean_score").pipeline(str(store)).set_params(frames__model=fast.fingerprint)
    assert mean_score.fit(["clip0", "clip3"], [0.1, 0.2]).predict(["clip0"]).shape == (1,)
    with pytest.raises(ValueError, match="built with maps='none'"):
        extract(some, store=store, frame_model=fast, maps="attention", n_frames=3, progress=False)


def test_cli_extract_embeddings_round_trip(clips, tmp_path, amnet_weights):
    """`amnetvid extract --embeddings --maps none` (the CLI in process); the embeddings read back."""
    store = tmp_path / "store"
    proc = run_cli("extract", clips / "clip3.mp4", "--store", store, "--frame-model", "amnet", "--weights",
                   amnet_weights, "--precision", "float32", "--frames", "2", "--embeddings", "--maps", "none",
                   "--no-progress", check=0)
    assert "extracted 1" in proc.stdout
    fs = FeatureStore(store)
    assert fs.models()[0]["maps"] == "none" and fs.models()[0]["embedding_dim"] == 1024
    assert FrameEmbeddings(store).fit_transform(["clip3"]).shape == (1, 1024)
    assert fs.sql("SELECT count(*) AS n FROM embeddings WHERE len(embedding) = 1024").to_pylist() == [{"n": 2}]
    again = run_cli("extract", clips / "clip3.mp4", "--store", store, "--frame-model", "amnet", "--weights",
                    amnet_weights, "--precision", "float32", "--frames", "2", "--embeddings", "--maps", "none",
                    "--no-progress", check=0)
    assert "skipped 1" in again.stdout


@pytest.mark.slow
def test_resmem_embeddings_fit_the_budget(clips, tmp_path):
    """Real ResMem weights: 2048 values per frame, at most 4 KB per frame on disk, readable by SQL."""
    pytest.importorskip("resmem")
    store = tmp_path / "store"
    summary = extract([clips / "clip4.mp4"], store=store, frame_model="resmem", precision="float32",
                      n_frames=3, maps="none", embeddings=True, progress=False, device="cpu")
    assert summary.ok and len(summary.extracted) == 1
    fs = FeatureStore(store)
    emb = FrameEmbeddings(store, pooling=None).fit_transform(["clip4"])
    assert emb.shape == (1, 3, 2048) and np.isfinite(emb).all() and (emb >= 0).all() and emb.max() > 0
    # bytes on disk per frame, less the Parquet footer: one per part file (16 videos by default),
    # which a 3-frame file cannot spread
    import pyarrow.parquet as pq

    (part,) = (store / "embeddings").glob("part-*.parquet")
    footer = pq.read_metadata(part).serialized_size + 12  # footer, its length and the two magics
    per_frame = (part.stat().st_size - footer) / 3
    assert fs.info()["bytes"]["embeddings"] == part.stat().st_size
    assert per_frame <= 4096, per_frame
    rows = fs.sql("SELECT frame_index, list_avg(embedding) AS m FROM embeddings ORDER BY 1").to_pylist()
    np.testing.assert_allclose([r["m"] for r in rows], emb[0].mean(axis=1), rtol=1e-5)
