"""Pipeline steps that turn video ids into model inputs, read from the feature store.

``X`` for every pipeline is a 1-D array of video ids, so ``cross_val_score``,
``GridSearchCV`` and ``Pipeline.predict`` work on plain id arrays. ``store`` is a
path (not an open connection) so that every step clones and pickles.

``fit`` records what it read: the store as an absolute path (so a fitted
pipeline keeps working after a ``cd``), the frame model's fingerprint and the
sampling. ``transform`` reads exactly those; setting ``store`` after ``fit``
(``predict --store`` for a moved store) points it elsewhere.
"""

from __future__ import annotations

import os
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._validation import Interval, StrOptions, fit_context, validate_parameter_constraints
from .render import render_jet
from .short_videos import SHORT_VIDEOS, read_policy
from .store import FeatureStore

__all__ = ["AttentionSequences", "FrameEmbeddings", "FrameMinMaxScaler", "FrameScores"]


def check_ids(X) -> np.ndarray:
    """Video ids as a 1-D array of str: ``X`` may be a list, a 1-D array or one column.

    Examples
    --------
    >>> from amnetvid_sk.transformers import check_ids
    >>> check_ids([["video10"], ["video11"]])
    array(['video10', 'video11'], dtype=object)
    """
    arr = np.asarray(X, dtype=object)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            f"X must be a 1-D array of video ids (file names without extension); got shape {arr.shape}."
        )
    return np.array([str(x) for x in arr], dtype=object)


# the parameters the store-reading steps share, checked by sklearn when fit runs
_STORE_CONSTRAINTS = {
    "store": [str, os.PathLike],
    "model": [str, None],
    "sampling": [str, None],
}
_SHORT_CONSTRAINT = [StrOptions(set(SHORT_VIDEOS))]


class _StoreReader:
    """What the steps that read from the store share: the store, model and sampling fixed at ``fit``."""

    def _fit_source(self):
        store = FeatureStore(self.store)
        self.store_ = store.path if isinstance(store.path, str) else str(store.path.resolve())  # str: s3://
        self.store_param_ = self.store
        self.model_ = store.resolve_model(self.model)
        self.sampling_ = store.resolve_sampling(self.model_, self.sampling)
        return store

    def _source(self):
        """The store to read in ``transform``: the one resolved at ``fit`` unless ``store`` was set since."""
        fitted = getattr(self, "store_", None)
        if fitted is not None and self.store == getattr(self, "store_param_", None):
            return FeatureStore(fitted)
        return FeatureStore(self.store)


