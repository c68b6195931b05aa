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

import json
import os
import time
import uuid
import warnings
from dataclasses import dataclass, field
from numbers import Integral, Real
from types import ModuleType

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from .pipelines import (  # noqa: F401  (recipes by name and steps by role: re-exported here)
    BEYOND_RECIPES, PROTOCOLS, TABLE1_RECIPES, TARGETS, load_recipe, network_step, network_steps, reader_step,
    recipe_dirs, role_params,
)
from .tables import (  # noqa: F401  (the table layout: re-exported here)
    BASELINE, NOTE_TABLE1, RELATIVE_BASE_MIN, Table1, change_text, note_table1_text,
)

class _SortedOptions(frozenset):
    """Allowed values listed in sorted order: scikit-learn lists them in set order, which
    changes with the hash seed, so the same mistake would get a different message each run."""

    def __iter__(self):
        return iter(sorted(frozenset.__iter__(self)))


# Parameter constraints shared by the functions below, in scikit-learn's terms. Every function
# is checked with prefer_skip_nested_validation=False: the recipes' estimators and the store
# receive values that nothing here has checked, so their own checks must still run.
_STORE = [str, os.PathLike]
_RECIPE = [str, os.PathLike, ModuleType]
_TARGET = [StrOptions(_SortedOptions(TARGETS))]
_FOLDS = [Interval(Integral, 2, None, closed="left")]
_N_JOBS = [Integral, None]
_SET_PARAMS = [dict, None]


def _features_of(pipeline) -> dict:
    """``model`` and ``sampling`` of the step that reads the store."""
    params = reader_step(pipeline)[1].get_params(deep=False) if pipeline is not None else {}
    return {"model": params.get("model"), "sampling": params.get("sampling")}


@validate_params({"store": _STORE, "target": _TARGET, "pipeline": [Pipeline, None],
                  "return_left_out": ["boolean"]}, prefer_skip_nested_validation=False)
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


def check_folds(n_splits: int, n_videos: int, target: str, store) -> None:
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
    from .errors import TooFewVideosError

    if n_splits <= n_videos:
        return
    fix = (f"pass --cv {n_videos} or fewer (cv={n_videos} in Python), or label and extract more videos"
           if n_videos >= 2 else "label and extract more videos")
    raise TooFewVideosError(
        f"{n_splits}-fold cross-validation needs at least {n_splits} labelled videos with features; the "
        f"store {str(store)!r} has {n_videos} with a {target}-term label: {fix}")


@dataclass
class CVResult:
    """Spearman per fold of one recipe on one target."""

    recipe: str
    target: str
    protocol: str
    scores: np.ndarray
    params: dict = field(default_factory=dict)
    seconds: float = 0.0
    n_frames: int | None = None  # frames per video the pipeline read
    n_videos: int = 0  # labelled videos with features, the ones used
    left_out: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))  # labelled, no features

    @property
    def mean(self) -> float:
        return float(np.nanmean(self.scores)) if len(self.scores) else float("nan")

    @property
    def std(self) -> float:
        return float(np.nanstd(self.scores)) if len(self.scores) else float("nan")


def _n_frames(pipeline):
    return reader_step(pipeline)[1].get_params().get("n_frames")


