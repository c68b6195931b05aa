"""Spearman rank correlation, the MediaEval memorability metric, as a function and a scorer."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import ConstantInputWarning, spearmanr
from sklearn.metrics import make_scorer
from sklearn.utils import check_consistent_length

__all__ = ["FEW_VIDEOS", "spearman", "spearman_scorer"]

#: Below this many labelled videos a Spearman is mostly noise: its 95% interval is wider than
#: about +-0.28 (Fisher's approximation, 1.96 * 1.03 / sqrt(n - 3)), wider than the gap between
#: any two models the working note compares. Evaluation warns below it, and ``predict`` warns for
#: a model trained on fewer videos.
FEW_VIDEOS = 50


def _as_1d(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    # skorch hands targets and predictions over as (n, 1) columns
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D (or a single column); got an array of shape {array.shape}."
        )
    return array


def spearman(y_true, y_pred) -> float:
    """Spearman rank correlation between targets and predictions.

    The official metric of the MediaEval "Predicting Media Memorability" task. When
    either input is constant (or has fewer than 2 values) the correlation is undefined:
    the result is ``nan`` and a :class:`scipy.stats.ConstantInputWarning` says which
    input is at fault; nothing is raised, so a grid search goes on.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, 1)
        Ground-truth memorability scores.
    y_pred : array-like of shape (n_samples,) or (n_samples, 1)
        Predicted scores.

    Returns
    -------
    rho : float
        Spearman's rho in [-1, 1], or ``nan`` when undefined.

    Examples
    --------
    >>> from amnetvid_sk.metrics import spearman
    >>> spearman([0.1, 0.5, 0.9], [1.0, 2.0, 30.0])
    1.0
    """
    y_true = _as_1d(y_true, "y_true")
    y_pred = _as_1d(y_pred, "y_pred")
    check_consistent_length(y_true, y_pred)
    if len(y_true) < 2:
        warnings.warn(
            f"Spearman correlation is undefined for {len(y_true)} sample(s); returning nan.",
            ConstantInputWarning,
            stacklevel=2,
        )
        return float("nan")
    constant = [name for name, a in (("y_true", y_true), ("y_pred", y_pred))
                if np.all(np.isfinite(a)) and np.ptp(a) == 0]
    if constant:
        warnings.warn(
            f"Spearman correlation is undefined because {' and '.join(constant)} "
            f"{'is' if len(constant) == 1 else 'are'} constant; returning nan.",
            ConstantInputWarning,
            stacklevel=2,
        )
        return float("nan")
    return float(spearmanr(y_true, y_pred).statistic)


#: Scorer for ``cross_val_score`` / ``GridSearchCV`` (greater is better).
spearman_scorer = make_scorer(spearman, greater_is_better=True)
