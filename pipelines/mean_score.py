"""The working note's baseline: the mean of the memorability scores of every stored frame
of a video (28 in the note, ``amnetvid extract --fps 4`` on 7 s clips).

Nothing is trained; ``MeanScoreRegressor.fit`` only checks its input.
"""

from sklearn.pipeline import Pipeline

from amnetvid_sk import FrameScores, MeanScoreRegressor


def pipeline(store="store"):
    return Pipeline([
        ("frames", FrameScores(store)),
        ("mean", MeanScoreRegressor()),
    ])


# None: every stored frame; 4: the frames the sequence models see
param_grid = {"frames__n_frames": [None, 4]}
