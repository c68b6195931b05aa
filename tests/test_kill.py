"""SIGKILL at chosen moments of ``labels import``, ``compact``, ``evaluate`` (results rows) and ``predict``
(which extracts into the store), and ``compact`` run again and again while an extraction writes: after
each kill ``verify`` is clean and every table holds each row once, and running the command again
completes the work (real stores, real clips; the killed commands are real subprocesses, the
checks run the CLI in process; no mocks).

The kill delays are drawn from a fixed seed, one in each equal slice of the command's measured
duration (its first tenth left out: the interpreter is still starting). A kill often lands before the
command writes anything or after it is done; each check holds wherever it lands.
"""

import os
import random
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import AMNETVID, ROOT, moving_frames, run_cli, run_cli_process

pytestmark = pytest.mark.slow

SEED = 11
# kill points per command: fewer for the two that import torch and scikit-learn (5-15 s a run here)
KILLS = {"labels import": 4, "compact": 5, "evaluate": 3, "predict": 3}
# what the views must show once: each table's key, as store/README.md's dedup rules define it
KEYS = {"videos": "video_id, model, sampling", "frames": "video_id, model, sampling, frame_index",
        "embeddings": "extraction_id, frame_index", "labels": "video_id", "models": "model",
        "failures": "path, model, sampling", "results": "run_id, recipe, target, protocol, fold"}


def _delays(duration, n, seed=SEED):
    """``n`` delays in seconds, one drawn in each of ``n`` equal slices of [0.1, 1.0] x ``duration``."""
    rng = random.Random(seed)
    step = 0.9 * duration / n
    return [0.1 * duration + step * (i + rng.random()) for i in range(n)]


def _timed(*args):
    """Run the command to completion in a subprocess, as the kills will run it: (process, seconds)."""
    start = time.perf_counter()
    proc = run_cli_process(*args, check=0)
    return proc, time.perf_counter() - start


