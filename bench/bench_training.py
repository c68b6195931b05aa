"""Training speed of AMNetVid: samples/s against the machine's ceiling, and raw vs JET maps.

Part ``throughput`` (the default): ``ConvLSTMRegressor`` with the working note's network and
settings (4 frames of 9x70x70 JET maps as uint8, divided by 255 in the network, plus the 4
frame scores; batch 32, MSE, Adam) trains on moving-peak videos
(``amnetvid_sk.testing.synthetic.make_moving_peak_dataset``) in float32 and in the default
precision (``precision="auto"``: bfloat16 where the device computes it natively), each eager
and through ``torch.compile`` (``compile=True``), plus float32 with glibc's malloc left as it is
(``AMNETVID_KEEP_FREED_MEMORY=0``: training keeps freed memory by default, see
``amnetvid_sk.freed_memory``), epoch by epoch, the five alternating so that all see the same
load; each rate is the best epoch. Next to them: the machine's float32 and bfloat16 matmul
GFLOP/s (the ceiling), the floating-point operations of one training sample (counted by
``torch.utils.flop_counter``) and the fraction of the ceiling each rate reaches.

Part ``learning-curve``: held-out Spearman of float32, compiled float32 and the default
precision, seed by seed (raw maps, the same code path at a size that trains in seconds): the
faster ways must learn no worse than float32 eager, within the seeds' spread.

Part ``raw-vs-jet``: the same videos as raw attention maps (3x14x14, scaled by 196) and as
JET renders, trained for the same epochs on the same videos: samples/s and held-out
Spearman; then raw maps trained the default way (early stopping) on more videos in less time
than the JET fit. Goal: raw >= 10x the JET samples/s, and a held-out Spearman no worse.

All figures come from this one run, with the CPU capability and the load average.

Run: ``.venv/bin/python bench/bench_training.py`` (about 4 minutes on 2 cores, most of it compiling;
``--model conv3d`` or ``score-lstm`` for the other networks; ``--part
raw-vs-jet`` about 3 minutes; ``--device cuda`` on a GPU; ``--threads`` sets torch's
intra-op threads, 2 by default).
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from amnetvid_sk.conv3d import Conv3DRegressor
from amnetvid_sk.estimators import DEFAULT_DEVICE, ConvLSTMRegressor, MeanScoreRegressor, ScoreLSTMRegressor
from amnetvid_sk.freed_memory import keeps_freed_memory
from amnetvid_sk.metrics import spearman
from amnetvid_sk.precision import resolve_precision
from amnetvid_sk.render import render_jet
from amnetvid_sk.testing.synthetic import make_moving_peak_dataset
from amnetvid_sk.uncertainty import OutOfFold, paired_difference, spearman_interval
from ceiling import ceilings, load_average
from timing import freed_memory_kept


def _test_set(y_true, y_pred) -> OutOfFold:
    """Predictions on the test videos as one fold, for the interval functions."""
    return OutOfFold.from_arrays([f"v{i}" for i in range(len(y_true))], np.zeros(len(y_true)), y_pred, y_true)


def held_out(y_true, y_pred) -> str:
    """A held-out Spearman with its 95% bootstrap interval over the test videos."""
    return spearman_interval(_test_set(y_true, y_pred)).text(digits=3)


def held_out_difference(y_true, y_pred, base_pred) -> str:
    """The held-out Spearman of ``y_pred`` minus that of ``base_pred``, with its paired 95% interval."""
    return paired_difference(_test_set(y_true, y_pred), _test_set(y_true, base_pred)).text(digits=3, signed=True)


def flops_per_sample(module: torch.nn.Module, X, y: np.ndarray) -> float:
    """Floating-point operations of one training step (forward, MSE, backward) per sample."""
    net = copy.deepcopy(module).train()
    counter = FlopCounterMode(display=False)
    with counter:
        inputs = ({k: torch.from_numpy(v) for k, v in X.items()} if isinstance(X, dict)
                  else {"scores": torch.from_numpy(X)})
        out = net(**inputs)
        torch.nn.functional.mse_loss(out, torch.from_numpy(y).reshape(-1, 1)).backward()
    return counter.get_total_flops() / len(y)


MODELS = {
    "amnetvid": (ConvLSTMRegressor, "AMNetVid (ConvLSTM), the note's JET input (4 x 9x70x70 uint8 + 4 scores)"),
    "conv3d": (Conv3DRegressor, "Conv3D on the note's JET input (4 x 9x70x70 uint8 + 4 scores)"),
    "score-lstm": (ScoreLSTMRegressor, "the note's score LSTM (4 frame scores)"),
}


#: float32 with glibc's default malloc, which gives freed blocks back (amnetvid_sk.freed_memory)
RETURNED = "float32, freed memory returned"


def throughput(args) -> None:
    maps, scores, y = make_moving_peak_dataset(args.n_train, seed=0)
    regressor, title = MODELS[args.model]
    # JET renders as uint8, as AttentionSequences hands them over
    X = scores if args.model == "score-lstm" else {"maps": render_jet(maps, size=70), "scores": scores}
    auto, why = resolve_precision("auto", torch.device(args.device))
    configs = {"float32": dict(precision="float32", compile=False),
               RETURNED: dict(precision="float32", compile=False),
               "float32, compiled": dict(precision="float32", compile=True),
               "auto": dict(precision="auto", compile=False),
               "auto, compiled": dict(precision="auto", compile=True)}
    regs, first_epoch = {}, {}
    for name, params in configs.items():
        # one warm-up epoch each: oneDNN picks and caches its kernels on the first batches, and
        # the compiled ones compile (their warm-up epoch minus an eager one is the compile time)
        with freed_memory_kept(name != RETURNED):
            regs[name] = regressor(max_epochs=1, train_split=None, random_state=0, device=args.device,
                                   **params).fit(X, y)
        first_epoch[name] = float(regs[name].history[-1, "dur"])
    first8 = {k: v[:8] for k, v in X.items()} if isinstance(X, dict) else X[:8]
    per_sample = flops_per_sample(regs["float32"].module_, first8, y[:8])
    best = dict.fromkeys(regs, 0.0)
    for _ in range(args.repeat):
        for name, reg in regs.items():
            with freed_memory_kept(name != RETURNED):
                reg.partial_fit(X, y)
            best[name] = max(best[name], len(y) / float(reg.history[-1, "dur"]))
    ceiling = ceilings(args.device)
    print(f"{title}, batch 32, MSE + Adam; "
          f"{len(y)} videos per epoch, best of {args.repeat} epochs each, alternated")
    print(f"  one training sample: {per_sample / 1e9:.3g} GFLOP (forward + backward)")
    print(f"  matmul ceiling ({args.device}): float32 {ceiling['float32']:.0f} GFLOP/s, "
          f"bfloat16 {ceiling['bfloat16']:.1f} GFLOP/s")
    for name, rate in best.items():
        runs = "float32" if name.startswith("float32") else auto
        label = name if name.startswith("float32") else name.replace("auto", f"auto -> {auto} ({why})")
        compiled = regs[name].compile is True
        extra = (f"; compiling took about {first_epoch[name] - len(y) / best[name]:.0f} s (its warm-up epoch "
                 f"less a compiled one)") if compiled else ""
        print(f"  {label}: {rate:6.1f} samples/s = {rate * per_sample / 1e9:5.0f} GFLOP/s, "
              f"{rate * per_sample / 1e9 / ceiling[runs]:.2f} of the {runs} ceiling{extra}")
    if keeps_freed_memory():
        print(f"  float32, freed memory kept (the default) / returned to the system: "
              f"{best['float32'] / best[RETURNED]:.2f}x")
    print(f"  float32 compiled / eager: {best['float32, compiled'] / best['float32']:.2f}x; "
          f"auto / float32: {best['auto'] / best['float32']:.2f}x; "
          f"auto compiled / float32 eager: {best['auto, compiled'] / best['float32']:.2f}x")


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

    baseline = held_out(y_te, MeanScoreRegressor().fit(scores, y).predict(scores_te))
    print(f"mean of frame scores (the note's baseline): held-out Spearman {baseline}")

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
        pred = reg.predict({"maps": test_maps, "scores": scores_te})
        rows[name] = (rate, pred, wall)
        print(f"{name}: {len(y)} videos x {len(reg.history)} epochs in {train_s:.1f} s -> "
              f"{rate:.1f} training samples/s; held-out Spearman {held_out(y_te, pred)}")
    (raw_rate, raw_pred, _), (_, unscaled_pred, _), (jet_rate, jet_pred, jet_wall) = rows.values()
    # seed-to-seed spread of the same raw fit, to read the Spearman difference against
    seeds = [held_out(y_te, _fit(maps, scores, y, **budget, **raw, module__map_scale=196, random_state=rs)[0]
                      .predict({"maps": maps_te, "scores": scores_te})) for rs in (1, 2, 3)]
    print(f"raw map_scale=196, random_state 1..3: held-out Spearman {', '.join(seeds)}")
    print(f"equal budget: raw trains {raw_rate / jet_rate:.1f}x faster than JET (goal >= 10x); "
          f"Spearman raw - JET = {held_out_difference(y_te, raw_pred, jet_pred)} (goal >= 0; unscaled raw: "
          f"{held_out_difference(y_te, unscaled_pred, jet_pred)})")

    maps2, scores2, y2 = make_moving_peak_dataset(args.n_train_raw, seed=2)
    reg, wall = _fit(maps2, scores2, y2, **raw, module__map_scale=196, device=args.device)
    rho = held_out(y_te, reg.predict({"maps": maps_te, "scores": scores_te}))
    print(f"raw, default training (early stopping) on {len(y2)} videos: {len(reg.history)} epochs in "
          f"{wall:.1f} s ({wall / jet_wall:.2f}x the JET fit's time); held-out Spearman {rho}")


def learning_curve(args) -> None:
    maps, scores, y = make_moving_peak_dataset(args.n_train, seed=0)
    maps_te, scores_te, y_te = make_moving_peak_dataset(args.n_test, seed=1)
    X, X_te = {"maps": maps, "scores": scores}, {"maps": maps_te, "scores": scores_te}
    raw = dict(module__map_channels=3, module__map_size=14, module__map_scale=196)
    print(f"held-out Spearman after {args.epochs} epochs on {len(y)} moving-peak videos (raw 3x14x14 maps, "
          f"the ConvLSTM's code path at a size that trains in seconds), {len(y_te)} test videos")
    for name, params in [("float32", dict(precision="float32", compile=False)),
                         ("float32, compiled", dict(precision="float32", compile=True)),
                         ("auto", dict(precision="auto", compile=False))]:
        rhos, texts = [], []
        for seed in range(args.seeds):
            reg = ConvLSTMRegressor(max_epochs=args.epochs, train_split=None, random_state=seed,
                                    device=args.device, **raw, **params).fit(X, y)
            pred = reg.predict(X_te)
            rhos.append(spearman(y_te, pred))
            texts.append(held_out(y_te, pred))
        label = name.replace("auto", f"auto -> {reg.precision_}")
        print(f"  {label}: {', '.join(texts)} (mean {np.mean(rhos):.3f}, spread {max(rhos) - min(rhos):.3f}; "
              "[95% bootstrap interval over the test videos])")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("throughput", "raw-vs-jet", "learning-curve"), default="throughput")
    parser.add_argument("--model", choices=tuple(MODELS), default="amnetvid", help="throughput: which network")
    parser.add_argument("--n-train", type=int, default=None,
                        help="videos per epoch (default: 128 for throughput, 192 for raw-vs-jet)")
    parser.add_argument("--repeat", type=int, default=3, help="throughput: epochs per precision")
    parser.add_argument("--epochs", type=int, default=5, help="raw-vs-jet, learning-curve: epochs per fit")
    parser.add_argument("--seeds", type=int, default=3, help="learning-curve: random_state 0..seeds-1")
    parser.add_argument("--n-test", type=int, default=300, help="raw-vs-jet: held-out videos")
    parser.add_argument("--n-train-raw", type=int, default=800, help="raw-vs-jet: videos for the time-matched raw fit")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--device", default=DEFAULT_DEVICE)
    args = parser.parse_args(argv)
    if args.n_train is None:
        args.n_train = {"throughput": 128, "raw-vs-jet": 192, "learning-curve": 400}[args.part]
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = f" ({torch.cuda.get_device_name(args.device)})" if args.device.startswith("cuda") else ""
    print(f"device={args.device}{gpu} torch threads={torch.get_num_threads()} torch {torch.__version__} "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}; {load_average()}")
    {"throughput": throughput, "raw-vs-jet": raw_vs_jet, "learning-curve": learning_curve}[args.part](args)
    print(f"  {load_average()}")


if __name__ == "__main__":
    main()
