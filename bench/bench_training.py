"""Training speed of AMNetVid: samples/s against the machine's ceiling, and raw vs JET maps.

Part ``throughput`` (the default): ``ConvLSTMRegressor`` with the working note's network and
settings (4 frames of 9x70x70 JET maps as uint8, divided by 255 in the network, plus the 4
frame scores; batch 32, MSE, Adam) trains on moving-peak videos
(``amnetvid_sk.testing.synthetic.make_moving_peak_dataset``) in float32 and in the default
precision (``precision="auto"``: bfloat16 where the device computes it natively), epoch by
epoch, the two alternating so that both see the same load; each rate is the best epoch. Next
to them: the machine's float32 and bfloat16 matmul GFLOP/s (the ceiling), the floating-point
operations of one training sample (counted by ``torch.utils.flop_counter``) and the fraction of
the ceiling each rate reaches.

Part ``raw-vs-jet``: the same videos as raw attention maps (3x14x14, scaled by 196) and as
JET renders, trained for the same epochs on the same videos: samples/s and held-out
Spearman; then raw maps trained the default way (early stopping) on more videos in less time
than the JET fit. Goal: raw >= 10x the JET samples/s, and a held-out Spearman no worse.

All figures come from this one run, with the CPU capability and the load average.

Run: ``.venv/bin/python bench/bench_training.py`` (about 1 minute on 2 cores; ``--part
raw-vs-jet`` about 3 minutes; ``--device cuda`` on a GPU; ``--threads`` sets torch's
intra-op threads, 2 by default).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from amnetvid_sk.estimators import DEFAULT_DEVICE, ConvLSTMRegressor, MeanScoreRegressor
from amnetvid_sk.metrics import spearman
from amnetvid_sk.networks import AMNetVidNet
from amnetvid_sk.precision import resolve_precision
from amnetvid_sk.render import render_jet
from amnetvid_sk.testing.synthetic import make_moving_peak_dataset


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_gflops(device: str, dtype: torch.dtype, n: int = 2048, repeat: int = 5) -> float:
    """Best GFLOP/s of an n x n matmul in ``dtype`` on ``device``."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.mm(a, b)
    _sync(device)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def flops_per_sample(maps: np.ndarray, scores: np.ndarray, y: np.ndarray) -> float:
    """Floating-point operations of one training step (forward, MSE, backward) per sample."""
    net = AMNetVidNet()
    counter = FlopCounterMode(display=False)
    with counter:
        out = net(maps=torch.from_numpy(maps), scores=torch.from_numpy(scores))
        torch.nn.functional.mse_loss(out, torch.from_numpy(y).reshape(-1, 1)).backward()
    return counter.get_total_flops() / len(y)


def throughput(args) -> None:
    maps, scores, y = make_moving_peak_dataset(args.n_train, seed=0)
    jet = render_jet(maps, size=70)  # uint8, as AttentionSequences hands them over
    X = {"maps": jet, "scores": scores}
    auto, why = resolve_precision("auto", torch.device(args.device))
    per_sample = flops_per_sample(jet[:8], scores[:8], y[:8])
    regs = {}
    for precision in ("float32", "auto"):
        # one warm-up epoch each: oneDNN picks and caches its kernels on the first batches
        regs[precision] = ConvLSTMRegressor(max_epochs=1, train_split=None, random_state=0, device=args.device,
                                            precision=precision).fit(X, y)
    best = dict.fromkeys(regs, 0.0)
    for _ in range(args.repeat):
        for precision, reg in regs.items():
            reg.partial_fit(X, y)
            best[precision] = max(best[precision], len(y) / float(reg.history[-1, "dur"]))
    # a smaller bfloat16 matmul: where bfloat16 is emulated, 2048 x 2048 takes minutes
    ceiling = {"float32": matmul_gflops(args.device, torch.float32),
               "bfloat16": matmul_gflops(args.device, torch.bfloat16, n=1024, repeat=3)}
    print(f"AMNetVid, the note's JET input (4 x 9x70x70 uint8 + 4 scores), batch 32, MSE + Adam; "
          f"{len(y)} videos per epoch, best of {args.repeat} epochs each, alternated")
    print(f"  one training sample: {per_sample / 1e9:.2f} GFLOP (forward + backward)")
    print(f"  matmul ceiling ({args.device}): float32 {ceiling['float32']:.0f} GFLOP/s, "
          f"bfloat16 {ceiling['bfloat16']:.1f} GFLOP/s")
    for precision, rate in best.items():
        runs = "float32" if precision == "float32" else auto
        label = "float32" if precision == "float32" else f"auto -> {auto} ({why})"
        print(f"  {label}: {rate:6.1f} samples/s = {rate * per_sample / 1e9:5.0f} GFLOP/s, "
              f"{rate * per_sample / 1e9 / ceiling[runs]:.2f} of the {runs} ceiling")
    print(f"  auto / float32: {best['auto'] / best['float32']:.2f}x")


