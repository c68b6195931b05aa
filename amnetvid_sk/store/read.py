"""The one read path of arrays: ``read_arrays`` (frame scores and attention maps of videos).

Every read goes the same way:

1. the visible extractions of the (model, sampling) come from DuckDB's ``videos``
   view (its dedup rules), or from the cache file of this listing (``cache.py``);
2. their frames are decoded from the Parquet parts with pyarrow (memory-mapped,
   row groups in parallel, row groups whose statistics rule the pair out
   skipped), and the frames a read returns are picked in numpy
   (:func:`positions`), for every video of the pair at once. The result, a
   :class:`Frames`, goes to the array cache;
3. the rows of the ids asked for are taken from it (numpy indexing).

A first read of fewer than 1/8 of a pair's videos, a read of arrays larger than
``AMNETVID_CACHE_BYTES`` and every read with ``AMNETVID_CACHE_BYTES=0`` decode
only the videos asked for, in the same way, and keep nothing.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import MissingVideosError, StoreError
from . import cache, location
from .connection import Connection, part_error
from .resolve import snapshot
from .frame_pick import SHORT_POLICIES, frames_wanted, pick_rows, positions  # noqa: F401  (re-exported)
from .schema import fmt_ids, id_array, map_size, unique_in_order

__all__ = ["SHORT_POLICIES", "Frames", "decode", "fill_lists", "frames_wanted", "in_parallel", "locate", "positions", "read_arrays",
           "read_group", "row_groups"]

_ATTEMPTS = 3  # reads started again when a write or compaction changes the store mid-read
_SMALL_READ = 8  # a first read of fewer than 1/8 of a pair's videos decodes only those
_READ_THREADS = 8  # at most this many row groups decoded at once (about 32 MB of raw data each)


class _Changed(Exception):
    """The store's listing changed during a read: start it again."""


class Videos:
    """The visible extractions of one (model, sampling): ids, extraction ids, stored frame counts."""

    __slots__ = ("ids", "eids", "n_frames")

    def __init__(self, ids: pa.Array, eids: pa.Array, n_frames: np.ndarray):
        self.ids, self.eids, self.n_frames = ids, eids, n_frames

    def subset(self, v: np.ndarray) -> "Videos":
        return Videos(self.ids.take(pa.array(v)), self.eids.take(pa.array(v)), self.n_frames[v])


def _bits(buffer, offset: int, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(buffer, np.uint8), count=offset + n, bitorder="little")[offset:].astype(bool)


def as_numpy(arr: pa.Array) -> np.ndarray:
    """A numpy view of a primitive Arrow array (booleans: a new array); values under nulls are undefined.

    Arrow's own ``to_numpy`` goes through its pandas conversion, which imports pandas (a third of
    a second) in a process that reads from a cache file in a few milliseconds.
    """
    if pa.types.is_boolean(arr.type):
        return _bits(arr.buffers()[1], arr.offset, len(arr))
    dtype = np.dtype(arr.type.to_pandas_dtype())
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr), offset=arr.offset * dtype.itemsize)


def is_valid(arr: pa.Array) -> np.ndarray:
    """Which values of ``arr`` are not null, as a numpy bool array (without pandas, see :func:`as_numpy`)."""
    validity = arr.buffers()[0]
    return np.ones(len(arr), bool) if validity is None else _bits(validity, arr.offset, len(arr))


