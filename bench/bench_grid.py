"""GridSearchCV with n_jobs=2 vs n_jobs=1 on this machine: speed-up, same results.

The AMNetVid-on-raw-maps recipe's grid (4 candidates x 3 folds) on a synthetic
store of moving-peak videos, read from a real Parquet store through the pipeline.

    python bench/bench_grid.py [--videos 300] [--epochs 4]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amnetvid_sk.evaluate import grid_search  # noqa: E402
from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        maps, scores, y = make_moving_peak_dataset(args.videos, seed=0)
        write_synthetic_store(store, maps, scores, y)
        params = {"net__max_epochs": args.epochs}
        times, best = {}, {}
        threads = torch.get_num_threads()
        # "1/1": one job with one torch thread, the baseline that parallel jobs multiply
        for key, n_jobs, n_threads in (("1", 1, threads), ("1/1", 1, 1), ("2", 2, threads)):
            torch.set_num_threads(n_threads)
            t0 = time.perf_counter()
            search, rows = grid_search("amnetvid_raw", store, "short", cv=3, n_jobs=n_jobs, set_params=params)
            times[key] = time.perf_counter() - t0
            best[key] = [round(r["mean_spearman"], 4) for r in rows]
        torch.set_num_threads(threads)
    n_fits = 3 * len(rows)
    print(f"amnetvid_raw grid: {len(rows)} candidates x 3 folds = {n_fits} fits (+1 refit), "
          f"{args.videos} videos, {args.epochs} epochs")
    print(f"n_jobs=1 (torch {threads} threads): {times['1']:7.1f} s")
    print(f"n_jobs=1 (torch 1 thread)  : {times['1/1']:7.1f} s")
    print(f"n_jobs=2 (joblib gives each worker 1 thread): {times['2']:7.1f} s")
    print(f"speed-up n_jobs=2 vs n_jobs=1: {times['1'] / times['2']:.2f}x "
          f"(vs one single-threaded job: {times['1/1'] / times['2']:.2f}x)")
    print(f"mean Spearman per candidate, n_jobs=1: {best['1']}")
    print(f"mean Spearman per candidate, n_jobs=2: {best['2']}  (same seeds: should match)")


if __name__ == "__main__":
    main()
