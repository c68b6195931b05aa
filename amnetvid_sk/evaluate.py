"""Evaluation: Spearman cross-validation, grid search and the working note's Table 1.

Recipes (found by name) and their steps (found by role) are :mod:`amnetvid_sk.pipelines`'
business; their names are re-exported here. Parameters are checked by scikit-learn's
``validate_params``, so a bad value gets scikit-learn's message (an ``InvalidParameterError``,
both a ValueError and a TypeError) naming the parameter, what is allowed and what was given.

Two protocols:

- ``"cv"`` (default, honest): K-fold over the labelled videos; the networks carve
  their early-stopping validation out of the training folds only.
- ``"paper"`` (the note's, optimistic): one random 85/15 split, three rounds of
  training, in each round the best epoch *chosen on the test part*, mean of the
  three rounds. Offered to reproduce the note's Table 1, labelled as optimistic.
"""

from __future__ import annotations

import os
import time
import warnings
from numbers import Integral, Real
from types import ModuleType

import numpy as np
from sklearn.pipeline import Pipeline

from .pipelines import (  # noqa: F401  (recipes by name and steps by role: re-exported here)
    BEYOND_RECIPES, PROTOCOLS, TABLE1_RECIPES, TARGETS, load_recipe, network_step, network_steps, reader_step,
    recipe_dirs, role_params,
)
from . import training_data, uncertainty
from ._validation import Interval, StrOptions, validate_params
from .dask_backend import dask_client_class
from .runs import CVResult, write_run  # noqa: F401  (CVResult re-exported)
from .tables import (  # noqa: F401  (the table layout: re-exported here)
    BASELINE, NOTE_TABLE1, RELATIVE_BASE_MIN, Table1, change_text, note_table1_text,
)
from .training_data import TrainingSet, check_folds, training_set  # noqa: F401  (re-exported)

# Parameter constraints shared by the functions below, in scikit-learn's terms. Every function
# is checked with prefer_skip_nested_validation=False: the recipes' estimators and the store
# receive values that nothing here has checked, so their own checks must still run.
_STORE = [str, os.PathLike]
_RECIPE = [str, os.PathLike, ModuleType]
_TARGET = [StrOptions(set(TARGETS))]
_FOLDS = [Interval(Integral, 2, None, closed="left")]
_N_JOBS = [Integral, None]
_SET_PARAMS = [dict, None]

labelled_data = validate_params({"store": _STORE, "target": _TARGET, "pipeline": [Pipeline, None],
                                 "return_left_out": ["boolean"]},
                                prefer_skip_nested_validation=False)(training_data.labelled_data)


def _recipe_pipeline(module: ModuleType, store, set_params) -> Pipeline:
    """A new pipeline of the recipe ``module`` on ``store``, with ``set_params`` set on it."""
    pipe = module.pipeline(store)
    if set_params:
        pipe.set_params(**set_params)
    return pipe


def _n_frames(pipeline):
    return reader_step(pipeline)[1].get_params().get("n_frames")


def _fold_scores(oof: uncertainty.OutOfFold) -> np.ndarray:
    """Spearman within each fold (or round) of ``oof``; NaN where undefined (the callers count those)."""
    from scipy.stats import ConstantInputWarning

    from .metrics import spearman

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        for f in np.unique(oof.fold):
            mask = oof.fold == f
            out.append(spearman(oof.label[mask], oof.prediction[mask]))
    return np.asarray(out, dtype=float)


def _inner_folds(pipeline) -> int:
    """The most folds any step splits its own training data into (a stacking ensemble's ``cv``), else 0."""
    from .pipelines import ensemble_steps

    inner = [step.get_params(deep=False).get("cv") for _, step in ensemble_steps(pipeline)]
    return max([c for c in inner if isinstance(c, Integral)] or [0])


