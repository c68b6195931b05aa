"""Frames per second of ResMem scores without maps, against the resmem package's own loop.

Measures, in one run on this machine and on the same frames, three ways to get
ResMem's memorability scores in float32:

- ``resmem loop``: the resmem package's documented use, one image at a time
  (``from resmem import ResMem, transformer``; ``model = ResMem(pretrained=True);
  model.eval()``; per image ``x = transformer(image)`` and, under ``torch.no_grad()``,
  ``model(x.view(-1, 3, 227, 227))``). Its PIL images are made before timing.
- ``scores only``: ``ResMemGradCAM(maps="none")``: batched, one forward pass under
  ``inference_mode``, from uint8 frames (its preprocessing is timed).
- ``maps+scores``: ``ResMemGradCAM()`` (the default): Grad-CAM maps need a backward pass.
- ``scores whole``: scores only with each batch run whole on all torch threads, not
  split over them (``thread_safe_forward = False``; see ``frame_models/cpu_parts.py``):
  what the split itself gains.

It prints frames/s, the ratios, and how far the scores of the three are apart
(scores only against maps+scores: the same float32 model, so ~1e-6), with the CPU
capability. Goal: scores only >= 1.5x the resmem loop. The three are run
alternately (``--repeats`` rounds) and the best time of each is kept, so that load
from other processes hits all alike. On a virtual machine the host may take the CPUs
away for part of the run ("steal", read from ``/proc/stat``): the bench prints how
much, and a second ratio from this process's CPU time (per torch thread), which
stolen time does not inflate.

Usage::

    python bench/bench_scores_only.py                  # 16 frames
    python bench/bench_scores_only.py --frames 32 --repeats 3
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python bench/bench_scores_only.py   # as on an AVX2 CPU
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
import torch
from PIL import Image

from amnetvid_sk.demo import photo_frames
from amnetvid_sk.frame_models.resmem_gradcam import ResMemGradCAM


def resmem_loop(model, transformer, images) -> np.ndarray:
    """The resmem package's documented per-image use."""
    out = []
    for image in images:
        x = transformer(image)
        with torch.no_grad():
            out.append(float(model(x.view(-1, 3, 227, 227))))
    return np.asarray(out, dtype=np.float32)


def steal_jiffies():
    """(steal, total) jiffies of all CPUs from /proc/stat, or None where there is none (not Linux)."""
    try:
        fields = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[7] if len(fields) > 7 else 0, sum(fields)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16, help="frames (default 16)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: ResMemGradCAM's own (8)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating timed rounds (best is kept)")
    args = parser.parse_args(argv)

    from resmem import ResMem, transformer

    frames = photo_frames(args.frames)
    images = [Image.fromarray(f) for f in frames]
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '(unset)')}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cores ({cpu}), device cpu, float32")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's deprecated 'pretrained', inside resmem
        reference = ResMem(pretrained=True)
    reference.eval()
    size = {} if args.batch_size is None else {"batch_size": args.batch_size}
    ours_none = ResMemGradCAM(device="cpu", precision="float32", maps="none", **size)
    ours_maps = ResMemGradCAM(device="cpu", precision="float32", **size)
    ours_whole = ResMemGradCAM(device="cpu", precision="float32", maps="none", **size)
    ours_whole.thread_safe_forward = False  # each batch on all threads at once, as before the split
    runs = {
        "resmem loop": lambda: resmem_loop(reference, transformer, images),
        "scores only": lambda: ours_none.predict(frames)[0],
        "maps+scores": lambda: ours_maps.predict(frames)[0],
        "scores whole": lambda: ours_whole.predict(frames)[0],
    }
    print(f"{len(frames)} frames of {frames.shape[2]}x{frames.shape[1]}, ResMemGradCAM batch "
          f"{ours_none.batch_size}, best of {args.repeats} alternating rounds\n")
    # warm-up: oneDNN primitive creation, first touch of the weights
    resmem_loop(reference, transformer, images[:2])
    ours_none.predict(frames[:2])
    ours_maps.predict(frames[:2])
    ours_whole.predict(frames[:2])
    best = dict.fromkeys(runs, float("inf"))
    cpu_best = dict.fromkeys(runs, float("inf"))
    scores = {}
    threads = torch.get_num_threads()
    start = steal_jiffies()
    for _ in range(args.repeats):
        for name, run in runs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            scores[name] = run()
            best[name] = min(best[name], time.perf_counter() - t0)
            cpu_best[name] = min(cpu_best[name], (time.process_time() - c0) / threads)
    end = steal_jiffies()

    n = len(frames)
    loop = best["resmem loop"]
    cpu_loop = cpu_best["resmem loop"]
    header = (f"{'path':<12} {'fr/s':>7} {'vs loop':>8} {'fr/cpu-s':>9} {'vs loop':>8} "
              f"{'max|score - maps+scores score|':>31}")
    print(header)
    print("-" * len(header))
    for name in runs:
        diff = float(np.abs(scores[name] - scores["maps+scores"]).max())
        print(f"{name:<12} {n / best[name]:>7.2f} {loop / best[name]:>7.2f}x {n / cpu_best[name]:>9.2f} "
              f"{cpu_loop / cpu_best[name]:>7.2f}x {diff:>31.2e}")
    if start and end and end[1] > start[1]:
        print(f"\nCPU time taken by the host (steal) during the timed rounds: "
              f"{100 * (end[0] - start[0]) / (end[1] - start[1]):.0f}%  (fr/cpu-s: frames per second of this "
              f"process's CPU time per torch thread, which steal does not inflate)")
    ratio = loop / best["scores only"]
    agree = float(np.abs(scores["scores only"] - scores["maps+scores"]).max())
    print(f"\ngoal scores only >= 1.5x the resmem loop: {'met' if ratio >= 1.5 else 'NOT met'} ({ratio:.2f}x wall, "
          f"{cpu_loop / cpu_best['scores only']:.2f}x CPU time); "
          f"scores only vs maps+scores max |diff| {agree:.1e} ({'<= 1e-5' if agree <= 1e-5 else '> 1e-5'}); "
          f"maps+scores costs {best['maps+scores'] / best['scores only']:.2f}x scores only; "
          f"splitting the batch over the threads gains {best['scores whole'] / best['scores only']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
