"""One batch of frames split over the CPU's cores: each part in its own thread, with its own torch threads.

A batched forward pass on the CPU spends ~90% of its time in oneDNN convolutions,
which split each layer over torch's threads and wait for all of them at the end of
it (ResNet-152 has over 150 layers, many of them 15 x 15 or 8 x 8, too small to
divide evenly). Running parts of the batch side by side, each with a share of the
threads, keeps every core busy without those waits: on 2 cores with torch's kernels
limited to AVX2, two single-threaded halves of each batch of 8 gave ResMem's scores
1.09-1.23x as fast as the batches on two threads, and its scores with Grad-CAM maps
1.19x (``bench/bench_scores_only.py``, its ``scores whole`` row). The results are the
same up to float rounding (each frame's outputs depend only on that frame).

Torch's grad mode, inference mode and autocast are per thread, so each part enters
them itself; ``torch.set_num_threads`` in a worker sets that thread's OpenMP team
size (and torch's default for threads started later, which :func:`run_parts` puts
back).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import torch

__all__ = ["part_bounds", "run_parts"]

_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def part_bounds(n_frames: int, n_threads: int) -> list[tuple[int, int, int]]:
    """``(start, stop, threads)`` of each part: ``min(n_threads, n_frames)`` parts as even as can be.

    The threads are shared out the same way, so that all ``n_threads`` are used.

    Examples
    --------
    >>> part_bounds(8, 2)
    [(0, 4, 1), (4, 8, 1)]
    >>> part_bounds(3, 4)
    [(0, 1, 2), (1, 2, 1), (2, 3, 1)]
    >>> part_bounds(5, 1)
    [(0, 5, 1)]
    """
    n_parts = max(1, min(n_threads, n_frames))
    bounds, start = [], 0
    for i in range(n_parts):
        size = n_frames // n_parts + (i < n_frames % n_parts)
        threads = n_threads // n_parts + (i < n_threads % n_parts)
        bounds.append((start, start + size, max(1, threads)))
        start += size
    return bounds


def _pool(size: int) -> ThreadPoolExecutor:
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE < size:
            if _POOL is not None:
                _POOL.shutdown(wait=False)
            _POOL, _POOL_SIZE = ThreadPoolExecutor(size, thread_name_prefix="amnetvid-cpu-part"), size
        return _POOL


def run_parts(run: Callable[[int, int], None], n_frames: int) -> None:
    """Call ``run(start, stop)`` for parts of ``range(n_frames)``, side by side in threads.

    One part per torch thread of the calling thread (at most one frame each), each
    run with its share of the threads. With one thread, or one frame, ``run(0,
    n_frames)`` runs here. ``run`` must be safe to call from several threads at once
    (writing each part's results to its own rows); the first error raised by a part
    is raised here, after all parts have ended.
    """
    n_threads = torch.get_num_threads()
    bounds = part_bounds(n_frames, n_threads)
    if len(bounds) == 1:
        run(0, n_frames)
        return

    def run_part(start: int, stop: int, threads: int) -> None:
        torch.set_num_threads(threads)
        run(start, stop)

    try:
        futures = [_pool(len(bounds)).submit(run_part, *b) for b in bounds]
        errors = [f.exception() for f in futures]
    finally:
        torch.set_num_threads(n_threads)  # the process-wide default a worker's call changed
    for error in errors:
        if error is not None:
            raise error