class Frames:
    """The frames a layout picks, of every video of one (model, sampling).

    Video ``i`` (in the order of ``ids``) has its rows at ``start[i]:start[i+1]``
    of ``scores`` and ``maps`` ([rows, size]): every stored frame in frame_index
    order for the layout ``"all"``, the T frames ``n_frames=T`` picks for an int
    layout T (none for a video whose frames did not all turn up: ``complete``
    says which). The arrays are read-only (views of a cache file, or shared by
    every reader of the process).
    """

    __slots__ = ("ids", "n_frames", "complete", "start", "scores", "maps")

    def __init__(self, ids, n_frames, complete, start, scores, maps):
        self.ids, self.n_frames, self.complete = ids, n_frames, complete
        self.start, self.scores, self.maps = start, scores, maps
        for value in (n_frames, complete, start, scores, maps):
            if value is not None:
                value.flags.writeable = False

    @property
    def nbytes(self) -> int:
        return self.scores.nbytes + (self.maps.nbytes if self.maps is not None else 0)

    def to_table(self) -> pa.Table:
        offsets = pa.array(self.start, pa.int64())
        columns = {"video_id": self.ids, "n_frames": pa.array(self.n_frames), "complete": pa.array(self.complete),
                   "scores": pa.LargeListArray.from_arrays(offsets, pa.array(self.scores))}
        if self.maps is not None:
            flat = pa.FixedSizeListArray.from_arrays(pa.array(self.maps.reshape(-1)), self.maps.shape[1])
            columns["maps"] = pa.LargeListArray.from_arrays(offsets, flat)
        return pa.table(columns)

    @classmethod
    def from_table(cls, table: pa.Table, size: int) -> "Frames":
        """Views of a table written by :meth:`to_table`; ValueError when it is not one."""
        if table.column_names[:4] != ["video_id", "n_frames", "complete", "scores"]:
            raise ValueError("not a frames table")
        col = {name: _one_chunk(table[name]) for name in table.column_names}
        maps = None
        if "maps" in col:
            values = col["maps"].values
            if values.type.list_size != size:
                raise ValueError("maps of another size")
            maps = as_numpy(values.values).reshape(-1, size)
        return cls(col["video_id"], as_numpy(col["n_frames"]), as_numpy(col["complete"]),
                   as_numpy(col["scores"].offsets), as_numpy(col["scores"].values), maps)

    def take(self, v: np.ndarray, t: int, shape: tuple[int, ...], maps: bool, short: str = "error"):
        """New, writable scores [n, t] (and maps [n, t, *shape]) of the videos at rows ``v``; a video
        with fewer than ``t`` stored frames is filled as ``short`` says (see :func:`read_arrays`)."""
        if not self.complete[v].all():
            bad = int((~self.complete[v]).sum())
            raise StoreError(f"found the frames of {len(v) - bad} of {len(v)} requested videos ({t} frames "
                             "each); frames are missing from the store, or it changed during the read")
        n = len(v)
        pick, valid = pick_rows(self.start[v + 1] - self.start[v], self.n_frames[v], t, short)
        flat = (self.start[v][:, None] + pick).ravel()
        scores = self.scores[flat].reshape(n, t)
        if valid is not None:
            scores[~valid] = np.nan
        if not maps:
            return scores, None
        out = np.empty((n * t, self.maps.shape[1]), dtype=np.float32)
        # the rows are known to be in range: "clip" spares numpy a buffered copy
        np.take(self.maps, flat, axis=0, out=out, mode="clip")
        out = out.reshape(n, t, *shape)
        if valid is not None:
            out[~valid] = np.nan
        return scores, out


def _one_chunk(column: pa.ChunkedArray) -> pa.Array:
    # a cache file holds one record batch: its one chunk is a view of the mapping, never copied
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


# ---------------------------------------------------------------------- decoding Parquet
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
    """(path, footer, row group) of the frame row groups that may hold (model, sampling)."""
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


def decode(files: Sequence[str], videos: Videos, model: str, sampling: str, size: int, layout,
           maps: bool) -> Frames:
    """The :class:`Frames` of ``videos`` in ``layout`` ("all" or an int T), decoded from the frame
    part files ``files``; the narrow columns first, to know which rows go where."""
    groups = row_groups(files, model, sampling)
    narrow = in_parallel(lambda g: read_group(g, ["extraction_id", "frame_index", "score"]), groups)
    if narrow:
        where = [pc.index_in(t["extraction_id"], value_set=videos.eids).fill_null(-1).to_numpy() for t in narrow]
        video = np.concatenate(where).astype(np.int64)
        index = np.concatenate([t["frame_index"].to_numpy() for t in narrow])
        score = np.concatenate([t["score"].to_numpy() for t in narrow]).astype(np.float32, copy=False)
    else:
        video, index, score = np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    # Rows of the videos asked for, sorted by (video, frame_index); a frame present
    # twice (an interrupted compact()) keeps its first copy.
    rows = np.flatnonzero(video >= 0)
    rows = rows[np.lexsort((index[rows], video[rows]))]
    if len(rows) > 1:
        again = (video[rows[1:]] == video[rows[:-1]]) & (index[rows[1:]] == index[rows[:-1]])
        rows = rows[np.concatenate([[True], ~again])]
    count = np.bincount(video[rows], minlength=len(videos.n_frames)).astype(np.int64)
    complete = count == videos.n_frames
    if layout == "all":
        lengths, source = count, rows
    else:  # the T picked frames of each complete video
        first = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
        ok = np.flatnonzero(complete)
        lengths = np.where(complete, int(layout), 0)
        source = rows[(first[ok][:, None] + positions(videos.n_frames[ok], int(layout))).ravel()]
    start = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return Frames(videos.ids, videos.n_frames, complete, start, score[source],
                  fill_lists(groups, narrow, source, size, model) if maps else None)


# ---------------------------------------------------------------------- the read
def _visible(con: Connection, key: str, model: str, sampling: str, strict: bool) -> tuple[Videos, tuple, bool]:
    """The visible extractions of (model, sampling), the frame part files of the same listing,
    and whether that listing is the one of ``key``."""
    con.refresh()
    same = cache.listing_key(con.files) == key
    if strict and not same:
        raise _Changed
    tbl = con.query("SELECT video_id, extraction_id, n_frames FROM videos WHERE model = ? AND sampling = ? "
                    "ORDER BY video_id", [model, sampling], refresh=False)
    same = same and cache.listing_key(con.files) == key
    if strict and not same:
        raise _Changed
    videos = Videos(tbl["video_id"].combine_chunks(), tbl["extraction_id"].combine_chunks(),
                    tbl["n_frames"].to_numpy().astype(np.int64))
    return videos, con.files["frames"], same


def _cached(con: Connection, key: str, name: str, maps: bool, size: int) -> Frames | None:
    """The Frames of ``name`` held by this process or in a cache file; a maps file also serves scores."""
    for kind in ("maps",) if maps else ("scores", "maps"):
        frames = cache.remembered(con.path, key, f"{name}-{kind}")
        if frames is None and (table := cache.load(con.path, key, f"{name}-{kind}.arrow")) is not None:
            try:
                frames = cache.remember(con.path, key, f"{name}-{kind}", Frames.from_table(table, size))
            except (ValueError, pa.ArrowException):
                continue  # not what this version writes: built again (and replaced)
        if frames is not None:
            return frames
    return None


def locate(con: Connection, known, ids_arr: pa.Array, model: str, sampling: str) -> np.ndarray:
    """Rows of ``ids_arr`` in ``known`` (a Videos or Frames); MissingVideosError naming the absent ones."""
    where = pc.index_in(ids_arr, value_set=known.ids)
    found = is_valid(where)
    if not found.all():
        missing = unique_in_order(pc.filter(ids_arr, pa.array(~found)).to_pylist())
        raise MissingVideosError(
            f"{len(missing)} of {len(unique_in_order(ids_arr.to_pylist()))} requested video ids are not in "
            f"the store {str(con.path)!r} for frame model {model!r} with sampling {sampling!r}: "
            f"{fmt_ids(missing)}")
    return as_numpy(where).astype(np.int64)


def _read(con: Connection, ids_arr: pa.Array, model, n_frames, maps: bool, sampling, limit: int,
          strict: bool, short: str):
    key, catalog = snapshot(con, limit)
    model = catalog.model(con.path, model)
    sampling = catalog.sampling(con.path, model, sampling)
    shape = catalog.shape(model)
    if maps and not shape:
        raise StoreError(
            f"frame model {model!r} holds scores only (extracted with --maps none, maps='none'): its "
            "frames have no attention maps. Read it with maps=False (FrameScores, MeanScoreRegressor), "
            "or extract the videos again with attention maps (`amnetvid extract PATH` without --maps none) "
            "and read that model")
    size = map_size(shape)
    layout = "all" if n_frames is None else int(n_frames)
    name = hashlib.sha1(f"{model}\0{sampling}".encode()).hexdigest()[:16] + f"-{layout}"
    frames = _cached(con, key, name, maps, size) if limit else None
    if frames is not None:
        v = locate(con, frames, ids_arr, model, sampling)
        t = frames_wanted(frames.n_frames[v], n_frames, ids_arr, short)
        return frames.take(v, t, shape, maps, short) if len(v) else _empty(t, shape, maps)
    videos, files, same = _visible(con, key, model, sampling, strict)
    v = locate(con, videos, ids_arr, model, sampling)
    t = frames_wanted(videos.n_frames[v], n_frames, ids_arr, short)
    if len(v) == 0:
        return _empty(t, shape, maps)
    wanted, inverse = np.unique(v, return_inverse=True)
    small = len(wanted) * _SMALL_READ < len(videos.ids)
    rows = int(videos.n_frames.sum()) if layout == "all" else len(videos.ids) * t
    try:
        if not limit or not same or 4 * rows * (1 + size * maps) > limit or (
                small and cache.remembered(con.path, key, f"{name}-small") is None):
            if limit and same and small:  # the next small read of this pair fills the cache
                cache.remember(con.path, key, f"{name}-small", True)
            only = decode(files, videos.subset(wanted), model, sampling, size, layout, maps)
            return only.take(inverse, t, shape, maps, short)
        kind = "maps" if maps else "scores"
        with cache.building(con.path, key, f"{name}-{kind}"):
            # another process may have written the file while this one waited for the lock
            frames = _cached(con, key, name, maps, size)
            if frames is None:
                frames = decode(files, videos, model, sampling, size, layout, maps)
                if cache.save(con.path, key, f"{name}-{kind}.arrow", frames.to_table()):
                    # read back mapped: the decoded copy goes, and the page cache holds one copy
                    # for every process
                    frames = _cached(con, key, name, maps, size) or frames
    except FileNotFoundError:
        raise _Changed from None  # compact() removed a part file since the listing
    cache.remember(con.path, key, f"{name}-{kind}", frames)
    return frames.take(v, t, shape, maps, short)


