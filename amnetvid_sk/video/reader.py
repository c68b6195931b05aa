"""Decoding chosen frames of a stream, by seeking or from the start.

With ``seek=True`` the decoder seeks to the keyframe at or before each wanted
frame and decodes forward to it; when the next wanted frame lies before the
next keyframe it keeps decoding instead of seeking again. With ``seek=False``
it decodes every frame from the start up to the last wanted one, the baseline
of ``bench/bench_sampling.py``. Both return the same frames.

Every decoded frame is identified by its pts, so a seek that lands elsewhere
than asked is noticed: landing early costs extra decoding, landing late is
retried with other seek targets and earlier keyframes, and a file that cannot
seek is decoded from the start. Files whose pts are decode-order stand-ins
(AVI with B-frames) are decoded from the start and their frames counted.

A time limit per video (:class:`Deadline`, ``sample_frames(..., time_limit=)``)
is checked between packets and between frames: decoding runs on threads, which
cannot be killed, so a file that takes too long stops itself with a
:class:`VideoTimeLimitError` at the next packet or frame.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from contextlib import contextmanager

import av
import numpy as np

from ..errors import ParameterError, VideoDecodeError
from .container import index_packets, open_video

__all__ = ["Deadline", "FrameReader", "VideoTimeLimitError", "check_time_limit", "open_reader", "rotation_of",
           "to_rgb"]

logger = logging.getLogger("amnetvid_sk.video")

_OVERSHOOT = object()


class VideoTimeLimitError(VideoDecodeError):
    """Opening, indexing or decoding one video took longer than its time limit.

    A :class:`~amnetvid_sk.errors.VideoDecodeError` (so also a ``ValueError``): an
    extraction records the video in the store's ``failures`` table with this reason
    and goes on with the others.

    Examples
    --------
    >>> from amnetvid_sk.video.reader import VideoTimeLimitError
    >>> VideoTimeLimitError("a.mp4", 30, "decoding its frames").reason
    'time limit of 30 s reached while decoding its frames (a larger video_time_limit, ...)'
    """

    def __init__(self, path, limit: float, stage: str):
        self.limit = limit
        self.stage = stage
        super().__init__(path, f"time limit of {limit:g} s reached while {stage} (a larger video_time_limit, "
                               "--video-time-limit, gives it more time)")


def check_time_limit(value, name: str, owner: str):
    """``value`` if it is a time limit (a finite number of seconds > 0) or None; a ValueError naming
    ``name`` of ``owner`` otherwise.

    Examples
    --------
    >>> from amnetvid_sk.video.reader import check_time_limit
    >>> check_time_limit(30, "video_time_limit", "extract"), check_time_limit(None, "video_time_limit", "extract")
    (30.0, None)
    """
    if value is None:
        return None
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if not ok or not (math.isfinite(value) and value > 0):
        raise ParameterError(f"The {name!r} parameter of {owner} must be a number of seconds > 0 (finite) or None "
                         f"for no limit. Got {value!r} instead.")
    return float(value)


class Deadline:
    """When the work on one video must stop, checked between packets and frames.

    ``limit`` None never stops. Cooperative: a single FFmpeg call that blocks is
    not interrupted, the next check after it raises.

    Examples
    --------
    >>> from amnetvid_sk.video.reader import Deadline, VideoTimeLimitError
    >>> Deadline("a.mp4", None).check("decoding its frames")   # no limit: never raises
    >>> try:
    ...     Deadline("a.mp4", 1e-9).check("decoding its frames")
    ... except VideoTimeLimitError as exc:
    ...     print(exc.stage)
    decoding its frames
    """

    __slots__ = ("name", "limit", "end")

    def __init__(self, name, limit: float | None):
        self.name, self.limit = name, limit
        # monotonic: a clock set back or forward during a run neither stops nor extends a video
        self.end = None if limit is None else time.monotonic() + limit

    def check(self, stage: str) -> None:
        """Raise :class:`VideoTimeLimitError` naming ``stage`` if the time is up."""
        if self.end is not None and time.monotonic() > self.end:
            raise VideoTimeLimitError(self.name, self.limit, stage)


_NO_DEADLINE = Deadline("", None)


class _PtsUnreliable(Exception):
    """Decoded frames came out of pts order: the file's pts are decode-order
    stand-ins (AVI with B-frames), so frames must be counted instead."""


class FrameReader:
    """Decodes chosen frames of one stream, by seeking or sequentially.

    Frames are identified by their pts (looked up in the packet index). When
    the pts cannot be trusted, frames are counted in output order from the
    start of the file instead, which rules out seeking.
    """

    def __init__(self, name, container, index, deadline: Deadline = _NO_DEADLINE):
        self.name = name
        self.deadline = deadline
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
        self.deadline.check(f"decoding its frames ({self.n_decoded} decoded)")
        try:
            frame = next(self.frames)
        except StopIteration:
            return None, None
        except av.error.FFmpegError as exc:
            # last is -1 right after opening or seeking: no frame of this run decoded yet
            where = f"after frame {self.last}" if self.last >= 0 else "at the first frame after opening or seeking"
            raise VideoDecodeError(self.name, f"decoding failed {where}: corrupt data ({exc})") from exc
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
        self.container = open_video(self.name)
        self.deadline.check("opening it again to decode from the start")
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


def to_rgb(frame, rotation, size):
    """A decoded frame as uint8 RGB [H, W, 3], brought to ``size`` (height, width) and turned
    ``rotation`` degrees counterclockwise."""
    if size is not None and (frame.height, frame.width) != size:
        # a stream whose size changes midway: bring every frame to the first size
        a = frame.to_ndarray(format="rgb24", width=size[1], height=size[0])
    else:
        a = frame.to_ndarray(format="rgb24")
    if rotation:
        # counterclockwise, as the display matrix says; copied so the batch is C-ordered
        a = np.ascontiguousarray(np.rot90(a, k=rotation // 90))
    return a


def rotation_of(frame, stream) -> int:
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


@contextmanager
def open_reader(name, deadline: Deadline = _NO_DEADLINE):
    """A :class:`FrameReader` over the video stream of file ``name``, its packets indexed
    (``reader.index``); the file is closed on leaving the block, whatever happens. ``deadline``
    is checked after opening, between packets while indexing and between decoded frames."""
    container = open_video(name)
    reader = None
    try:
        deadline.check("opening it")
        index = index_packets(container, container.streams.video[0], name, deadline=deadline)
        reader = FrameReader(name, container, index, deadline)
        yield reader
    except av.error.FFmpegError as exc:
        # a corrupt file can make FFmpeg fail outside the decode loop (a frame's conversion to
        # RGB, a seek): it is still that file's fault, named like the other decoding failures
        raise VideoDecodeError(name, f"FFmpeg failed on its data, corrupt ({exc})") from exc
    finally:
        (reader if reader is not None else container).close()
