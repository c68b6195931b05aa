"""Tests of amnetvid_sk.video (frame sampling) and amnetvid_sk.testing.clips (test clips).

Every clip is a real file encoded with PyAV (H.264 in MP4, VP9 in WebM) in which
frame i shows the number i, so each test checks which frames came back.
"""

import os
import time

import av
import numpy as np
import pytest

from amnetvid_sk.testing.clips import numbered_frame, numbered_frames, read_number, write_clip
from amnetvid_sk.errors import VideoDecodeError
from amnetvid_sk.video import SampledFrames, VideoInfo, VideoTimeLimitError, sample_frames, sampling_key, video_info
from amnetvid_sk.video.reader import Deadline, open_reader

H, W = 48, 64

# (name, codec, extension, encoder options). "h264-bframes" uses a preset with
# B-frames, so decode order differs from presentation order.
CODECS = [
    ("h264", "h264", "mp4", None),
    ("h264-bframes", "h264", "mp4", {"preset": "veryfast"}),
    ("vp9", "vp9", "webm", None),
]

# variable frame rate: frames 40 ms or 100 ms apart, in a pattern
VFR_STEPS = [0.04 if i % 3 else 0.1 for i in range(47)]
VFR_PTS = np.round(np.concatenate([[0.0], np.cumsum(VFR_STEPS)]), 3)


def _numbers(frames):
    return [read_number(f) for f in frames]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """48-frame numbered clips, keyframe every 10 frames, per codec and rate."""
    folder = tmp_path_factory.mktemp("clips")
    frames = numbered_frames(48, H, W)
    out = {}
    for name, codec, ext, options in CODECS:
        out[name, "cfr"] = write_clip(
            folder / f"{name}-cfr.{ext}", frames, 25, codec, gop=10, options=options
        )
        out[name, "vfr"] = write_clip(
            folder / f"{name}-vfr.{ext}", frames, 25, codec, pts=VFR_PTS, gop=10, options=options
        )
    return out


@pytest.fixture(scope="module")
def seven_seconds(tmp_path_factory):
    """A 7 s clip at 25 fps (175 frames), the length of a MediaEval video."""
    path = tmp_path_factory.mktemp("seven") / "seven.webm"
    return write_clip(path, numbered_frames(175, H, W), 25, "vp9", gop=25)


# --------------------------------------------------------------------------- clips.py


def test_numbered_frames_read_back_exactly():
    """read_number inverts numbered_frames, for small and large numbers and sizes."""
    frames = numbered_frames(20, H, W)
    assert frames.shape == (20, H, W, 3) and frames.dtype == np.uint8
    assert _numbers(frames) == list(range(20))
    for number in (0, 1, 255, 1234, 65535):
        assert read_number(numbered_frame(number, 120, 160)) == number


def test_read_number_refuses_frames_without_a_number():
    """read_number raises on a black, a white and a rotated frame instead of guessing."""
    with pytest.raises(ValueError, match="check bits"):
        read_number(np.zeros((H, W, 3), np.uint8))
    with pytest.raises(ValueError, match="check bits"):
        read_number(np.full((H, W, 3), 255, np.uint8))
    with pytest.raises(ValueError, match="check bits"):
        read_number(np.rot90(numbered_frame(12345, H, W), 2))


def test_write_clip_accepts_a_generator_and_arbitrary_frames(tmp_path):
    """write_clip encodes frames from a generator; arbitrary RGB content round-trips closely."""
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))
    path = write_clip(tmp_path / "photo.mp4", (smooth for _ in range(5)), fps=10, crf=10)
    sample = sample_frames(path, n_frames=5)
    assert sample.frames.shape == (5, H, W, 3)
    assert np.abs(sample.frames.astype(int) - smooth).mean() < 12


