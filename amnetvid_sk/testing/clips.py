"""Writing small real videos with PyAV: test fixtures, benchmarks and demos.

:func:`write_clip` encodes arbitrary uint8 RGB frames to H.264 in MP4 or VP9 in
WebM (any other PyAV encoder works too), at a constant frame rate or at
variable frame rate from explicit presentation times, optionally with a
display rotation recorded in the file.

:func:`numbered_frames` makes frames that show their own number as a binary
code of big black and white blocks, which survives lossy compression;
:func:`read_number` reads it back. Together they let a test check that a
decoder returned exactly the frames it meant to.

The argument checks are written out, in scikit-learn's wording, rather than with its
``validate_params``: most are rules between arguments (as many ``pts`` as frames, even
sizes for H.264, a rate the container can store) or on array contents.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["write_clip", "numbered_frames", "numbered_frame", "read_number"]

# short codec names -> PyAV (FFmpeg) encoder names
_CODEC_ALIASES = {"h264": "libx264", "vp9": "libvpx-vp9", "vp8": "libvpx"}

# Per-encoder defaults chosen for speed: these clips are fixtures, not deliverables.
_FAST_OPTIONS = {
    "libx264": {"preset": "ultrafast"},
    # realtime + cpu-used 8 is libvpx's fastest mode; row-mt lets it use both cores
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "row-mt": "1"},
    "libvpx": {"deadline": "realtime", "cpu-used": "16"},
}

# Time base of clips written with explicit presentation times. WebM (Matroska)
# stores times in milliseconds whatever one asks, so MP4 uses the same grid and
# a clip written twice in the two containers has the same timestamps.
VFR_TIME_BASE = Fraction(1, 1000)

# numbered_frames layout: a grid of _ROWS x _COLS blocks, read row by row.
# The first 16 blocks are the number (most significant bit first), the last 4 a
# check nibble, so that read_number refuses frames that carry no number.
_ROWS, _COLS = 4, 5
_DATA_BITS = 16
_CHECK_BITS = _ROWS * _COLS - _DATA_BITS
_MAX_NUMBER = (1 << _DATA_BITS) - 1
# smallest frame whose blocks (8x8 pixels) survive 4:2:0 chroma subsampling and
# the blocking of a low-quality encode
_MIN_HEIGHT, _MIN_WIDTH = 8 * _ROWS, 8 * _COLS


def _check_nibble(number: int) -> int:
    # XOR of the four nibbles, offset so that an all-black and an all-white
    # frame both fail the check (they would otherwise read as 0 and 65535).
    x = (number ^ (number >> 4) ^ (number >> 8) ^ (number >> 12)) & 0xF
    return (x + 5) & 0xF


def _edges(size: int, parts: int) -> np.ndarray:
    return np.linspace(0, size, parts + 1).round().astype(int)


def numbered_frame(number: int, height: int, width: int) -> np.ndarray:
    """Make one frame that shows ``number`` as a code of black and white blocks.

    Parameters
    ----------
    number : int
        The number to show, ``0 <= number <= 65535``.
    height, width : int
        Frame size in pixels; at least 32 x 40.

    Returns
    -------
    frame : ndarray of uint8, shape (height, width, 3)
        An RGB frame; :func:`read_number` reads ``number`` back from it, also
        after lossy compression.

    Examples
    --------
    >>> from amnetvid_sk.testing.clips import numbered_frame, read_number
    >>> read_number(numbered_frame(1234, 48, 64))
    1234
    """
    number = int(number)
    if not 0 <= number <= _MAX_NUMBER:
        raise ValueError(
            f"The 'number' parameter of numbered_frame must be an int in [0, {_MAX_NUMBER}]. "
            f"Got {number} instead."
        )
    _check_size(height, width, "numbered_frame")
    word = (number << _CHECK_BITS) | _check_nibble(number)
    n_bits = _ROWS * _COLS
    bits = [(word >> (n_bits - 1 - k)) & 1 for k in range(n_bits)]
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    rows, cols = _edges(height, _ROWS), _edges(width, _COLS)
    for k, bit in enumerate(bits):
        if bit:
            r, c = divmod(k, _COLS)
            frame[rows[r] : rows[r + 1], cols[c] : cols[c + 1]] = 255
    return frame


def numbered_frames(n: int, height: int, width: int) -> np.ndarray:
    """Make ``n`` frames in which frame ``i`` shows the number ``i``.

    The number is a 16-bit binary code plus 4 check bits, drawn as a 4 x 5 grid
    of big black (0) and white (1) blocks: it survives H.264 and VP9
    compression, so a test can tell which frame a decoder returned.

    Parameters
    ----------
    n : int
        Number of frames, ``0 <= n <= 65536``.
    height, width : int
        Frame size in pixels; at least 32 x 40. H.264 in yuv420p needs both even.

    Returns
    -------
    frames : ndarray of uint8, shape (n, height, width, 3)
        RGB frames. For long clips, feed :func:`write_clip` a generator of
        :func:`numbered_frame` instead, which keeps memory flat.

    Examples
    --------
    >>> from amnetvid_sk.testing.clips import numbered_frames, read_number
    >>> frames = numbered_frames(30, 48, 64)
    >>> frames.shape, read_number(frames[17])
    ((30, 48, 64, 3), 17)
    """
    n = int(n)
    if not 0 <= n <= _MAX_NUMBER + 1:
        raise ValueError(
            f"The 'n' parameter of numbered_frames must be an int in [0, {_MAX_NUMBER + 1}]. "
            f"Got {n} instead."
        )
    _check_size(height, width, "numbered_frames")
    out = np.empty((n, height, width, 3), dtype=np.uint8)
    for i in range(n):
        out[i] = numbered_frame(i, height, width)
    return out


def read_number(frame: np.ndarray) -> int:
    """Read the number shown by a frame made with :func:`numbered_frames`.

    Parameters
    ----------
    frame : ndarray of uint8, shape (H, W, 3) or (H, W)
        A frame as written, or as decoded from a lossy video.

    Returns
    -------
    number : int

    Raises
    ------
    ValueError
        When the check bits do not match: the frame carries no number (a black
        frame, another picture, a frame still rotated).

    Examples
    --------
    >>> from amnetvid_sk.testing.clips import numbered_frame, read_number
    >>> read_number(numbered_frame(7, 48, 64))
    7
    """
    a = np.asarray(frame)
    if a.ndim == 3:
        a = a.mean(axis=2)
    if a.ndim != 2:
        raise ValueError(
            f"The 'frame' parameter of read_number must have shape (H, W, 3) or (H, W). "
            f"Got shape {np.shape(frame)} instead."
        )
    height, width = a.shape
    rows, cols = _edges(height, _ROWS), _edges(width, _COLS)
    word = 0
    for r in range(_ROWS):
        for c in range(_COLS):
            # the central half of each block: edges blur and ring after compression
            r0, r1, c0, c1 = rows[r], rows[r + 1], cols[c], cols[c + 1]
            dr, dc = (r1 - r0) // 4, (c1 - c0) // 4
            block = a[r0 + dr : r1 - dr, c0 + dc : c1 - dc]
            word = (word << 1) | int(block.mean() > 127.5)
    number, check = word >> _CHECK_BITS, word & ((1 << _CHECK_BITS) - 1)
    if check != _check_nibble(number):
        raise ValueError(
            "read_number: the frame does not carry a number written by numbered_frames "
            f"(check bits {check:04b} do not match number {number})"
        )
    return number


def _check_size(height, width, caller):
    if int(height) < _MIN_HEIGHT or int(width) < _MIN_WIDTH:
        raise ValueError(
            f"{caller} needs frames of at least {_MIN_HEIGHT} x {_MIN_WIDTH} pixels "
            f"(height x width) so the blocks survive compression. Got {height} x {width}."
        )


def _as_fraction(value, name) -> Fraction:
    try:
        f = Fraction(value).limit_denominator(1_000_000)
    except (TypeError, ValueError):
        f = Fraction(-1)
    if f <= 0:
        raise ValueError(
            f"The '{name}' parameter of write_clip must be a positive number. Got {value!r} instead."
        )
    return f


def write_clip(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float | Fraction = 25,
    codec: str = "h264",
    *,
    pts: Sequence[float] | None = None,
    rotation: int = 0,
    crf: int | None = None,
    gop: int | None = None,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode uint8 RGB frames to a video file with PyAV.

    Parameters
    ----------
    path : str or path-like
        Output file; the container follows the extension (``.mp4``, ``.webm``,
        ``.mkv``, ...). Parent folders must exist. An existing file is replaced.
    frames : ndarray of uint8, shape (n, H, W, 3), or iterable of (H, W, 3) arrays
        RGB frames, all the same size. A generator keeps memory flat for long
        clips. H.264 (yuv420p) needs even H and W.
    fps : float or Fraction, default=25
        Frame rate of a constant-frame-rate clip; with ``pts`` it is only the
        nominal rate given to the encoder's rate control.
    codec : str, default="h264"
        ``"h264"`` (libx264), ``"vp9"`` (libvpx-vp9), ``"vp8"`` (libvpx) or any
        other PyAV encoder name. Output pixel format is yuv420p.
    pts : sequence of float, optional
        Presentation time of each frame in seconds, strictly increasing, for a
        variable frame rate. Times are stored in milliseconds (WebM's time base,
        used for every container here), so they must differ by at least 1 ms.
        Not for AVI, which has a constant frame rate. Default: frame ``i`` at
        ``i / fps``.
    rotation : int, default=0
        Display rotation recorded in the file's display matrix, in degrees
        counterclockwise (a multiple of 90): a player, and
        :func:`amnetvid_sk.video.sample_frames`, shows the frames turned by this
        angle. The convention of PyAV's ``VideoFrame.rotation`` and ffprobe's
        ``rotation``; a phone's ``rotate=90`` tag (clockwise) is ``rotation=270``.
    crf : int, optional
        Constant rate factor (quality; lower is better and bigger). Default: the
        encoder's default.
    gop : int, optional
        Largest distance between keyframes, in frames. Default: the encoder's
        (250 frames for libx264).
    options : dict of str to str, optional
        Encoder options, overriding the fast defaults (libx264
        ``preset=ultrafast``; VP9 ``deadline=realtime``, ``cpu-used=8``).
    container_options : dict of str to str, optional
        Muxer options, e.g. ``{"movflags": "faststart"}`` to put an MP4's index
        before its data.

    Returns
    -------
    path : Path
        The file written.

    Examples
    --------
    >>> import tempfile, os
    >>> from amnetvid_sk.testing.clips import write_clip, numbered_frames
    >>> out = os.path.join(tempfile.mkdtemp(), "clip.mp4")
    >>> write_clip(out, numbered_frames(10, 48, 64), fps=25).suffix
    '.mp4'
    """
    path = Path(path)
    fps, rotation, times = _check_clip_params(path, fps, rotation, gop, pts)
    encoder = _CODEC_ALIASES.get(codec, codec)
    # before the first frame is taken or the file opened: a bad option touches neither
    codec_options = _encoder_options(encoder, crf, options)
    first, rest = _take_first_frame(frames, path, encoder)
    height, width = first.shape[:2]

    container = av.open(str(path), mode="w", options=dict(container_options or {}))
    try:
        stream, time_base = _add_video_stream(
            container, path, codec, encoder, codec_options,
            fps=fps, size=(height, width), vfr=times is not None, gop=gop, rotation=rotation,
        )
        n = 0
        for i, array in enumerate(_chain(first, rest)):
            array = _check_frame(array, i, (height, width))
            if times is not None and i >= len(times):
                raise ValueError(f"write_clip: more frames than pts values ({len(times)})")
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = times[i] if times is not None else i
            frame.time_base = time_base
            container.mux(stream.encode(frame))
            n += 1
        if times is not None and n != len(times):
            raise ValueError(f"write_clip: {n} frames but {len(times)} pts values")
        container.mux(stream.encode(None))
    except BaseException:
        container.close()
        path.unlink(missing_ok=True)  # never leave a half-written clip behind
        raise
    container.close()
    return path


