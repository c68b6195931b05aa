"""Estimators: the mean-score baseline and the skorch-wrapped sequence networks.

``MeanScoreRegressor`` is the working note's baseline (the mean of the frame scores; in
:mod:`amnetvid_sk.baseline`, re-exported here).
``ScoreLSTMRegressor`` and ``ConvLSTMRegressor`` are thin skorch ``NeuralNetRegressor``
subclasses around :class:`~amnetvid_sk.networks.ScoreLSTMNet` and
:class:`~amnetvid_sk.networks.AMNetVidNet`. Relative to skorch they change the defaults (the
note's training settings, quiet, early stopping on Spearman over a validation part of the
training data, the GPU when there is one), add ``random_state``, ``precision`` (bfloat16 autocast where the
device computes it natively) and T-frame subsets of longer inputs (:mod:`amnetvid_sk.subsets`), and
accept 1-D ``y``. Training loop and devices are skorch's.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import warnings
from collections.abc import Mapping
from numbers import Integral

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_parameter_constraints
from sklearn.utils.validation import check_array, column_or_1d, validate_data
from skorch import NeuralNet, NeuralNetRegressor
from skorch.callbacks import EpochScoring
from skorch.dataset import ValidSplit, get_len
from skorch.utils import is_dataset

from .baseline import MeanScoreRegressor  # noqa: F401  (its own module, no torch; re-exported here)
from .callbacks import EarlyStoppingOnValid, valid_spearman
from .networks import AMNetVidNet, ScoreLSTMNet
from .precision import EMULATED, PRECISIONS, resolve_precision
from .subsets import TRAIN_SUBSETS, SubsetBatch, mark_batches, subset_dataset

__all__ = ["DEFAULT_DEVICE", "ConvLSTMRegressor", "MeanScoreRegressor", "ScoreLSTMRegressor"]

#: The regressors' default ``device``: "cuda" when torch sees a GPU as this module is
#: imported, else "cpu". An ordinary skorch device string, so skorch's own rules apply
#: (a net pickled on "cuda" loads on a CPU-only machine onto "cpu", with skorch's
#: DeviceWarning).
DEFAULT_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=None)
def _resolved_precision(precision: str, device: str) -> tuple[str, str]:
    # cached: every batch asks, and the answer depends on the process's hardware only
    return resolve_precision(precision, torch.device(device))


# ---------------------------------------------------------------------------------
# skorch regressors


class _SequenceRegressor(NeuralNetRegressor):
    """Shared behaviour of the two skorch regressors (see their docstrings).

    What it adds to skorch: the note's defaults and Spearman early stopping as default
    callbacks, ``random_state``, shuffled training batches, the data checks
    (``_validate_X`` per subclass, ``_validate_y``), and T-frame subsets of longer inputs
    (``train_subsets``, ``test_subsets``: the hooks ``get_iterator`` and ``infer`` hand them
    to :mod:`amnetvid_sk.subsets`). ``device`` is skorch's, with :data:`DEFAULT_DEVICE` as
    its default.
    """

    # Checked with sklearn's validate_parameter_constraints in fit: NeuralNet is not a
    # BaseEstimator (its own _validate_params checks prefixed argument names instead), so
    # neither BaseEstimator._validate_params nor _fit_context applies. skorch's own
    # parameters (lr, max_epochs, module__*, ...) are left to skorch, which has its rules.
    _parameter_constraints = {"random_state": ["random_state"], "train_subsets": [StrOptions(set(TRAIN_SUBSETS)), None],
                              "test_subsets": [Interval(Integral, 1, None, closed="left")],
                              "precision": [StrOptions(set(PRECISIONS))]}

    def __init__(self, module, *, criterion, optimizer, lr, max_epochs, batch_size, train_split,
                 callbacks, verbose, device, random_state, train_subsets=None, test_subsets=1,
                 precision="float32", **kwargs):
        # Keras shuffles the training set each epoch; skorch's DataLoader does not by default
        kwargs.setdefault("iterator_train__shuffle", True)
        super().__init__(
            module,
            criterion=criterion,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_split=train_split,
            callbacks=callbacks,
            verbose=verbose,
            device=device,
            **kwargs,
        )
        self.random_state = random_state
        self.train_subsets = train_subsets
        self.test_subsets = test_subsets
        self.precision = precision

    def _get_param_names(self):
        # skorch lists every public-looking attribute as a parameter, including its private
        # bookkeeping ``_params_to_validate``; clone and set_params must not touch that
        return [k for k in super()._get_param_names() if not k.startswith("_")]

    def get_params(self, deep=True, **kwargs):
        params = super().get_params(deep=deep, **kwargs)
        # before the callbacks are initialised, skorch reports the fresh default callbacks'
        # values even when __init__/set_params stored others (as clone does); fit applies the
        # stored ones, so report those
        params.update({k: v for k, v in vars(self).items() if k.startswith("callbacks__")})
        return params

    # -- callbacks: defaults live here so that set_params(callbacks__early_stopping__patience=3)
    # reaches them, and every net gets its own instances (a mutable default in the signature
    # would be shared by all nets built with it).
    @property
    def _default_callbacks(self):
        return [
            *super()._default_callbacks,
            ("valid_spearman", EpochScoring(valid_spearman, lower_is_better=False,
                                            name="valid_spearman", on_train=False)),
            ("early_stopping", EarlyStoppingOnValid(monitor="valid_spearman", lower_is_better=False,
                                              patience=5, load_best=True)),
        ]

    # -- data
    def _validate_X(self, X, reset: bool):
        raise NotImplementedError

    def _validate_y(self, y, n_samples: int) -> np.ndarray:
        """``y`` as skorch's regression loss takes it: float32, one column of ``n_samples`` rows."""
        name = type(self).__name__
        if y is None:
            raise ValueError(f"{name} requires y to be passed, but the target y is None.")
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        y = column_or_1d(y, warn=True)
        if len(y) != n_samples:
            raise ValueError(f"X holds {n_samples} videos but y holds {len(y)} labels; they must match.")
        if len(y) and (y.min() < 0.0 or y.max() > 1.0):
            warnings.warn(
                f"y has values outside [0, 1] (min {y.min():.3g}, max {y.max():.3g}), but {name}'s "
                f"network ends in a sigmoid, so its predictions stay in (0, 1). Memorability "
                f"scores are in [0, 1]; rescale y otherwise.",
                UserWarning,
                stacklevel=3,
            )
        return y.astype(np.float32).reshape(-1, 1)

    def get_split_datasets(self, X, y=None, **fit_params):
        split = self.train_split
        if self.random_state is not None and isinstance(split, ValidSplit) and split.random_state is None:
            # the split's seed comes from the torch generator that fit seeded
            split = copy.copy(split)
            split.random_state = int(torch.randint(0, 2**31 - 1, (1,)).item())
            original, self.train_split = self.train_split, split
            try:
                return super().get_split_datasets(X, y, **fit_params)
            finally:
                self.train_split = original
        return super().get_split_datasets(X, y, **fit_params)

    def fit(self, X, y, **fit_params):
        """Initialise the network and train it (skorch's loop, early stopping on Spearman).

        With an int ``random_state``, the torch generators are seeded inside a
        ``torch.random.fork_rng`` block, so the weights, the dropout masks, the
        shuffling and the validation split repeat from one fit to the next, and the
        global torch random state is the same after ``fit`` as before.

        Parameters
        ----------
        X : see the class docstring
        y : array-like of shape (n_videos,)
            Memorability scores in [0, 1].
        **fit_params : dict
            Passed to skorch (``NeuralNet.fit``).

        Returns
        -------
        self
        """
        validate_parameter_constraints(self._parameter_constraints,
                                       {k: getattr(self, k) for k in self._parameter_constraints},
                                       caller_name=type(self).__name__)
        self.precision_, note = _resolved_precision(self.precision, self._device())
        if EMULATED in note:
            warnings.warn(f"{type(self).__name__}(precision={self.precision!r}) on {self._device()}: {note}; "
                          "precision='auto' picks float32 here.", UserWarning, stacklevel=2)
        # the data are checked once, in partial_fit (which skorch's fit calls); a refit from
        # scratch learns the number of features anew
        if not self.warm_start and hasattr(self, "n_features_in_"):
            del self.n_features_in_
        if self.random_state is None:
            return super().fit(X, y, **fit_params)
        seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return super().fit(X, y, **fit_params)

    # -- T-frame subsets (amnetvid_sk.subsets): skorch builds every loader here (training,
    # validation, predict) and runs every forward pass through infer
    def get_iterator(self, dataset, training=False):
        dataset, k = subset_dataset(dataset, training=training, train_subsets=self.train_subsets,
                                    test_subsets=self.test_subsets, name=type(self).__name__,
                                    n_frames=getattr(self.module_, "n_frames", None))
        return mark_batches(super().get_iterator(dataset, training=training), k)

    def infer(self, x, **fit_params):
        with self._autocast():
            if isinstance(x, SubsetBatch):  # K subsets per video: one pass over all, mean per video
                return x.mean(super().infer(x.flat(), **fit_params).float())
            return super().infer(x, **fit_params).float()  # the loss in float32, whatever the network ran in

    # -- precision: bfloat16 autocast of the forward pass (the backward follows it); the
    # weights, the loss and the optimiser's state stay float32
    def _device(self) -> str:
        return str(torch.device(self.device)) if self.device is not None else "cpu"

    def _autocast(self):
        precision, _ = _resolved_precision(self.precision, self._device())
        if precision == "float32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(self._device()).type, dtype=torch.bfloat16)

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        """Train further without re-initialising (skorch's ``partial_fit``; ``random_state`` is not applied)."""
        X = self._validate_X(X, reset=not hasattr(self, "n_features_in_"))
        y = self._validate_y(y, get_len(X))
        return super().partial_fit(X, y, classes, **fit_params)

    def predict(self, X) -> np.ndarray:
        """Predicted memorability, shape (n_videos,).

        A video's prediction does not depend on the other videos of ``X`` or their order,
        up to float32 rounding: torch's kernels take other code paths for other batch
        shapes, so the last bits may differ (a few units in the last place, about 1e-7).
        """
        self.check_is_fitted()
        X = self._validate_X(X, reset=False)
        return NeuralNet.predict_proba(self, X).reshape(-1)

    @property
    def predict_proba(self):
        # a regressor has no probabilities (skorch's NeuralNet defines it for every net);
        # hiding it keeps sklearn's meta-estimators and checks from treating it as a classifier
        raise AttributeError(f"{type(self).__name__} is a regressor and has no predict_proba; use predict.")


