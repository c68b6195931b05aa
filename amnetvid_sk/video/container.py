"""Opening a video file and indexing its packets (demuxed, never decoded).

The packet index is what frame indices and timestamps are defined from (see
:mod:`amnetvid_sk.video`): the presentation timestamps of every packet, sorted.
It also tells a truncated file from a whole one, before anything is decoded.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from ..errors import VideoDecodeError

__all__ = ["PacketIndex", "index_packets", "open_video"]

# FFmpeg opens still images as one-frame videos through these demuxers; a
# memorability model must not score a photograph as a video by accident.
_IMAGE_FORMATS = {"image2", "image2pipe"}


def open_video(path):
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
        if container.streams.video[0].codec_context is None:
            # a codec tag FFmpeg does not know, as a damaged header gives: nothing could decode it
            raise VideoDecodeError(name, "its video stream names no codec FFmpeg has (a corrupt header, or "
                                         "a codec this FFmpeg build lacks)")
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
class PacketIndex:
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


def index_packets(container, stream, name, deadline=None) -> PacketIndex:
    """Demux every packet of the stream (no decoding) and index their pts.

    ``deadline``: an object whose ``check(stage)`` raises when the time for this video
    is up (:class:`~amnetvid_sk.video.reader.Deadline`), called before each packet.
    """
    pts, dts, durations, keys, corrupt = _demux_packets(container, stream, name, deadline)
    index = _build_packet_index(stream, pts, dts, durations, keys)
    _check_not_truncated(container, stream, name, index, corrupt)
    return index


def _demux_packets(container, stream, name, deadline):
    """Demux the stream's shown packets, in decode order, into lists of
    pts, dts, durations and keyframe flags, plus a count of corrupt packets."""
    pts, dts, durations, keys = [], [], [], []
    corrupt = 0
    try:
        for packet in container.demux(stream):
            if deadline is not None:
                deadline.check(f"indexing its packets ({len(pts)} read)")
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
    return pts, dts, durations, keys, corrupt


def _build_packet_index(stream, pts, dts, durations, keys) -> PacketIndex:
    """Sort the demuxed packets by pts into a PacketIndex: keyframes, positions,
    whether the pts can be trusted, decoder delay and the last frame's duration."""
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
    # initial decode delay (B-frames): see reader.FrameReader._seek_keyframe
    delay = pts[0] - dts[0] if dts[0] is not None else 0

    time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 1000)
    last = durations[order[-1]]
    if last <= 0:
        if len(sorted_pts) > 1:
            last = int(np.median(np.diff(sorted_pts)))
        elif stream.average_rate:
            last = round(1 / (Fraction(stream.average_rate) * time_base))
    return PacketIndex(
        sorted_pts, keyframes, time_base, max(int(last), 0), position, key_dts, reliable, max(int(delay), 0)
    )


def _check_not_truncated(container, stream, name, index, corrupt):
    """Raise VideoDecodeError when the packets stop short of what the header
    announces (frame count or duration) or some of them are damaged."""
    # Truncation: a cut file still demuxes, only its packets stop early.
    n = len(index.pts)
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

