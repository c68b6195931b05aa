"""Extraction end to end vs the frame model alone on the same decoded frames, same run.

Goal: ratio (model-alone time / end-to-end time) >= 0.90, i.e. decoding, batching
and writing the store add at most ~10% because decoding runs ahead on threads.

    python bench/bench_extraction.py [--model amnet|resmem] [--clips 8] [--frames 16]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amnetvid_sk.frame_models.amnet import AMNet  # noqa: E402
from amnetvid_sk.testing.clips import write_clip  # noqa: E402
from amnetvid_sk.extraction import extract  # noqa: E402
from amnetvid_sk.frame_models import make_frame_model  # noqa: E402
from amnetvid_sk.video import sample_frames  # noqa: E402


def make_clips(folder: Path, n: int, length: int, height=240, width=320):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        base = rng.integers(0, 255, size=(height // 16, width // 16, 3), dtype=np.uint8)
        base = np.kron(base, np.ones((16, 16, 1), dtype=np.uint8))
        frames = np.stack([np.roll(base, 4 * t, axis=1) for t in range(length)])
        path = folder / f"clip{i:02d}.mp4"
        write_clip(path, frames, fps=25, codec="h264")
        paths.append(path)
    return paths


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=("amnet", "resmem"), default="amnet")
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--frames", type=int, default=16, help="frames sampled per clip")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = make_clips(tmp, args.clips, length=100)
        if args.model == "amnet":
            model = AMNet.from_random(seed=0, device="cpu", batch_size=args.batch_size)
        else:
            model = make_frame_model("resmem", device="cpu", batch_size=args.batch_size)

        # warm-up (first forward pays for allocations and kernel selection)
        model.predict(sample_frames(paths[0], n_frames=2).frames)

        # the frame model alone, on the same frames, batched across videos the same way
        frames = np.concatenate([sample_frames(p, n_frames=args.frames).frames for p in paths])
        # alternate the two measurements and keep the best of each: the machine is shared
        model_alone, end_to_end = [], []
        for r in range(args.rounds):
            t0 = time.perf_counter()
            model.predict(frames)
            model_alone.append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            summary = extract(paths, store=tmp / f"store{r}", frame_model=model, n_frames=args.frames,
                              workers=2, progress=False)
            end_to_end.append(time.perf_counter() - t0)
            assert summary.ok and len(summary.extracted) == len(paths)
        model_alone, end_to_end = min(model_alone), min(end_to_end)

    n = len(frames)
    print(f"frame model: {args.model}, {len(paths)} clips x {args.frames} frames = {n} frames (320x240 H.264)")
    print(f"model alone : {model_alone:7.2f} s  ({n / model_alone:6.1f} frames/s)")
    print(f"end to end  : {end_to_end:7.2f} s  ({n / end_to_end:6.1f} frames/s, decode + model + store)")
    print(f"best of {args.rounds} rounds each, alternating")
    print(f"ratio (model alone / end to end): {model_alone / end_to_end:.3f}  (goal >= 0.90)")


if __name__ == "__main__":
    main()
