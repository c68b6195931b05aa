"""Extraction into the store: real clips, AMNet with random weights, real Parquet and DuckDB."""

import hashlib
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

from amnetvid_sk.testing.clips import write_clip
from amnetvid_sk.extraction import expand_paths, extract
from amnetvid_sk.frame_models.base import FrameModel
from amnetvid_sk.store import FeatureStore

from conftest import AMNETVID, ROOT, moving_frames, run_cli


@pytest.fixture(scope="module")
def amnet(amnet_weights):
    from amnetvid_sk.frame_models.amnet import AMNet

    return AMNet(weights=amnet_weights, device="cpu", batch_size=8)


def visible_counts(store):
    rows = FeatureStore(store).sql(
        "SELECT v.video_id, v.n_frames, count(f.frame_index) AS n FROM videos v "
        "LEFT JOIN frames f USING (extraction_id) GROUP BY ALL ORDER BY 1"
    ).to_pylist()
    return {r["video_id"]: (r["n_frames"], r["n"]) for r in rows}


def test_extract_writes_every_clip_and_records_failures(clips, tmp_path, amnet):
    """Each clip lands once with its frames; a broken file goes to failures and the run goes on."""
    (clips / "broken.mp4").write_bytes(b"not a video at all")
    store = tmp_path / "store"
    summary = extract(clips, store=store, frame_model=amnet, n_frames=4, progress=False)
    assert len(summary.extracted) == 6
    assert [os.path.basename(p) for p, _ in summary.failed] == ["broken.mp4"]
    assert not summary.ok
    counts = visible_counts(store)
    assert sorted(counts) == [f"clip{i}" for i in range(6)]
    assert all(v == (4, 4) for v in counts.values())
    failures = FeatureStore(store).sql("SELECT path, reason FROM failures").to_pylist()
    assert len(failures) == 1 and failures[0]["path"].endswith("broken.mp4") and failures[0]["reason"]
    scores, maps = FeatureStore(store).read_arrays([f"clip{i}" for i in range(6)])
    assert scores.shape == (6, 4) and maps.shape == (6, 4, 3, 14, 14)
    np.testing.assert_allclose(maps.sum(axis=(-1, -2)), 1.0, rtol=1e-4)


def test_rerun_skips_and_changed_file_is_extracted_again(clips, tmp_path, amnet):
    """A rerun extracts nothing; a rewritten clip is extracted again and its old rows disappear."""
    store = tmp_path / "store"
    extract(clips, store=store, frame_model=amnet, n_frames=4, progress=False)
    again = extract(clips, store=store, frame_model=amnet, n_frames=4, progress=False)
    assert again.extracted == [] and len(again.skipped) == 6
    before, _ = FeatureStore(store).read_arrays(["clip0"])

    write_clip(clips / "clip0.mp4", moving_frames(12, seed=99)[:, ::-1].copy(), fps=12)
    os.utime(clips / "clip0.mp4", (time.time() + 5, time.time() + 5))
    third = extract(clips, store=store, frame_model=amnet, n_frames=4, progress=False)
    assert [os.path.basename(p) for p in third.extracted] == ["clip0.mp4"]
    assert len(third.skipped) == 5
    assert visible_counts(store)["clip0"] == (4, 4)
    after, _ = FeatureStore(store).read_arrays(["clip0"])
    assert not np.allclose(before, after)
    n_all = FeatureStore(store).sql("SELECT count(*) AS n FROM videos_all WHERE video_id = 'clip0'")
    assert n_all.column("n")[0].as_py() == 2


def test_other_sampling_is_a_separate_extraction(clips, tmp_path, amnet):
    """The same clips sampled at a fixed rate are extracted again, beside the first sampling."""
    store = tmp_path / "store"
    extract(clips, store=store, frame_model=amnet, n_frames=4, progress=False)
    s = extract(clips, store=store, frame_model=amnet, fps=3, progress=False)
    assert len(s.extracted) == 6
    samplings = FeatureStore(store).sql("SELECT DISTINCT sampling FROM videos ORDER BY 1").column(0).to_pylist()
    assert samplings == ["fps=3", "frames=4"]


