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

Sampling (:func:`sample_frames`), exactly one of:

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

Rotation: the display rotation of the file (display matrix side data, or the
legacy ``rotate`` tag) is applied, so frames come back as a player shows them.
Mirroring in a display matrix is not applied.

Decoding: with ``seek=True`` (default) the decoder seeks to the keyframe at or
before each wanted frame and decodes forward to it; when the next wanted frame
lies before the next keyframe it keeps decoding instead of seeking again. With
``seek=False`` it decodes every frame from the start up to the last wanted
one, the baseline of ``bench/bench_sampling.py``. Both return the same frames.
Every decoded frame is identified by its pts, so a seek that lands elsewhere
than asked is noticed: landing early costs extra decoding, landing late is
retried with other seek targets and earlier keyframes, and a file that cannot
seek is decoded from the start. Files whose pts are decode-order stand-ins
(AVI with B-frames) are decoded from the start and their frames counted.
"""

from __future__ import annotations

import bisect
import logging
import math
import numbers
import os
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from ..errors import VideoDecodeError

__all__ = ["VideoInfo", "SampledFrames", "video_info", "sample_frames", "sampling_key"]

logger = logging.getLogger(__name__)

# FFmpeg opens still images as one-frame videos through these demuxers; a
# memorability model must not score a photograph as a video by accident.
_IMAGE_FORMATS = {"image2", "image2pipe"}


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


# --------------------------------------------------------------------------- parameters


def _check_sampling(n_frames, fps):
    """Validate the sampling parameters; return (n_frames, fps as Fraction)."""
    if (n_frames is None) == (fps is None):
        raise ValueError(
            "Exactly one of the 'n_frames' and 'fps' parameters must be given. "
            f"Got n_frames={n_frames!r} and fps={fps!r} instead."
        )
    if n_frames is not None:
        if isinstance(n_frames, bool) or not isinstance(n_frames, numbers.Integral) or n_frames < 1:
            raise ValueError(
                f"The 'n_frames' parameter must be a positive int. Got {n_frames!r} instead."
            )
        return int(n_frames), None
    if (
        isinstance(fps, bool)
        or not isinstance(fps, numbers.Real)
        or not math.isfinite(float(fps))
        or fps <= 0
    ):
        raise ValueError(f"The 'fps' parameter must be a positive number. Got {fps!r} instead.")
    # exact rational sample times: k / fps must land exactly on frame timestamps
    # when they coincide (fps=5 on a 25 fps clip), which floats do not guarantee
    rate = Fraction(fps) if isinstance(fps, numbers.Rational) else Fraction(float(fps))
    return None, rate.limit_denominator(1_000_000)


#: frames stored per clip when neither a frame count nor a rate is given: the working note's 28
DEFAULT_N_FRAMES = 28


def parse_sampling_key(key: str) -> tuple[int | None, float | None]:
    """``(n_frames, fps)`` of a sampling key made by :func:`sampling_key` (one of them is None).

    Examples
    --------
    >>> from amnetvid_sk.video import parse_sampling_key
    >>> parse_sampling_key("frames=28"), parse_sampling_key("fps=2.5")
    ((28, None), (None, 2.5))
    """
    kind, _, value = str(key).partition("=")
    try:
        if kind == "frames":
            return int(value), None
        if kind == "fps":
            return None, float(value)
    except ValueError:
        pass
    raise ValueError(f"not a sampling key: {key!r}; expected 'frames=N' or 'fps=R'")


def sampling_key(n_frames: int | None = None, fps: float | None = None) -> str:
    """The string that names a sampling configuration in the feature store.

    Parameters
    ----------
    n_frames : int, optional
        Number of frames spread uniformly over the clip.
    fps : float, optional
        Sampling rate in frames per second. Exactly one of ``n_frames`` and
        ``fps`` must be given.

    Returns
    -------
    key : str
        ``"frames=<n>"`` or ``"fps=<r>"`` (``r`` without a trailing ``.0``).

    Examples
    --------
    >>> from amnetvid_sk.video import sampling_key
    >>> sampling_key(n_frames=28), sampling_key(fps=4), sampling_key(fps=2.5)
    ('frames=28', 'fps=4', 'fps=2.5')
    """
    n_frames, _ = _check_sampling(n_frames, fps)
    if n_frames is not None:
        return f"frames={n_frames}"
    value = float(fps)
    return f"fps={int(value)}" if value.is_integer() else f"fps={value!r}"


# --------------------------------------------------------------------------- opening


def _open(path):
    """Open a video for reading; every failure becomes a VideoDecodeError."""
    name = os.fspath(path)
    if not os.path.exists(name):
        raise VideoDecodeError(name, "the file does not exist")
    if os.path.isdir(name):
        raise VideoDecodeError(name, "it is a directory, not a video file")
    if os.path.getsize(name) == 0:
        raise VideoDecodeError(name, "the file is empty (0 bytes)")
    try:
        container = av.open(name, mode="r")
    except PermissionError as exc:
        raise VideoDecodeError(name, f"permission denied ({exc})") from exc
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        kind = _sniff_container(name)
        if kind:
            reason = f"it looks like {kind} file but FFmpeg cannot open it: truncated or corrupt ({exc})"
        else:
            reason = f"it is not a video file FFmpeg can read ({exc})"
        raise VideoDecodeError(name, reason) from exc
    try:
        fmt = container.format.name
        if fmt in _IMAGE_FORMATS or fmt.endswith("_pipe"):
            raise VideoDecodeError(name, f"it is a still image (format {fmt!r}), not a video")
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise VideoDecodeError(name, f"it has no video stream (streams: {', '.join(kinds)})")
    except BaseException:
        container.close()
        raise
    return container


def _sniff_container(name):
    """Name the container a file's first bytes announce, or None. Tells a cut
    MP4 (whose index, at the end, is gone) from a file that was never a video."""
    try:
        with open(name, "rb") as f:
            head = f.read(12)
    except OSError:
        return None
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide"):
        return "an MP4/QuickTime"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "a Matroska/WebM"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "an AVI"
    return None


@dataclass
class _Index:
    """Presentation timestamps of a stream's frames, from its packets."""

    pts: list  # sorted pts (stream time base) of every frame
    keyframes: list  # sorted frame indices of keyframes
    time_base: Fraction
    last_duration: int  # duration of the last frame, stream time base
    position: dict  # pts -> frame index
    key_dts: dict  # keyframe index -> its packet's dts (seek target of last resort)
    reliable_pts: bool  # False: pts are decode-order stand-ins, count frames instead
    delay: int  # pts - dts of the first packet: decoder delay (0 without B-frames)

    @property
    def duration(self) -> Fraction:
        return (self.pts[-1] - self.pts[0] + self.last_duration) * self.time_base

    def keyframe_at_or_before(self, index: int) -> int:
        k = bisect.bisect_right(self.keyframes, index) - 1
        return self.keyframes[max(k, 0)] if self.keyframes else 0