def _check_cv(pipeline, data: TrainingSet, cv: int, store) -> None:
    """Before any fit of a ``cv``-fold evaluation: the folds, and an ensemble's inner folds within the
    smallest training part; then the warnings about the data (a refused run is one line)."""
    check_folds(cv, len(data), data.target, store, n_short=len(data.short))
    smallest = len(data) - -(-len(data) // cv)  # the training part of the largest test fold
    _check_inner_folds(pipeline, smallest, f"the smallest training part of {cv}-fold cross-validation",
                       f"pass --cv {cv + 1} or more (more videos per training part)")
    data.warn()


def _check_inner_folds(pipeline, n_train: int, what: str, fix: str) -> None:
    """Refuse, before any fit, an ensemble whose inner split cannot be made on ``n_train`` videos."""
    from .errors import TooFewVideosError

    inner = _inner_folds(pipeline)
    if inner > n_train:
        raise TooFewVideosError(
            f"the ensemble splits each training set into {inner} inner folds, but {what} holds only {n_train} "
            f"videos: {fix}, or set its inner folds lower (set_params(stack__cv={max(2, n_train)}) in Python)")


@validate_params({"recipe": _RECIPE, "store": _STORE, "target": _TARGET, "cv": _FOLDS, "n_jobs": _N_JOBS,
                  "random_state": ["random_state"], "write": ["boolean"], "set_params": _SET_PARAMS},
                 prefer_skip_nested_validation=False)
def cross_validate(recipe, store="store", target="short", cv=5, n_jobs=1, random_state=0,
                   write=True, set_params=None) -> CVResult:
    """Honest K-fold cross-validation of a recipe, scored by Spearman.

    Parameters
    ----------
    recipe : str, Path or module
        See :func:`load_recipe`.
    store : str or Path, default="store"
    target : {"short", "long"}, default="short"
    cv : int, default=5
        Number of folds (shuffled with ``random_state``).
    n_jobs : int, default=1
        Folds fitted in parallel (joblib).
    write : bool, default=True
        Also append the fold scores to the store's ``results`` table.
    set_params : dict, default=None
        Parameters set on the pipeline before fitting; :func:`role_params` names them by the
        role of their step (``role_params(pipe, network={"max_epochs": 1})``).

    Examples
    --------
    Not run: it needs a store with extracted videos and imported labels.

    >>> res = cross_validate("mean_score", store="store", target="short")  # doctest: +SKIP
    >>> res.mean, res.std  # doctest: +SKIP
    """
    from sklearn.model_selection import KFold, cross_val_predict

    module = load_recipe(recipe)
    pipe = _recipe_pipeline(module, store, set_params)
    data = training_set(store, target, pipe, warn=False)
    _check_cv(pipe, data, cv, store)
    folds = KFold(n_splits=cv, shuffle=True, random_state=random_state)
    splits = list(folds.split(data.ids))
    started = time.perf_counter()
    pred = cross_val_predict(pipe, data.ids, data.y, cv=splits, n_jobs=n_jobs)
    fold = np.empty(len(data), dtype=np.int64)
    for i, (_, test) in enumerate(splits):
        fold[test] = i
    oof = uncertainty.OutOfFold.from_arrays(data.ids, fold, pred, data.y)
    result = CVResult(module.recipe_name, target, "cv", _fold_scores(oof), dict(set_params or {}),
                      time.perf_counter() - started, _n_frames(pipe), len(data), data.left_out,
                      predictions=oof, short=data.short)
    if write:
        write_run(store, result, [len(a) for a, _ in splits], [len(b) for _, b in splits])
    return result


@validate_params({"recipe": _RECIPE, "store": _STORE, "target": _TARGET,
                  "rounds": [Interval(Integral, 1, None, closed="left")],
                  "test_size": [Interval(Real, 0, 1, closed="neither")], "random_state": ["random_state"],
                  "write": ["boolean"], "set_params": _SET_PARAMS}, prefer_skip_nested_validation=False)
def paper_protocol(recipe, store="store", target="short", rounds=3, test_size=0.15, random_state=0,
                   write=True, set_params=None) -> CVResult:
    """The working note's protocol (optimistic): one random 85/15 split, ``rounds``
    trainings, the best epoch of each chosen on the test part, one score per round.

    For a recipe without a network (the mean-score baseline) each round is the
    same: Spearman on the test part.

    Examples
    --------
    Not run: it needs a store with extracted videos and imported labels, and trains networks.

    >>> res = paper_protocol("amnetvid", store="store", target="short")  # doctest: +SKIP
    """
    from sklearn.model_selection import train_test_split
    from skorch.dataset import Dataset
    from skorch.helper import predefined_split

    from .callbacks import EarlyStoppingOnValid

    module = load_recipe(recipe)
    first = _recipe_pipeline(module, store, set_params)
    data = training_set(store, target, first, warn=False)
    if len(data) < 4:
        from .errors import TooFewVideosError

        raise TooFewVideosError(f"the note's protocol splits the labelled videos {1 - test_size:.0%}/{test_size:.0%} "
                                f"and needs at least 4 with features; the store {str(store)!r} has {len(data)} with "
                                f"a {target}-term label: label and extract more videos")
    ids_tr, ids_te, y_tr, y_te = train_test_split(data.ids, data.y, test_size=test_size, random_state=random_state)
    _check_inner_folds(first, len(ids_tr), "the training part of the note's split", "label and extract more videos")
    data.warn()
    started = time.perf_counter()
    preds = []
    for r in range(rounds):
        pipe = _recipe_pipeline(module, store, set_params)
        network = network_step(pipe)
        if network is None:
            pipe.fit(ids_tr, y_tr)
            preds.append(pipe.predict(ids_te))
            continue
        final = network[1]
        features = pipe[:-1].fit(ids_tr, y_tr)
        Xtr, Xte = features.transform(ids_tr), features.transform(ids_te)
        # the note's choice: validate every epoch on the test part, keep the best epoch (its weights
        # are restored at the end of training, so the predictions kept are that epoch's)
        final.set_params(
            train_split=predefined_split(Dataset(Xte, y_te.astype(np.float32).reshape(-1, 1))),
            callbacks__early_stopping=EarlyStoppingOnValid(
                monitor="valid_spearman", lower_is_better=False, patience=final.max_epochs + 1, threshold=0,
                load_best=True),
            random_state=(final.random_state or 0) + r,
        )
        final.fit(Xtr, y_tr)
        preds.append(final.predict(Xte))
    oof = uncertainty.OutOfFold.from_arrays(np.tile(ids_te, rounds), np.repeat(np.arange(rounds), len(ids_te)),
                                            np.concatenate([np.ravel(p) for p in preds]), np.tile(y_te, rounds))
    result = CVResult(module.recipe_name, target, "paper", _fold_scores(oof), dict(set_params or {}),
                      time.perf_counter() - started, _n_frames(first), len(data), data.left_out,
                      predictions=oof, short=data.short)
    if write:
        write_run(store, result, [len(ids_tr)] * rounds, [len(ids_te)] * rounds)
    return result


@validate_params({"recipe": _RECIPE, "store": _STORE, "target": _TARGET, "cv": _FOLDS, "n_jobs": _N_JOBS,
                  "backend": [StrOptions({"dask"}), None], "scheduler": [str, None],
                  "random_state": ["random_state"], "set_params": _SET_PARAMS},
                 prefer_skip_nested_validation=False)
def grid_search(recipe, store="store", target="short", cv=5, n_jobs=1, backend=None, scheduler=None,
                random_state=0, set_params=None):
    """``GridSearchCV`` over the recipe's ``param_grid``, scored by Spearman.

    ``backend="dask"`` with a ``scheduler`` address runs the fits on a Dask cluster
    through joblib. Returns the fitted search and its results sorted by mean Spearman
    (a list of dicts).

    Examples
    --------
    Not run: it needs a store with extracted videos and imported labels.

    >>> search, rows = grid_search("mean_score", store="store", target="short")  # doctest: +SKIP
    """
    import joblib
    from sklearn.model_selection import GridSearchCV, KFold

    from .metrics import spearman_scorer

    module = load_recipe(recipe)
    pipe = _recipe_pipeline(module, store, set_params)
    data = training_set(store, target, pipe, warn=False)
    ids, y = data.ids, data.y
    _check_cv(pipe, data, cv, store)
    search = GridSearchCV(pipe, module.param_grid, scoring=spearman_scorer, n_jobs=n_jobs,
                          cv=KFold(n_splits=cv, shuffle=True, random_state=random_state),
                          error_score="raise", refit=True)
    if backend == "dask":
        with dask_client_class()(scheduler), joblib.parallel_config(backend="dask"):
            search.fit(ids, y)
    else:
        search.fit(ids, y)
    res = search.cv_results_
    rows = [
        {"params": res["params"][i], "mean_spearman": float(res["mean_test_score"][i]),
         "std_spearman": float(res["std_test_score"][i]), "rank": int(res["rank_test_score"][i])}
        for i in range(len(res["params"]))
    ]
    rows.sort(key=lambda r: r["rank"])
    return search, rows


_TABLE_PARAMS = {"store": _STORE, "protocol": [StrOptions(set(PROTOCOLS))], "cv": _FOLDS,
                 "n_jobs": _N_JOBS, "random_state": ["random_state"], "targets": [list, tuple],
                 "set_params": _SET_PARAMS, "progress": ["boolean"]}


def _run_table(columns, store, protocol, cv, n_jobs, random_state, targets, set_params, progress) -> dict:
    """``{(recipe, target): CVResult}`` for every recipe of ``columns`` on every target."""
    from scipy.stats import ConstantInputWarning

    results = {}
    for target in targets:
        for name, label in columns:
            params = (set_params or {}).get(name)
            if progress:
                print(f"  {target}-term: {label} ...", flush=True)
            with warnings.catch_warnings():
                # epochs with constant predictions on tiny sets say so once per epoch: too chatty here
                warnings.simplefilter("ignore", category=ConstantInputWarning)
                if protocol == "cv":
                    res = cross_validate(name, store, target, cv=cv, n_jobs=n_jobs,
                                         random_state=random_state, set_params=params)
                else:
                    res = paper_protocol(name, store, target, random_state=random_state, set_params=params)
            results[(name, target)] = res
    return results


@validate_params(_TABLE_PARAMS, prefer_skip_nested_validation=False)
def table1(store="store", protocol="cv", cv=5, n_jobs=1, random_state=0, targets=TARGETS,
           set_params=None, progress=True) -> Table1:
    """Run the three models of the note's Table 1 on both targets.

    ``set_params`` maps a recipe name to parameters set on its pipeline (for example fewer
    epochs for a quick run: ``{name: role_params(load_recipe(name).pipeline(store),
    network={"max_epochs": 5})}``).

    Examples
    --------
    Not run: it needs a store with extracted videos and imported labels, and trains networks.

    >>> print(table1("store", protocol="cv").format())  # doctest: +SKIP
    """
    results = _run_table(TABLE1_RECIPES, store, protocol, cv, n_jobs, random_state, targets, set_params, progress)
    return Table1(protocol, results)


@validate_params({**_TABLE_PARAMS, "baseline": [Table1, None]}, prefer_skip_nested_validation=False)
def beyond_note(store="store", protocol="cv", cv=5, n_jobs=1, random_state=0, targets=TARGETS,
                set_params=None, progress=True, baseline=None) -> Table1:
    """Run the models the note's outlook asks for (:data:`BEYOND_RECIPES`): the second block.

    The embedding ridge, the Conv3D comparison, AMNetVid trained on random frame subsets and the
    stacked ensemble, laid out like Table 1; their changes are relative to the mean-score
    baseline of ``baseline`` (the Table 1 of the same store, folds and seed), when given.
    ``set_params`` as for :func:`table1`. The store needs embeddings (``extract --embeddings``).

    Examples
    --------
    Not run: it needs a store with extracted videos, embeddings and labels, and trains networks.

    >>> first = table1("store")  # doctest: +SKIP
    >>> print(beyond_note("store", baseline=first).format())  # doctest: +SKIP
    """
    results = _run_table(BEYOND_RECIPES, store, protocol, cv, n_jobs, random_state, targets, set_params, progress)
    return Table1(protocol, results, columns=BEYOND_RECIPES, title="Beyond the note",
                  baseline=None if baseline is None else baseline.results)
