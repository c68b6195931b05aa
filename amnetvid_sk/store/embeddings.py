"""Reading frame embeddings: ``read_embeddings`` (one vector per stored frame, float16 on disk).

The read is the array read path of ``read.py`` (``read_common.py``: the same visible
extractions, the same rows of each video, deduplicated by the rule of the ``embeddings``
view, the same frame pick :func:`~.frame_pick.positions`, the same retry), on the
``embeddings`` table: the narrow columns first (extraction id, frame index), then only the
embedding rows wanted, converted from float16 to float32. Nothing is cached: at 2 bytes a
value on disk they decode at the speed of the disk.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..errors import StoreError, allowed_values
from . import cache
from .connection import Connection
from .frame_pick import frames_wanted
from .read_common import check_n_frames, locate, resolved, retrying, stored_rows, visible
from .scan import fill_lists
from .schema import fmt_ids, id_array, unique_in_order

__all__ = ["POOLINGS", "read_embeddings"]

#: how the frames of a video are pooled into one vector (None: not pooled)
POOLINGS = ("mean", "max")


def _pool(stored: np.ndarray, lengths: np.ndarray, pooling: str | None, t: int) -> np.ndarray:
    """float32 embeddings from the ``stored`` float16 rows: [n, t, dim], or pooled [n, dim] (every
    float16 value is exact in float32 and float64, so pooling before the conversion changes nothing)."""
    if pooling is None:
        return stored.astype(np.float32).reshape(len(lengths), t, stored.shape[1])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    if pooling == "max":
        return np.maximum.reduceat(stored, starts, axis=0).astype(np.float32)
    return (np.add.reduceat(stored, starts, axis=0, dtype=np.float64) / lengths[:, None]).astype(np.float32)


def _read(con: Connection, ids_arr: pa.Array, model, n_frames, sampling, pooling) -> np.ndarray:
    _, catalog, model, sampling = resolved(con, model, sampling, cache.cache_limit())
    dim = catalog.dim(model)
    if dim == 0:
        raise StoreError(f"frame model {model!r} stores no frame embeddings (its models row has no "
                         "embedding_dim); extract with a frame model that has them (resmem, amnet) and "
                         "`amnetvid extract PATH --embeddings`")
    videos, files, _ = visible(con, "embeddings", model, sampling)
    v = locate(con, videos, ids_arr, model, sampling)
    stored = videos.n_frames[v]
    t = frames_wanted(stored, n_frames, ids_arr) if (pooling is None or n_frames is not None) else 0
    if len(v) == 0:
        return np.zeros((0, dim) if pooling else (0, t, dim), np.float32)
    wanted, inverse = np.unique(v, return_inverse=True)
    sub = videos.subset(wanted)
    found = stored_rows(files, sub, model, sampling)
    complete = found.count == sub.n_frames
    if not complete.all():
        bad = unique_in_order(sub.ids.filter(pa.array(~complete)).to_pylist())
        raise StoreError(
            f"{len(bad)} of {len(wanted)} requested videos have no frame embeddings for frame model {model!r} "
            f"with sampling {sampling!r}: {fmt_ids(bad)}; add them with `amnetvid extract PATH --embeddings` "
            "(the same frame model and sampling: the videos already extracted only get their embeddings)")
    # T frames per video, spread by the store's one rule; t=0: every stored frame, pooled per video
    source = found.pick(inverse, t or None)
    lengths = np.full(len(inverse), t, np.int64) if t else sub.n_frames[inverse]
    stored = fill_lists(found.groups, found.narrow, source, dim, model, "embedding", pa.float16())
    return _pool(stored, lengths, pooling, t)


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
    check_n_frames(n_frames, "read_embeddings")
    if pooling is not None and pooling not in POOLINGS:
        raise ValueError("The 'pooling' parameter of FeatureStore.read_embeddings must be a str among "
                         f"{allowed_values(POOLINGS)} or None. Got {pooling!r} instead.")
    ids_arr = id_array(ids)
    return retrying(con, lambda strict: _read(con, ids_arr, model, n_frames, sampling, pooling))
