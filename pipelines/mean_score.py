"""The working note's baseline: the mean of 28 frame memorability scores per video.

Nothing is trained; ``MeanScoreRegressor.fit`` only checks its input.
"""

from sklearn.pipeline import Pipeline

from amnetvid_sk import FrameScores, MeanScoreRegressor


def pipeline(store="store"):
    return Pipeline([
        ("frames", FrameScores(store, n_frames=28)),
        ("mean", MeanScoreRegressor()),
    ])


param_grid = {"frames__n_frames": [4, 8, 28]}
