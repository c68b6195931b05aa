"""Freed memory kept in the process while a network trains or predicts, or a frame model runs
(glibc's malloc, Linux).

A training step of the working note's network allocates and frees about a GB of tensors, most
of them larger than glibc's mmap threshold (32 MB at most). Each such tensor is a fresh mapping
that the kernel fills with zeros page by page when it is first written, and that goes back to
the system when the tensor is freed; the next step pays again. On the 2-core VMs this package
is measured on, that page filling took a third of every training step (``bench/bench_training.py``
prints the rates with and without it). TensorFlow keeps freed memory in its own allocator;
PyTorch's CPU tensors use malloc, so the usual advice is to preload jemalloc or tcmalloc.

:func:`keep_freed_memory` does the equivalent with glibc itself, for as long as it is entered:
malloc takes every block from its heap (``M_MMAP_MAX=0``) and keeps the blocks that are freed
for the next step (``M_TRIM_THRESHOLD`` at its maximum). On leaving, glibc's defaults come back
and the memory freed meanwhile goes back to the system (``malloc_trim``). While it is entered,
the process holds on to the largest memory a step has needed (its peak, which it needs anyway).

Nothing is changed when the C library is not glibc (macOS, Windows, musl), when the user chose
malloc's behaviour (``MALLOC_MMAP_MAX_``, ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_TOP_PAD_`` or ``GLIBC_TUNABLES`` set, or an allocator in ``LD_PRELOAD``), or when
``AMNETVID_KEEP_FREED_MEMORY=0``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import sys
import threading
from collections.abc import Iterator

__all__ = ["keep_freed_memory", "keeps_freed_memory"]

# mallopt's parameters (malloc.h) and glibc's defaults for the two this module sets
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_INT_MAX = 2**31 - 1

#: the environment variables by which a user sets what this module would (glibc's manual, "Memory
#: Allocation Tunables"); MALLOC_ARENA_MAX and the like are left to work alongside
_USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                  "GLIBC_TUNABLES")

_lock = threading.Lock()
_depth = 0  # how many threads are inside keep_freed_memory: the settings change at 0 <-> 1


def _why_not() -> str | None:
    """Why malloc is left as it is here, or None when :func:`keep_freed_memory` acts."""
    if os.environ.get("AMNETVID_KEEP_FREED_MEMORY", "1") == "0":
        return "AMNETVID_KEEP_FREED_MEMORY=0"
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return "the C library is not glibc"
    chosen = sorted(k for k in _USER_SETTINGS if k in os.environ)
    if chosen:
        return f"malloc is configured by {', '.join(chosen)}"
    if "malloc" in os.environ.get("LD_PRELOAD", ""):
        return "another allocator is preloaded (LD_PRELOAD)"
    return None


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL("libc.so.6")


def keeps_freed_memory() -> bool:
    """Whether :func:`keep_freed_memory` changes malloc's behaviour in this process."""
    return _why_not() is None


@contextlib.contextmanager
def keep_freed_memory() -> Iterator[None]:
    """Keep freed memory in the process inside the block (see the module's docstring).

    Re-entrant and thread-safe: the settings change when the first block is entered and come
    back when the last one is left.

    Examples
    --------
    >>> import numpy as np
    >>> from amnetvid_sk.freed_memory import keep_freed_memory
    >>> with keep_freed_memory():
    ...     total = sum(float(np.ones(2**22).sum()) for _ in range(3))  # one block, reused
    >>> total
    12582912.0
    """
    global _depth
    if _why_not() is not None:
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            libc = _libc()
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc = _libc()
                libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
                libc.malloc_trim(0)