def test_write_clip_rejects_bad_arguments(tmp_path):
    """write_clip names the bad parameter and leaves no file behind."""
    frames = numbered_frames(4, H, W)
    with pytest.raises(ValueError, match="'rotation'"):
        write_clip(tmp_path / "a.mp4", frames, rotation=45)
    with pytest.raises(ValueError, match="'pts'"):
        write_clip(tmp_path / "b.mp4", frames, pts=[0, 0.1, 0.1, 0.2])
    with pytest.raises(ValueError, match="uint8 RGB"):
        write_clip(tmp_path / "c.mp4", frames.astype(np.float32))
    with pytest.raises(ValueError, match="even"):
        write_clip(tmp_path / "d.mp4", np.zeros((2, 47, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="4 frames but 5 pts"):
        write_clip(tmp_path / "e.mp4", frames, pts=[0, 0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="AVI cannot store a variable frame rate"):
        write_clip(tmp_path / "f.avi", frames, pts=[0, 0.1, 0.3, 0.4])
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- frame accuracy


@pytest.mark.parametrize("seek", [True, False], ids=["seek", "sequential"])
@pytest.mark.parametrize("rate", ["cfr", "vfr"])
@pytest.mark.parametrize("codec", [c[0] for c in CODECS])
def test_n_frames_returns_exactly_the_intended_frames(clips, codec, rate, seek):
    """n_frames picks linspace indices; the decoded frames show those numbers, with their pts."""
    sample = sample_frames(clips[codec, rate], n_frames=7, seek=seek)
    expected = np.linspace(0, 47, 7).round().astype(int)
    assert sample.indices.dtype == np.int64
    assert sample.indices.tolist() == expected.tolist()
    assert _numbers(sample.frames) == expected.tolist()
    assert sample.frames.dtype == np.uint8 and sample.frames.shape == (7, H, W, 3)
    times = expected / 25 if rate == "cfr" else VFR_PTS[expected]
    np.testing.assert_allclose(sample.timestamps, times, atol=1e-9)
    assert not sample.short and sample.n_requested == 7


@pytest.mark.parametrize(
    "ext, codec, options",
    [
        ("mkv", "h264", {"preset": "veryfast"}),  # Matroska stores pts only
        ("ts", "h264", {"preset": "veryfast"}),  # seeks by decode time, lands late when given a pts
        ("avi", "h264", {"preset": "veryfast"}),  # no real pts with B-frames: frames are counted
        ("webm", "vp9", {"deadline": "good", "lag-in-frames": "16", "auto-alt-ref": "1"}),  # hidden frames
    ],
    ids=["h264-mkv", "h264-ts", "h264-avi", "vp9-altref"],
)
def test_other_containers_are_frame_accurate(tmp_path, ext, codec, options):
    """B-frames in MKV, MPEG-TS and AVI, and VP9 with hidden alt-ref frames, sample exactly too."""
    path = write_clip(tmp_path / f"clip.{ext}", numbered_frames(60, H, W), 25, codec, gop=12, options=options)
    expected = np.linspace(0, 59, 9).round().astype(int).tolist()
    for seek in (True, False):
        sample = sample_frames(path, n_frames=9, seek=seek)
        assert sample.indices.tolist() == expected
        assert _numbers(sample.frames) == expected
        np.testing.assert_allclose(sample.timestamps, np.array(expected) / 25, atol=1e-9)
    assert video_info(path).frame_count == 60


@pytest.mark.parametrize("codec", [c[0] for c in CODECS])
def test_every_frame_in_order(clips, codec):
    """Asking for all 48 frames of a VFR clip returns 0..47 in presentation order."""
    sample = sample_frames(clips[codec, "vfr"], n_frames=48)
    assert _numbers(sample.frames) == list(range(48))
    assert sample.indices.tolist() == list(range(48))


def test_fps_sampling_takes_four_frames_per_second(seven_seconds):
    """fps=4 on a 7 s 25 fps clip gives 28 frames, frame floor(k * 25 / 4) at k / 4 s."""
    sample = sample_frames(seven_seconds, fps=4)
    expected = [k * 25 // 4 for k in range(28)]
    assert len(sample) == 28 and sample.n_requested == 28 and not sample.short
    assert sample.indices.tolist() == expected
    assert _numbers(sample.frames) == expected
    np.testing.assert_allclose(sample.timestamps, np.array(expected) / 25, atol=1e-9)
    assert sampling_key(fps=4) == "fps=4"


@pytest.mark.parametrize("codec", ["h264", "vp9"])
def test_fps_sampling_at_variable_frame_rate_takes_the_frame_on_screen(tmp_path, codec):
    """VFR fps sampling takes the last frame with pts <= t (equal counts), once per held frame."""
    pts = [0.0, 0.1, 0.2, 0.5, 0.6, 1.7, 1.8, 1.9]
    ext = "mp4" if codec == "h264" else "webm"
    path = write_clip(tmp_path / f"vfr.{ext}", numbered_frames(8, H, W), 25, codec, pts=pts)
    sample = sample_frames(path, fps=4)
    duration = sample.info.duration
    assert 1.9 < duration <= 2.0
    times = np.arange(0, duration, 0.25)
    # t = 0.5 hits frame 3's pts exactly; frame 4 (shown from 0.6 s to 1.7 s) covers t = 0.75 .. 1.5
    expected = np.unique(np.searchsorted(pts, times, side="right") - 1)
    assert expected[:5].tolist() == [0, 2, 3, 4, 5]
    assert sample.indices.tolist() == expected.tolist()
    assert _numbers(sample.frames) == expected.tolist()
    np.testing.assert_allclose(sample.timestamps, np.array(pts)[expected], atol=1e-9)
    assert sample.n_requested == len(times) and sample.short


def test_short_clip_returns_every_frame_without_padding(tmp_path):
    """A 3-frame clip asked for 5 frames returns its 3 frames once each, short=True."""
    path = write_clip(tmp_path / "short.mp4", numbered_frames(3, H, W))
    sample = sample_frames(path, n_frames=5)
    assert sample.short and sample.n_requested == 5
    assert sample.frames.shape == (3, H, W, 3)
    assert sample.indices.tolist() == [0, 1, 2]
    assert _numbers(sample.frames) == [0, 1, 2]  # real frames: no black padding
    whole = sample_frames(path, n_frames=3)
    assert not whole.short and len(whole) == 3


def test_frame_count_without_a_header_count(clips):
    """WebM records no frame count (stream.frames == 0); counting packets gives 48 anyway."""
    with av.open(str(clips["vp9", "cfr"])) as container:
        assert container.streams.video[0].frames == 0
    info = video_info(clips["vp9", "cfr"])
    assert info.frame_count == 48
    assert sample_frames(clips["vp9", "cfr"], n_frames=2).indices.tolist() == [0, 47]


def test_video_info_describes_the_file(clips):
    """video_info reports count, duration, mean fps, size, mtime and size of frames."""
    path = clips["h264", "cfr"]
    info = video_info(path)
    assert isinstance(info, VideoInfo)
    assert info.frame_count == 48
    assert info.duration == pytest.approx(48 / 25)
    assert info.fps == pytest.approx(25)
    assert (info.width, info.height, info.rotation) == (W, H, 0)
    assert info.size == os.path.getsize(path) and info.mtime == os.stat(path).st_mtime
    assert info.path == str(path)
    vfr = video_info(clips["vp9", "vfr"])
    assert vfr.frame_count == 48 and vfr.fps == pytest.approx(48 / vfr.duration)


# --------------------------------------------------------------------------- decoding cost


def test_seeking_decodes_only_what_is_needed(tmp_path):
    """With seek=True, 4 frames of a 120-frame clip (keyframe every 10) cost at most a GOP each."""
    path = write_clip(tmp_path / "long.mp4", numbered_frames(120, H, W), gop=10)
    fast = sample_frames(path, n_frames=4)
    slow = sample_frames(path, n_frames=4, seek=False)
    assert fast.indices.tolist() == slow.indices.tolist() == [0, 40, 79, 119]
    assert _numbers(fast.frames) == _numbers(slow.frames) == [0, 40, 79, 119]
    np.testing.assert_array_equal(fast.frames, slow.frames)
    assert fast.n_decoded <= 4 * 10 and fast.n_seeks >= 2
    assert slow.n_decoded == 120 and slow.n_seeks == 0


def test_frames_within_one_gop_are_decoded_without_seeking_again(tmp_path):
    """Consecutive wanted frames are reached by decoding on: all 30 frames cost one seek."""
    path = write_clip(tmp_path / "gop.webm", numbered_frames(30, H, W), codec="vp9", gop=10)
    sample = sample_frames(path, n_frames=30)
    assert _numbers(sample.frames) == list(range(30))
    assert sample.n_seeks == 1 and sample.n_decoded == 30


# --------------------------------------------------------------------------- rotation


@pytest.mark.parametrize("rotation", [90, 180, 270])
@pytest.mark.parametrize("codec", ["h264", "vp9"])
def test_display_rotation_is_applied(tmp_path, codec, rotation):
    """A display matrix rotation comes back applied: frames turned counterclockwise, size swapped."""
    ext = "mp4" if codec == "h264" else "webm"
    path = write_clip(tmp_path / f"rot.{ext}", numbered_frames(12, H, W), codec=codec, rotation=rotation)
    sample = sample_frames(path, n_frames=3)
    turned = (W, H) if rotation in (90, 270) else (H, W)
    assert sample.frames.shape == (3, *turned, 3)
    assert sample.frames.flags["C_CONTIGUOUS"]
    # undo a counterclockwise turn: only then do the numbers read back
    assert [read_number(np.rot90(f, -rotation // 90)) for f in sample.frames] == [0, 6, 11]
    info = video_info(path)
    assert info.rotation == rotation and (info.height, info.width) == turned


def test_legacy_rotate_tag_is_applied(tmp_path):
    """A 'rotate' stream tag (clockwise, as old phones/FFmpeg wrote it) is applied too."""
    path = tmp_path / "tagged.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        stream.width, stream.height = W, H
        stream.metadata["rotate"] = "90"
        for array in numbered_frames(5, H, W):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode(None))
    sample = sample_frames(path, n_frames=2)
    assert sample.info.rotation == 270  # 90 clockwise
    assert sample.frames.shape == (2, W, H, 3)
    assert [read_number(np.rot90(f, 1)) for f in sample.frames] == [0, 4]


# --------------------------------------------------------------------------- bad files


def _cut_in_half(src, dst):
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def _assert_decode_error(path, cause):
    for call in (video_info, lambda p: sample_frames(p, n_frames=4)):
        with pytest.raises(VideoDecodeError, match=cause) as caught:
            call(path)
        assert str(path) in str(caught.value) and caught.value.path == str(path)
        assert isinstance(caught.value, ValueError)


def test_missing_file_raises(tmp_path):
    """A path that does not exist raises VideoDecodeError naming it."""
    _assert_decode_error(tmp_path / "missing.mp4", "does not exist")


def test_empty_file_raises(tmp_path):
    """A 0-byte file raises VideoDecodeError saying it is empty."""
    path = tmp_path / "empty.webm"
    path.touch()
    _assert_decode_error(path, r"empty \(0 bytes\)")


def test_truncated_mp4_raises(tmp_path, clips):
    """An MP4 cut in half (its index at the end is lost) raises, saying truncated."""
    _assert_decode_error(_cut_in_half(clips["h264", "cfr"], tmp_path / "cut.mp4"), "truncated")


def test_truncated_faststart_mp4_raises(tmp_path):
    """An MP4 with its index first, cut in half, demuxes but lacks frames: raises."""
    path = write_clip(
        tmp_path / "fast.mp4", numbered_frames(48, H, W), container_options={"movflags": "faststart"}
    )
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 48
    _assert_decode_error(_cut_in_half(path, tmp_path / "cut.mp4"), "truncated: the header lists 48 frames")


def test_truncated_webm_raises(tmp_path, clips):
    """A WebM cut in half still demuxes; its packets end before the stated duration: raises."""
    _assert_decode_error(_cut_in_half(clips["vp9", "cfr"], tmp_path / "cut.webm"), "truncated")


def test_unknown_codec_raises(tmp_path, clips):
    """An MP4 whose codec tag was damaged (no decoder has it) raises, saying so (found by the fuzz)."""
    path = tmp_path / "nocodec.mp4"
    path.write_bytes(clips["h264", "cfr"].read_bytes().replace(b"avc1", b"zzzz"))
    _assert_decode_error(path, "names no codec FFmpeg has")


def test_text_file_raises(tmp_path):
    """A text file raises VideoDecodeError saying it is not a video."""
    path = tmp_path / "notes.mp4"
    path.write_text("video,short-term_memorability\nvideo1.webm,0.9\n" * 20)
    _assert_decode_error(path, "not a video")


def test_png_raises(tmp_path):
    """A PNG (FFmpeg would read it as a 1-frame video) raises, saying still image."""
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.fromarray(numbered_frame(3, H, W)).save(path)
    _assert_decode_error(path, "still image")


# --------------------------------------------------------------------------- parameters


def test_sampling_key_names_the_configuration():
    """sampling_key gives 'frames=N' or 'fps=R' and refuses zero or two parameters."""
    assert sampling_key(n_frames=28) == "frames=28"
    assert sampling_key(fps=4) == sampling_key(fps=4.0) == "fps=4"
    assert sampling_key(fps=2.5) == "fps=2.5"
    assert sampling_key(n_frames=np.int64(4)) == "frames=4"
    for kwargs in ({}, {"n_frames": 4, "fps": 4}):
        with pytest.raises(ValueError, match="'n_frames' and 'fps'"):
            sampling_key(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_frames": 0}, "'n_frames' parameter must be a positive int"),
        ({"n_frames": 2.5}, "'n_frames' parameter must be a positive int"),
        ({"n_frames": True}, "'n_frames' parameter must be a positive int"),
        ({"fps": 0}, "'fps' parameter must be a positive number"),
        ({"fps": float("nan")}, "'fps' parameter must be a positive number"),
        ({"fps": "4"}, "'fps' parameter must be a positive number"),
        ({}, "Exactly one of the 'n_frames' and 'fps'"),
        ({"n_frames": 4, "fps": 4}, "Exactly one of the 'n_frames' and 'fps'"),
    ],
)
def test_bad_sampling_parameters_are_refused(clips, kwargs, message):
    """sample_frames and sampling_key name the bad parameter and what is allowed."""
    with pytest.raises(ValueError, match=message):
        sample_frames(clips["h264", "cfr"], **kwargs)
    with pytest.raises(ValueError, match=message):
        sampling_key(**kwargs)


def test_sampled_frames_type(clips):
    """sample_frames returns a SampledFrames whose info matches video_info."""
    sample = sample_frames(clips["h264", "cfr"], n_frames=2)
    assert isinstance(sample, SampledFrames)
    assert sample.info == video_info(clips["h264", "cfr"])


# --------------------------------------------------------------------------- time limit


def test_time_limit_stops_with_its_own_error_naming_the_limit(clips):
    """A limit no clip can meet raises VideoTimeLimitError (a VideoDecodeError) naming the file and the limit."""
    path = clips["vp9", "cfr"]
    with pytest.raises(VideoTimeLimitError) as caught:
        sample_frames(path, n_frames=4, time_limit=1e-6)
    err = caught.value
    assert isinstance(err, VideoDecodeError) and err.path == str(path) and err.limit == 1e-6
    assert err.reason.startswith("time limit of 1e-06 s reached while ")
    assert str(path) in str(err)


def test_time_limit_is_checked_between_decoded_frames(clips):
    """Time that runs out once the packets are indexed stops the decoding at the next frame."""
    path = str(clips["h264", "cfr"])
    deadline = Deadline(path, 3600)
    with open_reader(path, deadline) as reader:
        assert len(reader.index.pts) == 48
        deadline.end = time.monotonic() - 1  # the hour is up now
        with pytest.raises(VideoTimeLimitError, match=r"while decoding its frames \(0 decoded\)"):
            reader.read([0, 47], seek=True, convert=lambda f: f)


def test_a_generous_time_limit_changes_nothing(clips):
    """With a limit that is not reached, the frames are those sampled without one."""
    path = clips["h264-bframes", "vfr"]
    free, limited = sample_frames(path, n_frames=6), sample_frames(path, n_frames=6, time_limit=600)
    assert limited.indices.tolist() == free.indices.tolist()
    assert _numbers(limited.frames) == _numbers(free.frames)


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), "30", True])
def test_bad_time_limits_are_refused(clips, value):
    """time_limit must be a finite number of seconds > 0 (or None); the error names it."""
    with pytest.raises(ValueError, match=r"The 'time_limit' parameter of sample_frames must be a number of seconds"):
        sample_frames(clips["h264", "cfr"], n_frames=2, time_limit=value)
