"""Benchmark: seek-based frame sampling against decoding every frame.

Writes a 60 s 720p H.264 clip once (keyframe every 2 s, moving texture, frame i
carrying the number i in its top-left corner), then samples it with
``sample_frames(..., seek=True)`` and ``seek=False`` and prints the best of a
few runs of each and their ratio (wall clock; CPU time too, steadier on a shared
machine). The goal for 4 frames is a ratio of at least 5.

Run from the repository root::

    python bench/bench_sampling.py            # about 30 s on 2 cores
    python bench/bench_sampling.py --seconds 20 --repeat 5
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

from amnetvid_sk.testing.clips import numbered_frame, read_number, write_clip
from amnetvid_sk.video import sample_frames, video_info

CODE_H, CODE_W = 96, 160  # the numbered block code, pasted top-left


def textured_frames(n, height, width, seed=0):
    """Frames of a smooth texture with grain that pans 7 px per frame, so that
    P-frames carry real work, each showing its number in the top-left corner."""
    rng = np.random.default_rng(seed)
    pan = 64
    y, x = np.mgrid[0:height, 0 : width + pan].astype(np.float32)
    luma = 127 + 60 * np.sin(x / 23) * np.cos(y / 31) + 40 * np.sin((x + y) / 57)
    grain = rng.normal(0, 6, (height, width + pan, 1)).astype(np.float32)
    texture = np.clip(luma[..., None] + grain * np.array([1.0, 0.8, 0.6], np.float32), 0, 255)
    texture = texture.astype(np.uint8)
    for i in range(n):
        offset = (i * 7) % pan
        frame = np.ascontiguousarray(texture[:, offset : offset + width])
        frame[:CODE_H, :CODE_W] = numbered_frame(i, CODE_H, CODE_W)
        yield frame


def best_time(path, repeat, **kwargs):
    """Fastest wall and CPU time of ``repeat`` runs (the least disturbed by
    other processes on a shared machine), and the last sample."""
    wall = cpu = float("inf")
    sample = None
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        sample = sample_frames(path, **kwargs)
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu, sample


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="clip length (default 60)")
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--gop", type=int, default=50, help="keyframe interval in frames (default 50 = 2 s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement, best kept")
    args = parser.parse_args(argv)

    n = int(round(args.seconds * args.fps))
    with tempfile.TemporaryDirectory(prefix="bench_sampling_") as folder:
        path = Path(folder) / "clip.mp4"
        start = time.perf_counter()
        write_clip(
            path,
            textured_frames(n, args.height, args.width),
            fps=args.fps,
            codec="h264",
            gop=args.gop,
            options={"preset": "ultrafast"},
        )
        encode = time.perf_counter() - start
        info = video_info(path)
        start = time.perf_counter()
        video_info(path)
        probe = time.perf_counter() - start
        print(
            f"clip: {info.duration:.0f} s, {info.width}x{info.height}, {info.frame_count} frames, "
            f"H.264 ultrafast, keyframe every {args.gop} frames, {path.stat().st_size / 1e6:.1f} MB "
            f"(encoded in {encode:.1f} s)"
        )
        print(f"video_info (index every packet, decode frame 0): {probe * 1000:.0f} ms")
        print(f"best of {args.repeat} runs each\n")
        header = (
            f"{'sampling':<12}{'seek':>9}{'decoded':>9}{'seeks':>7}{'sequential':>12}{'decoded':>9}"
            f"{'ratio':>8}{'cpu ratio':>11}"
        )
        print(header)
        print("-" * len(header))
        ratios = {}
        configs = (("n_frames=4", {"n_frames": 4}), ("n_frames=28", {"n_frames": 28}), ("fps=4", {"fps": 4}))
        for label, kwargs in configs:
            t_seek, cpu_seek, fast = best_time(path, args.repeat, seek=True, **kwargs)
            t_seq, cpu_seq, slow = best_time(path, args.repeat, seek=False, **kwargs)
            # both modes must return the same frames, and the intended ones
            numbers = [read_number(f[:CODE_H, :CODE_W]) for f in fast.frames]
            if numbers != fast.indices.tolist() or not np.array_equal(fast.frames, slow.frames):
                raise SystemExit(f"{label}: seek and sequential sampling returned different frames")
            ratios[label] = t_seq / t_seek
            print(
                f"{label:<12}{t_seek:>8.3f}s{fast.n_decoded:>9}{fast.n_seeks:>7}"
                f"{t_seq:>11.3f}s{slow.n_decoded:>9}{ratios[label]:>7.1f}x{cpu_seq / cpu_seek:>10.1f}x"
            )
        verdict = "met" if ratios["n_frames=4"] >= 5 else "NOT met"
        print(f"\ngoal: 4 frames at least 5x faster with seeking: {verdict} ({ratios['n_frames=4']:.1f}x)")


if __name__ == "__main__":
    main()