class _StatelessReader(_StoreReader):
    """A store reader that learns nothing (FrameScores, FrameEmbeddings): ``fit`` notes where the
    ids are read from, and ``transform`` also works unfitted, reading what the parameters name."""

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Note the store, model and sampling the ids will be read from; nothing is learned.

        Parameters
        ----------
        X : array-like of str, shape (n_videos,)
            Video ids (not read).
        y : ignored

        Returns
        -------
        self
        """
        self._fit_source()
        return self

    def _features(self) -> tuple[str | None, str | None]:
        """``(model, sampling)`` to read: those fixed at ``fit``, else the parameters (checked here)."""
        if hasattr(self, "model_"):
            return self.model_, self.sampling_
        validate_parameter_constraints(self._parameter_constraints, self.get_params(deep=False), type(self).__name__)
        return self.model, self.sampling

    def __sklearn_is_fitted__(self):
        return True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags


class FrameScores(_StatelessReader, TransformerMixin, BaseEstimator):
    """Video ids -> frame memorability scores ``[n, n_frames]`` from the feature store.

    Stateless: ``fit`` only checks the parameters and notes where the ids were
    read from (``store_``, ``model_``, ``sampling_``), so a fitted pipeline keeps
    reading the same features even after other models or samplings are added
    to the store.

    Parameters
    ----------
    store : str or Path
        Feature store folder.
    n_frames : int, default=None
        Frames per video, picked uniformly from each video's own stored frames. None:
        every stored frame; where videos hold different numbers (clips of different
        lengths), the rows of the shorter ones end in NaN (``MeanScoreRegressor``
        averages each video's own frames).
    model : str, default=None
        Frame model fingerprint (or unique prefix / name). None takes the store's
        only model; with several, an error lists their fingerprints.
    sampling : str, default=None
        Sampling key (``"frames=28"``, ``"fps=4"``). None takes the model's only
        sampling; with several, an error lists them.
    short_videos : {"drop", "stretch", "repeat-last", "error"}, default="drop"
        A video with fewer stored frames than ``n_frames``: left out by evaluation, ``fit``
        and ``predict`` (and an error if it reaches ``transform``), its frames stretched or
        its last frame repeated to ``n_frames``, or an error (see :mod:`amnetvid_sk.short_videos`).

    Attributes
    ----------
    store_ : str
        The store's absolute path at ``fit``.
    model_ : str
        Fingerprint of the frame model read.
    sampling_ : str
        Sampling read.

    Examples
    --------
    >>> import tempfile
    >>> from amnetvid_sk import FrameScores
    >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store
    >>> maps, scores, y = make_moving_peak_dataset(3, n_frames=6, max_speed=1.0)
    >>> store = tempfile.mkdtemp()
    >>> ids = write_synthetic_store(store, maps, scores, y)
    >>> FrameScores(store, n_frames=4).fit_transform(ids).shape
    (3, 4)
    """

    _parameter_constraints = {
        **_STORE_CONSTRAINTS,
        "n_frames": [Interval(Integral, 1, None, closed="left"), None],
        "short_videos": _SHORT_CONSTRAINT,
    }

    def __init__(self, store="store", n_frames=None, model=None, sampling=None, short_videos="drop"):
        self.store = store
        self.n_frames = n_frames
        self.model = model
        self.sampling = sampling
        self.short_videos = short_videos

    def transform(self, X):
        """Frame scores of the videos ``X``, float32 [n_videos, n_frames], in the order of ``X``."""
        model, sampling = self._features()
        short = "nan" if self.n_frames is None else read_policy(self.short_videos)
        scores, _ = self._source().read_arrays(check_ids(X), model=model, n_frames=self.n_frames, maps=False,
                                               sampling=sampling, short=short)
        return scores


class FrameEmbeddings(_StatelessReader, TransformerMixin, BaseEstimator):
    """Video ids -> frame embeddings (the frame model's internal state) from the feature store.

    ``[n, D]`` float32, the mean or max over each video's frames, or ``[n, T, D]``
    with ``pooling=None``. D is the frame model's embedding size (ResMem 2048,
    AMNet 1024). The videos must have been extracted with ``amnetvid extract
    --embeddings``; a video without embeddings is an error naming it. Stateless,
    like :class:`FrameScores`: ``fit`` notes ``store_``, ``model_`` and ``sampling_``.

    Parameters
    ----------
    store : str or Path
        Feature store folder.
    n_frames : int, default=None
        Frames per video, picked uniformly from those stored (the store's one
        rule). None: every stored frame (with ``pooling=None`` all videos must
        have the same number).
    pooling : {"mean", "max"} or None, default="mean"
        How a video's frames are pooled; None keeps them, ``[n, T, D]``.
    model, sampling : str, default=None
        As for :class:`FrameScores`.

    Attributes
    ----------
    store_ : str
        The store's absolute path at ``fit``.
    model_ : str
        Fingerprint of the frame model read.
    sampling_ : str
        Sampling read.

    Examples
    --------
    >>> import numpy as np
    >>> from amnetvid_sk import FeatureStore, FrameEmbeddings
    >>> from amnetvid_sk.store import embeddings_table, frames_table, new_extraction_id
    >>> fs = FeatureStore("store_frame_embeddings", create=True)
    >>> fs.write_model("toy-ab12", "toy", {}, (), maps="none", embedding_dim=3)
    True
    >>> for i, vid in enumerate(["video10", "video11"]):
    ...     eid = new_extraction_id()
    ...     row = {"extraction_id": eid, "video_id": vid, "path": f"/data/{vid}.mp4", "size": 1,
    ...            "mtime": 0.0, "duration": 4.0, "fps": 1.0, "frame_count": 4, "width": 64, "height": 64,
    ...            "model": "toy-ab12", "sampling": "frames=4", "n_frames": 4, "short": False}
    ...     _ = fs.write_extractions([row], frames_table(eid, range(4), range(4), [0.5] * 4),
    ...                              embeddings=embeddings_table(eid, range(4), np.full((4, 3), i)))
    >>> FrameEmbeddings("store_frame_embeddings").fit_transform(["video11", "video10"])
    array([[1., 1., 1.],
           [0., 0., 0.]], dtype=float32)
    >>> FrameEmbeddings("store_frame_embeddings", n_frames=2, pooling=None).fit_transform(["video10"]).shape
    (1, 2, 3)
    """

    _parameter_constraints = {
        **_STORE_CONSTRAINTS,
        "n_frames": [Interval(Integral, 1, None, closed="left"), None],
        "pooling": [StrOptions({"mean", "max"}), None],
    }

    def __init__(self, store="store", n_frames=None, pooling="mean", model=None, sampling=None):
        self.store = store
        self.n_frames = n_frames
        self.pooling = pooling
        self.model = model
        self.sampling = sampling

    def transform(self, X):
        """Embeddings of the videos ``X``, float32 ``[n, D]`` (``[n, T, D]`` unpooled), in the order of ``X``."""
        model, sampling = self._features()
        return self._source().read_embeddings(check_ids(X), model=model, n_frames=self.n_frames,
                                              sampling=sampling, pooling=self.pooling)


class FrameMinMaxScaler(TransformerMixin, BaseEstimator):
    """Min-max scale frame scores with one minimum and maximum over all training frames.

    The working note scaled the frame scores this way (not per column as
    ``sklearn.preprocessing.MinMaxScaler`` would), so that the order of values
    across frames is kept.

    Attributes
    ----------
    data_min_, data_max_ : float
        Smallest and largest training frame score.

    Examples
    --------
    >>> import numpy as np
    >>> from amnetvid_sk import FrameMinMaxScaler
    >>> FrameMinMaxScaler().fit_transform(np.array([[0.5, 0.7], [0.6, 0.9]]))
    array([[0.  , 0.5 ],
           [0.25, 1.  ]], dtype=float32)
    """

    # no parameters; the table says so, and fit_context checks it once per fit
    _parameter_constraints: dict = {}

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the smallest and largest frame score of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_videos, n_frames)
        y : ignored

        Returns
        -------
        self : FrameMinMaxScaler
        """
        X = np.asarray(X, dtype=np.float64)
        # NaN: a frame a shorter clip does not have (FrameScores with n_frames=None)
        self.data_min_ = float(np.nanmin(X))
        self.data_max_ = float(np.nanmax(X))
        return self

    def transform(self, X):
        """``X`` scaled with the training range, float32; constant training scores give zeros."""
        check_is_fitted(self)
        X = np.asarray(X, dtype=np.float64)
        span = self.data_max_ - self.data_min_
        # constant training scores: map everything to 0 rather than dividing by zero
        out = (X - self.data_min_) / span if span > 0 else np.zeros_like(X)
        return out.astype(np.float32)


class AttentionSequences(_StoreReader, TransformerMixin, BaseEstimator):
    """Video ids -> the AMNetVid network's input: attention maps and frame scores.

    Output is a dict ``{"maps": ..., "scores": float32 [n, n_frames]}`` that skorch
    hands to the network's ``forward(maps, scores)``:

    - ``maps="jet"`` (the working note): each of the K=3 maps rendered JET on black
      at ``size`` x ``size``, stacked to 9 channels, uint8 ``[n, T, 9, size, size]``
      (kept as uint8 to hold 8,000 videos in ~1 GB; the network divides by 255);
    - ``maps="raw"``: the maps as stored, float32 ``[n, T, 3, 14, 14]``, the same
      information at a fraction of the size.

    Frame scores are min-max scaled with one minimum and maximum learned in
    ``fit`` over the training frames.

    Parameters
    ----------
    store : str or Path
        Feature store folder.
    n_frames : int, default=4
        Frames per video, picked uniformly from each video's own stored frames.
    maps : {"jet", "raw"}, default="jet"
    size : int, default=70
        Rendered map size for ``maps="jet"``.
    model : str, default=None
        Frame model fingerprint; None takes the store's only model.
    sampling : str, default=None
        Sampling key (``"frames=28"``, ``"fps=4"``); None takes the model's only
        sampling; with several, an error lists them.
    short_videos : {"drop", "stretch", "repeat-last", "error"}, default="drop"
        A video with fewer stored frames than ``n_frames``, as for :class:`FrameScores`.

    Attributes
    ----------
    store_ : str
        The store's absolute path at ``fit``.
    model_ : str
        Fingerprint of the frame model read.
    sampling_ : str
        Sampling read.
    score_min_, score_max_ : float
        Bounds of the training frame scores.

    Examples
    --------
    >>> import tempfile
    >>> from amnetvid_sk import AttentionSequences
    >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store
    >>> maps, scores, y = make_moving_peak_dataset(3)
    >>> store = tempfile.mkdtemp()
    >>> ids = write_synthetic_store(store, maps, scores, y)
    >>> Xt = AttentionSequences(store, maps="raw").fit_transform(ids)
    >>> Xt["maps"].shape, Xt["scores"].shape
    ((3, 4, 3, 14, 14), (3, 4))
    >>> AttentionSequences(store, size=70).fit_transform(ids)["maps"].shape  # JET renders, uint8
    (3, 4, 9, 70, 70)
    """

    _parameter_constraints = {
        **_STORE_CONSTRAINTS,
        "n_frames": [Interval(Integral, 1, None, closed="left")],
        "maps": [StrOptions({"jet", "raw"})],
        "size": [Interval(Integral, 1, None, closed="left")],
        "short_videos": _SHORT_CONSTRAINT,
    }

    def __init__(self, store="store", n_frames=4, maps="jet", size=70, model=None, sampling=None,
                 short_videos="drop"):
        self.store = store
        self.n_frames = n_frames
        self.maps = maps
        self.size = size
        self.model = model
        self.sampling = sampling
        self.short_videos = short_videos

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Note the store, model and sampling read, and the range of the training frame scores.

        Parameters
        ----------
        X : array-like of str, shape (n_videos,)
            Video ids of the training videos.
        y : ignored

        Returns
        -------
        self : AttentionSequences
        """
        ids = check_ids(X)
        store = self._fit_source()
        scores, _ = store.read_arrays(ids, model=self.model_, n_frames=self.n_frames, maps=False,
                                      sampling=self.sampling_, short=read_policy(self.short_videos))
        self.score_min_ = float(scores.min())
        self.score_max_ = float(scores.max())
        return self

    def transform(self, X):
        """The network's input for the videos ``X``: ``{"maps": ..., "scores": ...}`` (see the class)."""
        check_is_fitted(self)
        ids = check_ids(X)
        scores, maps = self._source().read_arrays(ids, model=self.model_, n_frames=self.n_frames,
                                                  sampling=self.sampling_, short=read_policy(self.short_videos))
        span = self.score_max_ - self.score_min_
        scaled = (scores - self.score_min_) / span if span > 0 else np.zeros_like(scores)
        if self.maps == "jet":
            maps = render_jet(maps, size=self.size)
        return {"maps": maps, "scores": scaled.astype(np.float32)}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags
