"""Reading the store's small tables through DuckDB: extractions, models, video ids, labels, info.

The arrays (scores and attention maps) are read by ``read.py``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import MissingVideosError, StoreError, allowed_values
from . import cache, location
from .connection import Connection
from .resolve import snapshot
from .schema import TABLES, fmt_ids, id_array, unique_in_order

__all__ = ["extracted_files", "frame_indices", "video_paths", "models", "video_ids", "labels", "labelled_ids", "info"]

_TARGETS = {"short": "short_term", "long": "long_term"}


def _target_column(target: str) -> str:
    if target not in _TARGETS:
        raise ValueError(f"The 'target' parameter must be a str among {allowed_values(_TARGETS)}. Got {target!r} instead.")
    return _TARGETS[target]


def extracted_files(con: Connection, model: str, sampling: str) -> pa.Table:
    """video_id, path, size, mtime, extraction_id and ``embedded`` (it has an embedding for
    every stored frame) of the visible extractions of ``model`` with ``sampling``."""
    return con.query("""
        SELECT v.video_id, v.path, v.size, v.mtime, v.extraction_id,
               coalesce(e.n, 0) = v.n_frames AS embedded
        FROM videos AS v LEFT JOIN (
            SELECT extraction_id, count(*) AS n FROM embeddings WHERE model = $model AND sampling = $sampling
            GROUP BY extraction_id) AS e USING (extraction_id)
        WHERE v.model = $model AND v.sampling = $sampling""", {"model": model, "sampling": sampling})


def frame_indices(con: Connection, extraction_ids) -> dict[str, list[int]]:
    """The stored frame indices (sorted) of each visible extraction in ``extraction_ids``."""
    req = pa.table({"extraction_id": pa.array(list(extraction_ids), pa.string())})
    tbl = con.query("SELECT f.extraction_id, list(f.frame_index ORDER BY f.frame_index) AS idx "
                    "FROM frames AS f JOIN _eids AS e USING (extraction_id) GROUP BY 1", _eids=req)
    return dict(zip(tbl["extraction_id"].to_pylist(), tbl["idx"].to_pylist()))


def video_paths(con: Connection, ids) -> dict[str, set[str]]:
    """The file paths each of ``ids`` was extracted from (any model or sampling); unknown ids are left out."""
    req = pa.table({"video_id": id_array(ids)})
    tbl = con.query("SELECT DISTINCT v.video_id, v.path FROM videos AS v "
                    "JOIN (SELECT DISTINCT video_id FROM _ids) AS r USING (video_id)", _ids=req)
    out: dict[str, set[str]] = {}
    for vid, path in zip(tbl["video_id"].to_pylist(), tbl["path"].to_pylist()):
        out.setdefault(vid, set()).add(path)
    return out


def models(con: Connection) -> list[dict]:
    """The registered frame models: model (fingerprint), name, config (dict),
    map_shape (tuple; ``()`` for a scores-only model), created_at, maps ("attention"
    or "none"), embedding_dim (0: none), n_videos (visible), samplings.

    Examples
    --------
    >>> from pathlib import Path
    >>> models(Connection(Path("/no/such/store")))
    []
    """
    rows = con.query("""
        SELECT m.model, m.name, m.config, m.map_shape, m.created_at, m.maps, m.embedding_dim,
               count(DISTINCT v.video_id) AS n_videos,
               list(DISTINCT v.sampling ORDER BY v.sampling)
                   FILTER (WHERE v.sampling IS NOT NULL) AS samplings
        FROM models AS m LEFT JOIN videos AS v ON v.model = m.model
        GROUP BY ALL ORDER BY m.created_at, m.model""").to_pylist()
    for r in rows:
        r["config"] = json.loads(r["config"]) if r["config"] else {}
        r["map_shape"] = tuple(r["map_shape"])
        # null in rows written before the columns existed: those models had maps, no embeddings
        r["maps"] = r["maps"] or ("attention" if r["map_shape"] else "none")
        r["embedding_dim"] = int(r["embedding_dim"] or 0)
        r["samplings"] = r["samplings"] or []
    return rows


def video_ids(con: Connection, model: str | None = None, sampling: str | None = None) -> np.ndarray:
    """Sorted ids of the videos extracted by a model (all samplings unless one is given).

    An empty store gives an empty array.

    Examples
    --------
    >>> from pathlib import Path
    >>> video_ids(Connection(Path("/no/such/store")))
    array([], dtype=object)
    """
    catalog = snapshot(con, cache.cache_limit())[1]
    if model is None and not catalog.extracted:
        return np.array([], dtype=object)
    model = catalog.model(con.path, model)
    if sampling is None:
        tbl = con.query("SELECT DISTINCT video_id FROM videos WHERE model = ? ORDER BY video_id", [model])
    else:
        tbl = con.query("SELECT DISTINCT video_id FROM videos WHERE model = ? AND sampling = ? "
                        "ORDER BY video_id", [model, sampling])
    return np.array(tbl["video_id"].to_pylist(), dtype=object)


def labels(con: Connection, ids=None, target: str = "short") -> np.ndarray:
    """Memorability labels of videos, aligned to ``ids``.

    Parameters
    ----------
    con : Connection
        The store's connections.
    ids : sequence of str, default=None
        Video ids; None means :func:`labelled_ids` of the target.
    target : {"short", "long"}, default="short"

    Returns
    -------
    numpy.ndarray of float64

    Raises
    ------
    MissingVideosError
        Some ids have no labels.
    StoreError
        Some ids have no label for this target (long-term is often missing).

    Examples
    --------
    >>> from amnetvid_sk import FeatureStore
    >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store
    >>> ids = write_synthetic_store("store_labels", *make_moving_peak_dataset(2))  # 2 videos, 4 frames
    >>> fs = FeatureStore("store_labels")
    >>> fs.labels(["syn0001", "syn0000"], target="short").round(2)
    array([0.32, 0.57])
    >>> fs.labels(["video10"])
    Traceback (most recent call last):
    ...
    amnetvid_sk.errors.MissingVideosError: 1 video ids have no labels in the store ...
    """
    column = _target_column(target)
    if ids is None:
        ids = labelled_ids(con, target)
    ids_arr = id_array(ids)
    req = pa.table({"ord": pa.array(np.arange(len(ids_arr), dtype=np.int64)), "video_id": ids_arr})
    tbl = con.query("""
        SELECT r.ord, l.video_id IS NOT NULL AS found, l.short_term, l.long_term
        FROM _ids AS r LEFT JOIN labels AS l ON l.video_id = r.video_id ORDER BY r.ord""", _ids=req)
    found = tbl["found"].to_numpy(zero_copy_only=False)
    if not found.all():
        missing = unique_in_order(pc.filter(ids_arr, pa.array(~found)).to_pylist())
        raise MissingVideosError(f"{len(missing)} video ids have no labels in the store "
                                 f"{str(con.path)!r}: {fmt_ids(missing)}")
    values = tbl[column].to_numpy(zero_copy_only=False).astype(np.float64)
    if np.isnan(values).any():
        bad = unique_in_order(pc.filter(ids_arr, pa.array(np.isnan(values))).to_pylist())
        raise StoreError(f"{len(bad)} video ids have no {target}-term label: {fmt_ids(bad)}; "
                         f"use labelled_ids({target!r}) to choose ids that have one")
    return values


def labelled_ids(con: Connection, target: str = "short", *, extracted: bool = False, model: str | None = None,
                 sampling: str | None = None) -> np.ndarray:
    """Sorted ids of the videos that have a label for ``target`` (and, if asked, features).

    Parameters
    ----------
    con : Connection
        The store's connections.
    target : {"short", "long"}, default="short"
    extracted : bool, default=False
        Keep only the videos that also have features of ``model`` with ``sampling``:
        the ids a pipeline can read. A labelled video that could not be decoded has
        a label but no features (the ``failures`` table says why).
    model : str, default=None
        With ``extracted=True``: the frame model (fingerprint, unique prefix or
        name); None takes the store's only one (see :func:`~.resolve.pick_model`). A
        store with no extracted videos gives an empty array.
    sampling : str, default=None
        With ``extracted=True``: the sampling key (``"frames=28"``, ``"fps=4"``);
        None takes the model's only one, and several are an error that lists them.

    Returns
    -------
    numpy.ndarray of str (object)

    Raises
    ------
    StoreError
        ``extracted=True`` and the model or sampling is ambiguous or unknown.

    Examples
    --------
    >>> from amnetvid_sk import FeatureStore
    >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store
    >>> ids = write_synthetic_store("store_labelled", *make_moving_peak_dataset(2))  # 2 videos, 4 frames
    >>> fs = FeatureStore("store_labelled")
    >>> fs.write_labels({"video_id": ["video10"], "short_term": [0.95]})  # no features, no long-term
    1
    >>> fs.labelled_ids("short"), fs.labelled_ids("long")
    (array(['syn0000', 'syn0001', 'video10'], dtype=object), array(['syn0000', 'syn0001'], dtype=object))
    >>> fs.labelled_ids("short", extracted=True)
    array(['syn0000', 'syn0001'], dtype=object)
    """
    column = _target_column(target)
    if not isinstance(extracted, (bool, np.bool_)):
        raise TypeError(f"extracted must be a bool; got {extracted!r}")
    if not extracted and (model is not None or sampling is not None):
        raise ValueError("model= and sampling= choose which features a video must have: "
                         "pass extracted=True with them")
    tbl = con.query("SELECT video_id, short_term, long_term FROM labels ORDER BY video_id")
    keep = pc.is_valid(tbl[column])
    keep = pc.and_(keep, pc.invert(pc.is_nan(tbl[column].fill_null(0.0))))
    ids = pc.filter(tbl["video_id"], keep)
    if extracted:
        catalog = snapshot(con, cache.cache_limit())[1]
        if model is None and not catalog.extracted:
            return np.array([], dtype=object)
        model = catalog.model(con.path, model)
        sampling = catalog.sampling(con.path, model, sampling)
        have = con.query("SELECT DISTINCT video_id FROM videos WHERE model = ? AND sampling = ?",
                         [model, sampling])["video_id"]
        ids = pc.filter(ids, pc.is_in(ids, value_set=have))
    return np.array(ids.to_pylist(), dtype=object)


def _size(path) -> int:
    try:
        return location.stat(path)[0]
    except FileNotFoundError:
        return 0


def info(con: Connection) -> dict:
    """Visible and raw rows, part files and bytes per table, models, and the size on disk
    (the array cache left out: it is not part of the store's data)."""
    con.refresh()
    files = con.files
    tables, tables_all, nbytes = {}, {}, {}
    for table in TABLES:
        counts = con.query(f"SELECT (SELECT count(*) FROM {table}) AS visible, "
                           f"(SELECT count(*) FROM {table}_all) AS raw").to_pylist()[0]
        tables[table], tables_all[table] = counts["visible"], counts["raw"]
        nbytes[table] = sum(_size(p) for p in files[table])
    size, temp = 0, 0
    if con.remote:  # no temporary objects, no cache under the prefix: the tables are the store
        size = sum(nbytes.values())
    elif con.path.is_dir():
        for root, folders, names in os.walk(con.path):
            if root == str(con.path):
                folders[:] = [f for f in folders if f != cache.CACHE_DIR]
            size += sum(_size(os.path.join(root, name)) for name in names)
            temp += sum(name.endswith(".parquet.tmp") for name in names)
    return {"path": str(con.path), "tables": tables, "tables_all": tables_all,
            "files": {t: len(f) for t, f in files.items()}, "bytes": nbytes,
            "models": models(con), "size_bytes": size, "temp_files": temp}
