"""Freed memory kept in the process while a network trains or predicts (glibc's malloc, Linux).

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
Afterwards the heap's address space may keep holes that glibc fills with later large blocks
before it maps new ones; such a block stays resident when freed, until the next ``malloc_trim``
(at most the peak above).

Nothing is changed when the C library is not glibc (macOS, Windows, musl), when the user chose
malloc's behaviour (``MALLOC_MMAP_MAX_``, ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_TOP_PAD_`` or ``GLIBC_TUNABLES`` in the environment the process started with, or an
allocator in ``LD_PRELOAD``), or when ``AMNETVID_KEEP_FREED_MEMORY=0`` (read at each use).
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

from .errors import ParameterError

__all__ = ["keep_freed_memory", "keeps_freed_memory"]

# mallopt's parameters (malloc.h) and glibc's defaults for the two this module sets
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_INT_MAX = 2**31 - 1

#: the environment variables by which a user sets what this module would (glibc's manual, "Memory
#: Allocation Tunables"); MALLOC_ARENA_MAX and the like are left to work alongside
_USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                  "GLIBC_TUNABLES")

_ENV = "AMNETVID_KEEP_FREED_MEMORY"

_lock = threading.Lock()
_depth = 0  # how many keep_freed_memory blocks are open, in all threads: the settings change at 0 <-> 1


def _why_not() -> str | None:
    """Why malloc is left as it is here, or None when :func:`keep_freed_memory` acts."""
    switch = os.environ.get(_ENV, "").strip()
    if switch not in ("", "0", "1"):
        raise ParameterError(f"the environment variable {_ENV} must be 0 (leave malloc as it is) or 1 "
                             f"(keep freed memory during fits and predictions, the default); got {switch!r}")
    if switch == "0":
        return f"{_ENV}=0"
    if not _glibc():
        return "the C library is not glibc"
    started_with = _startup_environment()
    chosen = sorted(k for k in _USER_SETTINGS if k in started_with)
    if chosen:
        return f"malloc is configured by {', '.join(chosen)}"
    if "malloc" in started_with.get("LD_PRELOAD", ""):
        return "another allocator is preloaded (LD_PRELOAD)"
    return None


@functools.cache
def _startup_environment() -> dict[str, str]:
    """The environment this process started with: glibc reads its malloc settings then, and a later
    change of ``os.environ`` (Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_`` there for the workers it
    spawns) does not reach this process's malloc."""
    try:
        with open("/proc/self/environ", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return dict(os.environ)
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


@functools.cache
def _glibc() -> bool:
    """Whether this is Linux with glibc (``platform.libc_ver`` reads the interpreter's file: once)."""
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


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

    Raises
    ------
    ParameterError
        ``AMNETVID_KEEP_FREED_MEMORY`` set to something other than 0 or 1.

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
