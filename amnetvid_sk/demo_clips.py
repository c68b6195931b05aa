"""The demo's clips: pans and zooms over scikit-image's sample photographs, and varied natural frames.

Each photograph (scikit-image's sample images, which ship inside the package) becomes four
short clips: a pan left-to-right, a pan right-to-left, a zoom in and a zoom out. The two clips of
a pair hold the same frames in opposite order.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["HELD_OUT_IMAGES", "MOTIONS", "TRAIN_IMAGES", "motion_frames", "photo_frames", "write_demo_clips"]

# photographs bundled with scikit-image (no download needed)
TRAIN_IMAGES = (
    "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
    "retina", "camera", "coins", "moon", "cell", "brick",
)
HELD_OUT_IMAGES = ("grass", "gravel")
MOTIONS = ("pan_right", "pan_left", "zoom_in", "zoom_out")


def _photo(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = (img.astype(np.float64) / img.max() * 255).astype(np.uint8)
    return img


def photo_frames(n: int, height: int = 96, width: int = 128) -> np.ndarray:
    """``n`` different crops of scikit-image's sample photographs, uint8 ``[n, height, width, 3]``.

    Varied natural frames for tests and benchmarks of the frame models.
    """
    from PIL import Image

    names = ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry", "coins",
             "hubble_deep_field")
    images = [_photo(name) for name in names]
    frames = []
    for i in range(n):
        img = images[i % len(images)]
        k = i // len(images)  # later rounds over the same photographs take other crops
        h, w = img.shape[:2]
        crop = np.ascontiguousarray(img[k * h // 6: h - (1 - k % 2) * h // 8, k * w // 5: w])
        frames.append(np.asarray(Image.fromarray(crop).resize((width, height))))
    return np.stack(frames)


def _crop_resize(img: np.ndarray, y0, x0, h, w, out_hw) -> np.ndarray:
    from PIL import Image

    crop = img[int(y0): int(y0 + h), int(x0): int(x0 + w)]
    return np.asarray(Image.fromarray(crop).resize((out_hw[1], out_hw[0]), Image.BICUBIC))


def motion_frames(img: np.ndarray, motion: str, n: int, out_hw) -> np.ndarray:
    """Frames of a pan or zoom over a photograph, ``[n, H, W, 3]`` uint8."""
    H, W = img.shape[:2]
    aspect = out_hw[1] / out_hw[0]
    frames = []
    for t in np.linspace(0.0, 1.0, n):
        if motion.startswith("pan"):
            h = min(H, W * 0.6 / aspect)
            w = h * aspect
            x = (W - w) * (t if motion == "pan_right" else 1 - t)
            frames.append(_crop_resize(img, (H - h) / 2, x, h, w, out_hw))
        else:
            s = 1.0 - 0.55 * (t if motion == "zoom_in" else 1 - t)
            h0 = min(H, W / aspect)
            h, w = h0 * s, h0 * s * aspect
            frames.append(_crop_resize(img, (H - h) / 2, (W - w) / 2, h, w, out_hw))
    return np.stack(frames)


def write_demo_clips(folder, n_images: int, n_frames: int, fps: int, height: int, width: int):
    """Write the clips of the first ``n_images`` training photographs (4 each) and the two held-out
    clips into ``folder``; returns ``(train_paths, held_out_paths)``.

    Clips already there are kept as they are, so their features stay valid in the store
    (a rewritten file would be extracted again).
    """
    from .testing.clips import write_clip

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def clip(name, motion):
        path = folder / f"{name}_{motion}.mp4"
        if not path.exists():
            frames = motion_frames(_photo(name), motion, n_frames, (height, width))
            tmp = path.with_name(f".{path.stem}.tmp.mp4")
            write_clip(tmp, frames, fps=fps, codec="h264")
            os.replace(tmp, path)  # a clip is either whole or absent
        return path

    train = [clip(name, motion) for name in TRAIN_IMAGES[:n_images] for motion in MOTIONS]
    held_out = [clip(HELD_OUT_IMAGES[0], "pan_right"), clip(HELD_OUT_IMAGES[1], "zoom_out")]
    return train, held_out
