"""What a frame model gives: the output modes (:data:`MAPS_MODES`) and :class:`FrameOutputs`.

Imports nothing of the package (and not torch): the store, the command line's parser and the
extraction check ``maps`` values against the one tuple here.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

__all__ = ["MAPS_MODES", "FrameOutputs"]

#: what a frame model's ``maps`` parameter allows: ``"attention"`` (scores and K maps per frame)
#: or ``"none"`` (scores only: a forward pass, for ResMem without the Grad-CAM backward pass)
MAPS_MODES = ("attention", "none")


class FrameOutputs(NamedTuple):
    """What :meth:`FrameModel.predict_outputs <amnetvid_sk.frame_models.FrameModel.predict_outputs>` gives
    for ``N`` frames.

    Attributes
    ----------
    scores : ndarray of float32, shape (N,)
    maps : ndarray of float32, shape (N, K, h, w), or None
        Non-negative, each map sums to 1; None exactly when the model has ``maps="none"``.
    embeddings : ndarray of float32, shape (N, embedding_dim), or None
        The model's internal state per frame, from the same forward pass; None unless asked for.
    """

    scores: np.ndarray
    maps: Optional[np.ndarray]
    embeddings: Optional[np.ndarray]
