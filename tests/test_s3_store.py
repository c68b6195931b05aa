"""The store in S3 (``s3://bucket/prefix``), against a real S3 server on localhost: SeaweedFS's
``weed`` (the ``s3`` extra, which ``make test`` installs), started once for the session and stopped
after. Without ``weed`` the tests skip, saying how to get it."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from amnetvid_sk.testing.s3_server import KEY, SECRET, S3Server
from amnetvid_sk.testing.s3_server import free_ports as _free_ports
from amnetvid_sk.testing.s3_server import weed_binary as _weed
from conftest import ROOT, fresh_loky_workers, in_threads, run_cli

BUCKET = "amnetvid-test"
PLUGIN_DIR = Path(__file__).resolve().parent / "plugin_pkg"
TINY_ARGS = ["--frame-model", "tiny_frame_model:TinyFrameModel", "--device", "cpu", "--precision", "float32",
             "--frames", "3", "--no-progress"]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A SeaweedFS server (master, volume, filer, S3 gateway) on free localhost ports, with one
    identity; yields the AWS environment variables that reach it (amnetvid_sk.testing.s3_server)."""
    if _weed() is None:
        pytest.skip("SeaweedFS's `weed` is not installed, so no S3 server can run here: "
                    "pip install -e '.[s3]' (make test installs it)")
    with S3Server(tmp_path_factory.mktemp("seaweedfs"), BUCKET, KEY, SECRET) as env:
        yield env


@pytest.fixture
def s3(s3_server, monkeypatch):
    """A fresh store URL in the test bucket, with the server's AWS environment set for this test."""
    for name, value in s3_server.items():
        monkeypatch.setenv(name, value)
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def plugin(s3_server):
    """The test plug-in frame model (tests/plugin_pkg, fast) importable here and, through the
    environment it yields (the S3 server's too), in the worker processes started with it."""
    env = dict(s3_server, PYTHONPATH=os.pathsep.join(filter(None, [str(PLUGIN_DIR), os.environ.get("PYTHONPATH")])))
    sys.path.insert(0, str(PLUGIN_DIR))
    try:
        yield env
    finally:
        sys.path.remove(str(PLUGIN_DIR))


@pytest.fixture(scope="module")
def extracted(plugin, clip_dir, tmp_path_factory):
    """Three clips extracted into the bucket with ``--backend joblib --n-jobs 2``, and the same into a
    local store: (S3 URL, local folder, video ids)."""
    url = f"s3://{BUCKET}/extracted-{uuid.uuid4().hex[:8]}"
    local = tmp_path_factory.mktemp("local") / "store"
    clips = [clip_dir / f"clip{i}.mp4" for i in (0, 1, 3)]
    with fresh_loky_workers():  # workers started now, with the server's environment and the plug-in
        run_cli("extract", *clips, "--store", url, "--backend", "joblib", "--n-jobs", "2", *TINY_ARGS,
                env=plugin, check=0)
    run_cli("extract", *clips, "--store", local, *TINY_ARGS, check=0)
    return url, local, [c.stem for c in clips]


def _copy_prefix(src, dst):
    """Copy every object under the S3 prefix ``src`` to ``dst`` (server side)."""
    import pyarrow.fs as pafs

    from amnetvid_sk.store import location

    fs, key = location._split(src)
    for info in fs.get_file_info(pafs.FileSelector(key, recursive=True)):
        if info.type == pafs.FileType.File:
            fs.copy_file(info.path, location._split(dst)[1] + info.path[len(key):])


def _count(fs, query, params=None):
    return fs.sql(query, params).to_pylist()[0]["n"]


