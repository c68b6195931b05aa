"""Benchmark: loading the AMNetVid training input from the feature store, from PNG
files, and from one ``.npy`` array.

The input is, per video, 4 frames of 3 attention maps (14 x 14) plus the 4 frame
scores, for 8,000 synthetic videos (the MediaEval dev set). Three ways to load it:

- the store: ``FeatureStore.read_arrays(ids, n_frames=4)`` on a store holding
  28 frames per video (what ``amnetvid extract`` writes by default; 4 are
  picked of the 28), and again on a store holding exactly 4 frames per video.
  The ids are asked for in a shuffled order, through a new ``FeatureStore``
  each time (as the pipeline steps do). Three figures each:

  - cold: the first read in a fresh process (its array cache empty): it decodes
    every stored frame of every video. Timed inside the process, imports excluded;
  - warm: a later read in the same process, answered from the array cache (as
    the reads of cross-validation folds, grid-search fits and transform after
    fit are);
  - no cache (``AMNETVID_CACHE_BYTES=0``): the read through DuckDB, as every
    read was before the cache: the first read in a fresh process (to compare
    with cold) and a later read in this process.

  The time to turn the raw maps into the 9 x 70 x 70 JET images
  (``render_jet``) is printed too, since that is what the PNG files hold.
- PNG files, as the working note stored them: one JET 70 x 70 RGB PNG per map,
  12 per video (96,000 for 8,000 videos). Writing that many takes long, so a
  subset of videos is written and read, and the time is scaled to 8,000.
- one ``.npy`` of the maps (float32 [8000, 4, 3, 14, 14]) plus one of the
  scores: the practical limit.

All files are read warm (just written, so from the page cache). Each figure is
the best of a few runs (``render_jet``: one run), all measured in this one run;
the load average of the machine is printed before and after. Goals: the store
at least 20x faster than PNG, and within 2x of ``.npy``.

Run from the repository root::

    python bench/bench_store_load.py               # about 1.5 minutes on 2 cores
    python bench/bench_store_load.py --videos 2000 --png-videos 200
"""

from __future__ import annotations

import argparse
import os
import subprocess
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
ROOT = Path(__file__).resolve().parents[1]

# The cold read, run in a fresh process: argv = store, file of ids (one a line), n_frames.
COLD_READ = """
import sys, time
import numpy as np
from amnetvid_sk.store import FeatureStore
ids = np.array(open(sys.argv[2]).read().split(), dtype=object)
start = time.perf_counter()
scores, maps = FeatureStore(sys.argv[1]).read_arrays(ids, n_frames=int(sys.argv[3]))
print(time.perf_counter() - start)
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


def cold_read(store: Path, ids_file: Path, n_frames: int, cache: bool = True) -> float:
    """Seconds of the first read_arrays in a fresh process (imports not counted)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if not cache:
        env["AMNETVID_CACHE_BYTES"] = "0"
    done = subprocess.run([sys.executable, "-c", COLD_READ, str(store), str(ids_file), str(n_frames)],
                          env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


def uncached_read(store: Path, ids, n_frames: int):
    """read_arrays with the array cache off: through DuckDB, as before the cache."""
    saved = os.environ.get("AMNETVID_CACHE_BYTES")
    os.environ["AMNETVID_CACHE_BYTES"] = "0"
    try:
        return FeatureStore(store).read_arrays(ids, n_frames=n_frames)
    finally:
        if saved is None:
            del os.environ["AMNETVID_CACHE_BYTES"]
        else:
            os.environ["AMNETVID_CACHE_BYTES"] = saved


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


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
        print(f"{n} synthetic videos, {T} frames x {SHAPE} maps + scores each; best of {args.repeat} runs; "
              f"AMNETVID_CACHE_BYTES={os.environ.get('AMNETVID_CACHE_BYTES', '(default)')}")
        print(f"  {load()}")
        w28 = build_store(tmp / "store28", n, 28, seed=1)
        w4 = build_store(tmp / "store4", n, T, seed=2)
        size28 = FeatureStore(tmp / "store28").info()["bytes"]["frames"]
        size4 = FeatureStore(tmp / "store4").info()["bytes"]["frames"]
        print(f"  wrote the stores in {w28:.1f} s (28 frames/video) and {w4:.1f} s (4 frames/video), "
              f"{size28 / 1e6:.0f} MB and {size4 / 1e6:.0f} MB of frames")

        # A new FeatureStore (so a new DuckDB connection) per read, as the pipeline steps do.
        ids_file = tmp / "ids.txt"
        ids_file.write_text("\n".join(ids))
        store = {}  # stored frames -> {"cold", "warm", "sql cold", "sql"} seconds
        for stored in (28, T):
            path = tmp / f"store{stored}"
            # alternate the two fresh-process reads, so that both see the same load
            cold, sql_cold = float("inf"), float("inf")
            for _ in range(args.repeat):
                cold = min(cold, cold_read(path, ids_file, T))
                sql_cold = min(sql_cold, cold_read(path, ids_file, T, cache=False))
            FeatureStore(path).read_arrays(ids, n_frames=T)  # fills this process's cache
            warm, (scores, maps) = best_of(args.repeat, lambda: FeatureStore(path).read_arrays(ids, n_frames=T))
            sql, (scores_sql, maps_sql) = best_of(args.repeat, lambda: uncached_read(path, ids, T))
            np.testing.assert_array_equal(maps, maps_sql)
            np.testing.assert_array_equal(scores, scores_sql)
            store[stored] = {"cold": cold, "warm": warm, "sql cold": sql_cold, "sql": sql}
        scores4, maps4 = scores, maps
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

        names = {28: "4 of 28 stored frames picked", T: "4 stored frames"}
        for stored, name in names.items():
            f = store[stored]
            print(f"  store, {name:28s}: cold {f['cold'] * 1e3:6.0f} ms   warm {f['warm'] * 1e3:6.1f} ms   "
                  f"no cache {f['sql cold'] * 1e3:6.0f} ms (fresh process), {f['sql'] * 1e3:6.0f} ms (later)")
        print(f"  render_jet of those maps (9x70x70)  : {t_render * 1e3:8.0f} ms")
        print(f"  .npy (maps + scores)                : {t_npy * 1e3:8.1f} ms")
        print(f"  PNG, {12 * n} files (scaled from {k} videos, {12 * k} files read in {t_png_k:.2f} s; "
              f"{png_mb:.0f} MB; writing them took {t_png_write * n / k:.0f} s scaled)")
        print(f"                                        {t_png * 1e3:8.0f} ms")
        print("ratios (measured in this run):")
        for stored, name in names.items():
            f = store[stored]
            print(f"  {name}:")
            for kind in ("cold", "warm", "sql cold", "sql"):
                label = {"cold": "cold", "warm": "warm", "sql cold": "no cache, fresh process",
                         "sql": "no cache, later"}[kind]
                print(f"    {label:24s} PNG / store {t_png / f[kind]:8.1f}x (goal >= 20x)   "
                      f"store / .npy {f[kind] / t_npy:6.1f}x (goal <= 2x)")
        print(f"  PNG / (store cold, 28 stored, + render) : {t_png / (store[28]['cold'] + t_render):6.1f}x   "
              "(same 9x70x70 JET input as the PNGs)")
        print(f"  {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
