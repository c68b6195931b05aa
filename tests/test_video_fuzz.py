"""Video fuzz: damaged variants of real clips, extracted in one run; each is extracted or a failure.

50 variants of three real clips (H.264 in MP4 without and with B-frames, VP9 in WebM) with random
byte flips (in the header, anywhere), truncations, swapped, zeroed and duplicated chunks, from a
fixed seed. One ``extract`` call (and one CLI run with two decoding threads and two joblib worker
processes) must return with every variant either in the ``videos`` table (finite scores, the frames
it should have) or in ``failures`` with a reason: never both, never neither, no crash, no hang (a
per-video time limit is set), no "unexpected error" (a decoding path no check foresaw).
"""

import collections
import os
import re
from pathlib import Path

import numpy as np
import pytest

from amnetvid_sk.extraction import extract
from amnetvid_sk.store import FeatureStore
from amnetvid_sk.testing.clips import write_clip

from conftest import fresh_loky_workers, moving_frames, run_cli

PLUGIN_DIR = Path(__file__).resolve().parent / "plugin_pkg"
TINY = "tiny_frame_model:TinyFrameModel"  # a cheap real frame model: the decoding is under test here
SEED = 20261201
N_VARIANTS = 50
N_FRAMES = 4
TIME_LIMIT = 30.0  # seconds per video: a healthy 24-frame clip decodes in milliseconds
KINDS = ("flip_head", "flip_any", "truncate", "swap", "zero", "duplicate")


