"""Benchmark: feature store size on disk per 1,000 videos x 28 frames.

Writes 1,000 synthetic videos x 28 frames (3 x 14 x 14 attention maps and a
score per frame) through ``FeatureStore.write_extractions`` twice:

- realistic maps: softmax of smooth random fields (4 x 4 Gaussian noise,
  bicubic-upsampled to 14 x 14), shaped like AMNet's attention;
- white-noise maps: softmax of independent Gaussian noise per cell, the worst
  case for compression.

It prints the bytes on disk (all tables), per frame, against the raw float32
size, and extrapolated to the 8,000 MediaEval dev videos. For the realistic maps
it also prints the size and DuckDB read time of the frames written with other
Parquet encodings (the store uses zstd with byte-stream-split floats), and the
size of the working note's JET PNGs for comparison.

Run from the repository root::

    python bench/bench_store_size.py             # about 30 s on 2 cores
    python bench/bench_store_size.py --videos 200
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import amnetvid_sk  # noqa: F401
except ImportError:  # run from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from amnetvid_sk.render import render_jet
from amnetvid_sk.store import FeatureStore, frames_table, new_extraction_id

SHAPE = (3, 14, 14)
RAW_FRAME_BYTES = int(np.prod(SHAPE)) * 4 + 4  # the maps and the score as float32


def smooth_maps(rng, n: int) -> np.ndarray:
    low = torch.from_numpy(rng.normal(size=(n, 3, 4, 4)).astype(np.float32))
    field = torch.nn.functional.interpolate(low, size=SHAPE[1:], mode="bicubic", align_corners=False) * 2.0
    return torch.softmax(field.reshape(n, 3, -1), dim=-1).reshape(n, *SHAPE).numpy()


def noise_maps(rng, n: int) -> np.ndarray:
    field = torch.from_numpy(rng.normal(size=(n, 3, 196)).astype(np.float32))
    return torch.softmax(field, dim=-1).reshape(n, *SHAPE).numpy()


def build(path: Path, n_videos: int, n_frames: int, make_maps, seed: int, batch: int = 250):
    rng = np.random.default_rng(seed)
    fs = FeatureStore(path)
    fs.write_model("bench-model", "synthetic", {"layers": ["layer2", "layer3", "layer4"]}, SHAPE)
    sample = None
    for first in range(0, n_videos, batch):
        count = min(batch, n_videos - first)
        maps = make_maps(rng, count * n_frames).reshape(count, n_frames, *SHAPE)
        scores = (0.7 + 0.1 * rng.standard_normal((count, n_frames))).astype(np.float32)
        rows, tables = [], []
        for i in range(count):
            eid, vid = new_extraction_id(), f"video{first + i}"
            rows.append({"extraction_id": eid, "video_id": vid, "path": f"/data/MediaEval/dev/{vid}.webm",
                         "size": int(rng.integers(2e5, 2e6)), "mtime": 1.6e9 + first + i, "duration": 7.0,
                         "fps": 29.97, "frame_count": 210, "width": 640, "height": 360,
                         "model": "bench-model", "sampling": f"frames={n_frames}", "n_frames": n_frames,
                         "short": False})
            index = np.linspace(0, 209, n_frames).round().astype(np.int64)
            tables.append(frames_table(eid, index, index / 29.97, scores[i], maps[i]))
        fs.write_extractions(rows, pa.concat_tables(tables))
        if sample is None:
            sample = maps
    return fs, sample


def read_time(path: Path, repeat: int = 3) -> float:
    con = duckdb.connect()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        table = con.sql("SELECT score, attention::FLOAT[588] AS a FROM read_parquet(?)", params=[str(path)])
        table.to_arrow_table()
        best = min(best, time.perf_counter() - start)
    con.close()
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=28)
    parser.add_argument("--png-videos", type=int, default=50, help="videos rendered as PNGs for the comparison")
    args = parser.parse_args(argv)
    n, T = args.videos, args.frames
    per_k = 1000 / n
    raw = n * T * RAW_FRAME_BYTES

    with tempfile.TemporaryDirectory(prefix="bench_store_size_") as tmp:
        tmp = Path(tmp)
        print(f"{n} synthetic videos x {T} frames, {SHAPE} float32 maps + score per frame "
              f"(raw {RAW_FRAME_BYTES} B/frame, {raw * per_k / 1e6:.0f} MB per 1,000 videos)")
        sample = None
        for label, make, seed in (("realistic (smooth) maps", smooth_maps, 1),
                                  ("white-noise maps", noise_maps, 2)):
            start = time.perf_counter()
            fs, maps = build(tmp / label.split()[0], n, T, make, seed)
            spent = time.perf_counter() - start
            sample = maps if sample is None else sample
            info = fs.info()
            total, frames = info["size_bytes"], info["bytes"]["frames"]
            print(f"{label}:")
            print(f"  store on disk        : {total * per_k / 1e6:7.1f} MB per 1,000 videos "
                  f"({frames * per_k / 1e6:.1f} MB frames, {info['bytes']['videos'] * per_k / 1e3:.0f} kB videos)")
            print(f"  per frame            : {frames / (n * T):7.0f} B   ({raw / frames:.2f}x smaller than raw)")
            print(f"  8,000 videos         : {total * 8000 / n / 1e9:7.2f} GB   (written in {spent:.1f} s "
                  f"for {n} videos, map generation included)")

        # Other encodings of the same (realistic) frames, for the record.
        frames = pq.read_table(tmp / "realistic" / "frames").select(["extraction_id", "frame_index", "score",
                                                                      "attention"])
        frames = frames.cast(pa.schema([*frames.schema][:3] + [pa.field("attention",
                                                                         pa.list_(pa.float32(), 588))]))
        floats = ["score", "attention.list.element"]
        encodings = {
            "zstd + byte-stream-split": dict(compression="zstd", use_dictionary=["extraction_id"],
                                             use_byte_stream_split=floats),
            "zstd": dict(compression="zstd", use_dictionary=["extraction_id"]),
            "lz4 + byte-stream-split (the store's maps)": dict(compression="lz4", use_dictionary=["extraction_id"],
                                                               use_byte_stream_split=floats),
            "uncompressed": dict(compression="none", use_dictionary=["extraction_id"]),
        }
        print(f"frames of the realistic maps under other Parquet encodings (DuckDB read of all "
              f"{n * T} frames, best of 3):")
        for name, options in encodings.items():
            path = tmp / f"enc_{len(name)}.parquet"
            pq.write_table(frames, path, row_group_size=13_000, **options)
            size = os.path.getsize(path)
            print(f"  {name:38s}: {size * per_k / 1e6:7.1f} MB per 1,000 videos, "
                  f"read {read_time(path) * 1e3:5.0f} ms")

        # The working note's format: one JET 70x70 RGB PNG per map, 4 frames per video.
        k = min(args.png_videos, n)
        png_dir = tmp / "png"
        png_dir.mkdir()
        jet = render_jet(sample[:k, :4], size=70)
        for v in range(k):
            for f in range(jet.shape[1]):
                for m in range(3):
                    rgb = np.ascontiguousarray(jet[v, f, 3 * m:3 * m + 3].transpose(1, 2, 0))
                    Image.fromarray(rgb).save(png_dir / f"{v}_{f}_{m}.png")
        png = sum(p.stat().st_size for p in png_dir.iterdir())
        print(f"JET PNGs (working note, 4 frames x 3 maps per video, from {k} videos): "
              f"{png * 1000 / k / 1e6:.1f} MB per 1,000 videos ({png * 7 * 1000 / k / 1e6:.0f} MB for 28 frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
