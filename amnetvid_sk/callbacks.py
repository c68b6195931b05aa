"""skorch callbacks of the sequence regressors: Spearman on the validation part, and early
stopping on it that stands aside when there is no validation part."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import ConstantInputWarning
from skorch.callbacks import EarlyStopping

from .metrics import spearman

__all__ = ["EarlyStoppingOnValid", "valid_spearman"]


def valid_spearman(net, X, y) -> float:
    """EpochScoring scorer: Spearman on the validation part.

    An undefined correlation (constant predictions, e.g. a saturated sigmoid early in
    training) is recorded as -inf with a warning, so early stopping never keeps that
    epoch and never crashes on a nan.

    Examples
    --------
    >>> from skorch.callbacks import EpochScoring
    >>> from amnetvid_sk.callbacks import valid_spearman
    >>> scoring = EpochScoring(valid_spearman, lower_is_better=False, name="valid_spearman", on_train=False)
    """
    y_pred = net.predict(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        rho = spearman(y, y_pred)
    if np.isnan(rho):
        epoch = net.history[-1, "epoch"] if len(net.history) else "?"
        warnings.warn(
            f"valid_spearman is undefined at epoch {epoch} (constant predictions or targets on "
            f"the validation part); it is recorded as -inf so early stopping never keeps this epoch.",
            ConstantInputWarning,
            stacklevel=2,
        )
        return -np.inf
    return rho


class EarlyStoppingOnValid(EarlyStopping):
    """skorch's EarlyStopping that stands aside when there is no validation part.

    With ``train_split=None`` the monitored score is never recorded; training then
    runs ``max_epochs`` epochs instead of failing with a KeyError.

    Examples
    --------
    >>> from amnetvid_sk.callbacks import EarlyStoppingOnValid
    >>> stop = EarlyStoppingOnValid(monitor="valid_spearman", lower_is_better=False, patience=5, load_best=True)
    """

    def on_epoch_end(self, net, **kwargs):
        if self.monitor not in net.history[-1]:
            return
        super().on_epoch_end(net, **kwargs)
