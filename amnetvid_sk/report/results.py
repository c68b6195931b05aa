"""The evaluation runs as the report lays them out: blocks by protocol, each model's out-of-fold
predictions per video, and the videos a model ranked worst.

Everything takes :class:`~amnetvid_sk.tables.Table1` blocks (whose results carry their
out-of-fold predictions, :class:`~amnetvid_sk.uncertainty.OutOfFold`), however they were made:
rebuilt from the store's runs, or fresh from :func:`~amnetvid_sk.evaluate.table1`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..pipelines import PROTOCOLS, TABLE1_RECIPES, TARGETS

__all__ = ["PROTOCOL_TEXT", "WorstPredicted", "block_title", "by_protocol", "fold_stats", "per_video",
           "targets_of", "worst_predicted"]

PROTOCOL_TEXT = {
    "cv": "honest K-fold cross-validation (each video predicted once, by the model of the fold that left it out)",
    "paper": "the note's protocol (one 85/15 split, best epoch chosen on the test part: OPTIMISTIC)",
}
#: videos listed as predicted worst, per target
N_WORST = 10


def by_protocol(tables) -> dict:
    """``{protocol: [Table1, ...]}`` in :data:`PROTOCOLS` order (others after), blocks in the order given."""
    out: dict = {}
    for table in tables:
        out.setdefault(table.protocol, []).append(table)
    order = {p: k for k, p in enumerate(PROTOCOLS)}
    return dict(sorted(out.items(), key=lambda item: order.get(item[0], len(order))))


def block_title(table) -> str:
    """"Table 1" for the note's three models, the block's own title otherwise."""
    if tuple(table.columns) == tuple(TABLE1_RECIPES):
        return "Table 1"
    return table.title or "Models"


def per_video(oof):
    """``(video ids, labels, predictions)`` of an :class:`~amnetvid_sk.uncertainty.OutOfFold`, one row
    per video: its prediction averaged over the rounds that predicted it (the note's protocol
    predicts each test video once per round)."""
    videos = oof.videos()
    labels, pred = oof.matrix(videos)  # NaN where a round did not predict the video; each has one at least
    return videos, labels, np.nanmean(pred, axis=1) if pred.size else np.zeros(0)


def fold_stats(res) -> tuple[float, float]:
    """Mean and standard deviation of a result's fold Spearmans over the folds where it is defined
    (NaN, NaN when it is defined in none: a run on a handful of videos)."""
    scores = np.asarray(res.scores, dtype=float)
    scores = scores[np.isfinite(scores)]
    return (float(scores.mean()), float(scores.std())) if len(scores) else (float("nan"), float("nan"))


def _fold_ranks(values: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Percentile rank (0-100, ties averaged) of each value among those of its fold."""
    from scipy.stats import rankdata

    out = np.empty(len(values))
    for fold in np.unique(folds):
        inside = folds == fold
        out[inside] = 100.0 * (rankdata(values[inside]) - 0.5) / inside.sum()
    return out


@dataclass
class WorstPredicted:
    """The videos one model ranked furthest from their labels, for one target."""

    target: str
    protocol: str
    label: str  # the model's column title
    rows: list  # dicts: video_id, label, prediction, label_rank, predicted_rank, off_by


def _best(tables, target):
    """(table, recipe) of the model with the highest Spearman on ``target`` that kept predictions."""
    found = [(fold_stats(res)[0], table, recipe) for table in tables for (recipe, t), res in table.results.items()
             if t == target and res.predictions is not None and len(res.predictions)]
    found = [item for item in found if np.isfinite(item[0])]
    if not found:
        return None
    _, table, recipe = max(found, key=lambda item: item[0])
    return table, recipe


def worst_predicted(tables, target: str, n: int = N_WORST) -> WorstPredicted | None:
    """The ``n`` videos that the best model on ``target`` ranked furthest from their label.

    Spearman compares ranks within each fold, so each video's error is the distance between its
    label's percentile rank and its prediction's, within its fold (averaged over the rounds of the
    note's protocol). The best model is the one with the highest fold-mean Spearman among the
    blocks of the first protocol (in :data:`PROTOCOLS` order) that kept predictions.
    """
    for blocks in by_protocol(tables).values():
        best = _best(blocks, target)
        if best is not None:
            break
    else:
        return None
    table, recipe = best
    oof = table.results[(recipe, target)].predictions
    label_rank = _fold_ranks(oof.label, oof.fold)
    pred_rank = _fold_ranks(oof.prediction, oof.fold)
    videos, row = np.unique(oof.video_id.astype(str), return_inverse=True)
    count = np.bincount(row, minlength=len(videos))

    def mean(values):  # per video, over the rounds that predicted it
        return np.bincount(row, weights=values, minlength=len(videos)) / count

    label, prediction, label_rank, predicted_rank = (mean(v) for v in (oof.label, oof.prediction, label_rank,
                                                                        pred_rank))
    rows = [{"video_id": str(v), "label": float(label[k]), "prediction": float(prediction[k]),
             "label_rank": float(label_rank[k]), "predicted_rank": float(predicted_rank[k]),
             "off_by": float(predicted_rank[k] - label_rank[k])} for k, v in enumerate(videos)]
    rows.sort(key=lambda r: (-abs(r["off_by"]), r["video_id"]))
    return WorstPredicted(target, table.protocol, table.label(recipe), rows[:n])


def targets_of(tables) -> list[str]:
    """The targets any block has results for, in :data:`TARGETS` order."""
    return [t for t in TARGETS if any(t in table.targets() for table in tables)]