@pytest.mark.slow  # joblib's worker processes import torch
def test_extract_with_joblib_into_the_bucket(extracted, s3):
    """Two joblib workers write their parts straight to the bucket: the same rows as a local run,
    readable by FeatureStore, `amnetvid sql` and `amnetvid info`."""
    from amnetvid_sk.store import FeatureStore

    url, local, ids = extracted
    fs, ref = FeatureStore(url), FeatureStore(local)
    assert fs.path == url and list(fs.video_ids()) == sorted(ids)
    s1, m1 = fs.read_arrays(ids)
    s0, m0 = ref.read_arrays(ids)
    np.testing.assert_allclose(s1, s0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m1, m0, rtol=1e-4, atol=1e-6)
    q = "SELECT video_id, frame_index, len(attention) AS k FROM frames ORDER BY 1, 2"
    assert fs.sql(q).to_pylist() == ref.sql(q).to_pylist()
    out = run_cli("sql", "SELECT count(*) AS n FROM frames", "--store", url, "--format", "csv", check=0).stdout
    assert out.split() == ["n", "9"]
    info = run_cli("info", "--store", url, check=0).stdout
    assert f"store: {url}" in info and "frames" in info


def test_extract_with_dask_into_the_bucket(s3, plugin, clip_dir):
    """The Dask backend on a LocalCluster: each worker writes its parts to the bucket."""
    distributed = pytest.importorskip("distributed")
    from amnetvid_sk.store import FeatureStore

    clips = [clip_dir / f"clip{i}.mp4" for i in (0, 1)]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        run_cli("extract", *clips, "--store", s3, "--backend", "dask", "--scheduler", cluster.scheduler_address,
                *TINY_ARGS, check=0)
    fs = FeatureStore(s3)
    assert list(fs.video_ids()) == ["clip0", "clip1"]
    assert _count(fs, "SELECT count(*) AS n FROM frames") == 6
    assert fs.verify().ok


_KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    import numpy as np, pyarrow as pa
    from amnetvid_sk.store import FeatureStore, frames_table, location, new_extraction_id
    url, when = sys.argv[1], sys.argv[2]
    fs = FeatureStore(url, create=True)
    fs.write_model("toy", "toy", {}, (3, 14, 14))
    eid = new_extraction_id()
    row = {"extraction_id": eid, "video_id": "killed", "path": "/x/killed.mp4", "size": 1, "mtime": 0.0,
           "duration": 1.0, "fps": 4.0, "frame_count": 4, "width": 14, "height": 14, "model": "toy",
           "sampling": "frames=4", "n_frames": 4, "short": False}
    frames = frames_table(eid, np.arange(4), np.arange(4) / 4, np.ones(4), np.full((4, 3, 14, 14), 1 / 196))
    if when == "before-commit":  # the frames part is written, the videos row never is
        real = location.write_whole
        def write_whole(path, produce):
            if "/videos/" in path:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(path, produce)
        location.write_whole = write_whole
        fs.write_extractions([row], frames)
    else:  # half of a large object uploaded (a multipart upload under way), then killed
        fs_, key = location._split(url + "/frames/part-99999999999999999999-killed.parquet")
        out = fs_.open_output_stream(key)
        out.write(b"x" * (12 << 20))
        out.flush()
        os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.parametrize("when", ["before-commit", "mid-upload"])
def test_a_killed_writer_leaves_nothing_visible(s3, when):
    """A writer killed after its frames part (before the videos row), or in the middle of uploading
    an object, leaves nothing a reader sees; verify finds the store whole."""
    from amnetvid_sk.store import FeatureStore

    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, s3, when], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    fs = FeatureStore(s3)
    assert list(fs.video_ids()) == []
    assert _count(fs, "SELECT count(*) AS n FROM frames") == 0
    raw = _count(fs, "SELECT count(*) AS n FROM frames_all")
    assert raw == (4 if when == "before-commit" else 0)  # the uncommitted part; never a half object
    report = fs.verify()
    assert report.ok and report.checked == len(fs._con.files["frames"]) + 1  # + the models part


