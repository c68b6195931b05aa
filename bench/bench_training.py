"""Training speed and accuracy of AMNetVid on raw 3x14x14 maps vs JET-rendered 9x70x70 maps.

The same moving-peak videos (``amnetvid_sk.testing.synthetic.make_moving_peak_dataset``: the
label is the signed speed of an attention peak, invisible to the mean of frame scores)
are fed to ``ConvLSTMRegressor`` with the default architecture in two forms: the raw
attention maps (scaled by 14*14 = 196, ``module__map_scale``, and also unscaled), and
their JET renders (``render_jet(maps, size=70)``, uint8, divided by 255 in the network:
the working note's input). Printed, all measured in this one run:

1. equal budget: all trained on the same videos for the same epochs (no validation
   split, so every sample is trained on): training samples/s and held-out Spearman;
2. raw at the wall-clock time JET took: raw maps trained the default way (early
   stopping on a validation part) on more videos, in less time than the JET fit.

Goal: raw >= 10x the JET samples/s, and a held-out Spearman no worse.

Run: ``.venv/bin/python bench/bench_training.py`` (about 3 minutes on 2 busy CPU cores;
``--n-train``/``--epochs`` scale it). One torch thread by default: on a shared machine
intra-op threads of small convolutions mostly wait on each other, and the ratio is
what this measures.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from amnetvid_sk.estimators import DEFAULT_DEVICE, ConvLSTMRegressor, MeanScoreRegressor
from amnetvid_sk.metrics import spearman
from amnetvid_sk.render import render_jet
from amnetvid_sk.testing.synthetic import make_moving_peak_dataset


def _fit(maps, scores, y, **params):
    reg = ConvLSTMRegressor(**{"random_state": 0, **params})
    start = time.perf_counter()
    reg.fit({"maps": maps, "scores": scores}, y)
    return reg, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-train", type=int, default=192, help="videos for the equal-budget fits")
    parser.add_argument("--epochs", type=int, default=5, help="epochs for the equal-budget fits")
    parser.add_argument("--n-test", type=int, default=300, help="held-out videos")
    parser.add_argument("--n-train-raw", type=int, default=800, help="videos for the time-matched raw fit")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device={DEFAULT_DEVICE} torch threads={torch.get_num_threads()} torch {torch.__version__}")

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

    budget = dict(max_epochs=args.epochs, train_split=None)
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
    reg, wall = _fit(maps2, scores2, y2, **raw, module__map_scale=196)
    rho = spearman(y_te, reg.predict({"maps": maps_te, "scores": scores_te}))
    print(f"raw, default training (early stopping) on {len(y2)} videos: {len(reg.history)} epochs in "
          f"{wall:.1f} s ({wall / jet_wall:.2f}x the JET fit's time); held-out Spearman {rho:.3f}")


if __name__ == "__main__":
    main()
