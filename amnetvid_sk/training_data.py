"""The videos an evaluation or a fit learns from: labelled, with features, long enough.

A real data set is never all usable: some files did not decode (no features), some clips are
shorter than the frames a model reads. :func:`training_set` picks the videos a pipeline can
learn from and says, as warnings that name and count them, which it left out and why, and
when what is left is too few for a Spearman to mean much. :func:`check_folds` refuses a split
that cannot be made, before any fit.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .errors import FewVideosWarning, LeftOutWarning, TooFewVideosError
from .metrics import FEW_VIDEOS

__all__ = ["TrainingSet", "check_folds", "labelled_data", "training_set"]


def _features_of(pipeline) -> dict:
    """``model`` and ``sampling`` of the step that reads the store."""
    from .pipelines import reader_step

    params = reader_step(pipeline)[1].get_params(deep=False) if pipeline is not None else {}
    return {"model": params.get("model"), "sampling": params.get("sampling")}


def labelled_data(store, target: str, *, pipeline=None, return_left_out: bool = False):
    """Ids that have both a label for ``target`` and features, and their labels (aligned).

    Parameters
    ----------
    store : str or Path
    target : {"short", "long"}
    pipeline : sklearn Pipeline, default=None
        The features must be those its first step reads (its ``model`` and
        ``sampling`` parameters); None: the store's only frame model and sampling.
    return_left_out : bool, default=False
        Also return the labelled ids left out because they have no features
        (videos that could not be decoded, or not extracted yet).

    Returns
    -------
    ids : numpy.ndarray of str
    y : numpy.ndarray of float64
    left_out : numpy.ndarray of str
        Only with ``return_left_out=True``.

    Raises
    ------
    StoreError
        The store is empty, has no labels for ``target``, or none of the labelled
        videos has features; the message says which and what to run.

    Examples
    --------
    Not run: it needs a store with extracted videos and imported labels.

    >>> ids, y, left_out = labelled_data("store", "short", return_left_out=True)  # doctest: +SKIP
    """
    from .errors import StoreError
    from .store import FeatureStore

    fs = FeatureStore(store)
    labelled = fs.labelled_ids(target)
    ids = fs.labelled_ids(target, extracted=True, **_features_of(pipeline))
    if len(ids) == 0:
        path = str(fs.path)
        if len(labelled):
            why = (f"none of its {len(labelled)} videos with a {target}-term label has features; run "
                   f"`amnetvid extract VIDEOS --store {path}` on them")
        elif len(fs.video_ids()):
            why = f"it has no {target}-term labels; run `amnetvid labels import FILE --store {path}`"
        else:
            why = ("it is empty (no extracted videos, no labels); run `amnetvid extract` and "
                   "`amnetvid labels import` first")
        raise StoreError(f"no video to learn from in the store {path!r}: {why}")
    y = np.asarray(fs.labels(ids, target=target), dtype=np.float64)
    if not return_left_out:
        return ids, y
    return ids, y, np.setdiff1d(labelled, ids).astype(object)


@dataclass
class TrainingSet:
    """The labelled videos a pipeline learns from, and those left out."""

    ids: np.ndarray
    y: np.ndarray
    left_out: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))  # no features
    short: dict = field(default_factory=dict)  # id -> (stored frames, frames read): too few frames
    target: str = "short"

    def __len__(self) -> int:
        return len(self.ids)

    def warn(self) -> None:
        """The warnings of :func:`training_set`: the short videos left out, and too few videos left."""
        from .short_videos import short_message

        if self.short:
            warnings.warn(short_message(self.short, len(self) + len(self.short),
                                        f"videos with a {self.target}-term label"), LeftOutWarning, stacklevel=3)
        if len(self) < FEW_VIDEOS:
            warnings.warn(f"only {len(self)} labelled videos ({self.target}-term): below {FEW_VIDEOS}, a Spearman is "
                          "mostly noise (its 95% interval is wider than about +-0.3); read the intervals before "
                          "the figures", FewVideosWarning, stacklevel=3)


def training_set(store, target: str, pipeline, *, warn: bool = True) -> TrainingSet:
    """The videos ``pipeline`` can learn ``target`` from: labelled, with features, and holding
    at least the frames its reader steps read (unless they fill short videos).

    With ``warn``, a :class:`~amnetvid_sk.errors.LeftOutWarning` names and counts the videos left
    out for too few stored frames, and a :class:`~amnetvid_sk.errors.FewVideosWarning` says when
    fewer than :data:`~amnetvid_sk.metrics.FEW_VIDEOS` are left.

    Examples
    --------
    >>> import tempfile, warnings
    >>> from amnetvid_sk.pipelines import load_recipe
    >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store
    >>> store = tempfile.mkdtemp()
    >>> ids = write_synthetic_store(store, *make_moving_peak_dataset(60), stored=[4] * 58 + [2, 3])
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     data = training_set(store, "short", load_recipe("score_lstm").pipeline(store))
    >>> len(data), sorted(data.short)
    (58, ['syn0058', 'syn0059'])
    >>> [type(w.message).__name__ for w in caught]
    ['LeftOutWarning']
    """
    from .short_videos import split_short

    ids, y, left_out = labelled_data(store, target, pipeline=pipeline, return_left_out=True)
    kept, short = split_short(pipeline, ids)
    if short:
        keep = np.isin(ids, kept)
        ids, y = ids[keep], y[keep]
        if len(ids) == 0:
            from .errors import StoreError

            raise StoreError(f"every labelled video with features holds fewer stored frames than the model "
                             f"reads ({len(short)} videos); pass --n-frames with a smaller count, or "
                             "--short-videos stretch or repeat-last")
    data = TrainingSet(ids, y, left_out, short, target)
    if warn:
        data.warn()
    return data


def check_folds(n_splits: int, n_videos: int, target: str, store, n_short: int = 0) -> None:
    """Refuse, before any fit, a K-fold split with more folds than labelled videos.

    Raises
    ------
    TooFewVideosError
        Naming the counts and what to change.

    Examples
    --------
    >>> check_folds(5, 12, "short", "store")  # fine
    >>> check_folds(5, 3, "short", "store")
    Traceback (most recent call last):
    ...
    amnetvid_sk.errors.TooFewVideosError: 5-fold cross-validation needs at least 5 labelled videos with features;
    the store 'store' has 3 with a short-term label: pass --cv 3 or fewer (cv=3 in Python), or label ...
    """
    if n_splits <= n_videos:
        return
    fix = (f"pass --cv {n_videos} or fewer (cv={n_videos} in Python), or label and extract more videos"
           if n_videos >= 2 else "label and extract more videos")
    if n_short:  # the videos the model cannot read count too: say so, or the store's count looks wrong
        fix += (f" ({n_short} more hold fewer stored frames than the model reads: --short-videos stretch or "
                "repeat-last keeps them)")
    raise TooFewVideosError(
        f"{n_splits}-fold cross-validation needs at least {n_splits} labelled videos with features; the "
        f"store {str(store)!r} has {n_videos} with a {target}-term label: {fix}")