_DEFAULT_SPLIT = ValidSplit(0.15, stratified=False)


class ScoreLSTMRegressor(_SequenceRegressor):
    """LSTM over the frame scores (the note's "RNN" baseline), a skorch ``NeuralNetRegressor``.

    ``X`` is a float array [n_videos, n_frames] of frame scores (min-max scaled, e.g.
    by ``FrameMinMaxScaler``); ``y`` the memorability scores, 1-D. The network is
    :class:`~amnetvid_sk.networks.ScoreLSTMNet`; its arguments are ``module__*``
    parameters (``module__n_frames``, ``module__units``, ``module__dense``,
    ``module__fusion_dense``).

    Parameters
    ----------
    module : torch.nn.Module class or instance, default=ScoreLSTMNet
    criterion : default=torch.nn.MSELoss
    optimizer : default=torch.optim.Adam
    lr : float, default=1e-3
    max_epochs : int, default=20
    batch_size : int, default=32
    train_split : callable or None, default=ValidSplit(0.15, stratified=False)
        Validation part carved from the training data, scored by Spearman each epoch
        (``valid_spearman``) for early stopping. ``None`` trains on everything for
        ``max_epochs`` epochs (no early stopping).
    callbacks : list of (name, callback) or None, default=None
        Extra callbacks. The defaults (``valid_spearman``: EpochScoring; ``early_stopping``:
        EarlyStopping on valid_spearman, patience 5, best epoch restored from memory, no
        files) are changed with ``set_params(callbacks__early_stopping__patience=10)`` or
        turned off with ``callbacks__early_stopping=None``.
    verbose : int, default=0
        skorch's per-epoch table is printed when 1.
    device : str, torch.device or None, default=DEFAULT_DEVICE
        skorch's: where the module, the criterion and each batch go ("cpu", "cuda:1", ...;
        None leaves them). :data:`DEFAULT_DEVICE` is "cuda" when torch sees a GPU, else "cpu".
        A net pickled on "cuda" loads on a CPU-only machine onto "cpu" (skorch's DeviceWarning).
    random_state : int, RandomState or None, default=None
        Seeds the weights, dropout, shuffling, the validation split and random subsets; two
        fits with the same int give identical predictions on the same CPU with the same number
        of threads (other CPUs, thread counts and GPUs differ in the last float32 bits).
    train_subsets : {None, "random", "uniform"}, default=None
        Which ``module__n_frames`` (T) frames a training video shows when ``X`` holds more
        (all stored): ``"random"`` T in time order, drawn anew per video and epoch;
        ``"uniform"`` the store's uniform pick. None (the note): ``X`` must hold T frames.
    test_subsets : int, default=1
        For such ``X``, predictions (the validation part's too) are the mean over this many
        evenly spread T-frame subsets (1: the uniform pick). See :mod:`amnetvid_sk.subsets`.
    precision : {"auto", "float32", "bfloat16"}, default="float32"
        Precision of the network's forward pass (and so of its backward pass): "bfloat16" runs
        it under bfloat16 autocast, with the weights, the loss and Adam's state in float32;
        "auto" picks bfloat16 only where the device computes it natively (a CUDA GPU with
        bfloat16, a CPU with AVX512-BF16 or AMX) and float32 elsewhere, the frame models' rule
        (:mod:`amnetvid_sk.precision`). The score LSTM is too small to gain from bfloat16.
    **kwargs
        Other skorch parameters (``module__*``, ``iterator_train__*``,
        ``callbacks__*``, ...). ``iterator_train__shuffle`` defaults to True.

    Attributes
    ----------
    module_ : ScoreLSTMNet
        The trained network (best epoch on the validation part).
    history_ : skorch History
        Per epoch ``train_loss``, ``valid_loss``, ``valid_spearman``.
    n_features_in_ : int
        Frames per video seen in ``fit``.
    precision_ : str
        The precision ``fit`` trained in, "float32" or "bfloat16".

    Examples
    --------
    >>> from amnetvid_sk import ScoreLSTMRegressor
    >>> from amnetvid_sk.testing.synthetic import make_score_order_dataset
    >>> X, y = make_score_order_dataset(64)
    >>> reg = ScoreLSTMRegressor(max_epochs=2, random_state=0).fit(X, y)
    >>> reg.predict(X[:3]).shape
    (3,)
    """

    def __init__(self, module=ScoreLSTMNet, *, criterion=torch.nn.MSELoss, optimizer=torch.optim.Adam,
                 lr=1e-3, max_epochs=20, batch_size=32, train_split=_DEFAULT_SPLIT, callbacks=None,
                 verbose=0, device=DEFAULT_DEVICE, random_state=None, train_subsets=None, test_subsets=1,
                 precision="float32", **kwargs):
        super().__init__(module, criterion=criterion, optimizer=optimizer, lr=lr, max_epochs=max_epochs,
                         batch_size=batch_size, train_split=train_split, callbacks=callbacks, verbose=verbose,
                         device=device, random_state=random_state, train_subsets=train_subsets,
                         test_subsets=test_subsets, precision=precision, **kwargs)

    def _validate_X(self, X, reset: bool):
        if is_dataset(X):
            return X
        return validate_data(self, X, reset=reset, dtype=np.float32, order="C")


