"""Estimators: the mean-score baseline and the skorch-wrapped sequence networks.

``MeanScoreRegressor`` is the working note's baseline (the mean of the frame scores; in
:mod:`amnetvid_sk.baseline`, re-exported here).
``ScoreLSTMRegressor`` and ``ConvLSTMRegressor`` are thin skorch ``NeuralNetRegressor``
subclasses around :class:`~amnetvid_sk.networks.ScoreLSTMNet` and
:class:`~amnetvid_sk.networks.AMNetVidNet`; what they share (the note's training settings as
defaults, quiet, early stopping on Spearman over a validation part of the training data, the GPU
when there is one, ``random_state``, ``precision``, ``compile``, T-frame subsets of longer
inputs, 1-D ``y``) is their base class in :mod:`amnetvid_sk.sequence_regressor`. Each class here
adds its network, its input checks and its tags.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sklearn.utils.validation import check_array, validate_data
from skorch.utils import is_dataset

from .baseline import MeanScoreRegressor  # noqa: F401  (its own module, no torch; re-exported here)
from .networks import AMNetVidNet, ScoreLSTMNet
from .sequence_regressor import DEFAULT_DEVICE, _SequenceRegressor

__all__ = ["DEFAULT_DEVICE", "ConvLSTMRegressor", "MeanScoreRegressor", "ScoreLSTMRegressor"]


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
    compile : {"auto", True, False}, default=False
        Run the training steps through ``torch.compile`` (:mod:`amnetvid_sk.compiling`): True
        from the first batch; "auto" after the first epoch of a float32 fit on a GPU, when the
        epochs left would take more than 10 minutes eagerly. The score LSTM's steps are too
        small to gain. Where no compiler can run (no C++ compiler for a CPU) training is eager,
        with a warning for True.
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

    def __init__(self, module=ScoreLSTMNet, **kwargs):
        # every other parameter and its default is _SequenceRegressor's (the note's settings)
        super().__init__(module, **kwargs)

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
    compile : {"auto", True, False}, default=False
        ``torch.compile`` of the training steps (:mod:`amnetvid_sk.compiling`), opt-in: True
        from the first batch; "auto" once a float32 fit on a GPU shows in its first epoch that
        the rest would take more than 10 minutes eagerly (a CPU fit, and a bfloat16 one, stays
        eager: compiled, they measured no faster on a CPU). It fuses the gate arithmetic
        between the convolutions (``bench/bench_training.py`` prints the eager and compiled
        rates). Where no compiler can run (no C++ compiler for a CPU) training is eager, with
        a warning for True. Compiled training draws dropout masks with Inductor's own
        generator: repeatable with ``random_state``, but not the eager fit's masks.
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

    def __init__(self, module=AMNetVidNet, *, precision="auto", **kwargs):
        # every other parameter and its default is _SequenceRegressor's (the note's settings)
        super().__init__(module, precision=precision, **kwargs)

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