def test_expand_paths_folder_glob_and_list(clips, tmp_path):
    """Folders, globs and list files expand to the same clip files, each once."""
    listing = tmp_path / "list.txt"
    listing.write_text("# my clips\nclips/clip0.mp4\nclips/clip1.mp4\n\n")
    got = expand_paths([clips, str(clips / "*.mp4"), listing])
    names = sorted(p.name for p in got)
    assert names == sorted(f"clip{i}.{'webm' if i % 3 == 2 else 'mp4'}" for i in range(6))
    missing = expand_paths([tmp_path / "nope.mp4"])
    assert [p.name for p in missing] == ["nope.mp4"]


def test_missing_file_is_a_failure_naming_it(tmp_path, amnet):
    """A path that does not exist is reported as failed with its name."""
    summary = extract([tmp_path / "nope.mp4"], store=tmp_path / "store", frame_model=amnet, n_frames=4,
                      progress=False)
    assert len(summary.failed) == 1 and "nope.mp4" in summary.failed[0][0]


def test_bad_parameters_name_themselves(tmp_path, amnet):
    """Unknown backend and bad sampling raise errors that name the parameter."""
    with pytest.raises(ValueError, match="backend"):
        extract([], store=tmp_path, frame_model=amnet, backend="spark")
    with pytest.raises(ValueError, match="n_frames"):
        extract([], store=tmp_path, frame_model=amnet, n_frames=4, fps=2)
    with pytest.raises(ValueError, match="'flush_every'"):
        extract([], store=tmp_path, frame_model=amnet, n_frames=4, flush_every=0)
    with pytest.raises(ValueError, match="scheduler"):
        extract([], store=tmp_path, frame_model=amnet, backend="dask")
    for value in (0, -5, float("nan"), "30"):
        with pytest.raises(ValueError, match="The 'video_time_limit' parameter of extract must be a number"):
            extract([], store=tmp_path, frame_model=amnet, n_frames=4, video_time_limit=value)


@pytest.fixture(scope="module")
def many_clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("many")
    for i in range(14):
        write_clip(folder / f"v{i:02d}.mp4", moving_frames(10, seed=100 + i), fps=10)
    return folder


# Runs whose values are compared are float32: under bfloat16 a frame's outputs depend on the
# other frames of its batch more than these tolerances allow, and batches span videos.
def _extract_cmd(clips, store, weights, *extra, frames=3, batch_size=2):
    return [*AMNETVID, "extract", str(clips), "--store", str(store), "--frame-model", "amnet",
            "--weights", str(weights), "--frames", str(frames), "--batch-size", str(batch_size),
            "--no-progress", "--device", "cpu", "--precision", "float32", *extra]


# the interrupted runs: enough model work per video (8 frames, one per forward pass) that
# the run is still going when the test signals it, even on a loaded machine
SLOW = dict(frames=8, batch_size=1)