def _check_clip_params(path, fps, rotation, gop, pts):
    """Check write_clip's fps, rotation, gop and pts; return fps as a Fraction, rotation
    in [0, 360) and pts in milliseconds (None without pts)."""
    fps = _as_fraction(fps, "fps")
    if rotation is None or int(rotation) != rotation or int(rotation) % 90 != 0:
        raise ValueError(
            "The 'rotation' parameter of write_clip must be a multiple of 90 "
            f"(0, 90, 180, 270). Got {rotation!r} instead."
        )
    rotation = int(rotation) % 360
    if gop is not None and (int(gop) != gop or gop < 1):
        raise ValueError(f"The 'gop' parameter of write_clip must be a positive int. Got {gop!r} instead.")

    times = None
    if pts is not None and path.suffix.lower() == ".avi":
        raise ValueError(
            "write_clip: AVI cannot store a variable frame rate; use .mp4, .mkv or .webm with 'pts'"
        )
    if pts is not None:
        times = [round(float(t) / VFR_TIME_BASE) for t in pts]
        if any(t < 0 for t in times) or any(b <= a for a, b in zip(times, times[1:])):
            raise ValueError(
                "The 'pts' parameter of write_clip must be strictly increasing times >= 0 "
                "in seconds, at least 1 ms apart."
            )
    return fps, rotation, times


