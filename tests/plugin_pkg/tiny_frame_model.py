"""A frame model of a user's own, for tests: importable as ``tiny_frame_model:TinyFrameModel``.

Its folder (tests/plugin_pkg) is put on ``sys.path`` and ``PYTHONPATH`` by the tests,
as a user would install a package, so that joblib and Dask workers import it too.
"""

import hashlib
import os

import torch
import torch.nn.functional as F

from amnetvid_sk.frame_models.base import FrameModel, frames_to_tensor


class TinyFrameModel(FrameModel):
    """Scores: mean brightness times ``gain``; maps: the 14 x 14 grey image, its square, its negative."""

    name = "tiny"
    map_shape = (3, 14, 14)
    preprocessing = "grey14"

    def __init__(self, gain=1.0, device=None, batch_size=4, precision="auto"):
        super().__init__(device=device, batch_size=batch_size, precision=precision)
        self.gain = gain

    def _weights_text(self) -> str:
        return f"gain={float(self.gain)!r}"

    def _fingerprint_parts(self) -> dict:
        return {"weights_sha256": hashlib.sha256(self._weights_text().encode()).hexdigest(),
                "preprocessing": self.preprocessing}

    def _forward_batch(self, frames, *, maps, embeddings):
        grey = (frames_to_tensor(frames, self.device) / 255.0).mean(1, keepdim=True)
        small = F.adaptive_avg_pool2d(grey, self.map_shape[1:])[:, 0]
        frame_maps = torch.stack([small, small * small, 1.0 - small], dim=1) if maps else None
        return grey.mean(dim=(1, 2, 3)) * float(self.gain), frame_maps, None


class UnseededFrameModel(TinyFrameModel):
    """Weights drawn at random in each process, with no parameter to reproduce them."""

    def __init__(self, gain=1.0, device=None, batch_size=4, precision="auto"):
        super().__init__(gain=gain, device=device, batch_size=batch_size, precision=precision)
        self._noise = os.urandom(8).hex()

    def _weights_text(self) -> str:
        return super()._weights_text() + self._noise


class ForgetfulFrameModel(TinyFrameModel):
    """Takes a parameter it keeps no attribute for: breaks the rebuild contract."""

    def __init__(self, colour="red", device=None, batch_size=4, precision="auto"):
        super().__init__(device=device, batch_size=batch_size, precision=precision)


class NotAFrameModel:
    """A class that is not a FrameModel subclass."""
