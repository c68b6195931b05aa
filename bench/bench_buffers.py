"""Benchmark: the first fill of a large array, the three ways a store read could allocate it.

numpy's ``np.empty`` (transparent huge pages requested for 4 MiB and more), an anonymous map in
small pages faulted one at a time, and the same made at once (``MAP_POPULATE``:
``amnetvid_sk.store.buffers.empty``). Each is allocated, filled once and freed, alternated, in
one process; printed: ms per MB, the best and the worst of ``--repeat`` rounds. The first
``np.empty`` of a size pays the kernel's memory compaction when no free 2 MiB blocks are left (a
machine whose page cache holds much: run it after reading a large store, or any large files);
later ones reuse the blocks freed before them, as a process that reads again and again does.

    python bench/bench_buffers.py                 # 9.4, 94 and 940 MB (4, 40 and 400 thousand maps)
    python bench/bench_buffers.py --sizes 94 --repeat 5
"""

from __future__ import annotations

import argparse
import mmap
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

try:
    from amnetvid_sk.store.buffers import empty
except ImportError:  # run from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from amnetvid_sk.store.buffers import empty

from ceiling import load_average


def _thp() -> str:
    parts = []
    for name in ("enabled", "defrag"):
        try:
            parts.append(f"{name} {Path(f'/sys/kernel/mm/transparent_hugepage/{name}').read_text().strip()}")
        except OSError:
            parts.append(f"{name} unknown")
    return "; ".join(parts)


def numpy_empty(nbytes: int) -> np.ndarray:
    return np.empty(nbytes // 4, np.float32)


def small_pages(nbytes: int) -> np.ndarray:
    return np.frombuffer(mmap.mmap(-1, nbytes), np.float32)


def small_pages_populated(nbytes: int) -> np.ndarray:
    return empty((nbytes // 4,), np.float32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="9.4,94,940", help="array sizes in MB, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (each way once a round, alternated)")
    args = parser.parse_args(argv)
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} cores; "
          f"transparent huge pages: {_thp()}; {load_average()}")
    ways = (numpy_empty, small_pages, small_pages_populated)
    for mb in (float(s) for s in args.sizes.split(",")):
        nbytes = int(mb * 1e6) // 4 * 4
        times = {way.__name__: [] for way in ways}
        for _ in range(args.repeat):
            for way in ways:
                start = time.perf_counter()
                a = way(nbytes)
                a[:] = 1.0
                times[way.__name__].append(time.perf_counter() - start)
                del a
        for name, t in times.items():
            print(f"  {mb:7.1f} MB  {name:22s} first {t[0] / mb * 1e3:6.2f} ms/MB, best {min(t) / mb * 1e3:6.2f}, "
                  f"worst {max(t) / mb * 1e3:6.2f}")
    print(f"  {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