def _span(rng, n, part):
    """A chunk length from 16 bytes to ``n // part`` (the clips are some kilobytes)."""
    return int(rng.integers(16, max(n // part, 17)))


def damage(data: bytes, kind: str, rng) -> bytes:
    """``data`` damaged one way (see KINDS); ``rng`` decides where and how much."""
    a = np.frombuffer(data, dtype=np.uint8).copy()
    n = len(a)
    if kind == "flip_head":  # the container's header: ftyp/EBML, then the first boxes or elements
        pos = rng.integers(0, min(n, 256), size=int(rng.integers(1, 5)))
        a[pos] ^= (1 << rng.integers(0, 8, size=len(pos))).astype(np.uint8)
    elif kind == "flip_any":  # anywhere: frame data, MP4's index at the end, WebM's cues
        pos = rng.integers(0, n, size=int(rng.integers(1, 17)))
        a[pos] ^= rng.integers(1, 256, size=len(pos)).astype(np.uint8)
    elif kind == "truncate":
        a = a[:int(rng.integers(1, n))]
    elif kind == "swap":
        size = _span(rng, n, 8)
        i, j = sorted(rng.choice(n // size, size=2, replace=False) * size)
        a[i:i + size], a[j:j + size] = a[j:j + size].copy(), a[i:i + size].copy()
    elif kind == "zero":
        size = _span(rng, n, 4)
        start = int(rng.integers(0, n - size))
        a[start:start + size] = 0
    elif kind == "duplicate":
        size = _span(rng, n, 8)
        start, at = int(rng.integers(0, n - size)), int(rng.integers(0, n))
        a = np.concatenate([a[:at], a[start:start + size], a[at:]])
    else:  # pragma: no cover
        raise ValueError(kind)
    return a.tobytes()


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    """The folder of the 50 damaged variants; {video id: kind}."""
    src = tmp_path_factory.mktemp("fuzz_src")
    sources = [
        write_clip(src / "h264.mp4", moving_frames(24, seed=1), fps=12, codec="h264", gop=6),
        write_clip(src / "bframes.mp4", moving_frames(24, seed=2), fps=12, codec="h264", gop=6,
                   options={"preset": "veryfast"}),  # B-frames: decode order differs from display order
        write_clip(src / "vp9.webm", moving_frames(24, seed=3), fps=12, codec="vp9", gop=6),
    ]
    folder = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(SEED)
    pairs = [(s, k) for s in sources for k in KINDS]  # each damage on each source, in turn
    kinds = {}
    for i in range(N_VARIANTS):
        source, kind = pairs[i % len(pairs)]
        name = f"v{i:02d}_{kind}_{source.stem}{source.suffix}"
        (folder / name).write_bytes(damage(source.read_bytes(), kind, rng))
        kinds[Path(name).stem] = kind
    return folder, kinds


@pytest.fixture
def tiny(monkeypatch):
    """The tiny frame model, importable here and in the processes started by the test."""
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(PLUGIN_DIR), os.environ.get("PYTHONPATH")])))
    from tiny_frame_model import TinyFrameModel

    return TinyFrameModel(device="cpu", batch_size=8, precision="float32")


def check_outcomes(store, ids):
    """Every id is extracted (with its frames, finite scores) or failed with a reason, not both;
    returns {id: reason} of the failures."""
    fs = FeatureStore(store)
    videos = {r["video_id"]: r for r in fs.sql("SELECT video_id, extraction_id, frame_count, n_frames, short "
                                               "FROM videos").to_pylist()}
    failed = {r["video_id"]: r["reason"] for r in fs.sql("SELECT video_id, reason FROM failures").to_pylist()}
    assert not set(videos) & set(failed), f"both extracted and failed: {sorted(set(videos) & set(failed))}"
    assert set(videos) | set(failed) == set(ids), f"neither: {sorted(set(ids) - set(videos) - set(failed))}"
    assert all(reason.strip() for reason in failed.values())
    unexpected = {vid: r for vid, r in failed.items() if r.startswith("unexpected error")}
    assert not unexpected, f"decoding failures no check foresaw: {unexpected}"
    frames = collections.defaultdict(list)
    for r in fs.sql("SELECT video_id, frame_index, score FROM frames ORDER BY video_id, frame_index").to_pylist():
        frames[r["video_id"]].append(r)
    for vid, v in videos.items():
        expected = min(N_FRAMES, v["frame_count"])
        assert v["n_frames"] == expected and v["short"] == (v["frame_count"] < N_FRAMES), (vid, v)
        rows = frames[vid]
        assert len(rows) == expected, (vid, len(rows))
        assert np.isfinite([r["score"] for r in rows]).all(), vid
        assert all(0 <= r["frame_index"] < v["frame_count"] for r in rows), vid
    return failed


def _grouped(failed):
    """Failure reasons with the numbers, paths and FFmpeg details taken out, counted."""
    def general(reason):
        reason = re.sub(r"\(.*", "", reason)  # FFmpeg's own words and counts
        return re.sub(r"\b\d+(\.\d+)?\b", "N", reason).strip()
    return collections.Counter(general(r) for r in failed.values())


@pytest.mark.timeout(600)
def test_every_damaged_variant_is_extracted_or_a_failure(variants, tiny, tmp_path):
    """One extract call over 50 damaged clips returns; each lands in videos or in failures with a reason."""
    folder, kinds = variants
    store = tmp_path / "store"
    summary = extract(folder, store=store, frame_model=tiny, n_frames=N_FRAMES, workers=2,
                      video_time_limit=TIME_LIMIT, progress=False)
    assert len(summary.extracted) + len(summary.failed) == N_VARIANTS and not summary.skipped
    failed = check_outcomes(store, kinds)
    assert len(failed) == len(summary.failed)
    # the damage is real: some variants fail, and damage that spares the frames leaves some extracted
    assert 0 < len(failed) < N_VARIANTS
    by_kind = collections.Counter((kinds[vid], vid in failed) for vid in kinds)
    print(f"\nfuzz: {len(summary.extracted)} extracted, {len(failed)} failed; "
          f"by kind (kind, failed): {sorted(by_kind.items())}")
    for reason, n in _grouped(failed).most_common():
        print(f"  {n:2d} x {reason}")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cli_with_two_workers_counts_every_variant(variants, tiny, tmp_path):
    """The CLI, 2 decoding threads in each of 2 joblib worker processes: exit 1, summary counts match the store."""
    folder, kinds = variants
    store = tmp_path / "store"
    with fresh_loky_workers():  # the CLI runs in this process: its workers must see PYTHONPATH
        proc = run_cli("extract", folder, "--store", store, "--frame-model", TINY, "--device", "cpu",
                       "--precision", "float32", "--frames", N_FRAMES, "--workers", 2, "--backend", "joblib",
                       "--n-jobs", 2, "--video-time-limit", TIME_LIMIT, "--no-progress")
    # exit 1: some variants failed; a dead worker or a crash would end the run with a traceback instead
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    match = re.search(r"^extracted (\d+), skipped 0 \(already in the store\), failed (\d+);", proc.stdout, re.M)
    assert match, proc.stdout
    failed = check_outcomes(store, kinds)
    n_extracted = len(kinds) - len(failed)
    assert (int(match[1]), int(match[2])) == (n_extracted, len(failed))
    assert len(re.findall(r"^  failed: ", proc.stdout, re.M)) == len(failed)
