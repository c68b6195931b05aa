"""Decoding a table's part files for a read: the row groups that may hold a (model, sampling),
each read memory-mapped, several at once, and list columns (attention maps, embeddings)
copied out only for the rows a read wants.

Used by the one read path of arrays (``read_common.py``, ``read.py``, ``embeddings.py``).
A part file removed since the listing (by ``compact()``) raises FileNotFoundError, which
starts the read again (:func:`.read_common.retrying`); any other failure to read a part is
a :class:`~amnetvid_sk.errors.StoreError` naming it.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import StoreError
from . import location
from .connection import part_error

__all__ = ["fill_lists", "in_parallel", "read_group", "row_groups"]

_READ_THREADS = 8  # at most this many row groups decoded at once (about 32 MB of raw data each)


def _may_hold(row_group, columns: dict[str, int], values: dict[str, str]) -> bool:
    """False when a row group's min/max statistics rule out every value asked for."""
    for name, value in values.items():
        i = columns.get(name)
        stats = row_group.column(i).statistics if i is not None else None
        if stats is None or not stats.has_min_max:
            continue
        lo, hi = stats.min, stats.max
        if isinstance(lo, bytes):
            lo, hi = lo.decode("utf-8", "replace"), hi.decode("utf-8", "replace")
        if not lo <= value <= hi:
            return False
    return True


def row_groups(files: Sequence[str], model: str, sampling: str) -> list[tuple[str, Any, int]]:
    """(path, footer, row group) of the row groups of ``files`` that may hold (model, sampling),
    in the order of ``files``."""
    groups = []
    for path in files:
        try:
            meta = pq.read_metadata(location.source(path))
        except FileNotFoundError:
            raise  # removed by compact() since the listing: the read starts again
        except (OSError, pa.ArrowException) as e:
            raise part_error(path, e) from e
        index = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
        groups += [(path, meta, g) for g in range(meta.num_row_groups)
                   if _may_hold(meta.row_group(g), index, {"model": model, "sampling": sampling})]
    return groups


def read_group(group: tuple[str, Any, int], columns: list[str]) -> pa.Table:
    path, meta, g = group
    # Mapped, not read into buffers: that spares a copy of the file. Part files are
    # never rewritten, and what is decoded is copied out before the mapping goes.
    # One reader per call: a reader is not shared between threads. (An object of an S3 store
    # is read by ranges instead: location.source.)
    try:
        return pq.ParquetFile(location.source(path), memory_map=True, metadata=meta).read_row_group(g, columns=columns,
                                                                                   use_threads=False)
    except FileNotFoundError:
        raise  # removed by compact() since the listing: the read starts again
    except (OSError, pa.ArrowException) as e:
        raise part_error(path, e) from e


def in_parallel(func, items: Sequence) -> list:
    """``[func(x) for x in items]`` on a few threads (pyarrow and numpy copies release the GIL)."""
    workers = min(len(items), os.cpu_count() or 1, _READ_THREADS)
    if workers <= 1:
        return [func(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(func, items))


def _list_values(chunk: pa.Array, size: int, model: str, dtype=pa.float32(), what="attention maps") -> np.ndarray:
    """A zero-copy [rows, size] view of a chunk of lists of ``dtype`` (attention maps, embeddings)."""
    typ = chunk.type
    ok = chunk.null_count == 0 and (
        (pa.types.is_fixed_size_list(typ) and typ.list_size == size)
        or ((pa.types.is_list(typ) or pa.types.is_large_list(typ))
            and pc.all(pc.equal(pc.list_value_length(chunk), size)).as_py() is not False))
    if ok and typ.value_type == dtype:
        try:
            return chunk.flatten().to_numpy(zero_copy_only=True).reshape(-1, size)
        except (pa.ArrowException, ValueError):
            pass  # null floats
    raise StoreError(f"the {what} of frame model {model!r} in the store are not lists of {size} "
                     f"{dtype} values without missing values; got {typ}")


def fill_lists(groups, narrow, source: np.ndarray, size: int, model: str, column: str = "attention",
               dtype=pa.float32()) -> np.ndarray:
    """The lists in ``column`` of the rows ``source`` (numbered across ``groups``), decoding each
    row group that holds some (several at once) and copying only those rows out of it."""
    what = "attention maps" if column == "attention" else column
    out = np.empty((len(source), size), dtype=dtype.to_pandas_dtype())
    slot = np.argsort(source, kind="stable")
    source = source[slot]
    first = np.concatenate([[0], np.cumsum([t.num_rows for t in narrow])]).astype(np.int64)

    def fill(j):
        lo, hi = np.searchsorted(source, [first[j], first[j + 1]])
        if lo == hi:
            return
        offset = first[j]
        for chunk in read_group(groups[j], [column])[column].chunks:
            a, b = np.searchsorted(source[lo:hi], [offset, offset + len(chunk)]) + lo
            if a < b:
                out[slot[a:b]] = _list_values(chunk, size, model, dtype, what)[source[a:b] - offset]
            offset += len(chunk)

    in_parallel(fill, range(len(groups)))
    return out
