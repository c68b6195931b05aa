"""Evaluation runs in the store: written with their out-of-fold predictions, read back as tables.

A run is one evaluation of one recipe on one target under one protocol. Its predictions go to
the ``predictions`` table first, then one row per fold to ``results``: a run seen in
``results`` has its predictions on disk, so every figure of it (the fold-mean Spearman, its
interval, its paired difference to the baseline) can be computed again later, by
:func:`stored_tables` or by SQL.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pyarrow as pa

from . import uncertainty
from .pipelines import BEYOND_RECIPES, PROTOCOLS, TABLE1_RECIPES

__all__ = ["CVResult", "stored_results", "stored_tables", "write_run"]

_LATEST = """
    SELECT r.* FROM results r
    JOIN (SELECT recipe, target, protocol, arg_max(run_id, created_at) AS run_id
          FROM results GROUP BY recipe, target, protocol) USING (recipe, target, protocol, run_id)
    ORDER BY recipe, target, protocol, fold"""


@dataclass
class CVResult:
    """Spearman per fold of one recipe on one target."""

    recipe: str
    target: str
    protocol: str
    scores: np.ndarray
    params: dict = field(default_factory=dict)
    seconds: float = 0.0
    n_frames: int | None = None  # frames per video the pipeline read
    n_videos: int = 0  # labelled videos with features, the ones used
    left_out: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))  # labelled, no features
    predictions: uncertainty.OutOfFold | None = None  # each video's out-of-fold prediction (the note's protocol: per round)
    run_id: str | None = None  # the run's id in the store's results and predictions tables
    short: dict = field(default_factory=dict)  # left out: id -> (stored frames, frames read)

    @cached_property
    def interval(self) -> uncertainty.Interval | None:
        """The fold-mean Spearman with its 95% bootstrap interval over videos (None without predictions)."""
        return uncertainty.spearman_interval(self.predictions) if self.predictions is not None else None

    @property
    def mean(self) -> float:
        """The mean over the folds whose Spearman is defined (NaN when none is)."""
        defined = self.scores[np.isfinite(self.scores)]
        return float(defined.mean()) if len(defined) else float("nan")

    @property
    def std(self) -> float:
        defined = self.scores[np.isfinite(self.scores)]
        return float(defined.std()) if len(defined) else float("nan")


def write_run(store, result, n_train, n_test) -> str:
    """Append one run to the store: its predictions (when the result has them), then its
    fold rows; returns the run id (also set on ``result.run_id``)."""
    from .store import FeatureStore

    fs = FeatureStore(store)
    run_id = uuid.uuid4().hex
    oof = result.predictions
    if oof is not None and len(oof):
        n = len(oof)
        fs.write_predictions(pa.table({
            "run_id": [run_id] * n, "recipe": [result.recipe] * n, "target": [result.target] * n,
            "protocol": [result.protocol] * n, "fold": pa.array(oof.fold, pa.int64()),
            "video_id": pa.array(oof.video_id.tolist(), pa.string()), "prediction": oof.prediction,
            "label": oof.label}))
    params = json.dumps(result.params, default=str, sort_keys=True)
    fs.write_results([
        {"run_id": run_id, "recipe": result.recipe, "target": result.target, "protocol": result.protocol,
         "fold": int(i), "spearman": float(s), "n_train": int(a), "n_test": int(b), "params": params}
        for i, (s, a, b) in enumerate(zip(result.scores, n_train, n_test))
    ])
    result.run_id = run_id
    return run_id


def stored_results(store) -> dict:
    """``{(recipe, target, protocol): CVResult}`` of the latest run of each, read from the store,
    their out-of-fold predictions included where the run has them."""
    from .store import FeatureStore
    from .uncertainty import OutOfFold

    fs = FeatureStore(store)
    rows = fs.sql(_LATEST).to_pylist()
    extracted = set(fs.sql("SELECT DISTINCT video_id FROM videos")["video_id"].to_pylist())
    labelled = {t: fs.labelled_ids(t) for t in {r["target"] for r in rows}}
    runs: dict = {}
    for r in rows:
        runs.setdefault((r["recipe"], r["target"], r["protocol"], r["run_id"]), []).append(r)
    out = {}
    for (recipe, target, protocol, run_id), folds in runs.items():
        pred = fs.sql("SELECT fold, video_id, prediction, label FROM predictions WHERE run_id = ? "
                      "ORDER BY fold, video_id", [run_id])
        oof = OutOfFold.from_arrays(pred["video_id"].to_pylist(), pred["fold"].to_numpy(),
                                    pred["prediction"].to_numpy(), pred["label"].to_numpy()) if pred.num_rows else None
        n_videos = (sum(f["n_test"] or 0 for f in folds) if protocol == "cv"
                    else (folds[0]["n_train"] or 0) + (folds[0]["n_test"] or 0))
        # left out, as the run saw them: labelled without features; with features but not evaluated (a
        # clip too short for the model: a cross-validation run predicts every video it kept)
        left_out = np.array([v for v in labelled[target] if v not in extracted], dtype=object)
        predicted = set(oof.video_id) if oof is not None else set()
        short = ({v: (None, None) for v in labelled[target] if v in extracted and v not in predicted}
                 if protocol == "cv" and oof is not None else {})
        out[(recipe, target, protocol)] = CVResult(
            recipe, target, protocol, np.array([f["spearman"] for f in folds], dtype=float),
            json.loads(folds[0]["params"] or "{}"), n_videos=n_videos, left_out=left_out, predictions=oof,
            run_id=run_id, short=short)
    return out


def stored_tables(store) -> list:
    """The store's latest runs laid out as tables: for each protocol with runs, the Table 1 block,
    the block beyond the note, and a block of any other recipes (in that order; empty blocks left out).

    Examples
    --------
    >>> import tempfile
    >>> from amnetvid_sk.evaluate import cross_validate
    >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store
    >>> store = tempfile.mkdtemp()
    >>> _ = write_synthetic_store(store, *make_moving_peak_dataset(60))
    >>> _ = cross_validate("mean_score", store, cv=3)
    >>> [(t.protocol, [name for name, _ in t.columns]) for t in stored_tables(store)]
    [('cv', ['mean_score', 'score_lstm', 'amnetvid'])]
    >>> stored_tables(store)[0].interval("mean_score", "short").n_videos
    60
    """
    from .tables import BASELINE, Table1

    results = stored_results(store)
    known = {name for name, _ in TABLE1_RECIPES + BEYOND_RECIPES}
    tables = []
    for protocol in PROTOCOLS:
        mine = {(r, t): res for (r, t, p), res in results.items() if p == protocol}
        if not mine:
            continue
        others = tuple((name, name) for name in sorted({r for r, _ in mine} - known))
        first = Table1(protocol, {k: v for k, v in mine.items() if k[0] in dict(TABLE1_RECIPES)})
        base = {k: v for k, v in mine.items() if k[0] == BASELINE}
        blocks = [first]
        for columns, title in ((BEYOND_RECIPES, "Beyond the note"), (others, "Other recipes")):
            chosen = {k: v for k, v in mine.items() if k[0] in dict(columns)}
            if chosen:
                blocks.append(Table1(protocol, chosen, columns=columns, title=title, baseline=base))
        tables += [t for t in blocks if t.results]
    return tables
