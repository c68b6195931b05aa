"""What the two array reads share: ``read.py`` (frame scores and attention maps) and
``embeddings.py`` (frame embeddings) go the same way, through these:

1. :func:`check_n_frames`, then :func:`retrying` runs the read, again when the store
   changed under it (``compact()`` removed a part file since the listing);
2. :func:`resolved` and :func:`visible`: the frame model and sampling, and their visible
   extractions (:class:`Videos`), from DuckDB's ``videos`` view, with the part files of
   the table read in the same listing;
3. :func:`locate`: the rows of the ids asked for among them (MissingVideosError naming the
   absent ones);
4. :func:`stored_rows`: the narrow columns of the part files decoded (``scan.py``) and each
   video's stored rows found, deduplicated by the rule of the SQL views
   (``connection.VIEWS``); :meth:`StoredRows.pick` then picks each video's frames
   (:func:`~.frame_pick.positions`).
"""

from __future__ import annotations

from typing import Callable, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import MissingVideosError, StoreError
from . import cache, scan
from .connection import Connection
from .frame_pick import positions
from .resolve import snapshot
from .schema import fmt_ids, unique_in_order

__all__ = ["ATTEMPTS", "Changed", "StoredRows", "Videos", "as_numpy", "check_n_frames", "is_valid", "locate",
           "resolved", "retrying", "stored_rows", "visible"]

ATTEMPTS = 3  # reads started again when a write or compaction changes the store mid-read

T = TypeVar("T")


class Changed(Exception):
    """The store's listing changed during a read: start it again."""


def check_n_frames(n_frames, method: str) -> None:
    """ValueError unless ``n_frames`` is None or an int >= 1 (``method`` names the caller)."""
    if n_frames is not None and (isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer))
                                 or n_frames < 1):
        raise ValueError(f"The 'n_frames' parameter of FeatureStore.{method} must be None or an int >= 1. "
                         f"Got {n_frames!r} instead.")


def retrying(con: Connection, read: Callable[[bool], T]) -> T:
    """``read(strict)``, started again when it raises :class:`Changed` or FileNotFoundError (a part
    file removed by ``compact()`` since the listing), at most ``ATTEMPTS`` times; ``strict`` is
    False on the last attempt (it then reads whatever listing it finds)."""
    for _ in range(ATTEMPTS - 1):
        try:
            return read(True)
        except (Changed, FileNotFoundError):
            continue
    try:
        return read(False)
    except (Changed, FileNotFoundError):
        raise StoreError(f"the store {str(con.path)!r} changed during {ATTEMPTS} reads in a row "
                         "(part files removed: is compact() running?); read again") from None


def resolved(con: Connection, model: str | None, sampling: str | None, limit: int):
    """``(listing key, catalog, model, sampling)``: the full model fingerprint and sampling key a
    read means (see :mod:`.resolve`)."""
    key, catalog = snapshot(con, limit)
    model = catalog.model(con.path, model)
    return key, catalog, model, catalog.sampling(con.path, model, sampling)


class Videos:
    """The visible extractions of one (model, sampling): ids, extraction ids, stored frame counts."""

    __slots__ = ("ids", "eids", "n_frames")

    def __init__(self, ids: pa.Array, eids: pa.Array, n_frames: np.ndarray):
        self.ids, self.eids, self.n_frames = ids, eids, n_frames

    def subset(self, v: np.ndarray) -> "Videos":
        return Videos(self.ids.take(pa.array(v)), self.eids.take(pa.array(v)), self.n_frames[v])


