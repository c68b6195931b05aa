"""The working note's "RNN": two LSTM(32) layers over 4 frame scores, min-max scaled
over the training frames."""

from sklearn.pipeline import Pipeline

from amnetvid_sk import FrameMinMaxScaler, FrameScores, ScoreLSTMRegressor


def pipeline(store="store"):
    return Pipeline([
        ("frames", FrameScores(store, n_frames=4)),
        ("scale", FrameMinMaxScaler()),
        ("lstm", ScoreLSTMRegressor(module__n_frames=4, random_state=0)),
    ])


param_grid = {
    "lstm__lr": [1e-3, 3e-4],
    "lstm__module__units": [(32, 32), (64, 64)],
}
