"""The skorch base of the sequence regressors: the note's defaults, seeding, precision, compiling, subsets.

:class:`_SequenceRegressor` is what :class:`~amnetvid_sk.estimators.ScoreLSTMRegressor`,
:class:`~amnetvid_sk.estimators.ConvLSTMRegressor` and
:class:`~amnetvid_sk.conv3d.Conv3DRegressor` share: a skorch ``NeuralNetRegressor`` with the
working note's training settings as defaults (MSE, Adam at 1e-3, 20 epochs, batch 32, a 15%
validation part, early stopping on its Spearman), ``random_state``, ``precision`` (bfloat16
autocast where the device computes it natively), ``compile`` (:mod:`amnetvid_sk.compiling`),
T-frame subsets of longer inputs (:mod:`amnetvid_sk.subsets`) and 1-D ``y``. Training and
prediction keep freed memory for the next batch (:mod:`amnetvid_sk.freed_memory`). The training
loop and the devices are skorch's.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import time
import warnings
from collections.abc import Mapping
from numbers import Integral

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, column_or_1d
from skorch import NeuralNetRegressor
from skorch.callbacks import EpochScoring
from skorch.dataset import ValidSplit, get_len
from skorch.utils import to_numpy, to_tensor

from ._validation import Interval, StrOptions, validate_parameter_constraints
from .callbacks import EarlyStoppingOnValid, valid_spearman
from .compiling import TrainingCompiler
from .freed_memory import keep_freed_memory
from .precision import EMULATED, PRECISIONS, resolve_precision
from .subsets import TRAIN_SUBSETS, SubsetBatch, mark_batches, subset_dataset

__all__ = ["DEFAULT_DEVICE"]

#: The regressors' default ``device``: "cuda" when torch sees a GPU as this module is
#: imported, else "cpu". An ordinary skorch device string, so skorch's own rules apply
#: (a net pickled on "cuda" loads on a CPU-only machine onto "cpu", with skorch's
#: DeviceWarning).
DEFAULT_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=None)
def _resolved_precision(precision: str, device: str) -> tuple[str, str]:
    # cached: every batch asks, and the answer depends on the process's hardware only
    return resolve_precision(precision, torch.device(device))


#: The note's validation part of the training data (for early stopping): 15%, not stratified.
_DEFAULT_SPLIT = ValidSplit(0.15, stratified=False)


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
                              "precision": [StrOptions(set(PRECISIONS))],
                              "compile": [StrOptions({"auto"}), "boolean"]}

    def __init__(self, module, *, criterion=torch.nn.MSELoss, optimizer=torch.optim.Adam, lr=1e-3, max_epochs=20,
                 batch_size=32, train_split=_DEFAULT_SPLIT, callbacks=None, verbose=0, device=DEFAULT_DEVICE,
                 random_state=None, train_subsets=None, test_subsets=1, precision="float32", **kwargs):
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
        """skorch's split, with a seeded copy of an unseeded ``ValidSplit`` when ``random_state`` is set."""
        split = self.train_split
        if not split:
            return self.get_dataset(X, y), None
        if self.random_state is not None and isinstance(split, ValidSplit) and split.random_state is None:
            # the split's seed comes from the torch generator that fit seeded
            split = copy.copy(split)
            split.random_state = int(torch.randint(0, 2**31 - 1, (1,)).item())
        dataset = self.get_dataset(X, y)
        return split(dataset, **fit_params) if y is None else split(dataset, y, **fit_params)

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
                return x.mean(self._forward(x.flat(), **fit_params).float())
            return self._forward(x, **fit_params).float()  # the loss in float32, whatever the network ran in

    # -- torch.compile (amnetvid_sk.compiling): the training forward through a compiled function
    # that shares the network's parameters; skorch would put the compiled module in module_,
    # whose state_dict keys (saved in model files) then carry a prefix
    def torch_compile(self, module, name):
        return module

    def _forward(self, x, **fit_params):
        compiler = getattr(self, "_compiler", None)
        compiled = None
        if compiler is not None and self.module_.training and torch.is_grad_enabled():
            compiled = compiler.module_for(self.module_, get_len(x))
        if compiled is None:
            return super().infer(x, **fit_params)
        x = to_tensor(x, device=self.device)
        try:
            if isinstance(x, Mapping):
                return compiled(**self._merge_x_and_fit_params(x, fit_params))
            return compiled(x, **fit_params)
        except Exception as error:  # only a compiler failure is caught: the rest is re-raised
            if not compiler.failed(error):
                raise
            return super().infer(x, **fit_params)

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        super().on_train_begin(net, X=X, y=y, **kwargs)
        batch_size = self.get_params_for("iterator_train").get("batch_size", self.batch_size)
        precision, _ = _resolved_precision(self.precision, self._device())
        self._compiler = TrainingCompiler(self.compile, torch.device(self._device()), batch_size,
                                          type(self).__name__, precision)
        self._epochs_done = 0

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_begin(net, dataset_train=dataset_train, dataset_valid=dataset_valid, **kwargs)
        self._epoch_started = time.perf_counter()

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_end(net, dataset_train=dataset_train, dataset_valid=dataset_valid, **kwargs)
        self._epochs_done += 1
        self._compiler.after_epoch(self._epochs_done, time.perf_counter() - self._epoch_started, self.max_epochs)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        super().on_train_end(net, X=X, y=y, **kwargs)
        self._compiler = None  # a compiled function does not pickle; the next fit builds its own

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_compiler", None)  # a fit interrupted by an error leaves it behind
        return state

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
        with keep_freed_memory():  # each step's large tensors reuse the last step's memory
            return super().partial_fit(X, y, classes, **fit_params)

    def predict(self, X) -> np.ndarray:
        """Predicted memorability, shape (n_videos,).

        A video's prediction does not depend on the other videos of ``X`` or their order,
        up to float32 rounding: torch's kernels take other code paths for other batch
        shapes, so the last bits may differ (a few units in the last place, about 1e-7).
        """
        self.check_is_fitted()
        X = self._validate_X(X, reset=False)
        # skorch's predict_proba loop without its nonlinearity (the network ends in a sigmoid)
        with keep_freed_memory():
            return np.concatenate([to_numpy(batch) for batch in self.forward_iter(X, training=False)]).reshape(-1)

    @property
    def predict_proba(self):
        # a regressor has no probabilities (skorch's NeuralNet defines it for every net);
        # hiding it keeps sklearn's meta-estimators and checks from treating it as a classifier
        raise AttributeError(f"{type(self).__name__} is a regressor and has no predict_proba; use predict.")
