"""The large arrays that a read fills, allocated in the operating system's small pages (Linux).

numpy asks Linux for transparent huge pages (``madvise(MADV_HUGEPAGE)``) for every array of
4 MiB or more. Under the kernel's default ``defrag`` setting (``madvise``), the first write to
each 2 MiB page of such an array makes the kernel find a free 2 MiB block on the spot, and when
the memory is fragmented (a machine whose page cache holds a store read again and again: the
usual case here) it compacts memory first, at every page. A read writes its output once and
then gathers from it, which huge pages hardly speed up, so its large arrays are maps of
anonymous memory without that request, filled with small pages in one call (``MAP_POPULATE``)
rather than one fault at a time. ``bench/bench_buffers.py`` measures the three ways.
Elsewhere (no transparent huge pages) they are numpy's own.
"""

from __future__ import annotations

import mmap
import sys

import numpy as np

__all__ = ["empty"]

_SMALL = 4 << 20  # numpy's own threshold for the huge-page request: below it an array is left as numpy makes it
# private, anonymous, its pages made at once (MAP_POPULATE: Linux 2.5.46+, Python 3.10+)
_FLAGS = (mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE) if sys.platform.startswith("linux") else None


def empty(shape, dtype) -> np.ndarray:
    """A writable, uninitialised array (like ``np.empty``), in small pages when it is large.

    Examples
    --------
    >>> from amnetvid_sk.store.buffers import empty
    >>> a = empty((1024, 2048), "float32")
    >>> a[:] = 1.0
    >>> a.shape, a.dtype, float(a.sum())
    ((1024, 2048), dtype('float32'), 2097152.0)
    """
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in np.atleast_1d(shape))
    count = int(np.prod(shape, dtype=np.int64))
    if _FLAGS is None or count * dtype.itemsize < _SMALL:
        return np.empty(shape, dtype)
    # the array keeps the map alive; the map goes with the last array that views it
    return np.frombuffer(mmap.mmap(-1, count * dtype.itemsize, flags=_FLAGS), dtype, count).reshape(shape)
