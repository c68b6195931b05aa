"""Reading frame embeddings: ``read_embeddings`` (one vector per stored frame, float16 on disk).

The read follows the array read path of ``read.py`` (the same visible
extractions, the same frame pick :func:`~.read.positions`, the same Parquet row
group decoding), on the ``embeddings`` table: the narrow columns first
(extraction id, frame index), then only the embedding rows wanted, converted
from float16 to float32. An extraction's embeddings are taken from the first
part file that holds them (the rule of the ``embeddings`` view). Nothing is
cached: at 2 bytes a value on disk they decode at the speed of the disk.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import StoreError, allowed_values
from . import cache
from .connection import Connection
from .read import Videos, fill_lists, frames_wanted, in_parallel, locate, positions, read_group, row_groups
from .resolve import snapshot
from .schema import fmt_ids, id_array, unique_in_order

__all__ = ["POOLINGS", "read_embeddings"]

#: how the frames of a video are pooled into one vector (None: not pooled)
POOLINGS = ("mean", "max")

_ATTEMPTS = 3  # reads started again when compact() removes a part file mid-read


def _rows(con: Connection, files, videos: Videos, model: str, sampling: str):
    """Row groups, their narrow tables, and the (sorted) rows of each video's embeddings:
    ``(groups, narrow, rows, video of each row, count per video)``."""
    groups = row_groups(files, model, sampling)
    narrow = in_parallel(lambda g: read_group(g, ["extraction_id", "frame_index"]), groups)
    if not narrow:
        empty = np.empty(0, np.int64)
        return groups, narrow, empty, empty, np.zeros(len(videos.eids), np.int64)
    video = np.concatenate([pc.index_in(t["extraction_id"], value_set=videos.eids).fill_null(-1).to_numpy()
                            for t in narrow]).astype(np.int64)
    index = np.concatenate([t["frame_index"].to_numpy() for t in narrow])
    file_of = {path: i for i, path in enumerate(dict.fromkeys(g[0] for g in groups))}
    part = np.concatenate([np.full(t.num_rows, file_of[g[0]], np.int64) for g, t in zip(groups, narrow)])
    rows = np.flatnonzero(video >= 0)
    # the first part file (by name) that holds a video's embeddings is taken whole
    first = np.full(len(videos.eids), np.iinfo(np.int64).max)
    np.minimum.at(first, video[rows], part[rows])
    rows = rows[part[rows] == first[video[rows]]]
    rows = rows[np.lexsort((index[rows], video[rows]))]
    count = np.bincount(video[rows], minlength=len(videos.eids)).astype(np.int64)
    return groups, narrow, rows, video[rows], count


def _pool(values: np.ndarray, lengths: np.ndarray, pooling: str | None, t: int) -> np.ndarray:
    if pooling is None:
        return values.reshape(len(lengths), t, values.shape[1])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    if pooling == "max":
        return np.maximum.reduceat(values, starts, axis=0)
    return (np.add.reduceat(values, starts, axis=0, dtype=np.float64) / lengths[:, None]).astype(np.float32)


def _read(con: Connection, ids_arr: pa.Array, model, n_frames, sampling, pooling) -> np.ndarray:
    catalog = snapshot(con, cache.cache_limit())[1]
    model = catalog.model(con.path, model)
    sampling = catalog.sampling(con.path, model, sampling)
    dim = catalog.dim(model)
    if dim == 0:
        raise StoreError(f"frame model {model!r} stores no frame embeddings (its models row has no "
                         "embedding_dim); extract with a frame model that has them (resmem, amnet) and "
                         "`amnetvid extract PATH --embeddings`")
    con.refresh()
    tbl = con.query("SELECT video_id, extraction_id, n_frames FROM videos WHERE model = ? AND sampling = ? "
                    "ORDER BY video_id", [model, sampling], refresh=False)
    files = con.files["embeddings"]
    videos = Videos(tbl["video_id"].combine_chunks(), tbl["extraction_id"].combine_chunks(),
                    tbl["n_frames"].to_numpy().astype(np.int64))
    v = locate(con, videos, ids_arr, model, sampling)
    stored = videos.n_frames[v]
    t = frames_wanted(stored, n_frames, ids_arr) if (pooling is None or n_frames is not None) else 0
    if len(v) == 0:
        return np.zeros((0, dim) if pooling else (0, t, dim), np.float32)
    wanted, inverse = np.unique(v, return_inverse=True)
    sub = videos.subset(wanted)
    groups, narrow, rows, _, count = _rows(con, files, sub, model, sampling)
    complete = count == sub.n_frames
    if not complete.all():
        bad = unique_in_order(sub.ids.filter(pa.array(~complete)).to_pylist())
        raise StoreError(
            f"{len(bad)} of {len(wanted)} requested videos have no frame embeddings for frame model {model!r} "
            f"with sampling {sampling!r}: {fmt_ids(bad)}; add them with `amnetvid extract PATH --embeddings` "
            "(the same frame model and sampling: the videos already extracted only get their embeddings)")
    first = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    if t:  # T frames per video, spread by the store's one rule
        lengths = np.full(len(inverse), t, np.int64)
        source = rows[(first[inverse][:, None] + positions(sub.n_frames[inverse], t)).ravel()]
    else:  # every stored frame, pooled per video
        lengths = sub.n_frames[inverse]
        source = rows[np.concatenate([np.arange(f, f + n) for f, n in zip(first[inverse], lengths)])]
    values = fill_lists(groups, narrow, source, dim, model, "embedding", pa.float16()).astype(np.float32)
    return _pool(values, lengths, pooling, t)


def read_embeddings(con: Connection, ids, model: str | None = None, n_frames: int | None = None,
                    sampling: str | None = None, pooling: str | None = None) -> np.ndarray:
    """Frame embeddings of videos, in the order of ``ids``, as float32.

    Parameters
    ----------
    con : Connection
        The store's connections.
    ids : sequence of str
        Video ids; repeats are allowed (and returned twice).
    model : str, default=None
        Frame model (fingerprint, unique prefix or name); None takes the
        store's only model (see :func:`~.resolve.pick_model`).
    n_frames : int, default=None
        T frames per video, picked as :func:`~.read.read_arrays` picks them;
        None: every stored frame (without pooling, all videos must then have
        the same number).
    sampling : str, default=None
        Sampling key; None takes the model's only one.
    pooling : {"mean", "max"} or None, default=None
        Pool each video's frames into one vector; None keeps the frames.

    Returns
    -------
    numpy.ndarray of float32
        ``[n, D]`` when pooled, else ``[n, T, D]``.

    Raises
    ------
    MissingVideosError
        Some ids have no extraction of that model and sampling.
    StoreError
        The model stores no embeddings, or some videos were extracted without
        them (the message names them and says ``amnetvid extract --embeddings``).

    Examples
    --------
    >>> import numpy as np
    >>> from amnetvid_sk.store import FeatureStore, embeddings_table, frames_table, new_extraction_id
    >>> fs, eid = FeatureStore("store_read_embeddings", create=True), new_extraction_id()
    >>> fs.write_model("toy-ab12", "toy", {}, (), maps="none", embedding_dim=4)
    True
    >>> row = {"extraction_id": eid, "video_id": "video10", "path": "/data/video10.mp4", "size": 1000,
    ...        "mtime": 0.0, "duration": 3.0, "fps": 1.0, "frame_count": 3, "width": 64, "height": 64,
    ...        "model": "toy-ab12", "sampling": "frames=3", "n_frames": 3, "short": False}
    >>> fs.write_extractions([row], frames_table(eid, [0, 1, 2], [0.0, 1.0, 2.0], [0.7, 0.8, 0.9]),
    ...                      embeddings=embeddings_table(eid, [0, 1, 2], np.arange(12).reshape(3, 4)))
    1
    >>> fs.read_embeddings(["video10"], pooling="mean")
    array([[4., 5., 6., 7.]], dtype=float32)
    >>> fs.read_embeddings(["video10", "video10"], n_frames=2).shape
    (2, 2, 4)
    """
    if n_frames is not None and (isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer))
                                 or n_frames < 1):
        raise ValueError("The 'n_frames' parameter of FeatureStore.read_embeddings must be None or an int >= 1. "
                         f"Got {n_frames!r} instead.")
    if pooling is not None and pooling not in POOLINGS:
        raise ValueError("The 'pooling' parameter of FeatureStore.read_embeddings must be a str among "
                         f"{allowed_values(POOLINGS)} or None. Got {pooling!r} instead.")
    ids_arr = id_array(ids)
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            return _read(con, ids_arr, model, n_frames, sampling, pooling)
        except FileNotFoundError:
            if attempt == _ATTEMPTS:
                raise StoreError(f"the store {str(con.path)!r} changed during {_ATTEMPTS} reads in a row "
                                 "(part files removed: is compact() running?); read again") from None
