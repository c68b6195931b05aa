"""Benchmark: loading the AMNetVid training input from the feature store, from PNG
files, and from one ``.npy`` array; and the memory of a grid search over the store.

The input is, per video, 4 frames of 3 attention maps (14 x 14) plus the 4 frame
scores, for 8,000 synthetic videos (the MediaEval dev set). Three ways to load it:

- the store: ``FeatureStore.read_arrays(ids, n_frames=4)`` on a store holding
  28 frames per video (what ``amnetvid extract`` writes by default; 4 are
  picked of the 28), and again on a store holding exactly 4 frames per video.
  The ids are asked for in a shuffled order, through a new ``FeatureStore``
  each time (as the pipeline steps do). Figures (imports not counted):

  - cold, first-ever: a fresh process, no array cache file yet: it decodes the
    Parquet parts and writes the cache file (``<store>/.cache/``);
  - cold, file present: a fresh process, the cache file there (its pages
    probably in the page cache, as they are for the workers of a grid search);
  - warm: a later read in the same process;
  - no cache (``AMNETVID_CACHE_BYTES=0``): a fresh process decoding Parquet.

  The time to turn the raw maps into the 9 x 70 x 70 JET images
  (``render_jet``) is printed too, since that is what the PNG files hold.
- PNG files, as the working note stored them: one JET 70 x 70 RGB PNG per map,
  12 per video. Writing that many takes long, so a subset of videos is written
  and read, and the time is scaled to all the videos.
- one ``.npy`` of the maps (float32 [8000, 4, 3, 14, 14]) plus one of the
  scores, loaded in a fresh process (to compare with cold) and in this one
  (to compare with warm): the practical limit.

Memory: ``GridSearchCV`` (4 values of ``alpha`` x 3 folds) of the pipeline
AttentionSequences(maps="raw", n_frames=4) -> per-frame map peaks -> Ridge over
the 28-frame store, with ``n_jobs=1`` and ``n_jobs=2`` (joblib's loky
processes), each in a fresh process. Peak memory is the sum over the processes
of their proportional set size (Pss, from ``/proc/<pid>/smaps_rollup``, sampled
every 10 ms: pages shared by processes, as the cache file's are, count once in
all), printed whole and above the processes' idle size after imports (the data's
share). Goals: cold (file present) within 2x of ``.npy``, the store at least 20x
faster than PNG, and the grid search's data memory with ``n_jobs=2`` under 1.5x
that of ``n_jobs=1``.

SQL: two queries through ``FeatureStore.sql`` on the 28-frame store, on the ``frames``
view (each extraction's frames from one part file: a GROUP BY per query, see
``store/connection.py``) and on the raw ``frames_all`` (no dedup; the same rows in a
store without duplicates): what the view's dedup costs a query.

Each figure is the best of a few runs (``render_jet``: one run), all measured in
this one run; the load average of the machine is printed before and after.

Run from the repository root::

    python bench/bench_store_load.py               # about 3 minutes on 2 cores
    python bench/bench_store_load.py --videos 2000 --png-videos 100
"""

from __future__ import annotations

import argparse
import os
import shutil
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
from ceiling import load_average
from timing import COLD_READ, best_of, fresh_process
from amnetvid_sk.store import FeatureStore, frames_table, new_extraction_id

SHAPE = (3, 14, 14)

# np.load of the same arrays in a fresh process: argv = folder of maps.npy and scores.npy.
COLD_NPY = """
import sys, time
import numpy as np
start = time.perf_counter()
maps, scores = np.load(sys.argv[1] + "/maps.npy"), np.load(sys.argv[1] + "/scores.npy")
print(time.perf_counter() - start)
"""