def _kill_after(args, delay):
    """Start the command, SIGKILL it (its whole process group) after ``delay`` s; its exit status
    (-9 when the kill ended it, else it had finished by itself)."""
    proc = subprocess.Popen([*AMNETVID, *map(str, args)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                            start_new_session=True)
    time.sleep(delay)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it ended and was reaped already
    return proc.wait(timeout=120)


def _temp_files(store):
    return sorted(str(p) for p in store.glob("*/.part-*.parquet.tmp"))


def _check_store(store):
    """``verify`` exits 0 and each view holds each row once (videos with all their frames); the
    hidden temporary files of a killed write are reported by verify and never read."""
    from amnetvid_sk.store import FeatureStore

    proc = run_cli("verify", "--store", store)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    left = _temp_files(store)
    assert ("temporary part files" in proc.stdout) == bool(left), (left, proc.stdout)
    fs = FeatureStore(store)
    for table, key in KEYS.items():
        counts = fs.sql(f"SELECT count(*) AS n, count(DISTINCT ({key})) AS once FROM {table}").to_pylist()[0]
        assert counts["n"] == counts["once"], (table, counts)
    short = fs.sql("SELECT count(*) AS n FROM videos AS v WHERE n_frames <> "
                   "(SELECT count(*) FROM frames AS f WHERE f.extraction_id = v.extraction_id)").to_pylist()
    assert short == [{"n": 0}]
    assert fs.info()["temp_files"] == len(left)
    return left


def _clean_temp_files(store, left):
    """Temporary files left by a kill: `verify --repair` deletes them (and says so), exit 0."""
    if left:
        proc = run_cli("verify", "--store", store, "--repair", check=0)
        assert f"deleted {len(left)} temporary part files" in proc.stdout, proc.stdout
    assert _temp_files(store) == []


def _copy(base, dst):
    shutil.copytree(base, dst, ignore=shutil.ignore_patterns(".cache"))
    return dst


def _report(name, delays, codes, temps):
    killed = sum(c == -signal.SIGKILL for c in codes)
    print(f"{name}: {len(delays)} kill points at {[round(d, 2) for d in delays]} s; {killed} killed it "
          f"running, {len(delays) - killed} came after it ended; {temps} left temporary files")


def _kill_loop(name, args, base, tmp_path, seconds, check):
    """Kill ``[*args, store]`` at each of the ``KILLS[name]`` delays drawn in ``seconds``, each time on a fresh
    copy of ``base``; after each kill the store passes :func:`_check_store`, then ``check(store, left, where)``
    runs (``left``: the temporary files the kill left; ``where``: which kill, for assertion messages)."""
    delays, codes, temps = _delays(seconds, KILLS[name]), [], 0
    for k, delay in enumerate(delays):
        store = _copy(base, tmp_path / f"kill{k}")
        codes.append(_kill_after([*args, store], delay))
        left = _check_store(store)
        temps += bool(left)
        check(store, left, f"kill {k} at {delay:.2f} s")
    _report(name, delays, codes, temps)


def _synthetic(path, n, seed, prefix):
    from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store

    maps, scores, y = make_moving_peak_dataset(n, n_frames=4, seed=seed)
    return write_synthetic_store(path, maps, scores, y, prefix=prefix)


def test_kill_labels_import(tmp_path):
    """A killed `labels import` leaves the old labels or all the new ones, never part; the rerun imports
    every row once."""
    from amnetvid_sk.labels import import_labels
    from amnetvid_sk.store import FeatureStore

    base = tmp_path / "base"
    old = tmp_path / "old.csv"
    old.write_text("video_id,short_term\n" + "".join(f"v{i:04d},0.25\n" for i in range(300)))
    import_labels(old, base, format="csv")
    new = tmp_path / "new.csv"
    values = {f"v{i:04d}": round(0.5 + i / 1000, 3) for i in range(200, 500)}
    new.write_text("video_id,short_term\n" + "".join(f"{v},{s}\n" for v, s in values.items()))
    args = ["labels", "import", new, "--format", "csv", "--store"]
    _, seconds = _timed(*args, _copy(base, tmp_path / "timed"))

    def check(store, left, where):
        fs = FeatureStore(store)
        # one import is one part file: the raw table holds all its rows or none
        by_source = {r["source"]: r["n"] for r in fs.sql(
            "SELECT source, count(*) AS n FROM labels_all GROUP BY 1").to_pylist()}
        assert by_source.get("csv:old.csv") == 300 and by_source.get("csv:new.csv", 0) in (0, 300), by_source
        run_cli(*args, store, check=0)
        _clean_temp_files(store, left)
        rows = {r["video_id"]: r for r in FeatureStore(store).sql("SELECT * FROM labels").to_pylist()}
        assert len(rows) == 500
        assert all(rows[v]["short_term"] == s and rows[v]["source"] == "csv:new.csv" for v, s in values.items())
        assert all(rows[f"v{i:04d}"]["short_term"] == 0.25 for i in range(200))

    _kill_loop("labels import", args, base, tmp_path, seconds, check)


def _visible(store):
    """What a compaction must keep: the visible rows of every table (attention by its hash)."""
    from amnetvid_sk.store import FeatureStore

    fs = FeatureStore(store)
    queries = {
        "videos": "SELECT extraction_id, video_id, extracted_at FROM videos ORDER BY ALL",
        "frames": "SELECT extraction_id, frame_index, score, hash(attention) AS h FROM frames ORDER BY ALL",
        "labels": "SELECT video_id, short_term, source FROM labels ORDER BY ALL",
        "models": "SELECT model, map_shape FROM models ORDER BY ALL",
        "failures": "SELECT path, reason, failed_at FROM failures ORDER BY ALL",
        "results": "SELECT run_id, fold, spearman FROM results ORDER BY ALL",
    }
    return {table: fs.sql(q).to_pylist() for table, q in queries.items()}


def test_kill_compact(tmp_path):
    """A killed `compact` changes nothing that the views show; the rerun leaves one part file per
    table holding every visible row once."""
    from amnetvid_sk.store import FeatureStore

    base = tmp_path / "base"
    for seed, prefix in ((0, "a"), (1, "b"), (2, "a"), (3, "c")):  # the second "a" hides the first
        _synthetic(base, 80, seed, prefix)
    fs = FeatureStore(base, create=True)
    for run in ("r1", "r2"):
        fs.write_results([{"run_id": run, "recipe": "mean_score", "target": "short", "protocol": "cv",
                           "fold": f, "spearman": 0.1 * f} for f in range(3)])
    fs.write_failure("clips/broken.mp4", "truncated file", "m", "frames=4")
    expected = _visible(base)
    assert len(expected["videos"]) == 240 and len(expected["frames"]) == 960
    args = ["compact", "--store"]
    _, seconds = _timed(*args, _copy(base, tmp_path / "timed"))

    def check(store, left, where):
        assert _visible(store) == expected, where
        if left:  # a temporary file untouched for longer than TEMP_AGE_S is a dead write's: compact removes it
            os.utime(left[0], (time.time() - 7200, time.time() - 7200))
        run_cli("compact", "--store", store, check=0)
        assert _temp_files(store) == left[1:]
        _clean_temp_files(store, left[1:])
        assert _visible(store) == expected
        parts = {t: len(list((store / t).glob("part-*.parquet"))) for t in KEYS}
        assert parts == {"videos": 1, "frames": 1, "embeddings": 0, "labels": 1, "models": 1, "failures": 1,
                         "results": 1}, parts
        assert FeatureStore(store).verify().ok

    _kill_loop("compact", args, base, tmp_path, seconds, check)


def test_kill_evaluate(tmp_path):
    """A killed `evaluate` writes all the fold rows of its run or none; the rerun writes the same scores."""
    from amnetvid_sk.store import FeatureStore

    base = tmp_path / "base"
    _synthetic(base, 60, 0, "syn")
    args = ["evaluate", "mean_score", "--target", "short", "--cv", "3", "--store"]
    _, seconds = _timed(*args, _copy(base, tmp_path / "timed"))
    reference = sorted((r["fold"], r["spearman"]) for r in FeatureStore(tmp_path / "timed").sql(
        "SELECT fold, spearman FROM results").to_pylist())
    assert [f for f, _ in reference] == [0, 1, 2]

    def check(store, left, where):
        runs = FeatureStore(store).sql("SELECT run_id, count(*) AS n FROM results GROUP BY 1").to_pylist()
        assert all(r["n"] == 3 for r in runs) and len(runs) <= 1, runs
        run_cli(*args, store, check=0)
        _clean_temp_files(store, left)
        rows = FeatureStore(store).sql("SELECT run_id, fold, spearman FROM results").to_pylist()
        assert len(rows) == 3 * (len(runs) + 1)
        last = [r for r in rows if r["run_id"] not in {x["run_id"] for x in runs}]
        got = sorted((r["fold"], r["spearman"]) for r in last)
        assert [f for f, _ in got] == [0, 1, 2]
        assert [s for _, s in got] == pytest.approx([s for _, s in reference], abs=1e-9)

    _kill_loop("evaluate", args, base, tmp_path, seconds, check)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, clip_dir, amnet_weights):
    """A store of three clips extracted by AMNet (random weights, 2 frames each: AMNet on these CPUs is
    the slow part) with labels, a mean_score pipeline fitted on it, and two new clips to predict."""
    from amnetvid_sk.testing.clips import write_clip

    root = tmp_path_factory.mktemp("kill_predict")
    store = root / "store"
    clips = [clip_dir / f"clip{i}.mp4" for i in (0, 1, 3)]
    run_cli("extract", *clips, "--store", store, "--frame-model", "amnet", "--weights", amnet_weights,
            "--frames", "2", "--device", "cpu", "--precision", "float32", "--no-progress", check=0)
    labels = root / "labels.csv"
    labels.write_text("video_id,short_term\n" + "".join(f"clip{i},{0.5 + 0.05 * i:.2f}\n" for i in (0, 1, 3)))
    run_cli("labels", "import", labels, "--store", store, "--format", "csv", check=0)
    model = root / "model.amnetvid"
    run_cli("fit", "mean_score", "--store", store, "--target", "short", "--out", model, check=0)
    new = root / "new"
    new.mkdir()
    for i in range(2):
        write_clip(new / f"new{i}.mp4", moving_frames(12, seed=40 + i), fps=12)
    return store, model, new