def _encoder_options(encoder, crf, options):
    """The encoder's options: the fast defaults, then ``crf``, then the caller's ``options``."""
    codec_options = dict(_FAST_OPTIONS.get(encoder, {}))
    if crf is not None:
        codec_options["crf"] = str(int(crf))
        if encoder in ("libvpx-vp9", "libvpx"):
            codec_options.setdefault("b", "0")  # constant quality needs bitrate 0 in libvpx
    codec_options.update({str(k): str(v) for k, v in (options or {}).items()})
    return codec_options


def _take_first_frame(frames, path, encoder):
    """Take and check the first frame, which fixes the clip's size; return it and an
    iterator over the frames after it."""
    iterator = iter(frames)
    try:
        first = next(iterator)
    except StopIteration:
        raise ValueError(f"write_clip: no frames given for {str(path)!r}") from None
    first = _check_frame(first, 0, None)
    height, width = first.shape[:2]
    if encoder == "libx264" and (height % 2 or width % 2):
        raise ValueError(
            f"write_clip: H.264 in yuv420p needs an even frame height and width. "
            f"Got {height} x {width}; crop or pad the frames."
        )
    return first, iterator


def _add_video_stream(container, path, codec, encoder, codec_options, *, fps, size, vfr, gop, rotation):
    """Add the yuv420p video stream to ``container``, set up for the clip (time base, gop,
    display rotation); return it and the time base frames are stamped in."""
    try:
        stream = container.add_stream(encoder, rate=fps, options=codec_options)
    except (ValueError, av.error.FFmpegError) as exc:
        raise ValueError(
            f"The 'codec' parameter of write_clip must be one of {sorted(_CODEC_ALIASES)} or a "
            f"PyAV encoder that a {path.suffix or 'headerless'} file accepts. "
            f"Got {codec!r} instead ({type(exc).__name__}: {exc})."
        ) from exc
    height, width = size
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    time_base = VFR_TIME_BASE if vfr else 1 / fps
    stream.codec_context.time_base = time_base
    if gop is not None:
        stream.codec_context.gop_size = int(gop)
    if rotation:
        stream.set_display_rotation(rotation)
    return stream, time_base


def _chain(first, rest):
    yield first
    yield from rest


def _check_frame(array, i, size):
    a = np.asarray(array)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(
            f"write_clip: frame {i} must be a uint8 RGB array of shape (H, W, 3). "
            f"Got dtype {a.dtype} and shape {a.shape} instead."
        )
    if size is not None and a.shape[:2] != size:
        raise ValueError(f"write_clip: frame {i} has size {a.shape[:2]}, frame 0 has {size}")
    return np.ascontiguousarray(a)
