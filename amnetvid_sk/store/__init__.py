"""Feature store: Parquet part files under one folder, read through DuckDB views.

Layout: one folder per table under the store folder (``videos``, ``frames``,
``embeddings``, ``models``, ``labels``, ``failures``, ``results``, ``predictions``), each holding Parquet part
files ``part-<time>-<uuid>.parquet``. Nothing is ever updated in place: every
write adds part files, atomically, and the views deduplicate on read, so
idempotent reruns and concurrent writers need no lock. ``store/README.md``
documents the tables, the dedup rules and example SQL.

Where things are:

- ``schema.py``: column types, required columns, ``frames_table``, ids;
- ``location.py``: where the store lives (a local folder or an S3 prefix) and the file
  operations made there: listing, whole-file writes, reads, deletes;
- ``connection.py``: the DuckDB connection per thread, the views (dedup rules),
  the listing of part files, damaged-file errors;
- ``sql.py``: the read-only guard of :meth:`FeatureStore.sql`;
- ``rows.py``: callers' rows checked and converted to the tables' schemas;
- ``write.py``: atomic part files and the writers; ``writes.py``: the store's write methods;
- ``resolve.py``: which frame model and sampling a read means;
- ``read_common.py``: the one read path of arrays, shared by frames and embeddings (the
  visible extractions, each video's rows and their dedup, the frame pick, the retry);
- ``scan.py``: the Parquet decoding of a read (row groups, several at once, list columns);
- ``read.py``: scores and attention maps (decode, pick frames, take ids, the array cache);
- ``frame_pick.py``: which stored frames a read returns, and what fills a short video's row;
- ``embeddings.py``: frame embeddings, on the same read path;
- ``cache.py``: the array cache (memory-mapped Arrow IPC files in ``.cache/``, or a local
  folder for an S3 store);
- ``queries.py``: the other readers (video ids, labels, models, info);
- ``compact.py``: rewriting each table into one part file;
- ``verify.py``: every part file read whole, damaged ones moved into quarantine.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa

from . import compact as _compact
from . import embeddings, location, queries, read
from . import verify as _verify
from ..errors import StoreError
from .cache import cache_limit
from .connection import Connection
from .resolve import snapshot
from .schema import SCHEMAS, TABLES, embeddings_table, frames_table, new_extraction_id
from .sql import run_read_only
from .writes import StoreWrites

__all__ = ["FeatureStore", "SCHEMAS", "TABLES", "embeddings_table", "frames_table", "new_extraction_id"]


class FeatureStore(StoreWrites):
    """Frame scores, attention maps and embeddings of videos, as Parquet tables queried with DuckDB.

    The folder must exist (a typo in a path is an error, not an empty store) unless
    ``create=True``, which makes it; an empty store gives empty tables. Each method
    delegates to the module that holds its concern (see the package docstring);
    their docstrings give every parameter.

    Parameters
    ----------
    path : str or Path
        The store folder, or ``"s3://bucket/prefix"`` for a store in S3 (the server and
        credentials from the AWS environment: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID`` /
        ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``; see :mod:`.location`).
    create : bool, default=False
        Make the folder (and its parents; an S3 store: its bucket) when it does not exist.

    Attributes
    ----------
    path : Path or str
        The absolute store folder; an S3 store's URL (a str).

    Examples
    --------
    Two videos of a toy frame model, six frames each, written as the extractor
    writes them: the model, then each extraction's frames and its ``videos`` row
    (:func:`amnetvid_sk.testing.synthetic.write_synthetic_store` does the same for
    a synthetic data set).

    >>> import numpy as np
    >>> import pyarrow as pa
    >>> from amnetvid_sk.store import FeatureStore, frames_table, new_extraction_id
    >>> fs = FeatureStore("store", create=True)
    >>> fs.write_model("toy-ab12", "toy", {"layers": ["layer4"]}, (3, 14, 14))
    True
    >>> videos, frames = [], []
    >>> for i, vid in enumerate(["video10", "video11"]):
    ...     eid = new_extraction_id()
    ...     videos.append({"extraction_id": eid, "video_id": vid, "path": f"/data/{vid}.mp4",
    ...                    "size": 1000, "mtime": 0.0, "duration": 3.0, "fps": 2.0, "frame_count": 6,
    ...                    "width": 64, "height": 64, "model": "toy-ab12", "sampling": "frames=6",
    ...                    "n_frames": 6, "short": False})
    ...     scores = np.linspace(0.5, 1.0, 6) - i / 10  # made-up frame scores
    ...     frames.append(frames_table(eid, np.arange(6), np.arange(6) / 2, scores,
    ...                                np.full((6, 3, 14, 14), 1 / 196)))
    >>> fs.write_extractions(videos, pa.concat_tables(frames))
    2
    >>> fs.write_labels({"video_id": ["video10", "video11"], "short_term": [0.95, 0.81],
    ...                  "long_term": [0.9, None]})
    2

    Reading it back:

    >>> fs.video_ids(), fs.resolve_model(), fs.resolve_sampling()
    (array(['video10', 'video11'], dtype=object), 'toy-ab12', 'frames=6')
    >>> scores, maps = fs.read_arrays(["video11", "video10"], n_frames=3)  # frames 0, 3 and 5
    >>> scores.shape, maps.shape
    ((2, 3), (2, 3, 3, 14, 14))
    >>> print(scores.round(2))
    [[0.4 0.7 0.9]
     [0.5 0.8 1. ]]
    >>> fs.labels(["video11", "video10"]), fs.labelled_ids("long")
    (array([0.81, 0.95]), array(['video10'], dtype=object))
    >>> fs.sql("SELECT video_id, count(*) AS n FROM frames WHERE score >= ? "
    ...        "GROUP BY video_id ORDER BY video_id", [0.75]).to_pylist()
    [{'video_id': 'video10', 'n': 3}, {'video_id': 'video11', 'n': 2}]
    >>> fs.info()["tables"]  # doctest: +NORMALIZE_WHITESPACE
    {'videos': 2, 'frames': 12, 'embeddings': 0, 'models': 1, 'labels': 2, 'failures': 0, 'results': 0,
     'predictions': 0}
    """

    def __init__(self, path: str | os.PathLike, *, create: bool = False):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"FeatureStore path must be a str or Path; got {type(path).__name__}")
        self.path = location.store_root(path)
        found = location.kind(self.path)
        if found == "file":
            raise StoreError(f"the store {str(self.path)!r} is a file, not a store folder")
        if found is None:
            if not create:
                raise StoreError(f"the store {str(self.path)!r} does not exist: give the folder of an existing "
                                 "store, or pass create=True to start one (amnetvid extract and labels import "
                                 "make it)")
            location.make_store(self.path)
        self._con = Connection(self.path)
        self._shapes: dict[str, tuple[int, ...]] = {}  # map shape per fingerprint, never changes

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r})"

    # A store travels to worker processes as its path; each process opens its own connections.
    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Close this thread's DuckDB connection (a later call opens a new one)."""
        self._con.close()

    def sql(self, query: str, params: Sequence | Mapping | None = None) -> pa.Table:
        """Run one read-only SQL query on the store's views (see :func:`.sql.run_read_only`).

        Examples
        --------
        >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store
        >>> ids = write_synthetic_store("store_sql", *make_moving_peak_dataset(2))  # 2 videos, 4 frames
        >>> fs = FeatureStore("store_sql")
        >>> fs.sql("SELECT video_id, count(*) AS n FROM frames GROUP BY video_id "
        ...        "HAVING avg(score) > ? ORDER BY video_id", [0.6]).to_pylist()
        [{'video_id': 'syn0000', 'n': 4}]
        >>> fs.sql("DELETE FROM labels")
        Traceback (most recent call last):
        ...
        amnetvid_sk.errors.ReadOnlyQueryError: FeatureStore.sql runs read-only queries ...
        """
        return run_read_only(self._con, query, params)

    def df(self, query: str, params: Sequence | Mapping | None = None):
        """:meth:`sql` as a pandas DataFrame: the same read-only guard, the same views and
        bound parameters; list columns (``attention``, ``embedding``) become arrays per cell.

        Examples
        --------
        >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store
        >>> ids = write_synthetic_store("store_df", *make_moving_peak_dataset(2))  # 2 videos, 4 frames
        >>> fs = FeatureStore("store_df")
        >>> frame = fs.df("SELECT video_id, count(*) AS n, avg(score) > $cut AS high FROM frames "
        ...               "GROUP BY video_id ORDER BY video_id", {"cut": 0.6})
        >>> type(frame).__name__, frame.columns.tolist(), frame["n"].tolist(), frame["high"].tolist()
        ('DataFrame', ['video_id', 'n', 'high'], [4, 4], [True, False])
        """
        return self.sql(query, params).to_pandas()

    # ------------------------------------------------------------------ reading
    def extracted_keys(self, model: str, sampling: str) -> set[tuple[str, int, float]]:
        """``(path, size, mtime)`` of the visible extractions of ``model`` with ``sampling``:
        the extractor skips a file whose ``(os.path.abspath(path), size, mtime)`` is in it.

        Examples
        --------
        >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store
        >>> ids = write_synthetic_store("store_keys", *make_moving_peak_dataset(2))  # 2 videos, 4 frames
        >>> fs = FeatureStore("store_keys")
        >>> keys = fs.extracted_keys(fs.resolve_model(), "frames=4")
        >>> ("/synthetic/syn0000.mp4", 1, 0.0) in keys, ("/synthetic/syn0000.mp4", 2, 0.0) in keys
        (True, False)
        """
        tbl = self.extracted_files(model, sampling)
        return set(zip(tbl["path"].to_pylist(), tbl["size"].to_pylist(), tbl["mtime"].to_pylist()))

    def video_paths(self, ids) -> dict[str, set[str]]:
        """The file paths each of ``ids`` was extracted from; unknown ids are left out.

        Examples
        --------
        >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store
        >>> ids = write_synthetic_store("store_paths", *make_moving_peak_dataset(2))  # 2 videos, 4 frames
        >>> fs = FeatureStore("store_paths")
        >>> fs.video_paths(["syn0000", "video10"])
        {'syn0000': {'/synthetic/syn0000.mp4'}}
        """
        return queries.video_paths(self._con, ids)

    def extracted_files(self, model: str, sampling: str) -> pa.Table:
        """video_id, path, size, mtime, extraction_id and ``embedded`` (every stored frame has an
        embedding) of the visible extractions of ``model`` with ``sampling``."""
        return queries.extracted_files(self._con, model, sampling)

    def frame_indices(self, extraction_ids) -> dict[str, list[int]]:
        """The sorted stored frame indices of each visible extraction among ``extraction_ids``."""
        return queries.frame_indices(self._con, extraction_ids)

    def models(self) -> list[dict]:
        """The registered frame models (see :func:`.queries.models`).

        Examples
        --------
        >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store
        >>> ids = write_synthetic_store("store_models", *make_moving_peak_dataset(2))  # 2 videos, 4 frames
        >>> fs = FeatureStore("store_models")
        >>> [(m["name"], m["map_shape"], m["n_videos"], m["samplings"]) for m in fs.models()]
        [('synthetic', (3, 14, 14), 2, ['frames=4'])]
        """
        return queries.models(self._con)

    def resolve_model(self, model: str | None = None) -> str:
        """The full fingerprint of a frame model: ``model`` as a fingerprint, a unique prefix or
        a name; None takes the only model with extracted videos (see :func:`.resolve.pick_model`).

        Examples
        --------
        >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store
        >>> ids = write_synthetic_store("store_resolve", *make_moving_peak_dataset(2))  # 2 videos, 4 frames
        >>> fs = FeatureStore("store_resolve")
        >>> fs.resolve_model("synthetic")
        'synthetic.w-000000000000.pre-none.maps-3x14x14.fp32'
        >>> fs.resolve_model("synthetic.w-0") == fs.resolve_model() == fs.resolve_model("synthetic")
        True
        """
        return snapshot(self._con, cache_limit())[1].model(self.path, model)

    def resolve_sampling(self, model: str | None = None, sampling: str | None = None) -> str:
        """The sampling key to read: ``sampling`` if the model has it, or its only one.

        Examples
        --------
        >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store
        >>> ids = write_synthetic_store("store_sampling", *make_moving_peak_dataset(2))  # 2 videos, 4 frames
        >>> fs = FeatureStore("store_sampling")
        >>> fs.resolve_sampling(), fs.resolve_sampling("synthetic", "frames=4")
        ('frames=4', 'frames=4')
        """
        catalog = snapshot(self._con, cache_limit())[1]
        model = catalog.model(self.path, model)
        return catalog.sampling(self.path, model, sampling)

    def video_ids(self, model: str | None = None, sampling: str | None = None) -> np.ndarray:
        """Sorted ids of the videos extracted by a model (all samplings unless one is given).

        Examples
        --------
        >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store
        >>> ids = write_synthetic_store("store_ids", *make_moving_peak_dataset(2))  # 2 videos, 4 frames
        >>> fs = FeatureStore("store_ids")
        >>> fs.video_ids(), FeatureStore("empty_store", create=True).video_ids()
        (array(['syn0000', 'syn0001'], dtype=object), array([], dtype=object))
        """
        return queries.video_ids(self._con, model, sampling)

    def read_arrays(self, ids, model: str | None = None, n_frames: int | None = None, maps: bool = True,
                    sampling: str | None = None, short: str = "error") -> tuple[np.ndarray, np.ndarray | None]:
        """Frame scores [n, T] and attention maps [n, T, K, h, w] of videos, in the order of ``ids``
        (see :func:`.read.read_arrays` for how T frames are picked, how ``short`` fills the rows of
        videos with fewer frames, and the errors).
        """
        return read.read_arrays(self._con, ids, model, n_frames, maps, sampling, short)

    def read_embeddings(self, ids, model: str | None = None, n_frames: int | None = None,
                        sampling: str | None = None, pooling: str | None = None) -> np.ndarray:
        """Frame embeddings of videos, float32 [n, T, D] (or [n, D] pooled "mean" or "max"),
        in the order of ``ids`` (see :func:`.embeddings.read_embeddings`).
        """
        return embeddings.read_embeddings(self._con, ids, model, n_frames, sampling, pooling)

    def labels(self, ids=None, target: str = "short") -> np.ndarray:
        """Memorability labels of videos, aligned to ``ids`` (see :func:`.queries.labels`)."""
        return queries.labels(self._con, ids, target)

    def labelled_ids(self, target: str = "short", *, extracted: bool = False, model: str | None = None,
                     sampling: str | None = None) -> np.ndarray:
        """Sorted ids of the videos with a label for ``target`` (and, with ``extracted=True``,
        features of ``model`` with ``sampling``: the ids a pipeline can read).
        """
        return queries.labelled_ids(self._con, target, extracted=extracted, model=model, sampling=sampling)

    def info(self) -> dict:
        """Rows, part files and bytes per table, models, and the size on disk (see :func:`.queries.info`).

        Examples
        --------
        >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store
        >>> ids = write_synthetic_store("store_info", *make_moving_peak_dataset(2))  # 2 videos, 4 frames
        >>> fs = FeatureStore("store_info")
        >>> info = fs.info()
        >>> info["tables"]  # doctest: +NORMALIZE_WHITESPACE
        {'videos': 2, 'frames': 8, 'embeddings': 0, 'models': 1, 'labels': 2, 'failures': 0, 'results': 0,
         'predictions': 0}
        >>> info["files"]["frames"], [m["name"] for m in info["models"]]
        (1, ['synthetic'])
        """
        return queries.info(self._con)

    # ------------------------------------------------------------------ maintenance
    def compact(self, tables: Sequence[str] | None = None, *,
                drop_orphans: bool = False) -> dict[str, tuple[int, int]]:
        """Rewrite each table's visible rows into one part file; run it when nothing else
        reads the store (see :func:`.compact.compact`).
        """
        return _compact.compact(self._con, self._shapes, tables, drop_orphans=drop_orphans)

    def verify(self, repair: bool = False) -> _verify.VerifyReport:
        """Read every part file whole; ``repair=True`` quarantines the damaged ones (see :func:`.verify.verify`)."""
        return _verify.verify(self._con, repair)