# A grid search over the store in a fresh process: argv = store, n_jobs. Prints the Pss
# (kB) summed over this process and its workers: idle after imports, and the peak.
GRID = """
import os, sys, threading, time
import numpy as np
import psutil
from joblib import Parallel, delayed
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.base import BaseEstimator, TransformerMixin
from amnetvid_sk.store import FeatureStore
from amnetvid_sk.transformers import AttentionSequences

class Peaks(TransformerMixin, BaseEstimator):
    # [n, T, 3, 14, 14] maps -> [n, T * 3] map peaks, next to the T scores (nothing to fit)

    def fit(self, x, y=None):
        return self

    def transform(self, x):
        return np.hstack([x["maps"].max(axis=(3, 4)).reshape(len(x["scores"]), -1), x["scores"]])

def pss_kb():
    total = 0
    for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            with open(f"/proc/{proc.pid}/smaps_rollup") as fh:
                total += next(int(line.split()[1]) for line in fh if line.startswith("Pss:"))
        except (OSError, StopIteration):
            pass
    return total

store, n_jobs = sys.argv[1], int(sys.argv[2])
fs = FeatureStore(store)
ids = fs.video_ids()
y = np.random.default_rng(0).random(len(ids))
if n_jobs > 1:  # start the workers and import there what a fit imports, before the idle size
    Parallel(n_jobs=n_jobs)(delayed(__import__)("amnetvid_sk.transformers") for _ in range(2 * n_jobs))
time.sleep(0.5)
idle, peak, done = pss_kb(), [0], threading.Event()

def watch():
    while not done.is_set():
        peak[0] = max(peak[0], pss_kb())
        time.sleep(0.01)

watcher = threading.Thread(target=watch, daemon=True)
watcher.start()
pipe = make_pipeline(AttentionSequences(store, n_frames=4, maps="raw"), Peaks(), Ridge())
start = time.perf_counter()
try:
    GridSearchCV(pipe, {"ridge__alpha": [0.1, 1.0, 10.0, 100.0]}, cv=3, n_jobs=n_jobs,
                 error_score="raise").fit(ids, y)
finally:
    done.set()
seconds = time.perf_counter() - start
watcher.join()
print(idle, peak[0], seconds)
"""


def smooth_maps(rng, n: int) -> np.ndarray:
    """Attention-like maps: softmax of smooth random fields (4 x 4 noise, bicubic-upsampled)."""
    low = torch.from_numpy(rng.normal(size=(n, 3, 4, 4)).astype(np.float32))
    field = torch.nn.functional.interpolate(low, size=SHAPE[1:], mode="bicubic", align_corners=False) * 2.0
    return torch.softmax(field.reshape(n, 3, -1), dim=-1).reshape(n, *SHAPE).numpy()


def build_store(path: Path, n_videos: int, n_frames: int, seed: int, batch: int = 500) -> float:
    """Write a store of ``n_videos`` x ``n_frames`` frames in batches (as the extractor
    flushes); return the seconds it took, generation excluded."""
    rng = np.random.default_rng(seed)
    fs = FeatureStore(path, create=True)
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


def cold_reads(store: Path, ids_file: Path, n_frames: int, repeat: int) -> dict[str, float]:
    """Best seconds of the fresh-process reads: first-ever, file present, no cache (alternated,
    so that all see the same load)."""
    best = dict.fromkeys(("first", "cold", "no cache"), float("inf"))
    for _ in range(repeat):
        shutil.rmtree(store / ".cache", ignore_errors=True)
        best["first"] = min(best["first"], fresh_process(COLD_READ, store, ids_file, n_frames)[-1])
        best["cold"] = min(best["cold"], fresh_process(COLD_READ, store, ids_file, n_frames)[-1])
        best["no cache"] = min(best["no cache"], fresh_process(COLD_READ, store, ids_file, n_frames,
                                                               cache=False)[-1])
    return best


SQL_QUERIES = {
    "count, mean score": "SELECT count(*), avg(score) FROM {frames}",
    "mean score per video": "SELECT v.video_id, avg(f.score) FROM {frames} AS f JOIN videos AS v "
                            "USING (extraction_id) GROUP BY v.video_id",
}


