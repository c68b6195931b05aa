"""How sure a Spearman is: a bootstrap interval for one model, a paired one for a difference.

Every figure comes from an evaluation's out-of-fold predictions (:class:`OutOfFold`): each
labelled video's prediction by the model that did not see it in training. The statistic is
the one the tables print, the mean over folds (or the note's rounds) of the Spearman within
each fold; the bootstrap resamples *videos* (a resampled video brings its prediction in every
round), so the interval says how much the figure would move on another draw of videos of the
same kind. Resampling is :func:`scipy.stats.bootstrap` (BCa, ``N_RESAMPLES`` resamples, seeded);
a difference between two models on the same videos is resampled paired, so the interval of the
difference is much narrower than either model's own when the two rank alike.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = rng.random(200)
>>> good = OutOfFold.from_arrays([f"v{i}" for i in range(200)], np.arange(200) % 5, y + rng.normal(0, .2, 200), y)
>>> worse = OutOfFold.from_arrays(good.video_id, good.fold, y + rng.normal(0, .5, 200), y)
>>> est = spearman_interval(good)
>>> round(est.estimate, 2), est.low < est.estimate < est.high
(0.8, True)
>>> diff = paired_difference(good, worse)
>>> diff.low > 0  # the data support that the first model ranks better
True
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["CONFIDENCE", "Interval", "N_RESAMPLES", "OutOfFold", "fold_spearman", "paired_difference",
           "spearman_interval"]

#: Bootstrap resamples per interval (stated beside every interval shown)
N_RESAMPLES = 2000
#: Confidence level of every interval
CONFIDENCE = 0.95
# resamples computed at once: memory is about 3 * _BATCH * n_videos * 8 bytes
_BATCH = 100


@dataclass(frozen=True)
class OutOfFold:
    """Out-of-fold predictions of one evaluation run: one row per (video, fold).

    ``fold`` numbers the folds of a K-fold split (each video once), or the rounds of the
    note's protocol (each test video once per round).
    """

    video_id: np.ndarray  # str, object dtype
    fold: np.ndarray  # int64
    prediction: np.ndarray  # float64
    label: np.ndarray  # float64

    @classmethod
    def from_arrays(cls, video_id, fold, prediction, label) -> "OutOfFold":
        arrays = (np.asarray(video_id, dtype=object), np.asarray(fold, dtype=np.int64),
                  np.asarray(prediction, dtype=np.float64).reshape(-1), np.asarray(label, dtype=np.float64))
        if len({len(a) for a in arrays}) != 1:
            raise ValueError(f"video_id, fold, prediction and label must have one length; got {[len(a) for a in arrays]}")
        return cls(*arrays)

    def __len__(self) -> int:
        return len(self.video_id)

    def videos(self) -> np.ndarray:
        """The distinct video ids, sorted."""
        return np.unique(self.video_id)

    def matrix(self, videos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``labels [n]`` and ``predictions [n, folds]`` of ``videos`` (NaN where a video is not in a fold)."""
        row = {v: i for i, v in enumerate(videos)}
        folds = np.unique(self.fold)
        col = np.searchsorted(folds, self.fold)
        pred = np.full((len(videos), len(folds)), np.nan)
        labels = np.full(len(videos), np.nan)
        keep = np.array([v in row for v in self.video_id], dtype=bool)
        rows = np.array([row[v] for v in self.video_id[keep]], dtype=np.int64)
        pred[rows, col[keep]] = self.prediction[keep]
        labels[rows] = self.label[keep]
        return labels, pred


@dataclass(frozen=True)
class Interval:
    """An estimate with its bootstrap interval."""

    estimate: float
    low: float
    high: float
    n_videos: int
    n_resamples: int = N_RESAMPLES
    confidence: float = CONFIDENCE
    method: str = "BCa"

    @property
    def excludes_zero(self) -> bool:
        """True when the interval lies wholly above or below 0 (the data support a difference)."""
        return bool(self.low > 0 or self.high < 0)

    def text(self, digits: int = 2, signed: bool = False) -> str:
        """``0.4384 [0.39, 0.48]``, or ``+0.017 [-0.01, +0.04]`` with ``signed``.

        Examples
        --------
        >>> Interval(0.4384, 0.3912, 0.4801, 900).text()
        '0.4384 [0.39, 0.48]'
        >>> Interval(0.0170, -0.0104, 0.0433, 900).text(signed=True)
        '+0.017 [-0.01, +0.04]'
        """
        if not np.isfinite(self.estimate):
            return "undefined"
        sign = "+" if signed else ""
        head = f"{self.estimate:{sign}.3f}" if signed else f"{self.estimate:.4f}"
        if not (np.isfinite(self.low) and np.isfinite(self.high)):
            return f"{head} [interval undefined]"
        return f"{head} [{self.low:{sign}.{digits}f}, {self.high:{sign}.{digits}f}]"


