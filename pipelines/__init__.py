"""The shipped recipes, installed as ``amnetvid_sk.pipelines`` (see pyproject.toml), and what
the rest of the package knows about recipes: how a name finds one (:func:`load_recipe`) and how
a step is found by its role (:func:`reader_step`, :func:`network_step`, :func:`role_params`).

Each recipe module exposes ``pipeline(store)`` and ``param_grid`` and names its own steps; code
that sets a step's parameters finds the step by its role, never by its name.

The names that evaluation, the command line and the demo share about the recipes are defined
here once. This package imports nothing heavy at import time (no scikit-learn, no torch), so
that the command line can list them in its help and its choices while ``amnetvid sql`` stays
quick.

Examples
--------
>>> from amnetvid_sk.pipelines import TABLE1_RECIPES, shipped_recipes
>>> [name for name, _ in TABLE1_RECIPES]
['mean_score', 'score_lstm', 'amnetvid']
>>> set(name for name, _ in TABLE1_RECIPES) <= set(shipped_recipes())
True
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from ..errors import RecipeError, RecipeNotFoundError

#: memorability targets a recipe is fitted to (the ``short_term`` and ``long_term`` labels)
TARGETS = ("short", "long")

#: evaluation protocols: honest K-fold cross-validation, or the working note's (optimistic) one
PROTOCOLS = ("cv", "paper")

#: the working note's Table 1 models, in its column order: (recipe, column title); the first
#: is the baseline that the others' changes are relative to
TABLE1_RECIPES = (
    ("mean_score", "mean frame score"),
    ("score_lstm", "LSTM on scores"),
    ("amnetvid", "AMNetVid ConvLSTM"),
)

#: what the working note's outlook asks for, beyond its Table 1: (recipe, column title); shown
#: as a second block, their changes relative to the same mean-score baseline
BEYOND_RECIPES = (
    ("embedding_ridge", "embedding ridge"),
    ("amnetvid_conv3d", "Conv3D"),
    ("amnetvid_augmented", "AMNetVid + frame subsets"),
    ("stacked", "stacked ensemble"),
)


def shipped_recipes() -> list[str]:
    """Names of the recipes shipped with the package, sorted.

    Examples
    --------
    >>> shipped_recipes()
    ['amnetvid', 'amnetvid_augmented', 'amnetvid_conv3d', 'amnetvid_raw', 'embedding_ridge', 'mean_score', 'score_lstm', 'stacked']
    """
    return sorted(p.stem for p in Path(__file__).parent.glob("*.py") if p.stem != "__init__")


def recipe_dirs() -> list[Path]:
    """Folders searched for a recipe given by name: ./pipelines, then the shipped recipes.

    ./pipelines comes first so that a user's edited copy of a shipped recipe, kept under the
    same name in the folder they work in, is the one a name finds (as in the checkout).
    """
    # this package is amnetvid_sk.pipelines (pyproject.toml maps the top-level pipelines/ folder
    # to it), so its folder holds the shipped recipes in editable and plain installs alike
    shipped = Path(__file__).resolve().parent
    local = Path.cwd() / "pipelines"
    # run from the checkout, ./pipelines is the shipped folder: listed once in messages
    return [shipped] if local.resolve() == shipped.resolve() else [local, shipped]


def shipped_recipe(name: str) -> ModuleType:
    """The recipe ``name`` as shipped with the package, whatever ``./pipelines`` holds: a recipe made
    of other recipes (the stacked ensemble) names its members by this, so that a file in the folder
    a user works in cannot change them unseen.

    Examples
    --------
    >>> shipped_recipe("mean_score").recipe_name
    'mean_score'
    """
    return load_recipe(Path(__file__).resolve().parent / f"{name}.py")


def load_recipe(recipe) -> ModuleType:
    """Load a recipe: a path to a ``.py`` file, or a name such as ``"amnetvid"``.

    A recipe exposes ``pipeline(store) -> sklearn.pipeline.Pipeline`` and ``param_grid``.
    A name is looked up in ``recipe_dirs()``: ``./pipelines/NAME.py`` first, then the recipes
    shipped with the package (``amnetvid_sk.pipelines.shipped_recipes()``).

    Examples
    --------
    >>> recipe = load_recipe("mean_score")
    >>> [type(step).__name__ for _, step in recipe.pipeline("store").steps]
    ['FrameScores', 'MeanScoreRegressor']
    """
    if isinstance(recipe, ModuleType):
        return recipe
    text = str(recipe)
    path = Path(text)
    if not path.suffix:
        for folder in recipe_dirs():
            if (folder / f"{text}.py").is_file():
                path = folder / f"{text}.py"
                break
    if not path.is_file():
        dirs = recipe_dirs()
        known = sorted({p.stem for d in dirs if d.is_dir() for p in d.glob("*.py")} - {"__init__"})
        raise RecipeNotFoundError(f"recipe {text!r} not found; give a path to a .py file or one of {known} "
                                  f"(names are looked up in {', '.join(map(str, dirs))})")
    spec = importlib.util.spec_from_file_location(f"amnetvid_recipe_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for attr in ("pipeline", "param_grid"):
        if not hasattr(module, attr):
            raise RecipeError(f"recipe {str(path)!r} must define {attr!r}")
    module.recipe_name = path.stem
    return module


def _nested(pipeline, prefix: str = ""):
    """``(parameter prefix, step)`` of every step, inside ensembles too, outermost first.

    A step whose ``estimators`` are ``(name, Pipeline)`` pairs (a ``StackingRegressor`` or
    ``VotingRegressor`` over recipes) is followed into each of those pipelines, whose steps are
    then named by their full ``set_params`` path (``stack__amnetvid__sequences``).
    """
    for name, step in pipeline.steps:
        yield prefix + name, step
        for sub_name, sub in getattr(step, "estimators", None) or ():
            if hasattr(sub, "steps"):
                yield from _nested(sub, f"{prefix}{name}__{sub_name}__")


def _reads_store(step) -> bool:
    return "store" in step.get_params(deep=False) and not hasattr(step, "steps")


def ensemble_steps(pipeline) -> list[tuple[str, object]]:
    """``(name, step)`` of every ensemble step (one with ``estimators``: a ``StackingRegressor`` or
    ``VotingRegressor`` over recipes), those nested in other ensembles included.

    Examples
    --------
    >>> from sklearn.ensemble import VotingRegressor
    >>> from sklearn.linear_model import Ridge
    >>> from sklearn.pipeline import Pipeline
    >>> vote = VotingRegressor([("a", Pipeline([("ridge", Ridge())]))])
    >>> [name for name, _ in ensemble_steps(Pipeline([("vote", vote)]))]
    ['vote']
    """
    return [(name, step) for name, step in _nested(pipeline) if hasattr(step, "estimators")]


def store_steps(pipeline) -> list[tuple[str, object]]:
    """``(name, step)`` of every step that reads from the store: those with a ``store`` parameter,
    the steps of the pipelines inside an ensemble step included (named by their ``set_params`` path).

    Examples
    --------
    >>> [name for name, _ in store_steps(load_recipe("amnetvid").pipeline("store"))]
    ['sequences']
    """
    return [(name, step) for name, step in _nested(pipeline) if _reads_store(step)]


def reader_step(pipeline) -> tuple[str, object]:
    """``(name, step)`` of the step that reads the features from the store: the first with a
    ``store`` parameter (a recipe's pipeline takes video ids, so it is the first step; in an
    ensemble of recipes, the first recipe's).

    Examples
    --------
    >>> name, step = reader_step(load_recipe("amnetvid").pipeline("store"))
    >>> type(step).__name__
    'AttentionSequences'
    """
    steps = store_steps(pipeline)
    if not steps:
        raise RecipeError(f"the pipeline {[n for n, _ in pipeline.steps]} has no step that reads the store "
                         "(a step with a 'store' parameter, such as FrameScores or AttentionSequences)")
    return steps[0]


def network_step(pipeline) -> tuple[str, object] | None:
    """``(name, estimator)`` of the final step when it is a network trained by epochs (a skorch
    net), else None (the mean-score baseline trains nothing; an ensemble is not one network).

    Examples
    --------
    >>> name, net = network_step(load_recipe("score_lstm").pipeline("store"))
    >>> type(net).__name__
    'ScoreLSTMRegressor'
    >>> network_step(load_recipe("mean_score").pipeline("store")) is None
    True
    """
    from skorch import NeuralNet

    name, final = pipeline.steps[-1]
    return (name, final) if isinstance(final, NeuralNet) else None


def network_steps(pipeline) -> list[tuple[str, object]]:
    """``(name, net)`` of every network trained by epochs: the final step's, and those of the
    pipelines inside an ensemble step (named by their ``set_params`` path).

    Examples
    --------
    >>> [name for name, _ in network_steps(load_recipe("stacked").pipeline("store"))]
    ['stack__score_lstm__lstm', 'stack__amnetvid__net']
    """
    from skorch import NeuralNet

    return [(name, step) for name, step in _nested(pipeline) if isinstance(step, NeuralNet)]


def role_params(pipeline, *, reader=None, network=None) -> dict:
    """Parameters for ``pipeline.set_params`` given by the role of their step, not its name.

    ``reader`` goes to every step that reads the store (:func:`store_steps`: one in a recipe,
    one per recipe in an ensemble), ``network`` to every network (:func:`network_steps`; left
    out when the pipeline has none).

    Examples
    --------
    >>> pipe = load_recipe("score_lstm").pipeline("store")
    >>> role_params(pipe, reader={"n_frames": 8}, network={"max_epochs": 2})
    {'frames__n_frames': 8, 'lstm__max_epochs': 2}
    """
    out = {}
    for name, _ in store_steps(pipeline) if reader else ():
        out.update({f"{name}__{key}": value for key, value in reader.items()})
    for name, _ in network_steps(pipeline) if network else ():
        out.update({f"{name}__{key}": value for key, value in network.items()})
    return out
