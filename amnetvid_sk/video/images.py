"""Still images as frames: reading photographs so that frame models can score them.

A still image is one frame: :func:`read_image` gives it as uint8 RGB ``[H, W, 3]``,
oriented as a viewer shows it (the EXIF orientation tag applied) and with any
alpha channel, palette or grey levels turned into plain RGB. The frame models'
``predict`` takes image paths through it, and ``amnetvid score photo.jpg``
recognises images by :data:`IMAGE_SUFFIXES`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import AmnetvidError

__all__ = ["IMAGE_SUFFIXES", "ImageReadError", "is_image_path", "read_image"]

#: file name endings (lower case, with the dot) read as still images. GIF is not one: an animated
#: GIF is a video (see :data:`~amnetvid_sk.video_ids.VIDEO_EXTENSIONS`), so no suffix is in both.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class ImageReadError(AmnetvidError, ValueError):
    """An image file is missing, empty, truncated or not an image.

    Also a ``ValueError``, like the other input errors of the package.
    """

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path!r}: {reason}")


def is_image_path(path) -> bool:
    """Whether a path's name ends in one of :data:`IMAGE_SUFFIXES` (case-insensitive).

    Examples
    --------
    >>> from amnetvid_sk.video.images import is_image_path
    >>> is_image_path("holiday/Beach.JPG"), is_image_path("clip.mp4")
    (True, False)
    """
    return Path(os.fspath(path)).suffix.lower() in IMAGE_SUFFIXES


def read_image(path) -> np.ndarray:
    """One still image as a uint8 RGB frame ``[H, W, 3]``.

    The EXIF orientation tag is applied (a portrait photograph taken with a
    rotated camera comes back upright, as viewers show it); RGBA, LA and
    palette images with transparency are composited over white (what a
    viewer shows on a white page); greyscale, CMYK and 16-bit images are
    converted to 8-bit RGB. An animated WebP gives its first frame.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    ndarray of uint8, shape (H, W, 3)

    Raises
    ------
    ImageReadError
        (also a ``ValueError``) the file is missing or PIL cannot decode it; the
        message names the file.

    Examples
    --------
    >>> import numpy as np
    >>> from PIL import Image
    >>> from amnetvid_sk.video.images import read_image
    >>> Image.fromarray(np.full((4, 6), 200, np.uint8)).save("grey.png")   # greyscale, 6 x 4
    >>> frame = read_image("grey.png")
    >>> frame.shape, frame.dtype, int(frame[0, 0, 2])
    ((4, 6, 3), dtype('uint8'), 200)
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(os.fspath(path))
    if not path.is_file():
        raise ImageReadError(path, "no such file" if not path.exists() else "not a file")
    try:
        with Image.open(path) as img:
            img.load()  # decode now: a truncated file fails here, inside the try
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        # PIL reports a truncated or corrupt file as OSError, a broken header as SyntaxError
        raise ImageReadError(path, f"not an image PIL can decode ({type(exc).__name__}: {exc})") from None


def _to_rgb(img) -> np.ndarray:
    from PIL import Image

    if img.mode == "P":
        # a palette may carry transparency: expand it first so that it is composited like RGBA
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    elif img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grey: PIL's convert("RGB") clips at 255; scale to 8 bits instead
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if a.max() > 255 else 255.0
        grey = np.clip(np.round(a * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=-1))
    out = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(out)
