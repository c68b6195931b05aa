"""Frames going into a frame model: checks, still images, resizing, tensors; maps coming out.

What every frame model shares on its way in (a uint8 ``[N, H, W, 3]`` batch, or
image paths read with :func:`~amnetvid_sk.video.images.read_image`; PIL
resizing; the tensor on the device) and on its way out (maps normalised to sum 1).
:class:`~amnetvid_sk.frame_models.FrameModel` uses these; a frame model of your
own may too (``frames_to_tensor``, ``resize_frames``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..video.images import read_image

__all__ = ["check_frames", "frame_groups", "frames_to_tensor", "normalise_maps", "resize_frames"]


def resize_frames(frames: np.ndarray, size) -> np.ndarray:
    """Resize uint8 RGB frames ``[B,H,W,3]`` to ``size = (height, width)`` with PIL's bilinear filter.

    PIL rather than torch: the published models were evaluated on images resized
    by PIL (torchvision's ``Resize`` on PIL images), 8-bit in and 8-bit out; torch's
    antialiased resize differs by up to one grey level per pixel. It costs a few
    milliseconds per frame, little next to the networks.
    """
    from PIL import Image

    height, width = int(size[0]), int(size[1])
    if frames.shape[1:3] == (height, width):
        return frames
    out = np.empty((frames.shape[0], height, width, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[i] = np.asarray(Image.fromarray(frame).resize((width, height), Image.BILINEAR))
    return out


def frames_to_tensor(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 ``[B,H,W,3]`` numpy frames -> contiguous float32 ``[B,3,H,W]`` tensor in 0..255 on ``device``.

    The uint8 array is moved first (4x less to copy to a GPU), then converted.
    Contiguous NCHW: ResMem's forward calls ``.view()`` on a conv output, which
    fails on the channels-last strides a permuted ``[B,H,W,3]`` array would carry.
    """
    t = torch.from_numpy(np.ascontiguousarray(frames)).to(device)
    return t.permute(0, 3, 1, 2).float().contiguous()


def check_frames(frames) -> np.ndarray:
    """Validate a batch of RGB frames: a uint8 array of shape ``[N, H, W, 3]``."""
    if isinstance(frames, (list, tuple)) and any(_is_path(f) for f in frames):
        bad = [f for f in frames if not _is_path(f)][:3]
        raise ValueError(
            "frames must be a uint8 RGB array of shape [N, H, W, 3], an image path or a list of image paths; "
            f"got a list mixing paths with {', '.join(type(b).__name__ for b in bad)}."
        )
    if not isinstance(frames, np.ndarray):
        frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(
            f"frames must be a uint8 RGB array of shape [N, H, W, 3]; got dtype {frames.dtype}. "
            "Convert with (x * 255).round().clip(0, 255).astype(np.uint8) if the values are 0..1 floats."
        )
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"frames must be a uint8 RGB array of shape [N, H, W, 3]; got shape {frames.shape}. "
            "Stack single frames with frames[None]."
        )
    if frames.shape[0] > 0 and (frames.shape[1] < 1 or frames.shape[2] < 1):
        raise ValueError(f"frames must have a height and width of at least 1 pixel; got shape {frames.shape}.")
    return np.ascontiguousarray(frames)


def normalise_maps(maps: torch.Tensor) -> torch.Tensor:
    """Make maps ``[B,K,h,w]`` float32, non-negative and each sum to 1.

    A map with nothing positive (all zero after clipping, or non-finite)
    carries no location information: it becomes uniform, ``1 / (h*w)`` per cell.
    """
    maps = maps.float()
    maps = torch.nan_to_num(maps, nan=0.0, posinf=0.0, neginf=0.0).clamp_(min=0.0)
    total = maps.sum(dim=(-2, -1), keepdim=True)
    uniform = torch.full_like(maps, 1.0 / (maps.shape[-2] * maps.shape[-1]))
    ok = total > 0
    return torch.where(ok, maps / torch.where(ok, total, torch.ones_like(total)), uniform)


def _is_path(x) -> bool:
    return isinstance(x, (str, os.PathLike))


def frame_groups(frames, input_size=None) -> tuple[int, list]:
    """The frames to run, as ``(n, [(indices, uint8 array [B,H,W,3]), ...])`` in one or more groups.

    ``frames`` is a uint8 array ``[N, H, W, 3]`` (one group), or an image path (str or
    Path), or a list of image paths: still images, one frame each, of any sizes.
    Images of one size form one group. Images of different sizes are first resized
    to ``input_size`` ``(height, width)`` when the model gives one (the size its own
    preprocessing resizes every frame to, with :func:`resize_frames`; then the
    model's resize is a no-op and the outputs are the same as one image at a
    time), so that they share batches; without it each size is its own group.

    Examples
    --------
    >>> import numpy as np
    >>> from amnetvid_sk.frame_models.frames import frame_groups
    >>> n, groups = frame_groups(np.zeros((2, 8, 8, 3), np.uint8))
    >>> n, [(i.tolist(), g.shape) for i, g in groups]
    (2, [([0, 1], (2, 8, 8, 3))])
    """
    if _is_path(frames):
        frames = [frames]
    if isinstance(frames, (list, tuple)) and frames and all(_is_path(f) for f in frames):
        images = [read_image(Path(f)) for f in frames]
        shapes = sorted({im.shape for im in images})
        if len(shapes) > 1 and input_size is not None:
            images = [resize_frames(im[None], input_size)[0] for im in images]
            shapes = [images[0].shape]
        groups = []
        for shape in shapes:
            idx = np.array([i for i, im in enumerate(images) if im.shape == shape], dtype=np.int64)
            groups.append((idx, np.stack([images[i] for i in idx])))
        return len(images), groups
    frames = check_frames(frames)
    return frames.shape[0], [(np.arange(frames.shape[0]), frames)]