def _write_results(store, result: CVResult, n_train, n_test) -> None:
    from .store import FeatureStore

    run_id = uuid.uuid4().hex
    rows = [
        {
            "run_id": run_id, "recipe": result.recipe, "target": result.target, "protocol": result.protocol,
            "fold": int(i), "spearman": float(s), "n_train": int(a), "n_test": int(b),
            "params": json.dumps(result.params, default=str, sort_keys=True),
        }
        for i, (s, a, b) in enumerate(zip(result.scores, n_train, n_test))
    ]
    FeatureStore(store).write_results(rows)


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
    from sklearn.model_selection import KFold, cross_validate as sk_cross_validate

    from .metrics import spearman_scorer

    module = load_recipe(recipe)
    pipe = module.pipeline(store)
    if set_params:
        pipe.set_params(**set_params)
    ids, y, left_out = labelled_data(store, target, pipeline=pipe, return_left_out=True)
    check_folds(cv, len(ids), target, store)
    folds = KFold(n_splits=cv, shuffle=True, random_state=random_state)
    started = time.perf_counter()
    out = sk_cross_validate(pipe, ids, y, cv=folds, scoring=spearman_scorer, n_jobs=n_jobs,
                            error_score="raise")
    splits = list(folds.split(ids))
    result = CVResult(module.recipe_name, target, "cv", np.asarray(out["test_score"], dtype=float),
                      dict(set_params or {}), time.perf_counter() - started, _n_frames(pipe), len(ids), left_out)
    if write:
        _write_results(store, result, [len(a) for a, _ in splits], [len(b) for _, b in splits])
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

    from .metrics import spearman

    module = load_recipe(recipe)
    first = module.pipeline(store)
    if set_params:
        first.set_params(**set_params)
    ids, y, left_out = labelled_data(store, target, pipeline=first, return_left_out=True)
    ids_tr, ids_te, y_tr, y_te = train_test_split(ids, y, test_size=test_size, random_state=random_state)
    started = time.perf_counter()
    scores = []
    for r in range(rounds):
        pipe = module.pipeline(store)
        if set_params:
            pipe.set_params(**set_params)
        network = network_step(pipe)
        if network is None:
            pipe.fit(ids_tr, y_tr)
            scores.append(spearman(y_te, pipe.predict(ids_te)))
            continue
        final = network[1]
        features = pipe[:-1].fit(ids_tr, y_tr)
        Xtr, Xte = features.transform(ids_tr), features.transform(ids_te)
        # the note's choice: validate every epoch on the test part, keep the best epoch
        final.set_params(
            train_split=predefined_split(Dataset(Xte, y_te.astype(np.float32).reshape(-1, 1))),
            callbacks__early_stopping=None,
            random_state=(final.random_state or 0) + r,
        )
        final.fit(Xtr, y_tr)
        per_epoch = [h.get("valid_spearman", np.nan) for h in final.history]
        scores.append(float(np.nanmax(per_epoch)) if np.isfinite(per_epoch).any() else float("nan"))
    result = CVResult(module.recipe_name, target, "paper", np.asarray(scores, dtype=float),
                      dict(set_params or {}), time.perf_counter() - started, _n_frames(pipe), len(ids), left_out)
    if write:
        _write_results(store, result, [len(ids_tr)] * rounds, [len(ids_te)] * rounds)
    return result


@validate_params({"recipe": _RECIPE, "store": _STORE, "target": _TARGET, "cv": _FOLDS, "n_jobs": _N_JOBS,
                  "backend": [StrOptions(_SortedOptions({"dask"})), None], "scheduler": [str, None],
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
    pipe = module.pipeline(store)
    if set_params:
        pipe.set_params(**set_params)
    ids, y = labelled_data(store, target, pipeline=pipe)
    check_folds(cv, len(ids), target, store)
    search = GridSearchCV(pipe, module.param_grid, scoring=spearman_scorer, n_jobs=n_jobs,
                          cv=KFold(n_splits=cv, shuffle=True, random_state=random_state),
                          error_score="raise", refit=True)
    if backend == "dask":
        try:
            from distributed import Client
        except ImportError as exc:
            from .errors import MissingDependencyError

            raise MissingDependencyError(
                f'backend="dask" needs Dask distributed ({exc}): pip install "amnetvid-sk[dask]"') from exc

        with Client(scheduler), joblib.parallel_config(backend="dask"):
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


_TABLE_PARAMS = {"store": _STORE, "protocol": [StrOptions(_SortedOptions(PROTOCOLS))], "cv": _FOLDS,
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