def _predictions(stdout):
    return {vid: float(p) for vid, p in (line.split("\t") for line in stdout.strip().splitlines()[1:])}


def test_kill_predict(fitted, tmp_path):
    """A killed `predict` leaves the new clips extracted whole or not at all; the rerun predicts both,
    each extracted once."""
    from amnetvid_sk.store import FeatureStore

    base, model, new = fitted
    args = ["predict", model, new, "--no-progress", "--store"]
    proc, seconds = _timed(*args, _copy(base, tmp_path / "timed"))
    reference = _predictions(proc.stdout)
    assert sorted(reference) == ["new0", "new1"]

    def check(store, left, where):
        proc = run_cli(*args, store, check=0)
        _clean_temp_files(store, left)
        got = _predictions(proc.stdout)
        assert sorted(got) == sorted(reference)
        assert [got[v] for v in sorted(got)] == pytest.approx([reference[v] for v in sorted(got)], abs=1e-4)
        # a video committed before the kill is skipped by the rerun: never extracted twice
        raw = FeatureStore(store).sql("SELECT video_id, count(*) AS n FROM videos_all GROUP BY 1 "
                                      "ORDER BY 1").to_pylist()
        assert raw == [{"video_id": v, "n": 1} for v in ["clip0", "clip1", "clip3", "new0", "new1"]], raw
        assert FeatureStore(store).verify().ok

    _kill_loop("predict", args, base, tmp_path, seconds, check)