def visible(con: Connection, table: str, model: str, sampling: str, key: str | None = None,
            strict: bool = False) -> tuple[Videos, tuple, bool]:
    """The visible extractions of (model, sampling), the part files of ``table`` in the same
    listing, and whether that listing is the one of ``key`` (a listing other than ``key``'s
    raises :class:`Changed` when ``strict``)."""
    con.refresh()
    same = key is not None and cache.listing_key(con.files) == key
    if strict and not same:
        raise Changed
    tbl = con.query("SELECT video_id, extraction_id, n_frames FROM videos WHERE model = ? AND sampling = ? "
                    "ORDER BY video_id", [model, sampling], refresh=False)
    same = same and cache.listing_key(con.files) == key
    if strict and not same:
        raise Changed
    videos = Videos(tbl["video_id"].combine_chunks(), tbl["extraction_id"].combine_chunks(),
                    tbl["n_frames"].to_numpy().astype(np.int64))
    return videos, con.files[table], same


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


class StoredRows:
    """The stored rows of some videos in a table's row groups: ``rows`` (numbered across
    ``groups``, whose narrow columns are ``narrow``), sorted by video then frame_index, and
    ``count``, the rows of each video."""

    __slots__ = ("groups", "narrow", "rows", "count")

    def __init__(self, groups: list, narrow: list[pa.Table], rows: np.ndarray, count: np.ndarray):
        self.groups, self.narrow, self.rows, self.count = groups, narrow, rows, count

    def column(self, name: str) -> np.ndarray:
        """A narrow column of every row (numbered as ``rows`` numbers them)."""
        return np.concatenate([t[name].to_numpy() for t in self.narrow]) if self.narrow else np.empty(0)

    def pick(self, v: np.ndarray, t: int | None) -> np.ndarray:
        """The rows of ``t`` frames of each video ``v`` (at :func:`~.frame_pick.positions` among its
        stored ones), or with ``t=None`` of every stored frame of each, video after video."""
        first = np.concatenate([[0], np.cumsum(self.count)[:-1]]).astype(np.int64)
        if t is None:
            lengths = self.count[v]
            within = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            return self.rows[np.repeat(first[v], lengths) + within]
        return self.rows[(first[v][:, None] + positions(self.count[v], int(t))).ravel()]


def stored_rows(files, videos: Videos, model: str, sampling: str, columns: tuple[str, ...] = ()) -> StoredRows:
    """The rows of ``videos`` in the part files ``files`` (sorted by name, as listed), decoding the
    columns extraction_id, frame_index and ``columns`` of the row groups that may hold them.

    The dedup rule is the one of the ``frames`` and ``embeddings`` views (``connection.VIEWS``):
    one part file holds all the rows of an extraction, so each video's rows are taken from the
    first part file (by name) that holds any, whole; a second copy (an interrupted ``compact()``,
    two runs adding the same embeddings) is left out.
    """
    groups = scan.row_groups(files, model, sampling)
    narrow = scan.in_parallel(lambda g: scan.read_group(g, ["extraction_id", "frame_index", *columns]), groups)
    n = len(videos.eids)
    if not narrow:
        empty = np.empty(0, np.int64)
        return StoredRows(groups, narrow, empty, np.zeros(n, np.int64))
    # one lookup over every row group's ids: index_in hashes its value_set at each call, so a call
    # per row group would cost (row groups) x (videos), growing with the square of the store
    eids = pa.chunked_array([c for t in narrow for c in t["extraction_id"].cast(videos.eids.type).chunks],
                            videos.eids.type)
    video = pc.index_in(eids, value_set=videos.eids).fill_null(-1).to_numpy().astype(np.int64)
    index = np.concatenate([t["frame_index"].to_numpy() for t in narrow])
    file_of = {path: i for i, path in enumerate(files)}
    part = np.repeat(np.array([file_of[g[0]] for g in groups], np.int64), [t.num_rows for t in narrow])
    rows = np.flatnonzero(video >= 0)
    first = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first, video[rows], part[rows])
    rows = rows[part[rows] == first[video[rows]]]
    rows = rows[np.lexsort((index[rows], video[rows]))]
    return StoredRows(groups, narrow, rows, np.bincount(video[rows], minlength=n).astype(np.int64))
