"""Benchmark: loading the AMNetVid training input from the feature store, from PNG
files, and from one ``.npy`` array.

The input is, per video, 4 frames of 3 attention maps (14 x 14) plus the 4 frame
scores, for 8,000 synthetic videos (the MediaEval dev set). Three ways to load it:

- the store: ``FeatureStore.read_arrays(ids, n_frames=4)`` on a store holding
  28 frames per video (what ``amnetvid extract`` writes by default; 4 are
  picked of the 28), and again on a store holding exactly 4 frames per video.
  The ids are asked for in a shuffled order, through a new ``FeatureStore``
  each time (as the pipeline steps do). The time to turn the raw maps into
  the 9 x 70 x 70 JET images (``render_jet``) is printed too, since that is what
  the PNG files hold.
- PNG files, as the working note stored them: one JET 70 x 70 RGB PNG per map,
  12 per video (96,000 for 8,000 videos). Writing that many takes long, so a
  subset of videos is written and read, and the time is scaled to 8,000.
- one ``.npy`` of the maps (float32 [8000, 4, 3, 14, 14]) plus one of the
  scores: the practical limit.

All files are read warm (just written, so from the page cache). Each figure is
the best of a few runs (``render_jet``: one run), all measured in this one run.
Goals: the store at least 20x faster than PNG, and within 2x of ``.npy``.

Run from the repository root::

    python bench/bench_store_load.py               # about a minute on 2 cores
    python bench/bench_store_load.py --videos 2000 --png-videos 200
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import amnetvid_sk  # noqa: F401
except ImportError:  # run from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa
import torch
from PIL import Image

from amnetvid_sk.render import render_jet
from amnetvid_sk.store import FeatureStore, frames_table, new_extraction_id

SHAPE = (3, 14, 14)


def smooth_maps(rng, n: int) -> np.ndarray:
    """Attention-like maps: softmax of smooth random fields (4 x 4 noise, bicubic-upsampled)."""
    low = torch.from_numpy(rng.normal(size=(n, 3, 4, 4)).astype(np.float32))
    field = torch.nn.functional.interpolate(low, size=SHAPE[1:], mode="bicubic", align_corners=False) * 2.0
    return torch.softmax(field.reshape(n, 3, -1), dim=-1).reshape(n, *SHAPE).numpy()


def build_store(path: Path, n_videos: int, n_frames: int, seed: int, batch: int = 500) -> float:
    """Write a store of ``n_videos`` x ``n_frames`` frames in batches (as the extractor
    flushes); return the seconds it took, generation excluded."""
    rng = np.random.default_rng(seed)
    fs = FeatureStore(path)
    fs.write_model("bench-model", "synthetic", {}, SHAPE)
    spent = 0.0
    for first in range(0, n_videos, batch):
        count = min(batch, n_videos - first)
        maps = smooth_maps(rng, count * n_frames).reshape(count, n_frames, *SHAPE)
        scores = rng.random((count, n_frames), dtype=np.float32)
        rows, tables = [], []
        for i in range(count):
            eid, vid = new_extraction_id(), f"video{first + i}"
            rows.append({"extraction_id": eid, "video_id": vid, "path": f"/data/{vid}.webm", "size": 1,
                         "mtime": 0.0, "duration": 7.0, "fps": 30.0, "frame_count": 210, "width": 640,
                         "height": 360, "model": "bench-model", "sampling": f"frames={n_frames}",
                         "n_frames": n_frames, "short": False})
            index = np.linspace(0, 209, n_frames).round().astype(np.int64)
            tables.append(frames_table(eid, index, index / 30.0, scores[i], maps[i]))
        start = time.perf_counter()
        fs.write_extractions(rows, pa.concat_tables(tables))
        spent += time.perf_counter() - start
    return spent


def best_of(repeat: int, func):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
    return best, result


def write_pngs(folder: Path, ids, maps: np.ndarray) -> None:
    """One JET 70 x 70 RGB PNG per map, named <video>_<frame>_<map>.png."""
    jet = render_jet(maps, size=70)  # [n, 4, 9, 70, 70] uint8
    for v, vid in enumerate(ids):
        for f in range(jet.shape[1]):
            for m in range(3):
                rgb = np.ascontiguousarray(jet[v, f, 3 * m:3 * m + 3].transpose(1, 2, 0))
                Image.fromarray(rgb).save(folder / f"{vid}_{f}_{m}.png")


def read_pngs(folder: Path, ids, n_frames: int = 4) -> np.ndarray:
    """The working note's input: per video [n_frames, 70, 70, 9] uint8 from 3 PNGs per frame."""
    out = np.empty((len(ids), n_frames, 70, 70, 9), dtype=np.uint8)
    for v, vid in enumerate(ids):
        for f in range(n_frames):
            for m in range(3):
                with Image.open(folder / f"{vid}_{f}_{m}.png") as im:
                    out[v, f, :, :, 3 * m:3 * m + 3] = np.asarray(im)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=8000)
    parser.add_argument("--png-videos", type=int, default=500, help="videos written as PNGs (then scaled)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    n, T = args.videos, 4
    rng = np.random.default_rng(0)
    ids = np.array([f"video{i}" for i in rng.permutation(n)], dtype=object)

    with tempfile.TemporaryDirectory(prefix="bench_store_load_") as tmp:
        tmp = Path(tmp)
        print(f"{n} synthetic videos, {T} frames x {SHAPE} maps + scores each; best of {args.repeat} runs")
        w28 = build_store(tmp / "store28", n, 28, seed=1)
        w4 = build_store(tmp / "store4", n, T, seed=2)
        size28 = FeatureStore(tmp / "store28").info()["bytes"]["frames"]
        size4 = FeatureStore(tmp / "store4").info()["bytes"]["frames"]
        print(f"  wrote the stores in {w28:.1f} s (28 frames/video) and {w4:.1f} s (4 frames/video), "
              f"{size28 / 1e6:.0f} MB and {size4 / 1e6:.0f} MB of frames")

        # A new FeatureStore (so a new DuckDB connection) per read, as the pipeline steps do.
        t_store28, (scores28, maps28) = best_of(
            args.repeat, lambda: FeatureStore(tmp / "store28").read_arrays(ids, n_frames=T))
        t_store4, (scores4, maps4) = best_of(
            args.repeat, lambda: FeatureStore(tmp / "store4").read_arrays(ids, n_frames=T))
        assert maps4.shape == (n, T, *SHAPE) and scores4.shape == (n, T)
        t_render, _ = best_of(1, lambda: render_jet(maps4, size=70))

        np.save(tmp / "maps.npy", maps4)
        np.save(tmp / "scores.npy", scores4)
        t_npy, (npy_maps, _) = best_of(args.repeat, lambda: (np.load(tmp / "maps.npy"),
                                                             np.load(tmp / "scores.npy")))
        np.testing.assert_array_equal(npy_maps, maps4)

        k = min(args.png_videos, n)
        png_dir = tmp / "png"
        png_dir.mkdir()
        start = time.perf_counter()
        write_pngs(png_dir, ids[:k], maps4[:k])
        t_png_write = time.perf_counter() - start
        t_png_k, jet = best_of(args.repeat, lambda: read_pngs(png_dir, ids[:k]))
        np.testing.assert_array_equal(jet.transpose(0, 1, 4, 2, 3), render_jet(maps4[:k], size=70))
        t_png = t_png_k * n / k
        png_mb = sum(p.stat().st_size for p in png_dir.iterdir()) / 1e6 * n / k

        print(f"  store, 4 of 28 stored frames picked : {t_store28 * 1e3:8.0f} ms")
        print(f"  store, 4 stored frames              : {t_store4 * 1e3:8.0f} ms")
        print(f"  render_jet of those maps (9x70x70)  : {t_render * 1e3:8.0f} ms")
        print(f"  .npy (maps + scores)                : {t_npy * 1e3:8.0f} ms")
        print(f"  PNG, {12 * n} files (scaled from {k} videos, {12 * k} files read in {t_png_k:.2f} s; "
              f"{png_mb:.0f} MB; writing them took {t_png_write * n / k:.0f} s scaled)")
        print(f"                                        {t_png * 1e3:8.0f} ms")
        print("ratios (measured in this run):")
        print(f"  PNG / store (28 stored)             : {t_png / t_store28:8.1f}x   goal >= 20x")
        print(f"  PNG / store (4 stored)              : {t_png / t_store4:8.1f}x   goal >= 20x")
        print(f"  PNG / (store (28 stored) + render)  : {t_png / (t_store28 + t_render):8.1f}x   "
              "(same 9x70x70 JET input as the PNGs)")
        print(f"  store (28 stored) / .npy            : {t_store28 / t_npy:8.1f}x   goal <= 2x")
        print(f"  store (4 stored) / .npy             : {t_store4 / t_npy:8.1f}x   goal <= 2x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
