"""What a video file holds: :class:`VideoInfo` and :func:`video_info`."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .reader import open_reader, rotation_of

__all__ = ["VideoInfo", "make_info", "video_info"]


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a video file once its packets are indexed.

    Attributes
    ----------
    path : str
        The path as given.
    size : int
        File size in bytes.
    mtime : float
        Modification time (seconds since the epoch), as ``os.stat`` says.
    duration : float
        Seconds from the first frame to the end of the last frame.
    fps : float
        Mean frame rate, ``frame_count / duration``.
    frame_count : int
        Number of frames, counted from the stream's packets.
    width, height : int
        Frame size as displayed, that is after rotation.
    rotation : int
        Display rotation in degrees counterclockwise, one of 0, 90, 180, 270
        (a phone's ``rotate=90`` tag, clockwise, is 270 here).

    Examples
    --------
    >>> import os, tempfile
    >>> from amnetvid_sk.testing.clips import write_clip, numbered_frames
    >>> from amnetvid_sk.video import video_info
    >>> path = write_clip(os.path.join(tempfile.mkdtemp(), "a.mp4"), numbered_frames(50, 48, 64))
    >>> info = video_info(path)
    >>> info.frame_count, info.duration, info.width, info.height
    (50, 2.0, 64, 48)
    """

    path: str
    size: int
    mtime: float
    duration: float
    fps: float
    frame_count: int
    width: int
    height: int
    rotation: int


def make_info(name, index, stream, rotation, width, height) -> VideoInfo:
    st = os.stat(name)
    duration = float(index.duration)
    count = len(index.pts)
    # the mean rate of the frames indexed: the containers' own figures disagree
    # (WebM reports the nominal rate of a variable-frame-rate clip)
    fps = count / duration if duration > 0 else 0.0
    if rotation in (90, 270):
        width, height = height, width
    return VideoInfo(
        path=name,
        size=st.st_size,
        mtime=st.st_mtime,
        duration=duration,
        fps=fps,
        frame_count=count,
        width=int(width),
        height=int(height),
        rotation=rotation,
    )


def video_info(path: str | os.PathLike) -> VideoInfo:
    """Read a video's metadata: frame count, duration, size, rotation.

    The frame count and duration come from the stream's packets (demuxed, not
    decoded); the first frame is decoded for the rotation and to check that the
    stream decodes at all.

    Parameters
    ----------
    path : str or path-like
        A video file (any container and codec FFmpeg reads).

    Returns
    -------
    info : VideoInfo

    Raises
    ------
    VideoDecodeError
        The file is missing, empty, truncated, corrupt, a still image, or not a
        video; the message names the file and the cause.

    Examples
    --------
    >>> import os, tempfile
    >>> from amnetvid_sk.testing.clips import write_clip, numbered_frames
    >>> from amnetvid_sk.video import video_info
    >>> out = os.path.join(tempfile.mkdtemp(), "a.webm")
    >>> path = write_clip(out, numbered_frames(25, 48, 64), codec="vp9")
    >>> info = video_info(path)
    >>> info.frame_count, info.fps
    (25, 25.0)
    """
    name = os.fspath(path)
    with open_reader(name) as reader:
        height, width = reader.read([0], seek=True, convert=lambda f: (f.height, f.width))[0]
        rotation = rotation_of(reader.first_frame, reader.stream)
        return make_info(name, reader.index, reader.stream, rotation, width, height)