def _declared_duration(container, stream):
    """The video stream's duration (s) as the file header states it, or None."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION")  # Matroska writes it per stream
    if tag:
        try:
            h, m, s = tag.split(":")
            return int(h) * 3600 + int(m) * 60 + float(s)
        except ValueError:
            pass
    if container.duration and len(container.streams) == 1:
        return container.duration / av.time_base
    return None


def _index_packets(container, stream, name) -> _Index:
    """Demux every packet of the stream (no decoding) and index their pts."""
    pts, dts, durations, keys = [], [], [], []
    corrupt = 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # the demuxer's end-of-stream packet
                continue
            if packet.is_discard:  # edit-list leftovers: decoded but never shown
                continue
            if packet.pts is None:
                raise VideoDecodeError(
                    name,
                    "its video packets carry no presentation timestamps, so frames "
                    "cannot be indexed (remux it into MP4 or MKV)",
                )
            corrupt += packet.is_corrupt
            pts.append(packet.pts)
            dts.append(packet.dts)
            durations.append(packet.duration or 0)
            keys.append(packet.is_keyframe)
    except av.error.FFmpegError as exc:
        raise VideoDecodeError(name, f"reading its packets failed, truncated or corrupt ({exc})") from exc
    if not pts:
        raise VideoDecodeError(name, "its video stream has no frames")

    order = np.argsort(np.asarray(pts, dtype=np.int64), kind="stable")
    sorted_pts = [pts[i] for i in order]
    keyframes = [k for k, i in enumerate(order) if keys[i]]
    position = {}
    for k, p in enumerate(sorted_pts):
        position.setdefault(p, k)
    key_dts = {k: (dts[order[k]] if dts[order[k]] is not None else sorted_pts[k]) for k in keyframes}
    # A codec that reorders frames (B-frames) whose pts nonetheless rise in
    # decode order has stand-in pts (AVI keeps none): frames must be counted.
    in_decode_order = all(b > a for a, b in zip(pts, pts[1:]))
    reliable = not (in_decode_order and stream.codec_context.has_b_frames and len(pts) > 2)
    # Shared pts (an AVI written at a rate it cannot store) name no frame either.
    reliable = reliable and len(position) == len(sorted_pts)
    # initial decode delay (B-frames): see _Reader._seek_keyframe
    delay = pts[0] - dts[0] if dts[0] is not None else 0

    time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 1000)
    last = durations[order[-1]]
    if last <= 0:
        if len(sorted_pts) > 1:
            last = int(np.median(np.diff(sorted_pts)))
        elif stream.average_rate:
            last = round(1 / (Fraction(stream.average_rate) * time_base))
    index = _Index(
        sorted_pts, keyframes, time_base, max(int(last), 0), position, key_dts, reliable, max(int(delay), 0)
    )

    # Truncation: a cut file still demuxes, only its packets stop early.
    n = len(sorted_pts)
    if stream.frames and n < stream.frames:
        raise VideoDecodeError(
            name, f"it is truncated: the header lists {stream.frames} frames, only {n} are present"
        )
    if corrupt:
        raise VideoDecodeError(name, f"it is truncated or corrupt ({corrupt} damaged packets)")
    declared = _declared_duration(container, stream)
    if declared is not None and not stream.frames:
        frame_time = float(index.duration) / n
        found = float(index.duration)
        if found < declared - 1.5 * frame_time - 0.002:
            raise VideoDecodeError(
                name,
                f"it is truncated: the header says {declared:.3f} s of video, "
                f"the frames present end at {found:.3f} s",
            )
    return index


def _rotation_of(frame, stream) -> int:
    """Display rotation, degrees counterclockwise in {0, 90, 180, 270}."""
    degrees = frame.rotation if frame is not None else 0  # display matrix, counterclockwise
    if not degrees:
        # legacy tag (clockwise), as older FFmpeg exported it and honoured it;
        # Matroska keeps tags upper-case
        tags = {k.lower(): v for k, v in stream.metadata.items()}
        tag = tags.get("rotate")
        if tag:
            try:
                degrees = -float(tag)
            except ValueError:
                degrees = 0
    return int(round(degrees / 90.0)) * 90 % 360


def _make_info(name, index, stream, rotation, width, height) -> VideoInfo:
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


# --------------------------------------------------------------------------- decoding


_OVERSHOOT = object()


class _PtsUnreliable(Exception):
    """Decoded frames came out of pts order: the file's pts are decode-order
    stand-ins (AVI with B-frames), so frames must be counted instead."""


class _Reader:
    """Decodes chosen frames of one stream, by seeking or sequentially.

    Frames are identified by their pts (looked up in the packet index). When
    the pts cannot be trusted, frames are counted in output order from the
    start of the file instead, which rules out seeking.
    """

    def __init__(self, name, container, index):
        self.name = name
        self.container = container
        self.stream = container.streams.video[0]
        self.index = index
        self.counting = not index.reliable_pts
        self.frames = None  # decode iterator
        self.last = -1  # index of the last frame taken from self.frames
        self.first_frame = None  # any decoded frame, for its rotation side data
        self.n_decoded = 0  # frames taken from the decoder (diagnostics)
        self.n_seeks = 0
        self.target_kind = 0  # see _seek_keyframe

    def close(self):
        self.container.close()

    def _next(self):
        """Next decoded frame and its index (-1: not in the index); (None, None)
        at the end of the stream."""
        try:
            frame = next(self.frames)
        except StopIteration:
            return None, None
        except av.error.FFmpegError as exc:
            raise VideoDecodeError(
                self.name, f"decoding failed after frame {self.last}: corrupt data ({exc})"
            ) from exc
        self.n_decoded += 1
        if self.first_frame is None:
            self.first_frame = frame
        if self.counting:
            return frame, self.last + 1
        idx = self.index.position.get(frame.pts, -1) if frame.pts is not None else -1
        if 0 <= idx <= self.last:
            raise _PtsUnreliable
        return frame, idx

    def _seek(self, target):
        """Seek to the keyframe at or before ``target`` (stream time base)."""
        self.n_seeks += 1
        self.container.seek(int(target), backward=True, any_frame=False, stream=self.stream)
        self.frames = self.container.decode(self.stream)
        self.last = -1

    def _restart(self):
        """Decode from the very start of the file (reopened: no seek needed)."""
        self.container.close()
        self.container = _open(self.name)
        self.stream = self.container.streams.video[0]
        self.frames = self.container.decode(self.stream)
        self.last = -1

    def _forward_to(self, wanted, after_seek):
        """Decode forward to frame ``wanted``. Returns the frame, or _OVERSHOOT
        when a seek landed beyond ``wanted`` (or at the end of the stream)."""
        first = after_seek
        while True:
            frame, idx = self._next()
            if frame is None:
                if first:
                    return _OVERSHOOT
                raise VideoDecodeError(
                    self.name,
                    f"frame {wanted} could not be decoded: the stream ended after frame "
                    f"{self.last} (truncated or corrupt)",
                )
            if idx < 0:  # a frame not in the packet index (e.g. discarded by an edit list)
                continue
            if first and idx > wanted:
                return _OVERSHOOT
            first = False
            self.last = idx
            if idx == wanted:
                return frame
            if idx > wanted:
                raise VideoDecodeError(
                    self.name, f"frame {wanted} could not be decoded (corrupt data; frame {idx} came next)"
                )

    def read(self, wanted, seek, convert):
        """Decode frames ``wanted`` (sorted, unique indices); return
        ``convert(frame)`` of each, converted as soon as decoded so that the
        decoder's buffers are not held."""
        if not self.counting:
            try:
                return self._read(wanted, seek, convert)
            except _PtsUnreliable:
                logger.info("%s: frames decode out of pts order; counting them instead", self.name)
                self.counting = True
        return self._read(wanted, False, convert)

    def _read(self, wanted, seek, convert):
        out = []
        if not seek:
            self._restart()
        for w in wanted:
            if seek:
                key = self.index.keyframe_at_or_before(w)
                # seek only when that skips frames: the keyframe before w lies
                # beyond the next frame; otherwise decoding on is cheaper
                if self.frames is None or key > self.last + 1:
                    out.append(convert(self._seek_and_read(w, key)))
                    continue
            out.append(convert(self._forward_to(w, after_seek=False)))
        return out

    def _seek_and_read(self, wanted, key):
        keys = self.index.keyframes
        if not keys:
            self._restart()
            return self._forward_to(wanted, after_seek=False)
        k = bisect.bisect_left(keys, key)
        try:
            while k >= 0:
                frame = self._seek_keyframe(wanted, keys[k])
                if frame is not _OVERSHOOT:
                    return frame
                k -= 1  # the demuxer landed after the keyframe: try an earlier one
        except av.error.FFmpegError as exc:
            # some files cannot seek (no index): decode from the start instead
            logger.info("%s: seek failed (%s); decoding from the start", self.name, exc)
        else:
            logger.info("%s: seeking overshot frame %d; decoding from the start", self.name, wanted)
        self._restart()
        return self._forward_to(wanted, after_seek=False)

    def _seek_keyframe(self, wanted, key):
        """Seek to keyframe ``key`` and decode on to ``wanted``; _OVERSHOOT when
        every way of seeking to it landed beyond ``wanted``."""
        pts = self.index.pts[key]
        dts = self.index.key_dts.get(key, pts)
        # The first target suits MP4 with B-frames, which indexes a keyframe at
        # its dts plus the stream's initial decode delay (more than its pts at
        # variable frame rate: seeking to the pts would land a GOP early); for
        # other containers it is the pts. Then the plain pts, then the dts
        # (MPEG-TS searches by decode time and lands late when given the pts).
        # The kind of target that worked last is tried first.
        targets = [max(pts, dts + self.index.delay), pts, dts]
        order = [self.target_kind] + [k for k in range(3) if k != self.target_kind]
        tried = set()
        for kind in order:
            if targets[kind] in tried:
                continue
            tried.add(targets[kind])
            self._seek(targets[kind])
            frame = self._forward_to(wanted, after_seek=True)
            if frame is not _OVERSHOOT:
                self.target_kind = kind
                return frame
        return _OVERSHOOT


