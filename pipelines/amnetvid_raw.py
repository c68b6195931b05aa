"""AMNetVid on the raw 3x14x14 attention maps instead of JET renders: the same
information, about 75x less input, much faster to train. The maps sum to 1 (values
near 1/196); ``map_scale=196`` brings them to order 1, which the network needs to
learn as well as from JET renders."""

from sklearn.pipeline import Pipeline

from amnetvid_sk import AttentionSequences, ConvLSTMRegressor


def pipeline(store="store"):
    return Pipeline([
        ("sequences", AttentionSequences(store, n_frames=4, maps="raw")),
        ("net", ConvLSTMRegressor(module__n_frames=4, module__map_channels=3, module__map_size=14,
                                  module__map_scale=196.0, random_state=0)),
    ])


param_grid = {
    "net__lr": [1e-3, 3e-4],
    "net__module__filters": [(20, 10, 5), (32, 16, 8)],
}
