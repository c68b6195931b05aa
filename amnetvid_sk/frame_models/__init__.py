"""Frame models (skeleton while the package is split)."""

from .base import *  # noqa: F401,F403
from .base import (  # noqa: F401
    FRAME_MODEL_NAMES, IMAGENET_MEAN, IMAGENET_STD, FrameModel, check_frames, frames_to_tensor, hash_file,
    hash_state_dict, make_fingerprint, make_frame_model, normalise_maps, resize_frames, resolve_device,
)
