"""AMNetVid at the working note's settings: 4 frames, the 3 attention maps rendered JET
on black at 70x70 (9 channels) plus the 4 frame scores, ConvLSTM network (230,937
parameters), MSE, Adam 1e-3, batch 32, up to 20 epochs."""

from sklearn.pipeline import Pipeline

from amnetvid_sk import AttentionSequences, ConvLSTMRegressor


def pipeline(store="store"):
    return Pipeline([
        ("sequences", AttentionSequences(store, n_frames=4, maps="jet", size=70)),
        ("net", ConvLSTMRegressor(module__n_frames=4, module__map_channels=9, module__map_size=70,
                                  random_state=0)),
    ])


param_grid = {
    "net__lr": [1e-3, 3e-4],
    "net__module__dropout": [0.3, 0.5],
}