def _masked_spearman(labels: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Spearman of each row of ``pred [b, n]`` against ``labels [b, n]`` over the finite entries of
    ``pred``; NaN where fewer than 2 entries, or either side is constant there."""
    from scipy.stats import rankdata

    valid = np.isfinite(pred)
    # entries out of the fold rank last (+inf ties among themselves): the ranks of the others are theirs
    ra = rankdata(np.where(valid, labels, np.inf), axis=-1)
    rb = rankdata(np.where(valid, pred, np.inf), axis=-1)
    k = valid.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ma = np.where(valid, ra, 0).sum(-1) / k
        mb = np.where(valid, rb, 0).sum(-1) / k
        da = np.where(valid, ra - ma[..., None], 0)
        db = np.where(valid, rb - mb[..., None], 0)
        cov = (da * db).sum(-1)
        var = (da * da).sum(-1) * (db * db).sum(-1)
        rho = cov / np.sqrt(var)
    return np.where((k >= 2) & (var > 0), rho, np.nan)


def _fold_mean(labels: np.ndarray, pred: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The mean over folds of the within-fold Spearman, for each row of resampled indices ``idx``."""
    shape = np.shape(idx)[:-1]
    idx = np.reshape(idx, (-1, np.shape(idx)[-1]))
    lab = labels[idx]
    rhos = np.stack([_masked_spearman(lab, pred[:, j][idx]) for j in range(pred.shape[1])], axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample where every fold is undefined
        return np.nanmean(rhos, axis=-1).reshape(shape)


def fold_spearman(oof: OutOfFold) -> float:
    """The mean over folds of the Spearman within each fold (NaN folds left out), as tables print it.

    Examples
    --------
    >>> oof = OutOfFold.from_arrays(["a", "b", "c", "d"], [0, 0, 1, 1], [1, 2, 2, 1], [1, 2, 3, 4])
    >>> fold_spearman(oof)
    0.0
    """
    videos = oof.videos()
    labels, pred = oof.matrix(videos)
    return float(_fold_mean(labels, pred, np.arange(len(videos))))


def _bootstrap(statistic, n: int, n_resamples: int, confidence: float, seed: int) -> tuple[float, float, str]:
    from scipy.stats import bootstrap

    method = "BCa"
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            # a degenerate resample distribution (tiny sets) gives NaN bounds: told by the result
            warnings.simplefilter("ignore")
            res = bootstrap((np.arange(n),), statistic, n_resamples=n_resamples, confidence_level=confidence,
                            method=method, vectorized=True, batch=_BATCH, rng=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if np.isfinite(low) and np.isfinite(high):
            return low, high, method
    return float("nan"), float("nan"), method


def spearman_interval(oof: OutOfFold, *, n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE,
                      seed: int = 0) -> Interval:
    """The fold-mean Spearman of ``oof`` with its bootstrap interval over videos.

    BCa (bias-corrected and accelerated) where it is defined; on sets so small that the
    jackknife behind BCa degenerates, the percentile interval, and ``method`` says so.
    """
    videos = oof.videos()
    labels, pred = oof.matrix(videos)
    estimate = float(_fold_mean(labels, pred, np.arange(len(videos))))
    if len(videos) < 3 or not np.isfinite(estimate):
        return Interval(estimate, float("nan"), float("nan"), len(videos), n_resamples, confidence)

    def statistic(idx, axis=-1):
        return _fold_mean(labels, pred, idx)

    low, high, method = _bootstrap(statistic, len(videos), n_resamples, confidence, seed)
    return Interval(estimate, low, high, len(videos), n_resamples, confidence, method)


def paired_difference(oof: OutOfFold, base: OutOfFold, *, n_resamples: int = N_RESAMPLES,
                      confidence: float = CONFIDENCE, seed: int = 0) -> Interval:
    """``fold_spearman(oof) - fold_spearman(base)`` on the videos both hold, with a paired
    bootstrap interval (the same resampled videos for both models).

    ``n_videos`` is the number of videos both hold; the estimate is on those alone.
    """
    videos = np.intersect1d(oof.videos(), base.videos())
    labels, pred = oof.matrix(videos)
    _, pred_base = base.matrix(videos)

    def statistic(idx, axis=-1):
        return _fold_mean(labels, pred, idx) - _fold_mean(labels, pred_base, idx)

    estimate = float(statistic(np.arange(len(videos)))) if len(videos) else float("nan")
    if len(videos) < 3 or not np.isfinite(estimate):
        return Interval(estimate, float("nan"), float("nan"), len(videos), n_resamples, confidence)
    low, high, method = _bootstrap(statistic, len(videos), n_resamples, confidence, seed)
    return Interval(estimate, low, high, len(videos), n_resamples, confidence, method)