class ConvLSTMRegressor(_SequenceRegressor):
    """AMNetVid: ConvLSTM over attention maps fused with an LSTM over frame scores (skorch).

    ``X`` is a dict ``{'maps': [n, T, C, H, W], 'scores': float32 [n, T]}`` (the
    output of ``AttentionSequences``; wrap it in ``skorch.helper.SliceDict`` to
    cross-validate on the dict itself); maps are float32, or uint8 JET renders that
    the network divides by 255. ``y`` holds the memorability scores, 1-D. The network
    is :class:`~amnetvid_sk.networks.AMNetVidNet`; its arguments are ``module__*``
    parameters. The defaults fit the note's JET renders (C=9, 70x70); for the raw
    maps set ``module__map_channels=3, module__map_size=14, module__map_scale=196``
    (raw maps sum to 1; scaled by 14*14 they train as fast per epoch as JET renders).
    With ``module__use_maps=False`` or ``module__use_scores=False`` the matching key
    may be left out.

    Parameters
    ----------
    module : torch.nn.Module class or instance, default=AMNetVidNet
    criterion : default=torch.nn.MSELoss
    optimizer : default=torch.optim.Adam
    lr : float, default=1e-3
    max_epochs : int, default=20
    batch_size : int, default=32
    train_split : callable or None, default=ValidSplit(0.15, stratified=False)
        Validation part carved from the training data, scored by Spearman each epoch
        for early stopping. ``None`` trains on everything for ``max_epochs`` epochs.
    callbacks : list of (name, callback) or None, default=None
        Extra callbacks; the defaults are ``valid_spearman`` and ``early_stopping``
        (patience 5, best epoch restored from memory), reachable as
        ``callbacks__early_stopping__patience`` etc.
    verbose : int, default=0
    device : str, torch.device or None, default=DEFAULT_DEVICE
        As in :class:`ScoreLSTMRegressor` (skorch's; "cuda" when torch sees a GPU).
    random_state : int, RandomState or None, default=None
        Seeds weights, dropout, shuffling, the validation split and random subsets
        (identical predictions from two fits on the same CPU with the same number of threads).
    train_subsets, test_subsets : default=None, 1
        As in :class:`ScoreLSTMRegressor`; ``X["maps"]`` and ``X["scores"]`` take the same frames.
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        As in :class:`ScoreLSTMRegressor`: "auto" trains and predicts under bfloat16 autocast
        where the device computes bfloat16 natively, in float32 elsewhere (where bfloat16 is
        emulated it is many times slower). Weights, loss and optimiser state stay float32.
    **kwargs
        Other skorch parameters (``module__filters``, ``module__dropout``,
        ``module__map_size``, ``callbacks__*``, ...).

    Attributes
    ----------
    module_ : AMNetVidNet
        The trained network (best epoch on the validation part).
    history_ : skorch History
        Per epoch ``train_loss``, ``valid_loss``, ``valid_spearman``.
    precision_ : str
        The precision ``fit`` trained in, "float32" or "bfloat16".

    Examples
    --------
    >>> from amnetvid_sk import ConvLSTMRegressor
    >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset
    >>> maps, scores, y = make_moving_peak_dataset(32)
    >>> reg = ConvLSTMRegressor(module__map_channels=3, module__map_size=14,
    ...                         module__map_scale=196, max_epochs=1, random_state=0)
    >>> reg.fit({"maps": maps, "scores": scores}, y).predict({"maps": maps, "scores": scores}).shape
    (32,)
    """

    _keys = ("maps", "scores")

    def __init__(self, module=AMNetVidNet, *, criterion=torch.nn.MSELoss, optimizer=torch.optim.Adam,
                 lr=1e-3, max_epochs=20, batch_size=32, train_split=_DEFAULT_SPLIT, callbacks=None,
                 verbose=0, device=DEFAULT_DEVICE, random_state=None, train_subsets=None, test_subsets=1,
                 precision="auto", **kwargs):
        super().__init__(module, criterion=criterion, optimizer=optimizer, lr=lr, max_epochs=max_epochs,
                         batch_size=batch_size, train_split=train_split, callbacks=callbacks, verbose=verbose,
                         device=device, random_state=random_state, train_subsets=train_subsets,
                         test_subsets=test_subsets, precision=precision, **kwargs)

    def _required_keys(self):
        module = self.module
        if not (isinstance(module, AMNetVidNet) or (isinstance(module, type) and issubclass(module, AMNetVidNet))):
            return None  # a custom module: its forward() decides
        if isinstance(module, AMNetVidNet):
            flags = {"maps": module.use_maps, "scores": module.use_scores}
        else:
            params = self.get_params_for("module")
            flags = {"maps": params.get("use_maps", True), "scores": params.get("use_scores", True)}
        return [k for k in self._keys if flags[k]]

    def _validate_X(self, X, reset: bool):
        if is_dataset(X):
            return X
        name = type(self).__name__
        if not isinstance(X, Mapping):
            shape = getattr(X, "shape", None)
            raise TypeError(
                f"{name} takes X as a dict {{'maps': float32 or uint8 [n, T, C, H, W], 'scores': float32 [n, T]}} "
                f"(the output of AttentionSequences); got {type(X).__name__}"
                f"{f' of shape {shape}' if shape is not None else ''}."
            )
        required = self._required_keys()
        if required is not None:
            unknown = sorted(set(X) - set(self._keys), key=str)
            if unknown:
                raise ValueError(f"X has unknown key(s) {unknown}; the allowed keys are {list(self._keys)}.")
            missing = [k for k in required if k not in X]
            if missing:
                raise ValueError(
                    f"X lacks the key(s) {missing}; the network (module__use_maps / module__use_scores) "
                    f"needs {required}."
                )
            # a disabled branch's input is not needed: do not copy it around
            X = {k: X[k] for k in required}
        if not X:
            raise ValueError(f"X is an empty dict; {name} needs {list(self._keys)}.")
        out = {}
        for k, v in X.items():
            # uint8 maps (JET renders as bytes) stay uint8: the network divides them by 255 per
            # batch, which keeps a large training set 4x smaller in memory
            keep_bytes = k == "maps" and getattr(v, "dtype", None) == np.uint8
            out[k] = check_array(v, dtype=None if keep_bytes else np.float32, ensure_2d=False,
                                 allow_nd=True, order="C", input_name=f"X[{k!r}]")
        lengths = {k: len(v) for k, v in out.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"The arrays of X hold different numbers of videos: {lengths}.")
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.dict = True
        return tags