def _empty(t: int, shape: tuple[int, ...], maps: bool):
    return np.zeros((0, t), np.float32), (np.zeros((0, t, *shape), np.float32) if maps else None)


def read_arrays(con: Connection, ids, model: str | None = None, n_frames: int | None = None,
                maps: bool = True, sampling: str | None = None,
                short: str = "error") -> tuple[np.ndarray, np.ndarray | None]:
    """Frame scores and attention maps of videos, in the order of ``ids``.

    The first read of a (model, sampling, n_frames) decodes the frames of all its
    visible videos and writes them to the array cache; later reads, of any ids,
    in any process, take their rows from it until a part file is added or
    removed (see ``cache.py``; ``AMNETVID_CACHE_BYTES=0`` turns the cache off).

    Parameters
    ----------
    con : Connection
        The store's connections.
    ids : sequence of str
        Video ids; repeats are allowed (and returned twice).
    model : str, default=None
        Frame model (fingerprint, unique prefix or name); None takes the
        store's only model. See :func:`~.resolve.pick_model`.
    n_frames : int, default=None
        None returns every stored frame (all videos must have the same number
        of stored frames). ``T`` picks T frames spread uniformly over those
        stored for each video: positions ``round(k * (cnt - 1) / (T - 1))`` for
        k in 0..T-1 (rounding halves up; T=1 takes the middle one,
        ``round((cnt - 1) / 2)``).
    maps : bool, default=True
        Also return the attention maps (False reads much less).
    sampling : str, default=None
        Sampling key (``"frames=28"``); None takes the model's only one.
    short : {"error", "stretch", "repeat-last", "nan"}, default="error"
        What fills the row of a video with fewer stored frames than the row holds (T, or with
        ``n_frames=None`` the most that any requested video holds): an error naming the
        videos and their counts; its frames stretched over the row, each repeated in turn
        (the uniform pick above, ``[0, 0, 1, 1]`` for 2 of 4); its frames in order, then the
        last repeated (``[0, 1, 1, 1]``); its frames in order, then NaN (scores and maps).

    Returns
    -------
    scores : numpy.ndarray of float32, shape (n, T)
    maps : numpy.ndarray of float32, shape (n, T, K, h, w), or None
        Both arrays are new and writable.

    Raises
    ------
    MissingVideosError
        Some ids have no extraction for that model and sampling (the message
        says how many and names the first few).
    StoreError
        The model or sampling is ambiguous, or (n_frames=None) the videos
        have different numbers of stored frames.

    Examples
    --------
    >>> from amnetvid_sk import FeatureStore
    >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store
    >>> ids = write_synthetic_store("store_read", *make_moving_peak_dataset(2))  # 2 videos, 4 frames
    >>> fs = FeatureStore("store_read")
    >>> scores, maps = fs.read_arrays(["syn0001", "syn0000", "syn0001"], n_frames=2)
    >>> scores.shape, maps.shape
    ((3, 2), (3, 2, 3, 14, 14))
    """
    if n_frames is not None and (isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer))
                                 or n_frames < 1):
        raise ValueError("The 'n_frames' parameter of FeatureStore.read_arrays must be None or an int >= 1. "
                         f"Got {n_frames!r} instead.")
    if short not in SHORT_POLICIES:
        raise ValueError(f"The 'short' parameter of FeatureStore.read_arrays must be a str among "
                         f"{list(SHORT_POLICIES)}. Got {short!r} instead.")
    ids_arr = id_array(ids)
    limit = cache.cache_limit()
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            return _read(con, ids_arr, model, n_frames, bool(maps), sampling, limit, attempt < _ATTEMPTS, short)
        except _Changed:
            if attempt == _ATTEMPTS:
                raise StoreError(f"the store {str(con.path)!r} changed during {_ATTEMPTS} reads in a row "
                                 "(part files removed: is compact() running?); read again") from None
