"""The working note's baseline: the mean of the memorability scores of every stored frame
of a video (as many as ``amnetvid extract`` stored: ``amnetvid_sk.video.DEFAULT_N_FRAMES`` by
default, the note's count; ``--fps 4`` on the note's 7 s clips gives the same).

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
