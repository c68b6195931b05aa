"""The working note's 3D-convolutional comparison: AMNetVid's inputs and training (4 frames, the 3
attention maps rendered JET on black at 70x70, 9 channels, plus the 4 frame scores; MSE, Adam 1e-3,
batch 32, up to 20 epochs) with 3D convolutions over (time, height, width) in place of the ConvLSTMs
(Conv3DNet: 230,443 parameters, AMNetVid 230,937). The grid tries a temporal kernel of 1, which
leaves the frames' order to the Dense layers, against 3."""

from sklearn.pipeline import Pipeline

from amnetvid_sk import AttentionSequences
from amnetvid_sk.conv3d import Conv3DRegressor


def pipeline(store="store"):
    return Pipeline([
        ("sequences", AttentionSequences(store, n_frames=4, maps="jet", size=70)),
        ("net", Conv3DRegressor(module__n_frames=4, module__map_channels=9, module__map_size=70,
                                random_state=0)),
    ])


param_grid = {
    "net__lr": [1e-3, 3e-4],
    "net__module__kernel_size": [(3, 3, 3), (1, 3, 3)],
}
