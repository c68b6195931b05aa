"""Which frames to take (:func:`sample_frames`) and the keys that name a sampling in the store.

Sampling, exactly one of:

* ``n_frames=n``: indices ``np.linspace(0, frame_count - 1, n).round()``.
* ``fps=r``: sample times ``t_k = k / r`` for every ``k >= 0`` with
  ``t_k < duration``; each time takes **the last frame whose timestamp is
  ``<= t_k``**, the frame on screen at that moment. At constant frame rate
  ``f`` this is index ``floor(k * f / r)``; at variable frame rate a frame held
  on screen longer is picked for every sample time it covers. Times are compared
  exactly (rational arithmetic), so a sample time that falls on a frame's
  timestamp picks that frame.

Short clips: when a clip has fewer distinct frames than sample points (fewer
than ``n_frames`` frames, or several sample times on the same frame), every
distinct frame is returned once, in order; nothing is padded or repeated, and
``SampledFrames.short`` is True with ``n_requested`` the number asked for.
"""

from __future__ import annotations

import bisect
import math
import numbers
import os
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .._validation import validate_params
from ..sampling_keys import DEFAULT_N_FRAMES, check_sampling, parse_sampling_key, sampling_key
from .info import VideoInfo, make_info
from .reader import Deadline, check_time_limit, open_reader, rotation_of, to_rgb

__all__ = ["DEFAULT_N_FRAMES", "SampledFrames", "parse_sampling_key", "sample_frames", "sampling_key"]

@dataclass
class SampledFrames:
    """Frames sampled from one video, with where they come from.

    Attributes
    ----------
    frames : ndarray of uint8, shape (n, H, W, 3)
        RGB frames as displayed (rotation applied).
    indices : ndarray of int64, shape (n,)
        Frame indices (positions in presentation order), strictly increasing.
    timestamps : ndarray of float64, shape (n,)
        Seconds from the first frame.
    n_requested : int
        Number of sample points asked for: ``n_frames``, or the number of
        sample times ``k / fps`` within the clip.
    info : VideoInfo
        The video's metadata.
    short : bool
        True when the clip had fewer distinct frames than ``n_requested``;
        then every distinct frame is returned once and ``n < n_requested``.
    n_decoded : int
        Frames the decoder produced to get these (diagnostics: seeking keeps
        it small).
    n_seeks : int
        Seeks made.

    Examples
    --------
    >>> import os, tempfile
    >>> from amnetvid_sk.testing.clips import write_clip, numbered_frames
    >>> from amnetvid_sk.video import sample_frames
    >>> path = write_clip(os.path.join(tempfile.mkdtemp(), "a.mp4"), numbered_frames(3, 48, 64))
    >>> s = sample_frames(path, n_frames=4)
    >>> s.indices.tolist(), s.short, s.n_requested
    ([0, 1, 2], True, 4)
    """

    frames: np.ndarray
    indices: np.ndarray
    timestamps: np.ndarray
    n_requested: int
    info: VideoInfo
    short: bool
    n_decoded: int = 0
    n_seeks: int = 0

    def __len__(self) -> int:
        return len(self.indices)


def plan_indices(index, n_frames, rate):
    """Frame indices for the sampling parameters; returns (indices, n_requested)."""
    count = len(index.pts)
    if n_frames is not None:
        if count < n_frames:
            return np.arange(count, dtype=np.int64), n_frames
        return np.linspace(0, count - 1, n_frames).round().astype(np.int64), n_frames
    duration = index.duration
    n_times = max(math.ceil(duration * rate), 1)
    start, tb = index.pts[0], index.time_base
    chosen = []
    for k in range(n_times):
        target = start + Fraction(k) / rate / tb  # sample time in stream time base, exact
        chosen.append(max(bisect.bisect_right(index.pts, target) - 1, 0))
    return np.unique(np.asarray(chosen, dtype=np.int64)), n_times


@validate_params({"path": [str, os.PathLike], "seek": ["boolean"]}, prefer_skip_nested_validation=True)
def sample_frames(
    path: str | os.PathLike,
    n_frames: int | None = None,
    fps: float | None = None,
    *,
    seek: bool = True,
    time_limit: float | None = None,
) -> SampledFrames:
    """Decode a sample of a video's frames, frame-accurately.

    Parameters
    ----------
    path : str or path-like
        A video file (any container and codec FFmpeg reads).
    n_frames : int, optional
        Take this many frames spread uniformly over the clip: indices
        ``np.linspace(0, frame_count - 1, n_frames).round()``.
    fps : float, optional
        Take one frame every ``1 / fps`` seconds from t=0: for each time
        ``t < duration``, the last frame whose timestamp is ``<= t``. Exactly one
        of ``n_frames`` and ``fps`` must be given.
    seek : bool, default=True
        Seek to the keyframe before each wanted frame and decode only from
        there. ``False`` decodes every frame from the start (the baseline).
        Both return the same frames.
    time_limit : float, optional
        Seconds this call may spend opening, indexing and decoding the file
        (wall-clock, from the call on); None: no limit. Checked between packets
        and between frames, since a decoding thread cannot be stopped from
        outside; past it a :class:`~amnetvid_sk.video.reader.VideoTimeLimitError`
        is raised.

    Returns
    -------
    sample : SampledFrames
        The RGB frames (rotation applied), their indices and timestamps. A clip
        with fewer distinct frames than asked for returns each frame it has once
        and sets ``short=True``; it is never padded.

    Raises
    ------
    ValueError
        Bad sampling parameters.
    VideoDecodeError
        The file is missing, empty, truncated, corrupt, a still image, or not a
        video; the message names the file and the cause.
        :class:`~amnetvid_sk.video.reader.VideoTimeLimitError`, a subclass, when
        ``time_limit`` ran out.

    Examples
    --------
    >>> import os, tempfile
    >>> from amnetvid_sk.testing.clips import write_clip, numbered_frames, read_number
    >>> from amnetvid_sk.video import sample_frames
    >>> path = write_clip(os.path.join(tempfile.mkdtemp(), "a.mp4"), numbered_frames(175, 48, 64))
    >>> s = sample_frames(path, fps=4)          # a 7 s clip at 25 fps
    >>> len(s), s.indices[:3].tolist(), s.timestamps[:3].tolist()
    (28, [0, 6, 12], [0.0, 0.24, 0.48])
    >>> [read_number(f) for f in s.frames[:3]]
    [0, 6, 12]
    """
    n_frames, rate = check_sampling(n_frames, fps)
    name = os.fspath(path)
    deadline = Deadline(name, check_time_limit(time_limit, "time_limit", "sample_frames"))
    with open_reader(name, deadline) as reader:
        index = reader.index
        indices, n_requested = plan_indices(index, n_frames, rate)
        layout = {}  # rotation and size, fixed by the first frame returned

        def convert(frame):
            if not layout:
                layout["rotation"] = rotation_of(reader.first_frame, reader.stream)
                layout["size"] = (frame.height, frame.width)
            return to_rgb(frame, layout["rotation"], layout["size"])

        frames = np.stack(reader.read(indices.tolist(), seek=bool(seek), convert=convert))
        height, width = layout["size"]
        info = make_info(name, index, reader.stream, layout["rotation"], width, height)
    start, tb = index.pts[0], index.time_base
    timestamps = np.array([float((index.pts[i] - start) * tb) for i in indices], dtype=np.float64)
    return SampledFrames(
        frames=frames,
        indices=indices,
        timestamps=timestamps,
        n_requested=int(n_requested),
        info=info,
        short=len(indices) < n_requested,
        n_decoded=reader.n_decoded,
        n_seeks=reader.n_seeks,
    )
