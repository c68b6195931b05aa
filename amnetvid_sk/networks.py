"""PyTorch modules of AMNetVid (the working note's Keras network) and the score LSTM.

Built from the Keras-compatible layers of :mod:`amnetvid_sk.layers` (re-exported
here). Dense layers have no activation, as in the original. Counting as Keras does
(trainable parameters plus BatchNorm's running mean and variance),
:class:`AMNetVidNet` has 230,937 parameters at the note's settings and
:class:`ScoreLSTMNet` 38,017; :func:`count_params` computes that count.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import ParameterError
from .layers import (
    LSTM,
    ConvLSTM,
    ConvLSTMCell,
    KerasBatchNorm1d,
    count_params,
    from_time_major,
    glorot_dense,
    pooled_size,
    same_max_pool,
    to_time_major,
)

__all__ = [
    "AMNetVidNet",
    "ConvLSTM",
    "ConvLSTMCell",
    "LSTM",
    "ScoreLSTMNet",
    "count_params",
    "pooled_size",
]


def _check_tuple(name: str, value, length=None) -> tuple:
    try:
        value = tuple(int(v) for v in value)
    except TypeError:
        raise ParameterError(f"{name} must be a tuple of ints; got {value!r}.") from None
    if length is not None and len(value) != length:
        raise ParameterError(f"{name} must hold {length} ints; got {value!r}.")
    if not value or any(v < 1 for v in value):
        raise ParameterError(f"{name} must hold positive ints; got {value!r}.")
    return value


class _ScoresBranch(nn.Module):
    """LSTM stack over frame scores -> flatten over time -> Dense (no activation)."""

    def __init__(self, n_frames: int, units: tuple, dense: int):
        super().__init__()
        sizes = (1,) + units
        self.lstms = nn.ModuleList(LSTM(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.dense = glorot_dense(nn.Linear(n_frames * units[-1], dense))

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        h = scores.unsqueeze(-1)
        for lstm in self.lstms:
            h = lstm(h)
        return self.dense(h.flatten(1))


class _MapsBranch(nn.Module):
    """ConvLSTM stack with pooling -> per-frame Dense layers -> flatten over time -> Dense."""

    def __init__(self, n_frames, map_channels, map_size, filters, kernel_size, pools, frame_dense,
                 dense, dropout):
        super().__init__()
        channels = (map_channels,) + filters
        self.convlstms = nn.ModuleList(
            ConvLSTM(a, b, kernel_size) for a, b in zip(channels[:-1], channels[1:])
        )
        self.pools = pools
        side = map_size
        for pool in pools:
            side = pooled_size(side, pool)
        self.out_side = side
        per_frame = side * side * filters[-1]
        frame_layers = []
        sizes = (per_frame,) + frame_dense
        for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            frame_layers.append(glorot_dense(nn.Linear(a, b)))
            if k == 0:  # the note's Dropout follows the first per-frame Dense
                frame_layers.append(nn.Dropout(dropout))
        self.frame_dense = nn.Sequential(*frame_layers)
        self.dense = glorot_dense(nn.Linear(n_frames * frame_dense[-1], dense))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        b, t = maps.shape[:2]
        h = to_time_major(maps)  # [T*B, C, H, W]: every layer's frames stay in this layout
        for convlstm, pool in zip(self.convlstms, self.pools):
            h = same_max_pool(convlstm.forward_time_major(h, t), pool)
        # the per-frame flatten is channels first (C, H, W), whatever the memory layout
        h = self.frame_dense(from_time_major(h, b).flatten(2))  # [B, T, frame_dense[-1]]
        return self.dense(h.flatten(1))


class _Head(nn.Module):
    """BatchNorm -> Dense (no activation) -> Dense 1 -> sigmoid."""

    def __init__(self, in_features: int, fusion_dense: int):
        super().__init__()
        self.norm = KerasBatchNorm1d(in_features, eps=1e-3)
        self.dense = glorot_dense(nn.Linear(in_features, fusion_dense))
        self.out = glorot_dense(nn.Linear(fusion_dense, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # float32 even under bfloat16 autocast: a prediction rounded to bfloat16's 8 bits would tie
        # videos that Spearman must rank apart (and the head costs nothing next to the ConvLSTM)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return torch.sigmoid(self.out(self.dense(self.norm(x.float()))))


def _shape_error(what: str, got, expected: str, fix: str) -> ValueError:
    return ValueError(f"{what} has shape {tuple(got)} but the network expects {expected}; {fix}")


class AMNetVidNet(nn.Module):
    """AMNetVid: ConvLSTM over attention-map sequences fused with an LSTM over frame scores.

    Maps branch: ConvLSTM(filters[0]) -> max-pool -> ConvLSTM(filters[1]) -> max-pool
    -> ConvLSTM(filters[2]) -> max-pool (Keras 'same' pooling: 70 -> 35 -> 12 -> 6)
    -> per frame flatten -> Dense 512 -> Dropout -> Dense 64 -> flatten over time ->
    Dense 128. Scores branch: LSTM(32) -> LSTM(32) -> flatten -> Dense 128. Fusion:
    average of the two vectors -> BatchNorm -> Dense 64 -> Dense 1 -> sigmoid. With
    only one branch enabled, its vector goes to the fusion head directly.

    Parameters
    ----------
    n_frames : int, default=4
        Frames per video (T).
    map_channels : int, default=9
        Channels per frame: 9 for the three JET renders, 3 for the raw maps.
    map_size : int, default=70
        Side of the square maps: 70 for the note's JET renders, 14 for raw maps.
    filters : tuple of int, default=(20, 10, 5)
        Filters of the ConvLSTM layers (one layer per entry).
    kernel_size : int, default=3
        Side of the ConvLSTM kernels.
    pools : tuple of int, default=(2, 3, 2)
        Spatial max-pool after each ConvLSTM layer (same length as ``filters``).
    frame_dense : tuple of int, default=(512, 64)
        Per-frame Dense layers after the last pooling; dropout follows the first.
    maps_dense : int, default=128
        Dense layer after flattening the frames of the maps branch.
    score_units : tuple of int, default=(32, 32)
        Units of the stacked score LSTMs.
    score_dense : int, default=128
        Dense layer after flattening the score LSTM's steps.
    fusion_dense : int, default=64
        Dense layer after the BatchNorm of the fused vector.
    dropout : float, default=0.5
        Dropout rate after the first per-frame Dense layer.
    use_maps, use_scores : bool, default=True
        Which branches to build (ablations); at least one. A disabled branch's input
        is accepted and ignored, so one input dict serves every ablation.
    map_scale : float, default=1.0
        Factor applied to the maps before the first layer. Raw attention maps sum to 1
        (values around 1/196), which trains slowly; ``map_size**2`` (196 for 14x14)
        makes a uniform map all ones and trains as fast per epoch as the JET renders.
        Leave 1.0 for JET renders, which are already in [0, 1].

    Notes
    -----
    ``maps`` may be float32 or uint8: uint8 maps (JET renders kept as bytes, as
    ``AttentionSequences`` returns them) are divided by 255 batch by batch, so a data
    set stays 4x smaller in memory.

    Inputs are channels first (``[n, T, C, H, W]``); Keras' per-frame flatten is
    channels last, which only matters when porting Keras weights.

    Examples
    --------
    >>> import torch
    >>> from amnetvid_sk.networks import AMNetVidNet, count_params
    >>> net = AMNetVidNet(map_channels=3, map_size=14).eval()
    >>> out = net(maps=torch.rand(2, 4, 3, 14, 14), scores=torch.rand(2, 4))
    >>> tuple(out.shape)
    (2, 1)
    """

    def __init__(self, n_frames=4, map_channels=9, map_size=70, filters=(20, 10, 5), kernel_size=3,
                 pools=(2, 3, 2), frame_dense=(512, 64), maps_dense=128, score_units=(32, 32),
                 score_dense=128, fusion_dense=64, dropout=0.5, use_maps=True, use_scores=True,
                 map_scale=1.0):
        super().__init__()
        if not (use_maps or use_scores):
            raise ParameterError(f"{type(self).__name__} needs at least one branch: use_maps=True or use_scores=True.")
        self.n_frames = int(n_frames)
        self.map_channels = int(map_channels)
        self.map_size = int(map_size)
        self.use_maps = bool(use_maps)
        self.use_scores = bool(use_scores)
        self.map_scale = float(map_scale)
        if not self.map_scale > 0:
            raise ParameterError(f"map_scale must be a positive number; got {map_scale!r}.")
        filters = _check_tuple("filters", filters)
        pools = _check_tuple("pools", pools, len(filters))
        frame_dense = _check_tuple("frame_dense", frame_dense)
        score_units = _check_tuple("score_units", score_units)
        if use_maps and use_scores and maps_dense != score_dense:
            raise ParameterError(
                f"The two branches are averaged, so maps_dense ({maps_dense}) must equal "
                f"score_dense ({score_dense})."
            )
        if not 0.0 <= dropout < 1.0:
            raise ParameterError(f"dropout must be in [0, 1); got {dropout!r}.")
        self.maps_branch = (
            self._make_maps_branch(filters, kernel_size, pools, frame_dense, int(maps_dense), float(dropout))
            if use_maps else None
        )
        self.scores_branch = (
            _ScoresBranch(self.n_frames, score_units, int(score_dense)) if use_scores else None
        )
        self.head = _Head(int(maps_dense) if use_maps else int(score_dense), int(fusion_dense))

    def _make_maps_branch(self, filters, kernel_size, pools, frame_dense, maps_dense, dropout) -> nn.Module:
        """The maps branch: ConvLSTMs here; a subclass puts another network in their place
        (:class:`~amnetvid_sk.conv3d.Conv3DNet`), keeping the scores branch, the head and the checks."""
        return _MapsBranch(self.n_frames, self.map_channels, self.map_size, filters, int(kernel_size), pools,
                           frame_dense, maps_dense, dropout)

    def _check_maps(self, maps: torch.Tensor) -> None:
        expected = (self.n_frames, self.map_channels, self.map_size, self.map_size)
        if maps.ndim == 5 and tuple(maps.shape[1:]) == expected:
            return
        want = f"(n, {', '.join(map(str, expected))}) = (n, n_frames, map_channels, map_size, map_size)"
        if maps.ndim != 5:
            raise _shape_error("maps", maps.shape, want,
                               "pass maps as [n_videos, n_frames, channels, height, width].")
        _, t, c, h, w = maps.shape
        if maps.shape[-1] in (3, 9) and c == h and c not in (3, 9):
            raise _shape_error("maps", maps.shape, want,
                               "the maps look channels-last; pass maps.transpose(0, 1, 4, 2, 3).")
        if h != w:
            raise _shape_error("maps", maps.shape, want, "the maps must be square (height == width).")
        fixes = []
        if t != self.n_frames:
            fixes.append(f"module__n_frames={t}")
        if h != self.map_size:
            fixes.append(f"module__map_size={h}")
        if c != self.map_channels:
            fixes.append(f"module__map_channels={c}")
        raise _shape_error("maps", maps.shape, want, "set " + ", ".join(fixes) + " to match the input.")

    def _check_scores(self, scores: torch.Tensor) -> None:
        if scores.ndim == 2 and scores.shape[1] == self.n_frames:
            return
        want = f"(n, {self.n_frames}) = (n, n_frames)"
        if scores.ndim != 2:
            raise _shape_error("scores", scores.shape, want, "pass scores as [n_videos, n_frames].")
        raise _shape_error("scores", scores.shape, want,
                           f"set module__n_frames={scores.shape[1]} to match the input.")

    def forward(self, maps: torch.Tensor | None = None, scores: torch.Tensor | None = None) -> torch.Tensor:
        """``maps`` [n, T, C, H, W] (float32, or uint8 /255) and ``scores`` [n, T] float32 -> [n, 1] in (0, 1)."""
        vectors = []
        if self.use_maps:
            if maps is None:
                raise ValueError("AMNetVidNet(use_maps=True) needs the 'maps' input.")
            self._check_maps(maps)
            if maps.dtype == torch.uint8:
                maps = maps.float() / 255.0
            if self.map_scale != 1.0:
                maps = maps * self.map_scale
            vectors.append(self.maps_branch(maps))
        if self.use_scores:
            if scores is None:
                raise ValueError("AMNetVidNet(use_scores=True) needs the 'scores' input.")
            self._check_scores(scores)
            vectors.append(self.scores_branch(scores))
        if len(vectors) == 2 and vectors[0].shape[0] != vectors[1].shape[0]:
            raise ValueError(
                f"maps and scores hold different numbers of videos ({vectors[0].shape[0]} vs "
                f"{vectors[1].shape[0]})."
            )
        fused = vectors[0] if len(vectors) == 1 else (vectors[0] + vectors[1]) / 2
        return self.head(fused)


class ScoreLSTMNet(nn.Module):
    """The note's LSTM baseline: LSTMs over frame scores -> Dense -> BatchNorm -> Dense -> Dense 1, sigmoid.

    Parameters
    ----------
    n_frames : int, default=4
        Frames per video (T).
    units : tuple of int, default=(32, 32)
        Units of the stacked LSTMs.
    dense : int, default=128
        Dense layer after flattening the LSTM's steps.
    fusion_dense : int, default=64
        Dense layer after the BatchNorm.

    Examples
    --------
    >>> import torch
    >>> from amnetvid_sk.networks import ScoreLSTMNet, count_params
    >>> count_params(ScoreLSTMNet())
    38017
    >>> tuple(ScoreLSTMNet().eval()(torch.rand(3, 4)).shape)
    (3, 1)
    """

    def __init__(self, n_frames=4, units=(32, 32), dense=128, fusion_dense=64):
        super().__init__()
        self.n_frames = int(n_frames)
        self.scores_branch = _ScoresBranch(self.n_frames, _check_tuple("units", units), int(dense))
        self.head = _Head(int(dense), int(fusion_dense))

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        """``scores`` [n, T] float32 -> predictions [n, 1] in (0, 1)."""
        if scores.ndim != 2 or scores.shape[1] != self.n_frames:
            fix = (f"set module__n_frames={scores.shape[1]} to match the input."
                   if scores.ndim == 2 else "pass X as [n_videos, n_frames].")
            raise _shape_error("X (frame scores)", scores.shape, f"(n, {self.n_frames}) = (n, n_frames)", fix)
        return self.head(self.scores_branch(scores))

