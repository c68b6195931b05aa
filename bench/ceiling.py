"""What the benches measure against: the machine's matmul GFLOP/s and its load.

Imported by the bench scripts of this folder (run as ``python bench/NAME.py``, which puts this
folder on ``sys.path``).
"""

from __future__ import annotations

import os
import time

import torch


def load_average() -> str:
    """The load average and core count, printed beside every figure (these machines are shared)."""
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
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


def ceilings(device: str) -> dict[str, float]:
    """float32 and bfloat16 matmul GFLOP/s; the bfloat16 one smaller, as where it is emulated
    2048 x 2048 takes minutes."""
    return {"float32": matmul_gflops(device, torch.float32),
            "bfloat16": matmul_gflops(device, torch.bfloat16, n=1024, repeat=3)}