def test_two_writers_at_once_lose_nothing(s3):
    """Two writers extracting overlapping videos into one prefix at the same time: every video
    visible once, with all its frames."""
    from amnetvid_sk.store import FeatureStore
    from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store

    FeatureStore(s3, create=True)

    def writer(seed):
        for batch in range(3):
            maps, scores, y = make_moving_peak_dataset(6, seed=seed + batch)
            # writer 0 writes videos a0000-a0005 three times, writer 1 b0000-b0005 and a0000-a0005
            write_synthetic_store(s3, maps, scores, y, prefix="a" if batch != 1 or seed == 0 else "b")

    assert in_threads(writer, [0, 10]) == []
    fs = FeatureStore(s3)
    assert list(fs.video_ids()) == [f"a{i:04d}" for i in range(6)] + [f"b{i:04d}" for i in range(6)]
    assert _count(fs, "SELECT count(*) AS n FROM frames") == 12 * 4
    assert _count(fs, "SELECT count(*) AS n FROM videos_all") == 6 * 6
    scores, maps = fs.read_arrays(fs.video_ids())
    assert scores.shape == (12, 4) and not np.isnan(maps).any()


@pytest.mark.slow
def test_evaluate_fit_and_predict_from_the_bucket(extracted, s3, clip_dir, tmp_path):
    """labels import, evaluate, fit and predict, all with --store s3://...; predict extracts a new
    clip into the bucket."""
    from amnetvid_sk.store import FeatureStore

    url, _, ids = extracted
    store = f"{url}-labelled"  # its own copy: labels and predict write into it; the module's other tests read url
    _copy_prefix(url, store)
    labels = tmp_path / "labels.csv"
    labels.write_text("video_id,short_term,long_term\n"
                      + "".join(f"{vid},{0.5 + 0.1 * i:.2f},{0.3 + 0.05 * i:.2f}\n" for i, vid in enumerate(ids)))
    run_cli("labels", "import", labels, "--store", store, "--format", "csv", check=0)
    out = run_cli("evaluate", "mean_score", "--store", store, "--target", "short", "--cv", "3", check=0).stdout
    assert "spearman" in out.lower()
    assert _count(FeatureStore(store), "SELECT count(DISTINCT fold) AS n FROM results") == 3
    model = tmp_path / "model.joblib"
    run_cli("fit", "mean_score", "--store", store, "--target", "short", "--out", model, check=0)
    proc = run_cli("predict", model, clip_dir / "clip4.mp4", "--store", store, "--no-progress", check=0)
    rows = dict(line.split("\t") for line in proc.stdout.strip().splitlines()[1:])
    scores, _ = FeatureStore(store).read_arrays(["clip4"], maps=False)
    assert float(rows["clip4"]) == pytest.approx(scores[0].mean(), abs=1e-4)


@pytest.mark.slow  # three trainings per target
def test_table1_from_the_bucket(s3):
    """``amnetvid table1 --store s3://...`` prints every cell with its interval, as from a local store."""
    from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store

    maps, scores, y = make_moving_peak_dataset(16, n_frames=4, seed=0)
    ids = write_synthetic_store(s3, maps, scores, y, np.clip(y + 0.05, 0, 1))
    out = run_cli("table1", "--store", s3, "--cv", "2", "--max-epochs", "1", check=0).stdout
    assert len(re.findall(r"-?\d\.\d{4} \[-?\d\.\d\d, -?\d\.\d\d\]", out)) == 6, out
    for target in ("short", "long"):
        assert f"{target}-term: {len(ids)} labelled videos with features" in out, out


def test_grid_and_report_from_the_bucket(s3, tmp_path):
    """grid and report read a store in the bucket as they read a local one."""
    from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store

    write_synthetic_store(s3, *make_moving_peak_dataset(12, n_frames=4, seed=0))
    out = run_cli("grid", "mean_score", "--store", s3, "--target", "short", "--cv", "2", check=0).stdout
    assert "frames__n_frames" in out
    run_cli("report", "--store", s3, "--out", tmp_path / "report", "--videos", "syn0001", check=0)
    assert s3 in (tmp_path / "report" / "index.html").read_text()


