"""Attention maps rendered "on black background", as the AMNetVid working note drew them.

Each 14x14 attention map is min-max normalised on its own, upsampled (bicubic) and
coloured with the JET colormap, with no blending with the frame. The three maps of a
frame give three RGB images, stacked into one 9-channel image
``[r0, g0, b0, r1, g1, b1, r2, g2, b2]``: the ConvLSTM input of AMNetVid.

The colormap is a 256-entry lookup table built here from matplotlib's 'jet' segment
data, so importing this module (and rendering) does not import matplotlib; only
:func:`attention_figure` and :func:`save_attention_figure` do.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ._validation import StrOptions, validate_params
from .atomic_files import write_file_atomic
from .errors import ParameterError

__all__ = ["JET_LUT", "MAP_TITLES", "attention_figure", "render_jet", "render_maps", "save_attention_figure",
           "wrap_to_width"]

# matplotlib's _jet_data: per channel, (x, y_left, y_right) breakpoints. Every
# segment is continuous (y_left == y_right), so linear interpolation is exact.
_JET_SEGMENTS = {
    "red": ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
    "green": ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
    "blue": ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)),
}
_LUT_SIZE = 256


def _jet_lut() -> np.ndarray:
    x = np.linspace(0.0, 1.0, _LUT_SIZE)
    channels = []
    for name in ("red", "green", "blue"):
        xs, ys = zip(*_JET_SEGMENTS[name])
        channels.append(np.interp(x, xs, ys))
    lut = np.clip(np.stack(channels, axis=1), 0.0, 1.0)
    # Truncation, not rounding: the bytes matplotlib itself produces with
    # ``colormaps['jet'](x, bytes=True)``, so the top of jet is (127, 0, 0).
    return (lut * 255).astype(np.uint8)


#: uint8 [256, 3]: the RGB bytes of matplotlib's 'jet' colormap, index 0 = lowest.
JET_LUT: np.ndarray = _jet_lut()
JET_LUT.setflags(write=False)

# Maps per chunk: bounds the float/int32 temporaries (about 40 MB at 70x70).
_CHUNK = 1024
_MODES = ("jet", "raw")


def _check_size(size, func: str) -> int:
    # Written out rather than sklearn's Interval(Integral, 1, None): that takes True as a size of
    # 1, which is refused here; the message is sklearn's wording.
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ParameterError(
            f"The 'size' parameter of {func} must be an int in the range [1, inf). Got {size!r} instead."
        )
    return int(size)


def _as_maps_tensor(maps, func: str) -> torch.Tensor:
    """Float32 CPU tensor view of ``maps`` [..., 3, h, w], checked."""
    if isinstance(maps, torch.Tensor):
        t = maps.detach().to(device="cpu", dtype=torch.float32)
    else:
        arr = np.asarray(maps)
        if arr.dtype.kind not in "fiub":
            raise ValueError(f"{func}: maps must be numeric, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    shape = tuple(t.shape)
    if t.ndim < 3 or shape[-3] != 3 or shape[-2] < 1 or shape[-1] < 1:
        raise ValueError(
            f"{func}: maps must have shape [..., 3, h, w] (three attention maps per frame); "
            f"got shape {shape}"
        )
    return t


@lru_cache(maxsize=32)
def _bicubic_operator(n_in: int, n_out: int) -> torch.Tensor:
    """[n_out, n_in] matrix of 1-D bicubic resampling, taken from F.interpolate itself.

    Torch's bicubic (``align_corners=False``, border taps clamped) is separable and
    linear, so resizing a batch of maps is ``A_h @ X @ A_w.T``: two small batched
    matmuls, which the CPU runs faster than ``F.interpolate``'s per-pixel loop, equal to it
    up to float rounding. Built by resizing unit impulses so the weights are torch's.
    """
    impulses = torch.eye(n_in, dtype=torch.float32).view(n_in, 1, n_in, 1)
    columns = F.interpolate(impulses, size=(n_out, 1), mode="bicubic", align_corners=False)
    return columns[:, 0, :, 0].T.contiguous()


def _render(t: torch.Tensor, out_h: int, out_w: int) -> np.ndarray:
    """JET-render float maps ``t`` [..., 3, h, w] to uint8 [..., 9, out_h, out_w]."""
    lead = tuple(t.shape[:-3])
    h, w = t.shape[-2:]
    flat = t.reshape(-1, h, w)  # one map per row; a view when t is contiguous
    n = flat.shape[0]
    out = np.empty((n, 3, out_h, out_w), dtype=np.uint8)
    out_t = torch.from_numpy(out)
    # The LUT scale (x256) is folded into the row operator: one pass fewer.
    rows = _bicubic_operator(h, out_h) * _LUT_SIZE
    cols_t = _bicubic_operator(w, out_w).T.contiguous()
    # One [256] table per colour channel: three flat gathers write straight into
    # the channels-first output, with no [..., 3] -> channels-first permute copy.
    lut = torch.from_numpy(np.ascontiguousarray(JET_LUT.T))
    for start in range(0, n, _CHUNK):
        x = flat[start : start + _CHUNK]
        m = x.shape[0]
        finite = torch.isfinite(x).flatten(1).all(1)
        if not finite.all():
            bad = start + int((~finite).nonzero()[0, 0])
            index = tuple(int(i) for i in np.unravel_index(bad, lead + (3,)))
            raise ValueError(f"maps contain NaN or infinite values (first at map index {index})")
        lo = x.amin(dim=(1, 2), keepdim=True)
        span = x.amax(dim=(1, 2), keepdim=True) - lo
        flat_map = span <= 0
        # A constant map carries no "where": it renders as all zeros (jet bottom).
        x = (x - lo) / torch.where(flat_map, torch.ones_like(span), span)
        x = x.masked_fill(flat_map, 0.0)
        x = torch.matmul(rows, (x.reshape(-1, w) @ cols_t).view(m, h, out_w))
        # Bicubic overshoots [0, 1] near sharp peaks: clamp. Then matplotlib's
        # float -> index rule, floor(x * 256) with x == 1 -> 255.
        idx = x.clamp_(0.0, _LUT_SIZE - 1).to(torch.int32).reshape(-1)
        block = out_t[start : start + m]
        for c in range(3):
            block[:, c] = lut[c].index_select(0, idx).view(m, out_h, out_w)
    return out.reshape(lead + (9, out_h, out_w))


def render_jet(maps, size: int = 70) -> np.ndarray:
    """Render attention maps as JET-coloured RGB images on black background.

    Each map is min-max normalised on its own (a constant map becomes all zeros),
    upsampled to ``size x size`` with bicubic interpolation (the operator of
    ``torch.nn.functional.interpolate(mode="bicubic", align_corners=False)``, applied
    as two matrix products; clamped to [0, 1] after, since bicubic overshoots), and
    coloured with matplotlib's 'jet' colormap. There is no blending with the frame.
    The three RGB maps of a frame are stacked channels first. Maps are processed in
    chunks of 1024, so memory stays bounded for any number of maps.

    Parameters
    ----------
    maps : array-like or torch.Tensor of shape (..., 3, h, w)
        Attention maps (float), with any leading dimensions, for example
        ``[n_videos, n_frames, 3, 14, 14]``.
    size : int, default=70
        Side of the rendered square images (70 in the working note).

    Returns
    -------
    rendered : numpy.ndarray of uint8, shape (..., 9, size, size)
        Channels ``[r0, g0, b0, r1, g1, b1, r2, g2, b2]``: the RGB image of map 0,
        then of map 1, then of map 2.

    Raises
    ------
    ValueError
        If the last three dimensions are not ``(3, h, w)``, ``size`` is not a
        positive int, or a map holds NaN or infinite values.

    Examples
    --------
    >>> import numpy as np
    >>> maps = np.random.default_rng(0).random((2, 4, 3, 14, 14))
    >>> img = render_jet(maps, size=70)
    >>> img.shape, img.dtype
    ((2, 4, 9, 70, 70), dtype('uint8'))
    """
    size = _check_size(size, "render_jet")
    t = _as_maps_tensor(maps, "render_jet")
    return _render(t, size, size)


@validate_params({"mode": [StrOptions(set(_MODES))]}, prefer_skip_nested_validation=True)
def render_maps(maps, mode: str = "jet", size: int = 70) -> np.ndarray:
    """Attention maps as network input: JET-rendered (/255) or raw.

    Parameters
    ----------
    maps : array-like or torch.Tensor of shape (..., 3, h, w)
        Attention maps (float).
    mode : {'jet', 'raw'}, default='jet'
        ``'jet'``: :func:`render_jet` divided by 255, shape ``(..., 9, size, size)``
        (the working note's input). ``'raw'``: the maps themselves, shape
        ``(..., 3, h, w)``; the same information at a small fraction of the size.
    size : int, default=70
        Side of the rendered images; used by ``'jet'`` only.

    Returns
    -------
    x : numpy.ndarray of float32
        ``(..., 9, size, size)`` in [0, 1] for ``'jet'``, ``(..., 3, h, w)`` for ``'raw'``.

    Raises
    ------
    ValueError
        If ``mode`` is not one of {'jet', 'raw'}, or as :func:`render_jet`.

    Examples
    --------
    >>> import numpy as np
    >>> maps = np.full((4, 3, 14, 14), 1 / 196, dtype=np.float32)
    >>> render_maps(maps, mode="jet", size=70).shape
    (4, 9, 70, 70)
    >>> render_maps(maps, mode="raw").shape
    (4, 3, 14, 14)
    """
    if mode == "raw":
        t = _as_maps_tensor(maps, "render_maps")
        return np.array(t.numpy(), dtype=np.float32, copy=True)
    rendered = render_jet(maps, size=size)
    x = rendered.astype(np.float32)
    x /= 255.0
    return x


#: the titles of the three map panels of a frame model that names no titles of its own
MAP_TITLES = ("attention map 1", "attention map 2", "attention map 3")
# points per inch; the mean width of a character of matplotlib's default font (DejaVu Sans) is
# about 0.6 of its size (digits 0.64, lower case less): the wrap width keeps to the wider
_PT_PER_INCH = 72.0
_CHAR_EM = 0.64


def wrap_to_width(text: str, width_in: float, fontsize: float = 10.0) -> str:
    """``text`` broken into lines that fit ``width_in`` inches at ``fontsize`` points.

    Matplotlib centres a title over its axes and clips what runs past the canvas; a title wider
    than its panel must be broken to stay inside. Words longer than a line (a path, a
    fingerprint) are broken too.

    Examples
    --------
    >>> print(wrap_to_width("gbuckbunny frame 56 (t=2.24 s), score 0.812", 2.0))
    gbuckbunny frame 56
    (t=2.24 s), score
    0.812
    """
    import textwrap

    chars = max(8, int(width_in * _PT_PER_INCH / (fontsize * _CHAR_EM)))
    return "\n".join(textwrap.fill(line, chars) or line for line in str(text).splitlines())


def _check_frame(frame, frame_size):
    """The frame as an array (None stays None), and the (height, width) of the panels."""
    if frame is None:
        size = tuple(int(v) for v in frame_size) if frame_size is not None else (168, 224)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"save_attention_figure: frame_size must be (height, width) >= 1; got {frame_size!r}")
        return None, size
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or 0 in frame.shape:
        raise ValueError(
            f"save_attention_figure: frame must be uint8 of shape (H, W, 3); "
            f"got {frame.dtype} of shape {frame.shape}"
        )
    return frame, frame.shape[:2]


def attention_figure(frame, maps, title: str | None = None, score: float | None = None,
                     map_titles=None, frame_size=None, note: str | None = None):
    """The note's Figure 1 as a :class:`matplotlib.figure.Figure` (see :func:`save_attention_figure`).

    Returns
    -------
    fig : matplotlib.figure.Figure
        Drawn with the Agg canvas; every title lies inside it.
    """
    frame, (height, width) = _check_frame(frame, frame_size)
    t = _as_maps_tensor(maps, "save_attention_figure")
    if t.ndim != 3:
        raise ValueError(f"save_attention_figure: maps must have shape (3, h, w); got shape {tuple(t.shape)}")
    map_titles = tuple(MAP_TITLES if map_titles is None else map_titles)
    if len(map_titles) != 3:
        raise ValueError(f"save_attention_figure: map_titles must hold 3 titles; got {map_titles!r}")
    rendered = _render(t, height, width).reshape(3, 3, height, width).transpose(0, 2, 3, 1)

    # Imported here: matplotlib is slow to import and only the figures need it.
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    panel_w = 3.0  # inches
    panel_h = panel_w * height / width
    # constrained layout keeps titles and the colour bar inside the canvas, and room is left
    # above the panels for titles of up to three lines
    fig = Figure(figsize=(4 * panel_w + 0.9, panel_h + 0.75), dpi=100, facecolor="black", layout="constrained")
    FigureCanvasAgg(fig)  # attach the Agg canvas explicitly: never a GUI backend
    frame_title = title if title is not None else "frame"
    if score is not None:
        frame_title = f"{frame_title}, score {float(score):.3f}"
    if frame is None:  # the video file is gone or unreadable: the maps alone, and why
        frame = np.full((height, width, 3), 48, dtype=np.uint8)
    axes = fig.subplots(1, 4)
    for ax, image, text in zip(axes, [frame, *rendered], [frame_title, *map_titles]):
        ax.imshow(image, interpolation="nearest", aspect="auto")
        ax.set_axis_off()
        ax.set_title(wrap_to_width(text, 0.95 * panel_w), color="white", fontsize=10)
    if note:
        axes[0].text(0.5, 0.5, wrap_to_width(note, 0.9 * panel_w, 9), transform=axes[0].transAxes,
                     ha="center", va="center", color="white", fontsize=9)
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), colormaps["jet"]), ax=list(axes[1:]), ticks=[0, 1],
                       fraction=0.03, pad=0.01, aspect=12)
    bar.ax.set_yticklabels(["min", "max"])
    bar.ax.tick_params(colors="white", labelsize=8)
    bar.outline.set_edgecolor("white")
    bar.set_label("each map\nmin to max", color="white", fontsize=8)
    return fig


def save_attention_figure(frame, maps, path, title: str | None = None, score: float | None = None,
                          map_titles=None, frame_size=None, note: str | None = None) -> Path:
    """Save one frame beside its three attention maps as a PNG (the note's Figure 1).

    Four panels, left to right: the frame, then attention maps 1, 2 and 3, each
    rendered JET on black background at the frame's size (the maps cover the whole
    frame, as the frame model saw it), and a colour bar of the JET scale (each map is
    scaled from its own minimum to its own maximum). Every title is broken into lines
    that fit its panel. Drawn with matplotlib's Agg backend through
    :class:`matplotlib.figure.Figure` (no pyplot, no display), so it is safe to call
    from worker threads; the PNG is written atomically.

    Parameters
    ----------
    frame : numpy.ndarray of uint8, shape (H, W, 3), or None
        The RGB frame; None when it cannot be shown (the video file is gone): the
        frame panel is then grey, with ``note`` saying why.
    maps : array-like of shape (3, h, w)
        Its three attention maps.
    path : str or os.PathLike
        Where to write the PNG; missing parent folders are created.
    title : str, optional
        Title of the frame panel, for example ``"frame 12 (t=3.00 s)"``;
        ``"frame"`` when not given.
    score : float, optional
        The frame's memorability score, appended to the frame title as
        ``", score 0.812"``.
    map_titles : sequence of 3 str, optional
        What each map is, for the frame model at hand (AMNet: its attention steps;
        ResMem: the layers of its Grad-CAM maps); :data:`MAP_TITLES` when not given.
    frame_size : (int, int), optional
        ``(height, width)`` of the panels when ``frame`` is None (default 168 x 224).
    note : str, optional
        Text written over the frame panel.

    Returns
    -------
    path : pathlib.Path
        The PNG written.

    Raises
    ------
    ValueError
        If ``frame`` is not uint8 ``(H, W, 3)``, ``maps`` is not ``(3, h, w)`` or
        ``map_titles`` does not hold three titles.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> frame = np.zeros((90, 120, 3), dtype=np.uint8)
    >>> maps = np.random.default_rng(0).random((3, 14, 14))
    >>> out = save_attention_figure(frame, maps, os.path.join(tempfile.mkdtemp(), "f.png"),
    ...                             title="frame 12 (t=3.00 s)", score=0.812)
    >>> out.suffix
    '.png'
    """
    import io

    fig = attention_figure(frame, maps, title=title, score=score, map_titles=map_titles, frame_size=frame_size,
                           note=note)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor=fig.get_facecolor())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_file_atomic(path, buffer.getvalue(), "figure")
