"""Tests of amnetvid_sk.render: JET rendering of attention maps and the attention figure."""

import re
from concurrent.futures import ThreadPoolExecutor

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from amnetvid_sk.render import JET_LUT, render_jet, render_maps, save_attention_figure

JET_TOP = (127, 0, 0)  # matplotlib colormaps['jet'](1.0, bytes=True): dark red
JET_BOTTOM = (0, 0, 127)  # colormaps['jet'](0.0, bytes=True): dark blue


def _rgb(rendered, k):
    """RGB image [size, size, 3] of map k from a rendered [9, size, size] array."""
    return rendered[3 * k : 3 * k + 3].transpose(1, 2, 0)


def _assert_same_render_up_to_rounding(a, b):
    """Equal but for rare one-step LUT index flips, each changing up to 3 bytes (at most 1% of them).

    The same map rendered among other numbers of maps goes through matmul kernels that BLAS
    picks by shape; on the last float32 bit, floor(x * 256) can land on either side of an integer.
    A wrong map or channel order changes most bytes.
    """
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= np.abs(np.diff(JET_LUT.astype(int), axis=0)).max()
    assert (diff > 0).mean() <= 0.01


def _peak_map(y, x, h=14, w=14):
    m = np.zeros((h, w), dtype=np.float32)
    m[y, x] = 1.0
    return m


def test_shapes_and_dtype_numpy_and_torch():
    """Numpy and torch inputs of any float dtype give uint8 [..., 9, size, size]."""
    rng = np.random.default_rng(0)
    maps = rng.random((2, 4, 3, 14, 14))
    out_np = render_jet(maps, size=70)
    out_t = render_jet(torch.from_numpy(maps).float(), size=70)
    assert out_np.shape == (2, 4, 9, 70, 70) and out_np.dtype == np.uint8
    assert isinstance(out_t, np.ndarray) and out_t.dtype == np.uint8
    np.testing.assert_array_equal(out_np, out_t)
    assert render_jet(maps[0, 0], size=33).shape == (9, 33, 33)
    assert render_jet(np.zeros((0, 3, 14, 14)), size=8).shape == (0, 9, 8, 8)


def test_single_peak_is_dark_red_at_peak_and_dark_blue_far_away():
    """A one-pixel peak renders jet-top dark red at its place, jet-bottom dark blue far off."""
    maps = np.stack([_peak_map(7, 7), _peak_map(2, 11), _peak_map(12, 3)])
    out = render_jet(maps, size=70)
    # Source pixel (y, x) of a 14 -> 70 resize is centred on output pixel 5 * y + 2.
    for k, (y, x) in enumerate([(7, 7), (2, 11), (12, 3)]):
        img = _rgb(out, k)
        assert tuple(img[5 * y + 2, 5 * x + 2]) == JET_TOP
        far_y, far_x = (69 if y < 7 else 0), (69 if x < 7 else 0)
        assert tuple(img[far_y, far_x]) == JET_BOTTOM
        # the brightest place of the image is the peak itself
        red = img[..., 0].astype(int) - img[..., 2].astype(int)
        py, px = np.unravel_index(np.argmax(red), red.shape)
        assert abs(py - (5 * y + 2)) <= 2 and abs(px - (5 * x + 2)) <= 2


def test_lut_equals_matplotlib_jet():
    """The built-in 256-entry LUT is matplotlib's 'jet' (bytes exactly, floats within 1/255)."""
    jet = matplotlib.colormaps["jet"]
    np.testing.assert_array_equal(JET_LUT, jet(np.arange(256), bytes=True)[:, :3])
    assert np.abs(JET_LUT / 255.0 - jet(np.arange(256))[:, :3]).max() <= 1 / 255
    assert JET_LUT.shape == (256, 3) and JET_LUT.dtype == np.uint8
    assert tuple(JET_LUT[0]) == JET_BOTTOM and tuple(JET_LUT[-1]) == JET_TOP


def test_matches_interpolate_and_matplotlib_reference():
    """Same pixels as min-max -> F.interpolate(bicubic) -> clamp -> matplotlib jet, but
    for rare one-step index flips from float rounding."""
    rng = np.random.default_rng(1)
    maps = rng.gamma(0.5, size=(20, 3, 14, 14)).astype(np.float32)
    t = torch.from_numpy(maps).reshape(-1, 1, 14, 14)
    lo = t.amin((2, 3), keepdim=True)
    hi = t.amax((2, 3), keepdim=True)
    up = F.interpolate((t - lo) / (hi - lo), size=(70, 70), mode="bicubic", align_corners=False)
    ref = matplotlib.colormaps["jet"](up.clamp(0, 1)[:, 0].numpy(), bytes=True)[..., :3]
    ref = ref.reshape(20, 3, 70, 70, 3).transpose(0, 1, 4, 2, 3).reshape(20, 9, 70, 70)
    out = render_jet(maps, size=70)
    diff = np.abs(out.astype(int) - ref.astype(int))
    max_step = np.abs(np.diff(JET_LUT.astype(int), axis=0)).max()
    assert (diff == 0).mean() > 0.999
    assert diff.max() <= max_step


def test_constant_map_renders_all_bottom_colour():
    """A constant map (no peak) becomes all zeros -> jet bottom everywhere, never NaN."""
    maps = np.stack([np.full((14, 14), 1 / 196), np.zeros((14, 14)), _peak_map(5, 5)])
    out = render_jet(maps, size=20)
    for k in (0, 1):
        img = _rgb(out, k)
        assert (img == np.array(JET_BOTTOM, dtype=np.uint8)).all()
    assert tuple(_rgb(out, 2).reshape(-1, 3).max(0)) != JET_BOTTOM
    as_float = render_maps(maps, mode="jet", size=20)
    assert np.isfinite(as_float).all()