def test_compact_beside_a_reader(s3):
    """compact() in the bucket while another thread reads: the reader sees each row once throughout;
    compact leaves one part per table and deletes only what it rewrote."""
    from amnetvid_sk.store import FeatureStore
    from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store

    for seed in range(4):
        write_synthetic_store(s3, *make_moving_peak_dataset(5, seed=seed), prefix=f"s{seed}-")
    fs = FeatureStore(s3)
    seen, errors, done = [], [], threading.Event()

    def reader():
        mine = FeatureStore(s3)
        try:
            while not done.is_set():
                seen.append(mine.sql("SELECT count(*) AS n, count(DISTINCT (extraction_id, frame_index)) AS d, "
                                     "(SELECT count(*) FROM videos) AS v FROM frames").to_pylist()[0])
        except Exception as e:  # reported by the main thread
            errors.append(e)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        time.sleep(0.3)
        report = fs.compact()
        time.sleep(0.3)
    finally:
        done.set()
        thread.join()
    assert not errors and len(seen) >= 2
    assert all(r == {"n": 80, "d": 80, "v": 20} for r in seen), seen
    assert report["frames"] == (4, 1) and report["videos"] == (4, 1)
    assert fs.info()["files"]["frames"] == 1
    assert fs.verify().ok and len(fs.video_ids()) == 20


