"""Frame-accurate sampling of video frames with PyAV.

Definitions used throughout:

* **Frame index**: the position of a frame in presentation order, ``0`` for the
  first frame shown. It is computed from timestamps, not from decode order: an
  index of the stream is built by demuxing every packet (reading, no decoding)
  and sorting their presentation timestamps (pts); frame ``i`` is the frame
  whose pts is the ``i``-th smallest. This holds for B-frames (decode order is
  not presentation order), for variable frame rate, and for containers that do
  not record a frame count (WebM usually has ``stream.frames == 0``).
* **Timestamp**: ``(pts - pts of frame 0) * time_base``, seconds since the
  first frame.
* **Duration**: from the first frame's pts to the end of the last frame (its
  pts plus its duration).

Rotation: the display rotation of the file (display matrix side data, or the
legacy ``rotate`` tag) is applied, so frames come back as a player shows them.
Mirroring in a display matrix is not applied.

Where things are:

* :mod:`~amnetvid_sk.video.container`: opening a file (every failure a
  :class:`~amnetvid_sk.errors.VideoDecodeError`) and the packet index;
* :mod:`~amnetvid_sk.video.reader`: decoding chosen frames, seeking or not;
  rotation; the time limit per video (:class:`VideoTimeLimitError`);
* :mod:`~amnetvid_sk.video.info`: :class:`VideoInfo` and :func:`video_info`;
* :mod:`~amnetvid_sk.video.sampling`: which frames to take
  (:func:`sample_frames`, :class:`SampledFrames`) and the keys that name a
  sampling in the feature store (:func:`sampling_key`,
  :func:`parse_sampling_key`, :data:`DEFAULT_N_FRAMES`);
* :mod:`~amnetvid_sk.video.images`: still images as one frame each
  (:func:`read_image`, :data:`IMAGE_SUFFIXES`).
"""

from .images import IMAGE_SUFFIXES, ImageReadError, is_image_path, read_image
from .info import VideoInfo, video_info
from .reader import VideoTimeLimitError
from .sampling import DEFAULT_N_FRAMES, SampledFrames, parse_sampling_key, sample_frames, sampling_key

__all__ = [
    "DEFAULT_N_FRAMES",
    "IMAGE_SUFFIXES",
    "ImageReadError",
    "SampledFrames",
    "VideoInfo",
    "VideoTimeLimitError",
    "is_image_path",
    "parse_sampling_key",
    "read_image",
    "sample_frames",
    "sampling_key",
    "video_info",
]
