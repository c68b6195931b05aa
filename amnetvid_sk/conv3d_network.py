"""The network of the 3D-convolutional comparison model: :class:`Conv3DNet` (its estimator is
:class:`~amnetvid_sk.conv3d.Conv3DRegressor`, as AMNetVid's network and estimator live in
:mod:`~amnetvid_sk.networks` and :mod:`~amnetvid_sk.estimators`).

The working note asks for a "comparison with a 3D convolutional model". Conv3DNet is
AMNetVid with its ConvLSTM layers replaced by 3D convolutions over (time, height,
width); everything else is AMNetVid's: the inputs (JET or raw attention maps plus the
frame scores), the scores branch, the fusion head and the input checks, so a difference in
Spearman comes from the maps branch alone. At the note's
settings (4 frames of 9x70x70 JET maps) it has 230,443 parameters, counted as
:func:`~amnetvid_sk.layers.count_params` counts AMNetVidNet's 230,937 (trainable
parameters plus the head's BatchNorm running mean and variance, as Keras does):
0.2% fewer.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import glorot_dense, pooled_size, same_max_pool
from .networks import AMNetVidNet, _check_tuple

__all__ = ["Conv3DNet"]


class _Conv3DMapsBranch(nn.Module):
    """Conv3D + ReLU -> spatial max-pool, per layer -> per-frame Dense layers -> flatten over time -> Dense."""

    def __init__(self, n_frames, map_channels, map_size, filters, kernel_size, pools, frame_dense,
                 dense, dropout):
        super().__init__()
        channels = (map_channels,) + filters
        self.convs = nn.ModuleList(
            nn.Conv3d(a, b, kernel_size, padding="same") for a, b in zip(channels[:-1], channels[1:])
        )
        for conv in self.convs:  # Keras' Conv3D initialisation, as the other layers start
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.pools = pools
        side = map_size
        for pool in pools:
            side = pooled_size(side, pool)
        self.out_side = side
        sizes = (side * side * filters[-1],) + frame_dense
        frame_layers = []
        for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            frame_layers.append(glorot_dense(nn.Linear(a, b)))
            if k == 0:  # dropout where AMNetVid has it: after the first per-frame Dense
                frame_layers.append(nn.Dropout(dropout))
        self.frame_dense = nn.Sequential(*frame_layers)
        self.dense = glorot_dense(nn.Linear(n_frames * frame_dense[-1], dense))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        h = maps.transpose(1, 2)  # [B, C, T, H, W]: Conv3d's layout
        for conv, pool in zip(self.convs, self.pools):
            h = torch.relu(conv(h))
            b, c, t = h.shape[:3]
            # pooling over space only: every frame keeps its own step, as in AMNetVid
            h = same_max_pool(h.flatten(1, 2), pool)
            h = h.reshape(b, c, t, *h.shape[-2:])
        # per-frame flatten channels first, as AMNetVid's maps branch flattens
        h = self.frame_dense(h.transpose(1, 2).flatten(2))  # [B, T, frame_dense[-1]]
        return self.dense(h.flatten(1))


def _kernel_size(value) -> tuple:
    if isinstance(value, int):
        value = (value, value, value)
    return _check_tuple("kernel_size", value, 3)


class Conv3DNet(AMNetVidNet):
    """AMNetVid with 3D convolutions over (time, height, width) in place of its ConvLSTMs.

    Maps branch: Conv3D(filters[0], kernel 3x3x3, 'same' in time and space) -> ReLU ->
    max-pool over space -> Conv3D(filters[1]) -> ReLU -> max-pool -> Conv3D(filters[2]) ->
    ReLU -> max-pool (Keras 'same' pooling: 70 -> 35 -> 12 -> 6) -> per frame flatten
    (6x6x6 = 216) -> Dense 512 -> Dropout -> Dense 64 -> flatten over time -> Dense 128.
    The scores branch (LSTM 32 -> LSTM 32 -> Dense 128), the fusion (average ->
    BatchNorm -> Dense 64 -> Dense 1 -> sigmoid), the inputs, their checks and their
    error messages are :class:`~amnetvid_sk.networks.AMNetVidNet`'s, whose subclass
    this is (``ConvLSTMRegressor`` and ``Conv3DRegressor`` treat both alike).

    With the default filters (24, 12, 6) the network has 230,443 parameters at the
    note's settings (4 frames of 9x70x70 JET maps), 0.2% fewer than AMNetVidNet's 230,937,
    counted the same way (:func:`~amnetvid_sk.layers.count_params`: trainable parameters
    plus the head's BatchNorm running mean and variance, as Keras counts). The 3D
    convolutions have a ReLU where the ConvLSTMs have their gates; the Dense layers
    have no activation, as in AMNetVid.

    Parameters
    ----------
    n_frames : int, default=4
        Frames per video (T); any T >= 1 ('same' padding in time).
    map_channels : int, default=9
        Channels per frame: 9 for the three JET renders, 3 for the raw maps.
    map_size : int, default=70
        Side of the square maps: 70 for the note's JET renders, 14 for raw maps.
    filters : tuple of int, default=(24, 12, 6)
        Filters of the Conv3D layers (one layer per entry).
    kernel_size : int or tuple of 3 int, default=(3, 3, 3)
        Kernel of every Conv3D layer as (time, height, width); an int is a cube.
        ``(1, 3, 3)`` convolves each frame alone, leaving time to the Dense layers.
    pools : tuple of int, default=(2, 3, 2)
        Spatial max-pool after each Conv3D layer (same length as ``filters``).
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
        is accepted and ignored.
    map_scale : float, default=1.0
        Factor applied to the maps before the first layer: ``map_size**2`` (196) for raw
        maps, which sum to 1; 1.0 for JET renders (see AMNetVidNet).

    Examples
    --------
    >>> import torch
    >>> from amnetvid_sk.conv3d_network import Conv3DNet
    >>> from amnetvid_sk.layers import count_params
    >>> count_params(Conv3DNet())  # the note's settings; AMNetVidNet: 230937
    230443
    >>> net = Conv3DNet(n_frames=6, map_channels=3, map_size=14).eval()
    >>> tuple(net(maps=torch.rand(2, 6, 3, 14, 14), scores=torch.rand(2, 6)).shape)
    (2, 1)
    """

    def __init__(self, n_frames=4, map_channels=9, map_size=70, filters=(24, 12, 6), kernel_size=(3, 3, 3),
                 pools=(2, 3, 2), frame_dense=(512, 64), maps_dense=128, score_units=(32, 32),
                 score_dense=128, fusion_dense=64, dropout=0.5, use_maps=True, use_scores=True,
                 map_scale=1.0):
        super().__init__(n_frames=n_frames, map_channels=map_channels, map_size=map_size, filters=filters,
                         kernel_size=kernel_size, pools=pools, frame_dense=frame_dense, maps_dense=maps_dense,
                         score_units=score_units, score_dense=score_dense, fusion_dense=fusion_dense,
                         dropout=dropout, use_maps=use_maps, use_scores=use_scores, map_scale=map_scale)

    def _make_maps_branch(self, filters, kernel_size, pools, frame_dense, maps_dense, dropout) -> nn.Module:
        return _Conv3DMapsBranch(self.n_frames, self.map_channels, self.map_size, filters, _kernel_size(kernel_size),
                                 pools, frame_dense, maps_dense, dropout)
