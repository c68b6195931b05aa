"""The working note's baseline, ``MeanScoreRegressor``: the mean of each video's frame scores.

It trains nothing and needs no torch: a plain scikit-learn regressor, so that the baseline of
every table runs where the networks cannot.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ._validation import fit_context

__all__ = ["MeanScoreRegressor"]


def _check_rows_have_frames(X: np.ndarray) -> None:
    empty = np.flatnonzero(np.isnan(X).all(axis=1)) if X.shape[1] else np.arange(len(X))
    if len(empty):
        raise ValueError(f"{len(empty)} row(s) of X have no frame score (all NaN), first at row {int(empty[0])}; "
                         "every video needs at least one frame")


class MeanScoreRegressor(RegressorMixin, BaseEstimator):
    """The working note's baseline: predict the mean of each video's frame scores.

    Nothing is learned. ``fit`` checks ``X`` (and ``y`` when given) and records the
    number of frames, so the estimator behaves like any regressor in a Pipeline, a
    cross-validation or a grid search.

    Clips differ in length: NaN marks a frame a video does not have (as ``FrameScores``
    with ``n_frames=None`` pads the rows of shorter videos), each row's mean is over its
    own frames, and ``predict`` takes any number of columns (a mean over frames does not
    depend on how many there are; scikit-learn's ``n_features_in_`` check is left out).

    Attributes
    ----------
    n_features_in_ : int
        Number of frame scores per video seen in ``fit``.
    feature_names_in_ : ndarray of str
        Column names, when ``X`` was a DataFrame with string column names.

    Examples
    --------
    >>> import numpy as np
    >>> from amnetvid_sk import MeanScoreRegressor
    >>> X = np.array([[0.2, 0.4, 0.6], [0.9, 0.7, 0.8]])
    >>> MeanScoreRegressor().fit(X, [0.5, 0.8]).predict(X)
    array([0.4, 0.8])
    >>> MeanScoreRegressor().fit(X).predict([[0.2, 0.4, np.nan, np.nan]])  # a shorter clip
    array([0.3])
    """

    # no parameters; the table says so, and fit_context checks it once per fit
    _parameter_constraints: dict = {}

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check the frame scores ``X`` [n_videos, n_frames]; learn nothing.

        Parameters
        ----------
        X : array-like of shape (n_videos, n_frames)
            Frame memorability scores.
        y : array-like of shape (n_videos,), default=None
            Ignored except for a length check.

        Returns
        -------
        self : MeanScoreRegressor
        """
        if y is None:
            X = validate_data(self, X, dtype=(np.float64, np.float32), ensure_all_finite="allow-nan")
        else:
            X, _ = validate_data(self, X, y, dtype=(np.float64, np.float32), y_numeric=True,
                                 ensure_all_finite="allow-nan")
        _check_rows_have_frames(X)
        return self

    def predict(self, X) -> np.ndarray:
        """Mean of each row of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_videos, n_frames)

        Returns
        -------
        y_pred : ndarray of shape (n_videos,)
        """
        check_is_fitted(self)
        # check_array, not validate_data(reset=False): any number of frames is fine (see the class)
        X = check_array(X, dtype=(np.float64, np.float32), ensure_all_finite="allow-nan")
        _check_rows_have_frames(X)
        return np.nanmean(X, axis=1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # a frame the clip does not have
        # a fixed function of X: it cannot reach the score the common checks ask of a
        # fitted regressor on their random data sets
        tags.regressor_tags.poor_score = True
        return tags