def sql_times(path: Path, repeat: int) -> dict[tuple[str, str], float]:
    """Best seconds of each SQL query on the ``frames`` view and on ``frames_all``, alternated."""
    fs = FeatureStore(path)
    best = {}
    for _ in range(repeat):
        for name, query in SQL_QUERIES.items():
            results = {}
            for frames in ("frames", "frames_all"):
                t, results[frames] = best_of(1, lambda: fs.sql(query.format(frames=frames)))
                best[name, frames] = min(best.get((name, frames), float("inf")), t)
            assert results["frames"].num_rows == results["frames_all"].num_rows
    return best


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
    parser.add_argument("--png-videos", type=int, default=200, help="videos written as PNGs (then scaled)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    n, T = args.videos, 4
    rng = np.random.default_rng(0)
    ids = np.array([f"video{i}" for i in rng.permutation(n)], dtype=object)

    with tempfile.TemporaryDirectory(prefix="bench_store_load_") as tmp:
        tmp = Path(tmp)
        print(f"{n} synthetic videos, {T} frames x {SHAPE} maps + scores each; best of {args.repeat} runs; "
              f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
        print(f"  {load_average()}")
        w28 = build_store(tmp / "store28", n, 28, seed=1)
        w4 = build_store(tmp / "store4", n, T, seed=2)
        size28 = FeatureStore(tmp / "store28").info()["bytes"]["frames"]
        size4 = FeatureStore(tmp / "store4").info()["bytes"]["frames"]
        print(f"  wrote the stores in {w28:.1f} s (28 frames/video) and {w4:.1f} s (4 frames/video), "
              f"{size28 / 1e6:.0f} MB and {size4 / 1e6:.0f} MB of frames")

        ids_file = tmp / "ids.txt"
        ids_file.write_text("\n".join(ids))
        store = {}  # stored frames -> {"first", "cold", "no cache", "warm"} seconds
        for stored in (28, T):
            path = tmp / f"store{stored}"
            store[stored] = cold_reads(path, ids_file, T, args.repeat)
            FeatureStore(path).read_arrays(ids, n_frames=T)  # maps the cache file in this process
            store[stored]["warm"], (scores, maps) = best_of(
                args.repeat, lambda: FeatureStore(path).read_arrays(ids, n_frames=T))
            os.environ["AMNETVID_CACHE_BYTES"] = "0"
            scores_plain, maps_plain = FeatureStore(path).read_arrays(ids, n_frames=T)
            del os.environ["AMNETVID_CACHE_BYTES"]
            np.testing.assert_array_equal(maps, maps_plain)
            np.testing.assert_array_equal(scores, scores_plain)
        scores4, maps4 = scores, maps
        assert maps4.shape == (n, T, *SHAPE) and scores4.shape == (n, T)
        t_render, _ = best_of(1, lambda: render_jet(maps4, size=70))

        np.save(tmp / "maps.npy", maps4)
        np.save(tmp / "scores.npy", scores4)
        t_npy_cold = min(fresh_process(COLD_NPY, tmp)[-1] for _ in range(args.repeat))
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

        names = {28: "4 of 28 stored frames picked", T: "4 stored frames"}
        labels = {"first": "cold, first-ever", "cold": "cold, file present", "no cache": "no cache, cold",
                  "warm": "warm"}
        for stored, name in names.items():
            f = store[stored]
            print(f"  store, {name}: " + "   ".join(f"{labels[kind]} {f[kind] * 1e3:.0f} ms" for kind in labels))
        print(f"  render_jet of those maps (9x70x70)  : {t_render * 1e3:8.0f} ms")
        print(f"  .npy (maps + scores)                : {t_npy_cold * 1e3:8.1f} ms fresh process, "
              f"{t_npy * 1e3:.1f} ms in this one")
        print(f"  PNG, {12 * n} files (scaled from {k} videos, {12 * k} files read in {t_png_k:.2f} s; "
              f"{png_mb:.0f} MB; writing them took {t_png_write * n / k:.0f} s scaled)")
        print(f"                                        {t_png * 1e3:8.0f} ms")
        print("ratios (measured in this run; cold against .npy in a fresh process, warm against .npy here):")
        for stored, name in names.items():
            f = store[stored]
            print(f"  {name}:")
            for kind, label in labels.items():
                npy = t_npy if kind == "warm" else t_npy_cold
                goal = "   (goal <= 2x)" if kind == "cold" else ""
                print(f"    {label:20s} PNG / store {t_png / f[kind]:8.1f}x (goal >= 20x)   "
                      f"store / .npy {f[kind] / npy:6.1f}x{goal}")
        print(f"  PNG / (store first-ever, 28 stored, + render) : "
              f"{t_png / (store[28]['first'] + t_render):6.1f}x   (same 9x70x70 JET input as the PNGs)")

        sql = sql_times(tmp / "store28", args.repeat)
        print(f"SQL on the 28-frame store ({28 * n} frames), FeatureStore.sql, warm:")
        for name in SQL_QUERIES:
            view, raw = sql[name, "frames"], sql[name, "frames_all"]
            print(f"  {name:22s}: frames view {view * 1e3:7.1f} ms, frames_all {raw * 1e3:7.1f} ms, "
                  f"view / raw {view / raw:5.2f}x")

        print(f"GridSearchCV (4 x 3 fits) over the 28-frame store of {n} videos, Pss summed over processes:")
        grid = {}
        for first_ever in (True, False):
            for n_jobs in (1, 2):
                if first_ever:
                    shutil.rmtree(tmp / "store28" / ".cache", ignore_errors=True)
                idle, peak, seconds = fresh_process(GRID, tmp / "store28", n_jobs)
                grid[first_ever, n_jobs] = (peak - idle) / 1024
                print(f"  n_jobs={n_jobs}, cache file {'absent' if first_ever else 'present'}: peak "
                      f"{peak / 1024:6.0f} MB, idle {idle / 1024:6.0f} MB, data {(peak - idle) / 1024:5.0f} MB, "
                      f"{seconds:.1f} s")
        for first_ever in (True, False):
            print(f"  data memory n_jobs=2 / n_jobs=1, cache file {'absent' if first_ever else 'present'}: "
                  f"{grid[first_ever, 2] / grid[first_ever, 1]:.2f}x (goal < 1.5x)")
        print(f"  {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
