"""The MediaEval baseline the best systems built on: deep frame features and a linear regressor.

Each video's frame embeddings (``amnetvid extract --embeddings``: ResMem's pooled ResNet-152
features, 2048 values per frame; AMNet's pooled layer-3 features, 1024) are averaged over its
stored frames, standardised, and fed to ``RidgeCV``. Ridge rather than ``SVR``: with thousands
of videos and 2048 correlated features a ridge fit takes a fraction of a second, and ``RidgeCV``
picks its penalty by efficient leave-one-out inside each training fold, so the grid below only
searches the pooling and the frame count.
"""

import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from amnetvid_sk import FrameEmbeddings


def pipeline(store="store"):
    return Pipeline([
        ("embeddings", FrameEmbeddings(store, pooling="mean")),
        ("scale", StandardScaler()),
        ("ridge", RidgeCV(alphas=np.logspace(-1, 5, 13))),
    ])


# None: every stored frame; 4: the frames the sequence models see
param_grid = {
    "embeddings__pooling": ["mean", "max"],
    "embeddings__n_frames": [None, 4],
}
