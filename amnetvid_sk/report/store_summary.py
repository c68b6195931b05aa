"""What the report says about the store itself: how it was made, what failed, what was left out.

Everything is read with bound SQL on the store's views (and the store's own readers); nothing
here draws or writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..pipelines import TARGETS

__all__ = ["StoreSummary", "summarise_store"]

#: rows of the failures table and ids of left-out videos shown at most (the rest are counted)
LIST_LIMIT = 50


@dataclass
class StoreSummary:
    """The store as the report describes it.

    ``model`` and ``sampling`` are the frame model (fingerprint) and sampling key the figures read
    (None in a store with no extracted video); ``mean_scores`` maps each of their videos to its
    mean frame score, ``paths`` to its video file; ``labels`` maps each labelled video to
    ``(short_term, long_term)`` (NaN where missing).
    """

    path: str
    models: list
    tables: dict
    model: str | None = None
    sampling: str | None = None
    runs: int = 0
    frames_per_video: tuple | None = None  # (min, median, max) stored frames of model/sampling
    mean_scores: dict = field(default_factory=dict)
    paths: dict = field(default_factory=dict)  # video id -> its file, as extracted
    labels: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)  # the latest LIST_LIMIT rows
    left_out: dict = field(default_factory=dict)  # target -> ids labelled without features
    short: list = field(default_factory=list)  # ids with fewer frames than the sampling asked

    @property
    def model_row(self) -> dict | None:
        """The models-table row of :attr:`model` (see :meth:`FeatureStore.models`)."""
        return next((m for m in self.models if m["model"] == self.model), None)

    def label_counts(self) -> dict:
        """``{target: videos with a label}``."""
        values = np.array(list(self.labels.values()), dtype=float).reshape(-1, 2)
        return {t: int(np.isfinite(values[:, k]).sum()) for k, t in enumerate(TARGETS)}


def _pick(fs, model, sampling):
    """The model and sampling the figures read: as given, or the store's only ones."""
    if model is None and not any(m["n_videos"] for m in fs.models()):
        return None, None
    model = fs.resolve_model(model)  # an ambiguous or unknown model is an error that lists the choices
    return model, fs.resolve_sampling(model, sampling)


def summarise_store(fs, model: str | None = None, sampling: str | None = None) -> StoreSummary:
    """Read what the report shows about store ``fs`` (a :class:`~amnetvid_sk.store.FeatureStore`).

    Parameters
    ----------
    fs : FeatureStore
    model : str, default=None
        Frame model of the figures (fingerprint, unique prefix or name); None: the store's only
        model with extracted videos (several are an error that lists them).
    sampling : str, default=None
        Sampling key; None: the model's only one.

    Examples
    --------
    >>> from amnetvid_sk.store import FeatureStore
    >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store
    >>> ids = write_synthetic_store("store_summary", *make_moving_peak_dataset(3))  # 3 videos, 4 frames
    >>> s = summarise_store(FeatureStore("store_summary"))
    >>> s.sampling, s.frames_per_video, s.label_counts(), s.runs
    ('frames=4', (4, 4.0, 4), {'short': 3, 'long': 3}, 0)
    """
    model, sampling = _pick(fs, model, sampling)
    summary = StoreSummary(path=str(fs.path), models=fs.models(), tables=fs.info()["tables"], model=model,
                           sampling=sampling)
    summary.runs = int(fs.sql("SELECT count(DISTINCT run_id) AS n FROM results").column("n")[0].as_py())
    rows = fs.sql("SELECT video_id, short_term, long_term FROM labels ORDER BY video_id").to_pydict()
    summary.labels = {v: (np.nan if s is None else s, np.nan if lo is None else lo)
                      for v, s, lo in zip(rows["video_id"], rows["short_term"], rows["long_term"])}
    summary.failures = fs.sql(
        "SELECT path, video_id, reason, failed_at FROM failures ORDER BY failed_at DESC, path LIMIT ?",
        [LIST_LIMIT]).to_pylist()
    if model is None:
        summary.left_out = {t: sorted(v for v, y in summary.labels.items() if np.isfinite(y[k]))
                            for k, t in enumerate(TARGETS)}
        return summary
    keys = [model, sampling]
    scores = fs.sql("SELECT video_id, avg(score) AS mean_score FROM frames WHERE model = ? AND sampling = ? "
                    "GROUP BY video_id ORDER BY video_id", keys).to_pydict()
    summary.mean_scores = dict(zip(scores["video_id"], scores["mean_score"]))
    paths = fs.sql("SELECT video_id, path FROM videos WHERE model = ? AND sampling = ?", keys).to_pydict()
    summary.paths = dict(zip(paths["video_id"], paths["path"]))
    counts = fs.sql("SELECT min(n) AS lo, median(n) AS mid, max(n) AS hi FROM (SELECT count(*) AS n FROM frames "
                    "WHERE model = ? AND sampling = ? GROUP BY video_id)", keys).to_pylist()[0]
    if counts["lo"] is not None:
        summary.frames_per_video = (int(counts["lo"]), float(counts["mid"]), int(counts["hi"]))
    summary.short = fs.sql("SELECT DISTINCT video_id FROM videos WHERE model = ? AND sampling = ? AND short "
                           "ORDER BY video_id", keys).column("video_id").to_pylist()
    for target in TARGETS:
        with_features = set(fs.labelled_ids(target, extracted=True, model=model, sampling=sampling))
        summary.left_out[target] = [v for v in fs.labelled_ids(target) if v not in with_features]
    return summary
