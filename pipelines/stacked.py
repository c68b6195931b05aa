"""An ensemble of the recipes that read video ids: the mean frame score, the score LSTM,
AMNetVid and the embedding ridge, stacked (scikit-learn's ``StackingRegressor``).

The working note calls AMNetVid "a good potential fit for incorporating in larger ensemble
models". Each member is its shipped recipe, unchanged (a recipe of the same name in
``./pipelines`` does not replace it: pass your own members to :func:`pipeline`): a pipeline from video ids to a
prediction, reading the store itself. The final estimator is a ridge regression (``RidgeCV``,
its penalty chosen by leave-one-out on the members' out-of-fold predictions, ``cv`` folds of the
training videos), so that a member that adds nothing gets a small weight instead of noise. It
needs embeddings in the store (``amnetvid extract --embeddings``) for the embedding ridge.

Each member is trained ``cv + 1`` times per fit (once per inner fold, once on all the training
videos): with the defaults, 6 fits of each network.
"""

import numpy as np
from sklearn.ensemble import StackingRegressor
from sklearn.linear_model import LinearRegression, RidgeCV
from sklearn.pipeline import Pipeline

from amnetvid_sk.pipelines import load_recipe, shipped_recipe

MEMBERS = ("mean_score", "score_lstm", "amnetvid", "embedding_ridge")


def pipeline(store="store", members=None):
    """The stacked ensemble of the shipped recipes :data:`MEMBERS`; ``members``: other recipes
    (names looked up as :func:`~amnetvid_sk.pipelines.load_recipe` does, paths, or modules)."""
    recipes = [shipped_recipe(name) for name in MEMBERS] if members is None else [load_recipe(m) for m in members]
    members = [(recipe.recipe_name, recipe.pipeline(store)) for recipe in recipes]
    return Pipeline([
        ("stack", StackingRegressor(members, final_estimator=RidgeCV(alphas=np.logspace(-3, 3, 7)), cv=5)),
    ])


param_grid = {
    # a ridge over the members, or their plain least-squares blend with non-negative weights
    "stack__final_estimator": [RidgeCV(alphas=np.logspace(-3, 3, 7)), LinearRegression(positive=True)],
}
