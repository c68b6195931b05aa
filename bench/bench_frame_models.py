"""Frames per second of the frame models, float32 against bfloat16 autocast.

Measures, in one run on this machine, each frame model (AMNet with random weights, ResMem +
Grad-CAM with its real weights, ResMem scores only) in float32 and in bfloat16, and prints
frames/s, the speed ratio and how well the bfloat16 scores agree with the float32 ones
(Spearman), with the CPU capability, what ``precision="auto"`` picks here and the machine's
float32 and bfloat16 matmul GFLOP/s. Goals: where bfloat16 is native, bfloat16 >= 1.5x faster
with Spearman >= 0.99; everywhere, auto is the faster of the two (on an AVX2 CPU bfloat16 is
emulated and auto must be float32).

The two modes are run alternately (``--repeats`` rounds) and the best time of
each is kept, so that load from other processes hits both alike.

Usage::

    python bench/bench_frame_models.py                 # 16 frames per model
    python bench/bench_frame_models.py --frames 32 --models amnet --repeats 3
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from amnetvid_sk.demo import photo_frames
from amnetvid_sk.frame_models import make_frame_model, resolve_device
from amnetvid_sk.precision import native_bfloat16, resolve_precision
from amnetvid_sk.uncertainty import OutOfFold, spearman_interval
from ceiling import ceilings, load_average


def build(name: str, bfloat16: bool, device, batch_size):
    precision = "bfloat16" if bfloat16 else "float32"
    if name == "resmem-scores":  # ResMem without maps: one forward pass, no Grad-CAM backward
        return make_frame_model("resmem", device=device, precision=precision, batch_size=batch_size, maps="none")
    if name == "amnet":
        from amnetvid_sk.frame_models.amnet import AMNet

        return AMNet.from_random(seed=0, device=device, precision=precision,
                                 **({} if batch_size is None else {"batch_size": batch_size}))
    return make_frame_model(name, device=device, precision=precision, batch_size=batch_size)


def _agreement(bf16: np.ndarray, fp32: np.ndarray):
    """Spearman of the bfloat16 scores against the float32 ones, with its 95% bootstrap interval
    over the frames."""
    frames = [f"f{i}" for i in range(len(fp32))]
    return spearman_interval(OutOfFold.from_arrays(frames, np.zeros(len(fp32)), bf16, fp32))


def _timed_predict(model, frames: np.ndarray) -> tuple[float, np.ndarray]:
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    s, _ = model.predict(frames)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, s


def bench_model(name: str, frames: np.ndarray, device, batch_size, repeats: int) -> dict:
    models = {False: build(name, False, device, batch_size), True: build(name, True, device, batch_size)}
    for m in models.values():  # warm-up: oneDNN primitive creation, weight packing
        m.predict(frames[: min(2, len(frames))])
    best = {False: float("inf"), True: float("inf")}
    scores = {}
    for _ in range(repeats):
        for bf, m in models.items():
            seconds, scores[bf] = _timed_predict(m, frames)
            best[bf] = min(best[bf], seconds)
    n = len(frames)
    return {
        "model": name,
        "device": str(models[False].device),
        "batch_size": models[False].batch_size,
        "fps32": n / best[False],
        "fps16": n / best[True],
        "ratio": best[False] / best[True],
        "spearman": _agreement(scores[True], scores[False]),
        "max_abs_diff": float(np.abs(scores[True] - scores[False]).max()),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16, help="frames per model (default 16)")
    parser.add_argument("--models", default="amnet,resmem,resmem-scores",
                        help="comma-separated: amnet, resmem (maps and scores), resmem-scores (scores only)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: automatic)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: each model's own")
    parser.add_argument("--repeats", type=int, default=2, help="alternating timed rounds (best is kept)")
    args = parser.parse_args(argv)

    frames = photo_frames(args.frames)
    cpu = platform.processor() or platform.machine()
    device = resolve_device(args.device)
    native, why = native_bfloat16(device)
    auto = resolve_precision("auto", device)[0]
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cores ({cpu}), "
          f"CUDA: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    print(f"device {device}: {why}; precision='auto' runs {auto}")
    ceiling = ceilings(str(device))
    print(f"matmul ceiling ({device}): float32 {ceiling['float32']:.0f} GFLOP/s, bfloat16 {ceiling['bfloat16']:.0f} "
          f"GFLOP/s; {load_average()}")
    print(f"{len(frames)} frames of {frames.shape[2]}x{frames.shape[1]}, best of {args.repeats} alternating rounds\n")
    header = f"{'model':<13} {'device':<7} {'batch':>5} {'fp32 fr/s':>10} {'bf16 fr/s':>10} {'bf16/fp32':>10} " \
             f"{'Spearman [95% CI]':>24} {'max|diff|':>10}  goal"
    print(header)
    print("-" * len(header))
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        r = bench_model(name, frames, args.device, args.batch_size, args.repeats)
        if native:
            ok = "met" if r["ratio"] >= 1.5 and r["spearman"].estimate >= 0.99 and auto == "bfloat16" else "NOT met"
            ok += " (native bf16: >=1.5x, >=0.99, auto=bf16)"
        else:  # emulated bfloat16: auto must stay float32, the faster one
            ok = ("met" if auto == "float32" and r["ratio"] < 1.0 else "NOT met") + " (emulated bf16: auto=fp32)"
        print(f"{r['model']:<13} {r['device']:<7} {r['batch_size']:>5} {r['fps32']:>10.2f} {r['fps16']:>10.2f} "
              f"{r['ratio']:>9.2f}x {r['spearman'].text(digits=4):>24} {r['max_abs_diff']:>10.5f}  {ok}",
              flush=True)
    print(load_average())


if __name__ == "__main__":
    main()
