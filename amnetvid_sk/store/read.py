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

The steps it shares with the read of embeddings (``embeddings.py``: the visible
extractions, the rows of each video and their dedup, the frame pick, the retry) are in
``read_common.py``; the Parquet decoding is in ``scan.py``.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import pyarrow as pa

from ..errors import StoreError
from . import cache
from .connection import Connection
from .frame_pick import SHORT_POLICIES, frames_wanted, pick_rows, positions  # noqa: F401  (re-exported)
from .read_common import (Videos, as_numpy, check_n_frames, locate, resolved, retrying, stored_rows,
                          visible)
from .scan import fill_lists
from .schema import id_array, map_size

__all__ = ["SHORT_POLICIES", "Frames", "decode", "frames_wanted", "positions", "read_arrays"]

_SMALL_READ = 8  # a first read of fewer than 1/8 of a pair's videos decodes only those


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


def decode(files: Sequence[str], videos: Videos, model: str, sampling: str, size: int, layout,
           maps: bool) -> Frames:
    """The :class:`Frames` of ``videos`` in ``layout`` ("all" or an int T), decoded from the frame
    part files ``files``; the narrow columns first, to know which rows go where."""
    found = stored_rows(files, videos, model, sampling, ("score",))
    score = found.column("score").astype(np.float32, copy=False)
    complete = found.count == videos.n_frames
    if layout == "all":  # every stored row, video after video
        lengths, source = found.count, found.rows
    else:  # the T picked frames of each complete video
        lengths = np.where(complete, int(layout), 0)
        source = found.pick(np.flatnonzero(complete), int(layout))
    start = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return Frames(videos.ids, videos.n_frames, complete, start, score[source],
                  fill_lists(found.groups, found.narrow, source, size, model) if maps else None)


# ---------------------------------------------------------------------- the read
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


def _read(con: Connection, ids_arr: pa.Array, model, n_frames, maps: bool, sampling, limit: int,
          strict: bool, short: str):
    key, catalog, model, sampling = resolved(con, model, sampling, limit)
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
    videos, files, same = visible(con, "frames", model, sampling, key, strict)
    v = locate(con, videos, ids_arr, model, sampling)
    t = frames_wanted(videos.n_frames[v], n_frames, ids_arr, short)
    if len(v) == 0:
        return _empty(t, shape, maps)
    wanted, inverse = np.unique(v, return_inverse=True)
    small = len(wanted) * _SMALL_READ < len(videos.ids)
    rows = int(videos.n_frames.sum()) if layout == "all" else len(videos.ids) * t
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
    check_n_frames(n_frames, "read_arrays")
    if short not in SHORT_POLICIES:
        raise ValueError(f"The 'short' parameter of FeatureStore.read_arrays must be a str among "
                         f"{list(SHORT_POLICIES)}. Got {short!r} instead.")
    ids_arr, limit = id_array(ids), cache.cache_limit()
    return retrying(con, lambda strict: _read(con, ids_arr, model, n_frames, bool(maps), sampling, limit, strict,
                                              short))