def test_compact_while_extraction_writes(tmp_path, amnet_weights):
    """`compact` run again and again while `extract` writes one part file per video: every video the
    extraction committed is there with all its frames once, and verify is clean."""
    from amnetvid_sk.store import FeatureStore
    from amnetvid_sk.testing.clips import write_clip

    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(12):
        write_clip(clips / f"c{i:02d}.mp4", moving_frames(12, seed=i), fps=12)
    store = tmp_path / "store"
    extract = subprocess.Popen(
        [*AMNETVID, "extract", clips, "--store", store, "--frame-model", "amnet", "--weights", amnet_weights,
         "--frames", "2", "--flush-every", "1", "--device", "cpu", "--precision", "float32", "--no-progress"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs, rewrote = 0, 0
    while extract.poll() is None:
        if not store.exists():  # the extraction makes the store with its first write
            time.sleep(0.05)
            continue
        proc = run_cli("compact", "--store", store)
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        runs += 1
        rewrote += "frames" in proc.stdout
    out, err = extract.communicate(timeout=60)
    assert extract.returncode == 0, (out, err)
    assert "extracted 12, skipped 0" in out, out
    print(f"compact ran {runs} times during the extraction, {rewrote} of them rewrote frames")
    assert rewrote >= 2  # it did run beside the writer
    _check_store(store)
    fs = FeatureStore(store)
    frames = fs.sql("SELECT video_id, count(*) AS n, count(DISTINCT frame_index) AS once FROM frames "
                    "GROUP BY 1 ORDER BY 1").to_pylist()
    assert frames == [{"video_id": f"c{i:02d}", "n": 2, "once": 2} for i in range(12)], frames
    raw = fs.sql("SELECT count(*) AS n, count(DISTINCT (extraction_id, frame_index)) AS once "
                 "FROM frames_all").to_pylist()[0]
    assert raw["n"] == raw["once"] == 24, raw  # no frame copied twice (all compactions finished)
    run_cli("compact", "--store", store, check=0)
    scores, maps = fs.read_arrays([f"c{i:02d}" for i in range(12)], n_frames=2)
    assert scores.shape == (12, 2) and np.isfinite(scores).all() and maps.shape == (12, 2, 3, 14, 14)


def test_compact_beside_a_fast_writer_copies_nothing_twice(tmp_path):
    """Compactions in a loop beside a thread committing one small extraction after another (far more
    often than `extract` does): every committed video is there once with its frames, in the views and
    in the raw tables. A compaction that listed the store again after its first listing copied parts
    written in between without deleting them: frames twice."""
    import threading

    from amnetvid_sk.store import FeatureStore, frames_table, new_extraction_id

    store, model = tmp_path / "store", "toy-ab12"
    FeatureStore(store, create=True).write_model(model, "toy", {}, (3, 14, 14))
    stop, committed, errors = threading.Event(), [], []

    def writer():
        fs = FeatureStore(store, create=True)  # its own connection: one per thread
        while not stop.is_set() and not errors:
            eid, vid = new_extraction_id(), f"v{len(committed):05d}"
            row = {"extraction_id": eid, "video_id": vid, "path": f"/x/{vid}.mp4", "size": 1, "mtime": 0.0,
                   "duration": 1.0, "fps": 4.0, "frame_count": 4, "width": 8, "height": 8, "model": model,
                   "sampling": "frames=4", "n_frames": 4, "short": False}
            try:
                fs.write_extractions([row], frames_table(eid, np.arange(4), np.arange(4) / 4, np.full(4, 0.5),
                                                         np.full((4, 3, 14, 14), 1 / 196, np.float32)))
            except Exception as e:  # noqa: BLE001 (reported by the main thread)
                errors.append(e)
            else:
                committed.append(vid)

    thread = threading.Thread(target=writer)
    thread.start()
    fs, runs, start = FeatureStore(store), 0, time.perf_counter()
    try:
        while time.perf_counter() - start < 4 or runs < 5:
            fs.compact()
            runs += 1
    finally:
        stop.set()
        thread.join()
    print(f"{runs} compactions beside {len(committed)} commits")
    assert errors == []
    counts = fs.sql("SELECT (SELECT count(*) FROM videos) AS videos, (SELECT count(*) FROM frames) AS frames, "
                    "(SELECT count(DISTINCT (extraction_id, frame_index)) FROM frames) AS once, "
                    "(SELECT count(*) FROM frames_all) AS raw").to_pylist()[0]
    n = len(committed)
    assert counts == {"videos": n, "frames": 4 * n, "once": 4 * n, "raw": 4 * n}, (n, counts)
    assert sorted(fs.video_ids().tolist()) == committed