def _interrupt_midway(clips, store, weights, sig, on_poll=None, attempts=3):
    """Start an extraction, send ``sig`` once 2 videos are written; returns (returncode, stderr).

    On a loaded machine the run can end before the signal lands; then the run is repeated
    on a fresh store (up to ``attempts`` times) rather than taken as a result.
    """
    for attempt in range(attempts):
        shutil.rmtree(store, ignore_errors=True)
        # A shell starts background jobs with SIGINT ignored, and Python keeps an ignored SIGINT
        # ignored (no KeyboardInterrupt): give the child the default disposition, as a terminal would.
        proc = subprocess.Popen(_extract_cmd(clips, store, weights, "--flush-every", "1", **SLOW), cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 300
        # watch the part files (cheap), not SQL, so the signal follows the second video closely
        while time.time() < deadline and proc.poll() is None:
            if on_poll is not None:
                on_poll()
            if len(list((store / "videos").glob("part-*.parquet"))) >= 2:
                break
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        if len(visible_counts(store)) < 14:
            return proc.returncode, err
    pytest.fail(f"extraction finished before it could be interrupted, {attempts} times")


@pytest.mark.slow
def test_sigkill_midway_then_rerun_matches_uninterrupted(many_clips, tmp_path, amnet_weights):
    """SIGKILL mid-extraction, rerun: every video once, values equal to an uninterrupted run;
    a reader during the run only ever sees whole videos."""
    reference = tmp_path / "ref"
    run_cli("extract", many_clips, "--store", reference, "--frame-model", "amnet", "--weights", amnet_weights,
            "--frames", "8", "--no-progress", "--device", "cpu", "--precision", "float32", check=0)

    store = tmp_path / "store"
    seen_partial = []

    def read_while_running():
        counts = visible_counts(store) if (store / "videos").exists() else {}
        seen_partial.extend(v for v, (want, got) in counts.items() if want != got)

    returncode, _ = _interrupt_midway(many_clips, store, amnet_weights, signal.SIGKILL,
                                      on_poll=read_while_running)
    assert returncode == -signal.SIGKILL
    assert seen_partial == []
    killed_at = len(visible_counts(store))
    assert 2 <= killed_at < 14

    rerun = subprocess.run(_extract_cmd(many_clips, store, amnet_weights, frames=8), cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"skipped {killed_at}" in rerun.stdout
    counts = visible_counts(store)
    assert sorted(counts) == [f"v{i:02d}" for i in range(14)]
    assert all(v == (8, 8) for v in counts.values())
    dup = FeatureStore(store).sql("SELECT video_id FROM videos GROUP BY 1 HAVING count(*) > 1")
    assert dup.num_rows == 0
    ids = [f"v{i:02d}" for i in range(14)]
    s1, m1 = FeatureStore(store).read_arrays(ids)
    s0, m0 = FeatureStore(reference).read_arrays(ids)
    np.testing.assert_allclose(s1, s0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m1, m0, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_two_extractions_at_once_leave_no_duplicates(many_clips, tmp_path, amnet_weights):
    """Two processes extracting the same clips into one store: no broken file, no duplicate rows."""
    store = tmp_path / "store"
    procs = [subprocess.Popen(_extract_cmd(many_clips, store, amnet_weights), cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    counts = visible_counts(store)
    assert sorted(counts) == [f"v{i:02d}" for i in range(14)]
    assert all(v == (3, 3) for v in counts.values())
    fs = FeatureStore(store)
    assert fs.sql("SELECT video_id FROM videos GROUP BY 1 HAVING count(*) > 1").num_rows == 0
    assert fs.sql("SELECT count(*) AS n FROM frames").column("n")[0].as_py() == 14 * 3
    assert not list(store.rglob("*.tmp"))


@pytest.mark.slow
def test_dask_local_cluster_gives_same_rows_as_local(many_clips, tmp_path, amnet_weights):
    """The Dask backend on a LocalCluster writes the same rows as a local run."""
    distributed = pytest.importorskip("distributed")
    paths = sorted(many_clips.glob("*.mp4"))[:6]
    local = tmp_path / "local"
    extract(paths, store=local, frame_model="amnet", weights=amnet_weights, n_frames=3, device="cpu",
            precision="float32", progress=False)
    remote = tmp_path / "dask"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        summary = extract(paths, store=remote, frame_model="amnet", weights=amnet_weights, n_frames=3,
                          device="cpu", precision="float32", backend="dask", scheduler=cluster.scheduler_address,
                          progress=False)
    assert len(summary.extracted) == 6 and summary.ok
    ids = [p.stem for p in paths]
    s0, m0 = FeatureStore(local).read_arrays(ids)
    s1, m1 = FeatureStore(remote).read_arrays(ids)
    np.testing.assert_allclose(s1, s0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m1, m0, rtol=1e-4, atol=1e-6)
    cols = "video_id, frame_index, timestamp"
    q = f"SELECT {cols} FROM frames ORDER BY 1, 2"
    assert FeatureStore(local).sql(q).to_pylist() == FeatureStore(remote).sql(q).to_pylist()


@pytest.mark.slow
def test_ctrl_c_keeps_completed_videos_and_rerun_continues(many_clips, tmp_path, amnet_weights):
    """Ctrl-C (SIGINT) ends extraction with exit 130, keeps what was complete; a rerun finishes the rest."""
    store = tmp_path / "store"
    returncode, err = _interrupt_midway(many_clips, store, amnet_weights, signal.SIGINT)
    assert returncode == 130, err
    assert "run the same command again" in err
    kept = visible_counts(store)
    assert len(kept) >= 2 and all(want == got for want, got in kept.values())
    rerun = subprocess.run(_extract_cmd(many_clips, store, amnet_weights, frames=8), cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0 and f"skipped {len(kept)}" in rerun.stdout
    assert len(visible_counts(store)) == 14


# ---------------------------------------------------------------------------------- video ids


def _two_folders_with_one_name(clips, tmp_path):
    root = tmp_path / "videos"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    shutil.copy(clips / "clip0.mp4", root / "a" / "clip.mp4")
    shutil.copy(clips / "clip1.mp4", root / "b" / "clip.mp4")
    return root


def test_same_stem_in_two_folders_is_an_error_before_any_work(clips, tmp_path, amnet):
    """a/clip.mp4 and b/clip.mp4 in one run: an error naming both paths, and nothing written."""
    from amnetvid_sk.errors import VideoIdError

    root = _two_folders_with_one_name(clips, tmp_path)
    store = tmp_path / "store"
    with pytest.raises(VideoIdError) as info:
        extract(root, store=store, frame_model=amnet, n_frames=2, progress=False)
    msg = str(info.value)
    assert str(root / "a" / "clip.mp4") in msg and str(root / "b" / "clip.mp4") in msg and "relpath" in msg
    assert not (store / "videos").exists() and not (store / "frames").exists()


def test_relpath_ids_keep_same_named_clips_apart(clips, tmp_path, amnet):
    """ids="relpath" names the clips a/clip and b/clip; both are extracted with their own frames."""
    root = _two_folders_with_one_name(clips, tmp_path)
    store = tmp_path / "store"
    summary = extract(root, store=store, frame_model=amnet, n_frames=2, ids="relpath", progress=False)
    assert len(summary.extracted) == 2
    fs = FeatureStore(store)
    assert list(fs.video_ids()) == ["a/clip", "b/clip"]
    scores, _ = fs.read_arrays(["a/clip", "b/clip"])
    assert not np.allclose(scores[0], scores[1])
    with pytest.raises(ValueError, match=r"'ids' parameter of extract must be a str among \{'relpath', 'stem'\}"):
        extract(root, store=store, frame_model=amnet, ids="path")


def test_an_id_from_another_file_needs_replace(clips, tmp_path, amnet):
    """A file whose id the store holds from another existing file: an error naming both; replace=True replaces."""
    from amnetvid_sk.errors import VideoIdError

    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(clips / "clip1.mp4", other / "clip0.mp4")  # another clip under the name clip0
    store = tmp_path / "store"
    extract(clips / "clip0.mp4", store=store, frame_model=amnet, n_frames=2, progress=False)
    before, _ = FeatureStore(store).read_arrays(["clip0"])
    with pytest.raises(VideoIdError) as info:
        extract(other / "clip0.mp4", store=store, frame_model=amnet, n_frames=2, progress=False)
    assert str(clips / "clip0.mp4") in str(info.value) and str(other / "clip0.mp4") in str(info.value)
    np.testing.assert_array_equal(FeatureStore(store).read_arrays(["clip0"])[0], before)
    summary = extract(other / "clip0.mp4", store=store, frame_model=amnet, n_frames=2, replace=True,
                      progress=False)
    assert len(summary.extracted) == 1
    after, _ = FeatureStore(store).read_arrays(["clip0"])
    assert not np.allclose(after, before)
    paths = FeatureStore(store).sql("SELECT path FROM videos WHERE video_id = 'clip0'").column(0).to_pylist()
    assert paths == [str(other / "clip0.mp4")]


def test_a_moved_folder_is_recognised(clips, tmp_path, amnet):
    """After the clips folder is moved, a rerun from the new place skips every clip (same id, size, mtime)."""
    store = tmp_path / "store"
    extract(clips, store=store, frame_model=amnet, n_frames=2, progress=False)
    moved = tmp_path / "moved"
    clips.rename(moved)
    again = extract(moved, store=store, frame_model=amnet, n_frames=2, progress=False)
    assert again.extracted == [] and len(again.skipped) == 6 and again.ok


def test_ts_files_in_a_folder_are_found(clips, tmp_path):
    """A folder's .ts files are extracted like the extensions whose labels import (one list of extensions)."""
    from amnetvid_sk.video_ids import VIDEO_EXTENSIONS, video_id_from_name

    (clips / "x.ts").write_bytes((clips / "clip0.mp4").read_bytes())
    assert ".ts" in VIDEO_EXTENSIONS and video_id_from_name("x.ts") == "x"
    assert "x.ts" in [p.name for p in expand_paths(clips)]


# --------------------------------------------------------------------------- time limit per video


class SlowFrameModel(FrameModel):
    """Score 0.5 and uniform maps, after ``seconds`` of sleep per batch: a model slower than a time limit."""

    name = "slow"
    map_shape = (3, 14, 14)

    def __init__(self, seconds=0.4, device=None, batch_size=1, precision="auto"):
        super().__init__(device=device, batch_size=batch_size, precision=precision)
        self.seconds = seconds

    def _fingerprint_parts(self) -> dict:
        return {"weights_sha256": hashlib.sha256(f"slow={self.seconds!r}".encode()).hexdigest(),
                "preprocessing": "none"}

    def _forward_batch(self, frames, *, maps, embeddings):
        import torch

        time.sleep(self.seconds)
        return torch.full((len(frames),), 0.5), torch.ones((len(frames), *self.map_shape)) if maps else None, None


def test_video_time_limit_records_failures_and_a_rerun_extracts(clips, tmp_path, amnet):
    """Clips past a limit too small to meet are failures naming it; a rerun with room extracts them."""
    store = tmp_path / "store"
    paths = [clips / "clip0.mp4", clips / "clip2.webm"]
    summary = extract(paths, store=store, frame_model=amnet, n_frames=4, video_time_limit=1e-6, progress=False)
    assert summary.extracted == [] and len(summary.failed) == 2
    failures = FeatureStore(store).sql("SELECT video_id, reason FROM failures ORDER BY 1").to_pylist()
    assert [f["video_id"] for f in failures] == ["clip0", "clip2"]
    assert all(f["reason"].startswith("time limit of 1e-06 s reached while ") for f in failures), failures
    again = extract(paths, store=store, frame_model=amnet, n_frames=4, video_time_limit=60, progress=False)
    assert len(again.extracted) == 2 and again.ok
    assert visible_counts(store) == {"clip0": (4, 4), "clip2": (4, 4)}
    assert FeatureStore(store).sql("SELECT count(*) AS n FROM failures").column("n")[0].as_py() == 0


def test_frame_model_time_is_not_counted_against_the_limit(clips, tmp_path):
    """A model that takes longer per video than the limit: only decoding is timed, so the clips extract."""
    model = SlowFrameModel(seconds=0.4, device="cpu", batch_size=1, precision="float32")  # 1.6 s a video
    paths = [clips / "clip0.mp4", clips / "clip1.mp4"]
    summary = extract(paths, store=tmp_path / "store", frame_model=model, n_frames=4, workers=1,
                      video_time_limit=1.0, progress=False)
    assert summary.ok and len(summary.extracted) == 2, summary.report()


@pytest.mark.slow
def test_cli_video_time_limit(clips, tmp_path, amnet_weights):
    """--video-time-limit: a clip past it is a failure line naming the limit (exit 1); 0 is refused (exit 2)."""
    store = tmp_path / "store"
    proc = run_cli("extract", clips / "clip0.mp4", "--store", store, "--frame-model", "amnet", "--weights",
                   amnet_weights, "--frames", 2, "--video-time-limit", "0.000001", "--no-progress", "--device",
                   "cpu", "--precision", "float32", check=1)
    assert "extracted 0, skipped 0 (already in the store), failed 1;" in proc.stdout
    assert "clip0.mp4: time limit of 1e-06 s reached while " in proc.stdout
    bad = run_cli("extract", clips, "--store", store, "--video-time-limit", "0", check=2)
    assert bad.stderr.startswith("error: argument --video-time-limit: must be a number > 0; got '0'")