def test_leading_dims_and_channel_order_preserved_across_chunks():
    """Any leading dims are kept; channels are [r0,g0,b0,r1,...]; >1024 maps cross a chunk."""
    rng = np.random.default_rng(2)
    maps = rng.random((5, 90, 3, 14, 14)).astype(np.float32)  # 1350 maps
    out = render_jet(maps, size=16)
    assert out.shape == (5, 90, 9, 16, 16)
    for i, j in [(0, 0), (3, 41), (4, 89)]:
        _assert_same_render_up_to_rounding(out[i, j], render_jet(maps[i, j], size=16))
        for k in range(3):
            alone = render_jet(np.stack([maps[i, j, k]] * 3), size=16)[:3]
            _assert_same_render_up_to_rounding(out[i, j, 3 * k : 3 * k + 3], alone)
    # maps differing only in map 1 differ only in channels 3..5 (same batch size: bit for bit)
    other = maps[0, 0].copy()
    other[1] = rng.random((14, 14))
    a, b = render_jet(maps[0, 0], size=16), render_jet(other, size=16)
    assert (a[0:3] == b[0:3]).all() and (a[6:9] == b[6:9]).all() and (a[3:6] != b[3:6]).any()


@pytest.mark.parametrize("shape", [(4, 14, 14), (2, 2, 14, 14), (14, 14), (3,)])
def test_bad_shape_raises_naming_shape(shape):
    """Maps whose last three dims are not (3, h, w) are refused with the shape in the message."""
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, h, w\].*" + re.escape(str(shape))):
        render_jet(np.zeros(shape, dtype=np.float32))


@pytest.mark.parametrize("size", [0, -3, 2.5, True, "70"])
def test_bad_size_raises(size):
    """size must be a positive int; the message names the parameter and the value."""
    with pytest.raises(ValueError, match=r"'size' parameter of render_jet .* Got"):
        render_jet(np.zeros((3, 14, 14)), size=size)


def test_non_finite_maps_raise():
    """NaN or inf in a map is refused and the map is located."""
    maps = np.zeros((2, 3, 14, 14), dtype=np.float32)
    maps[1, 2, 3, 4] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite .*\(1, 2\)"):
        render_jet(maps)


def test_render_maps_modes():
    """'jet' is render_jet/255 as float32; 'raw' is the maps as float32; others refused."""
    rng = np.random.default_rng(3)
    maps = rng.random((2, 3, 3, 14, 14))
    jet = render_maps(maps, mode="jet", size=24)
    assert jet.dtype == np.float32 and jet.shape == (2, 3, 9, 24, 24)
    np.testing.assert_allclose(jet * 255, render_jet(maps, size=24).astype(np.float32), atol=1e-4)
    assert 0.0 <= jet.min() and jet.max() <= 1.0
    raw = render_maps(maps, mode="raw")
    assert raw.dtype == np.float32 and raw.shape == maps.shape
    np.testing.assert_allclose(raw, maps, rtol=1e-6)
    with pytest.raises(ValueError) as err:
        render_maps(maps, mode="rgb")
    # scikit-learn's wording; it lists a set's options in hash order
    assert str(err.value) in (
        "The 'mode' parameter of render_maps must be a str among {'jet', 'raw'}. Got 'rgb' instead.",
        "The 'mode' parameter of render_maps must be a str among {'raw', 'jet'}. Got 'rgb' instead.",
    )


def _frame(h=120, w=160):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 200)], -1).astype(np.uint8)


def _colourful(region):
    """Pixels that are clearly coloured (not black, white or grey title text)."""
    rgb = region[..., :3].astype(int)
    return (rgb.max(-1) - rgb.min(-1)) > 60


def test_attention_figure_png(tmp_path):
    """The figure is a PNG with four coloured panels side by side: frame, map 1, 2, 3."""
    maps = np.stack([_peak_map(3, 3), _peak_map(7, 10), _peak_map(11, 5)])
    path = save_attention_figure(_frame(), maps, tmp_path / "sub" / "fig.png",
                                 title="frame 12 (t=3.00 s)", score=0.8123)
    assert path == tmp_path / "sub" / "fig.png" and path.is_file()
    with Image.open(path) as im:
        assert im.format == "PNG"
        width, height = im.size
        pixels = np.asarray(im.convert("RGB"))
    assert 800 <= width <= 1600 and 150 <= height <= 600
    assert width > 3 * height  # four panels side by side
    for k in range(4):
        strip = pixels[:, k * width // 4 : (k + 1) * width // 4]
        assert _colourful(strip).mean() > 0.3, f"panel {k} is not a coloured image"
    # the map panels are jet on black background: dark blue dominates, a red peak exists
    strip = pixels[:, width // 4 : width // 2].reshape(-1, 3).astype(int)
    assert ((strip[:, 2] > 100) & (strip[:, 0] < 30)).mean() > 0.2
    assert ((strip[:, 0] > 100) & (strip[:, 1] < 30) & (strip[:, 2] < 30)).any()


def test_attention_figure_threads_and_validation(tmp_path):
    """Figures drawn from two threads at once are both written; bad inputs are refused."""
    maps = np.random.default_rng(4).random((3, 14, 14))
    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda i: save_attention_figure(_frame(60, 80), maps, tmp_path / f"f{i}.png"), range(2)))
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG"
    with pytest.raises(ValueError, match="frame must be uint8"):
        save_attention_figure(_frame().astype(np.float32), maps, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"\(2, 3, 14, 14\)"):
        save_attention_figure(_frame(), np.zeros((2, 3, 14, 14)), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