def _fit(maps, scores, y, **params):
    reg = ConvLSTMRegressor(**{"random_state": 0, **params})
    start = time.perf_counter()
    reg.fit({"maps": maps, "scores": scores}, y)
    return reg, time.perf_counter() - start


def raw_vs_jet(args) -> None:
    maps, scores, y = make_moving_peak_dataset(args.n_train, seed=0)
    maps_te, scores_te, y_te = make_moving_peak_dataset(args.n_test, seed=1)
    start = time.perf_counter()
    # uint8, as AttentionSequences hands them over; the network divides by 255
    jet = render_jet(maps, size=70)
    jet_te = render_jet(maps_te, size=70)
    render_s = time.perf_counter() - start
    print(f"render_jet: {maps.shape[0] + maps_te.shape[0]} videos x {maps.shape[1]} frames in {render_s:.2f} s; "
          f"values per video: raw {maps[0].size}, JET {jet[0].size} ({jet[0].size / maps[0].size:.0f}x)")

    baseline = spearman(y_te, MeanScoreRegressor().fit(scores, y).predict(scores_te))
    print(f"mean of frame scores (the note's baseline): held-out Spearman {baseline:+.3f}")

    budget = dict(max_epochs=args.epochs, train_split=None, device=args.device)
    raw = dict(module__map_channels=3, module__map_size=14)
    rows = {}
    for name, train_maps, test_maps, extra in [
        ("raw 3x14x14, map_scale=196", maps, maps_te, dict(raw, module__map_scale=196)),
        ("raw 3x14x14, unscaled", maps, maps_te, raw),
        ("JET 9x70x70 (uint8 /255)", jet, jet_te, {}),
    ]:
        reg, wall = _fit(train_maps, scores, y, **budget, **extra)
        train_s = float(np.sum(reg.history[:, "dur"]))
        rate = len(y) * len(reg.history) / train_s
        rho = spearman(y_te, reg.predict({"maps": test_maps, "scores": scores_te}))
        rows[name] = (rate, rho, wall)
        print(f"{name}: {len(y)} videos x {len(reg.history)} epochs in {train_s:.1f} s -> "
              f"{rate:.1f} training samples/s; held-out Spearman {rho:.3f}")
    (raw_rate, raw_rho, _), (_, unscaled_rho, _), (jet_rate, jet_rho, jet_wall) = rows.values()
    # seed-to-seed spread of the same raw fit, to read the Spearman difference against
    seeds = [spearman(y_te, _fit(maps, scores, y, **budget, **raw, module__map_scale=196, random_state=rs)[0]
                      .predict({"maps": maps_te, "scores": scores_te})) for rs in (1, 2, 3)]
    print(f"raw map_scale=196, random_state 1..3: held-out Spearman {', '.join(f'{r:.3f}' for r in seeds)}")
    print(f"equal budget: raw trains {raw_rate / jet_rate:.1f}x faster than JET (goal >= 10x); "
          f"Spearman raw - JET = {raw_rho - jet_rho:+.3f} (goal >= 0; unscaled raw: {unscaled_rho - jet_rho:+.3f})")

    maps2, scores2, y2 = make_moving_peak_dataset(args.n_train_raw, seed=2)
    reg, wall = _fit(maps2, scores2, y2, **raw, module__map_scale=196, device=args.device)
    rho = spearman(y_te, reg.predict({"maps": maps_te, "scores": scores_te}))
    print(f"raw, default training (early stopping) on {len(y2)} videos: {len(reg.history)} epochs in "
          f"{wall:.1f} s ({wall / jet_wall:.2f}x the JET fit's time); held-out Spearman {rho:.3f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("throughput", "raw-vs-jet"), default="throughput")
    parser.add_argument("--n-train", type=int, default=None,
                        help="videos per epoch (default: 128 for throughput, 192 for raw-vs-jet)")
    parser.add_argument("--repeat", type=int, default=3, help="throughput: epochs per precision")
    parser.add_argument("--epochs", type=int, default=5, help="raw-vs-jet: epochs for the equal-budget fits")
    parser.add_argument("--n-test", type=int, default=300, help="raw-vs-jet: held-out videos")
    parser.add_argument("--n-train-raw", type=int, default=800, help="raw-vs-jet: videos for the time-matched raw fit")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--device", default=DEFAULT_DEVICE)
    args = parser.parse_args(argv)
    if args.n_train is None:
        args.n_train = 128 if args.part == "throughput" else 192
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = f" ({torch.cuda.get_device_name(args.device)})" if args.device.startswith("cuda") else ""
    print(f"device={args.device}{gpu} torch threads={torch.get_num_threads()} torch {torch.__version__} "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}; {_load()}")
    throughput(args) if args.part == "throughput" else raw_vs_jet(args)
    print(f"  {_load()}")


if __name__ == "__main__":
    main()