def test_verify_repair_quarantines_a_damaged_object(s3):
    """A frames object cut in half: sql names it, verify reports it (exit 1), --repair moves it under
    the prefix's quarantine/, and the store then reads whole without those videos."""
    from amnetvid_sk.store import FeatureStore, location
    from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store

    write_synthetic_store(s3, *make_moving_peak_dataset(2, seed=0), prefix="keep")
    write_synthetic_store(s3, *make_moving_peak_dataset(2, seed=1), prefix="lost")
    fs = FeatureStore(s3)
    part = [p for p in location.list_names(f"{s3}/frames", lambda n: n.endswith(".parquet"))][-1]
    damaged = f"{s3}/frames/{part}"
    data = location.source(damaged).read()
    location.write_whole(damaged, lambda sink: sink.write(data[:len(data) // 2]) and 1)
    proc = run_cli("sql", "SELECT count(*) FROM frames", "--store", s3)
    assert proc.returncode == 2 and part in proc.stderr and "verify" in proc.stderr
    proc = run_cli("verify", "--store", s3)
    assert proc.returncode == 1 and f"frames/{part}" in proc.stdout
    proc = run_cli("verify", "--store", s3, "--repair")
    assert proc.returncode == 1 and "quarantined: quarantine/frames/" in proc.stdout
    assert location.exists(f"{s3}/quarantine/frames/{part}") and not location.exists(damaged)
    run_cli("verify", "--store", s3, check=0)
    assert list(fs.video_ids()) == ["keep0000", "keep0001"]


def test_sql_guard_keeps_queries_inside_the_prefix(s3, tmp_path):
    """A query on an S3 store reads its tables only: no other prefix or bucket, no local file."""
    from amnetvid_sk.errors import ReadOnlyQueryError
    from amnetvid_sk.store import FeatureStore
    from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store

    write_synthetic_store(s3, *make_moving_peak_dataset(2))
    other = f"s3://{BUCKET}/other-{uuid.uuid4().hex[:8]}"
    write_synthetic_store(other, *make_moving_peak_dataset(2))
    local = tmp_path / "local"
    write_synthetic_store(local, *make_moving_peak_dataset(2))
    local_part = next((local / "frames").glob("part-*.parquet"))
    fs = FeatureStore(s3)
    assert _count(fs, "SELECT count(*) AS n FROM frames") == 8
    own = fs._con.files["frames"][0]
    for query in (f"SELECT * FROM read_parquet('{other}/frames/*.parquet')",
                  f"SELECT * FROM read_parquet('{own}')",  # even its own objects: through the tables only
                  "SELECT * FROM read_parquet('s3://another-bucket/x.parquet')",
                  f"SELECT * FROM read_parquet('{local_part}')",
                  f"SELECT * FROM '{local_part}'",
                  "SELECT * FROM read_csv('/etc/passwd')",
                  "SELECT * FROM 's3://another-bucket/x.parquet'"):
        with pytest.raises(ReadOnlyQueryError):
            fs.sql(query)
    # the connection itself opens no file either, whatever passes the first layers
    with pytest.raises(Exception, match="(?i)permission|disabled"):
        fs._con.query(f"SELECT count(*) FROM read_parquet('{local_part}')")
    proc = run_cli("sql", f"SELECT * FROM read_parquet('{local_part}')", "--store", s3)
    assert proc.returncode == 2 and "refused" in proc.stderr


def test_credentials_never_appear_in_errors(s3, monkeypatch):
    """A wrong secret, a server that is down, a bad URL: each one line, none showing a credential."""
    from amnetvid_sk.errors import StoreError
    from amnetvid_sk.store import FeatureStore
    from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store

    write_synthetic_store(s3, *make_moving_peak_dataset(2))
    secrets = [KEY, SECRET, "WRONG-secret-value-123"]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secrets[2])
    with pytest.raises(StoreError) as err:
        FeatureStore(s3).video_ids()
    texts = [str(err.value)]
    texts.append(run_cli("info", "--store", s3).stderr)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:%d" % _free_ports(1)[0])  # nothing listens
    texts.append(run_cli("sql", "SELECT 1", "--store", s3).stderr)
    texts.append(run_cli("info", "--store", "s3://Not_A_Bucket/x").stderr)
    texts.append(run_cli("info", "--store", f"s3://{KEY}:{SECRET}@{BUCKET}/x").stderr)  # never echoed
    for text in texts:
        assert text.strip() and not any(s in text for s in secrets), text
        assert "Traceback" not in text
    assert "AWS_ACCESS_KEY_ID" in texts[0] and s3 in texts[0]


def test_the_array_cache_of_an_s3_store_is_local(s3, tmp_path, monkeypatch):
    """read_arrays of an S3 store maps a cache file under AMNETVID_CACHE_DIR; the bucket gets none."""
    from amnetvid_sk.store import FeatureStore, location
    from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store

    monkeypatch.setenv("AMNETVID_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("AMNETVID_CACHE_BYTES", raising=False)
    ids = write_synthetic_store(s3, *make_moving_peak_dataset(20))
    fs = FeatureStore(s3)
    first = fs.read_arrays(ids, n_frames=2)
    second = FeatureStore(s3).read_arrays(ids[:3], n_frames=2)
    np.testing.assert_array_equal(second[1], first[1][:3])
    files = sorted(p.name for p in location.cache_folder(s3).iterdir())
    assert str(location.cache_folder(s3)).startswith(str(tmp_path / "cache"))
    assert any(name.endswith(".arrow") for name in files) and any(name.endswith(".json") for name in files)
    assert location.kind(f"{s3}/.cache") is None


def test_missing_store_and_bad_urls_are_one_line_errors(s3):
    """A prefix with nothing in it is not a store unless created; a malformed URL names itself."""
    from amnetvid_sk.errors import StoreError
    from amnetvid_sk.store import FeatureStore

    with pytest.raises(StoreError, match="does not exist"):
        FeatureStore(s3)
    FeatureStore(s3, create=True)
    assert list(FeatureStore(s3).video_ids()) == []  # an empty store, created
    with pytest.raises(StoreError, match="s3://bucket//x"):
        FeatureStore("s3://bucket//x")
    proc = run_cli("sql", "SELECT 1", "--store", "s3://Bad_Bucket/x")
    assert proc.returncode == 2 and "s3://Bad_Bucket/x" in proc.stderr


def test_a_pyarrow_without_s3_is_one_line(monkeypatch, tmp_path):
    """A pyarrow built without S3 (some conda and source builds): one line saying what to install."""
    import pyarrow.fs

    from amnetvid_sk.store import location

    monkeypatch.delattr(pyarrow.fs, "S3FileSystem")  # as such a build has it: no S3FileSystem
    monkeypatch.setattr(location, "_FILESYSTEMS", {})
    proc = run_cli("sql", "SELECT 1", "--store", "s3://some-bucket/store", cwd=tmp_path)
    assert proc.returncode == 2, proc
    assert proc.stderr.count("\n") == 1 and "pyarrow" in proc.stderr and "amnetvid-sk[s3]" in proc.stderr