def _to_rgb(frame, rotation, size):
    if size is not None and (frame.height, frame.width) != size:
        # a stream whose size changes midway: bring every frame to the first size
        a = frame.to_ndarray(format="rgb24", width=size[1], height=size[0])
    else:
        a = frame.to_ndarray(format="rgb24")
    if rotation:
        # counterclockwise, as the display matrix says; copied so the batch is C-ordered
        a = np.ascontiguousarray(np.rot90(a, k=rotation // 90))
    return a


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
    container = _open(name)
    reader = None
    try:
        index = _index_packets(container, container.streams.video[0], name)
        reader = _Reader(name, container, index)
        height, width = reader.read([0], seek=True, convert=lambda f: (f.height, f.width))[0]
        rotation = _rotation_of(reader.first_frame, reader.stream)
        return _make_info(name, index, reader.stream, rotation, width, height)
    finally:
        (reader if reader is not None else container).close()


def _plan(index, n_frames, rate):
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


def sample_frames(
    path: str | os.PathLike,
    n_frames: int | None = None,
    fps: float | None = None,
    *,
    seek: bool = True,
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
    n_frames, rate = _check_sampling(n_frames, fps)
    if not isinstance(seek, (bool, np.bool_)):
        raise ValueError(f"The 'seek' parameter must be a bool. Got {seek!r} instead.")
    name = os.fspath(path)
    container = _open(name)
    reader = None
    try:
        stream = container.streams.video[0]
        index = _index_packets(container, stream, name)
        indices, n_requested = _plan(index, n_frames, rate)
        reader = _Reader(name, container, index)
        layout = {}  # rotation and size, fixed by the first frame returned

        def convert(frame):
            if not layout:
                layout["rotation"] = _rotation_of(reader.first_frame, reader.stream)
                layout["size"] = (frame.height, frame.width)
            return _to_rgb(frame, layout["rotation"], layout["size"])

        frames = np.stack(reader.read(indices.tolist(), seek=bool(seek), convert=convert))
        height, width = layout["size"]
        info = _make_info(name, index, reader.stream, layout["rotation"], width, height)
    finally:
        (reader if reader is not None else container).close()
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
