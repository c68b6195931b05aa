"""Keras-compatible PyTorch layers: ConvLSTM, LSTM with one bias, 'same' pooling, Keras' BatchNorm.

The layers follow Keras' semantics so that the parameter counts of the networks in
:mod:`amnetvid_sk.networks` match the working note's: ``ConvLSTM`` is Keras'
``ConvLSTM2D`` (kernel, recurrent kernel, one bias; 'same' padding; tanh / sigmoid;
all time steps returned), ``LSTM`` is Keras' ``LSTM`` (one bias), pooling pads like
Keras' ``padding='same'``, and the weights start as Keras' do (Glorot-uniform
kernels, orthogonal recurrent kernels, zero biases with the forget gate's bias at 1).
:func:`count_params` counts as Keras does (trainable parameters plus BatchNorm's
running mean and variance).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from .convlstm_recurrence import convlstm_recurrence

__all__ = [
    "ConvLSTM",
    "ConvLSTMCell",
    "KerasBatchNorm1d",
    "LSTM",
    "count_params",
    "from_time_major",
    "glorot_dense",
    "pooled_size",
    "same_max_pool",
    "to_time_major",
]


def count_params(module: nn.Module) -> int:
    """Number of parameters as Keras reports it: trainable ones plus BatchNorm's moving mean and variance.

    Examples
    --------
    >>> from torch import nn
    >>> from amnetvid_sk.layers import count_params
    >>> count_params(nn.BatchNorm1d(64))  # weight and bias, plus the moving mean and variance
    256
    """
    n = sum(p.numel() for p in module.parameters())
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            n += m.running_mean.numel() + m.running_var.numel()
    return n


def pooled_size(size: int, pool: int) -> int:
    """Output side of Keras' ``MaxPooling(padding='same')`` with stride = pool: ``ceil(size / pool)``."""
    return -(-size // pool)


def same_max_pool(x: torch.Tensor, pool: int) -> torch.Tensor:
    """Max-pool the last two dims like Keras/TF ``padding='same'`` (stride = pool).

    TF pads ``total = out * pool - size`` cells with -inf, ``total // 2`` before and the
    rest after. PyTorch's ``ceil_mode=True`` gives the same sizes but always pads after,
    which shifts the windows when ``total >= 2`` (for example 7 -> 3 with pool 3).
    """
    if pool == 1:
        return x
    h, w = x.shape[-2:]
    ph = pooled_size(h, pool) * pool - h
    pw = pooled_size(w, pool) * pool - w
    if ph or pw:
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=float("-inf"))
    return F.max_pool2d(x, pool)


def glorot_dense(layer: nn.Linear) -> nn.Linear:
    """``layer`` with Keras' Dense initialisation: Glorot-uniform weights, zero bias."""
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class KerasBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d with Keras' epsilon that also trains on a batch of one sample.

    PyTorch refuses batch statistics over a single sample (a last batch of size 1
    happens whenever ``n_train % batch_size == 1``); such a batch is normalised with
    the running statistics instead.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps)
        return super().forward(x)


class _LSTMUpdate(torch.autograd.Function):
    """The pointwise part of an LSTM step, forward and backward written out.

    Autograd of the plain expressions takes each gate as a strided slice of the gate
    tensor (slow on channels-last convolution outputs, where the channels are the innermost
    dimension) and joins the four gate gradients with a concatenation; here the sigmoid runs
    once over the whole gate tensor and the gradients are written into one tensor in place.
    """

    @staticmethod
    def forward(ctx, gates: torch.Tensor, c_prev: torch.Tensor | None):
        act = torch.sigmoid(gates)  # the candidate's sigmoid is not used: one pass over contiguous memory
        i, f, _, o = act.chunk(4, dim=1)
        g = torch.tanh(gates.chunk(4, dim=1)[2])
        c = i * g if c_prev is None else torch.addcmul(i * g, f, c_prev)
        tanh_c = torch.tanh(c)
        ctx.save_for_backward(act, g, tanh_c, c_prev)
        return o * tanh_c, c

    @staticmethod
    @once_differentiable
    def backward(ctx, dh: torch.Tensor, dc: torch.Tensor):
        act, g, tanh_c, c_prev = ctx.saved_tensors
        i, f, _, o = act.chunk(4, dim=1)
        d_gates = torch.empty_like(act)
        di, df, dg, do = d_gates.chunk(4, dim=1)
        dc = torch.ops.aten.tanh_backward(dh * o, tanh_c).add_(dc)
        torch.ops.aten.sigmoid_backward.grad_input(dh * tanh_c, o, grad_input=do)
        torch.ops.aten.sigmoid_backward.grad_input(dc * g, i, grad_input=di)
        torch.ops.aten.tanh_backward.grad_input(dc * i, g, grad_input=dg)
        if c_prev is None:
            df.zero_()
            return d_gates, None
        torch.ops.aten.sigmoid_backward.grad_input(dc * c_prev, f, grad_input=df)
        return d_gates, dc * f


def _lstm_update(gates: torch.Tensor, c_prev: torch.Tensor | None):
    """One LSTM step from the gate pre-activations (Keras order i, f, c, o along dim 1):
    returns (h, c); ``c_prev=None`` is a zero state."""
    return _LSTMUpdate.apply(gates, c_prev)


class ConvLSTMCell(nn.Module):
    """One step of a convolutional LSTM (Keras ``ConvLSTM2D``).

    Gates (Keras order i, f, c, o) come from ``conv(x, kernel) + bias +
    conv(h, recurrent_kernel)``, both convolutions with 'same' padding and stride 1:
    ``4*f*k*k*(in+f) + 4*f`` parameters.

    Parameters
    ----------
    in_channels : int
        Channels of the input.
    filters : int
        Channels of the hidden and cell state.
    kernel_size : int, default=3
        Side of both square kernels.

    Examples
    --------
    >>> import torch
    >>> from amnetvid_sk.layers import ConvLSTMCell
    >>> cell = ConvLSTMCell(3, 8)
    >>> h, c = cell(torch.zeros(2, 3, 14, 14))
    >>> tuple(h.shape)
    (2, 8, 14, 14)
    """

    def __init__(self, in_channels: int, filters: int, kernel_size: int = 3):
        super().__init__()
        self.in_channels = in_channels
        self.filters = filters
        self.kernel_size = kernel_size
        self.kernel = nn.Conv2d(in_channels, 4 * filters, kernel_size, padding="same", bias=True)
        self.recurrent_kernel = nn.Conv2d(filters, 4 * filters, kernel_size, padding="same", bias=False)
        nn.init.xavier_uniform_(self.kernel.weight)
        nn.init.orthogonal_(self.recurrent_kernel.weight)
        with torch.no_grad():
            self.kernel.bias.zero_()
            self.kernel.bias[filters:2 * filters] = 1.0  # Keras unit_forget_bias

    def step(self, x_gates: torch.Tensor, state=None):
        """Advance one step given the input's gate pre-activations ``kernel(x)``."""
        if state is None:
            gates = x_gates
            c_prev = None
        else:
            h_prev, c_prev = state
            gates = x_gates + self.recurrent_kernel(h_prev)
        return _lstm_update(gates, c_prev)

    def forward(self, x: torch.Tensor, state=None):
        """One step: ``x`` [B, in, H, W], ``state`` (h, c) or None for zeros; returns (h, c)."""
        return self.step(self.kernel(x), state)


class ConvLSTM(nn.Module):
    """Convolutional LSTM over a sequence, returning every step (Keras ``return_sequences=True``).

    Parameters
    ----------
    in_channels : int
        Channels of each input frame.
    filters : int
        Channels of the output (and of the hidden state).
    kernel_size : int, default=3
        Side of the square kernels.

    Examples
    --------
    >>> import torch
    >>> from amnetvid_sk.layers import ConvLSTM
    >>> layer = ConvLSTM(9, 20)
    >>> sum(p.numel() for p in layer.parameters())  # Keras: 4*20*(3*3*(9+20)) + 4*20
    20960
    >>> tuple(layer(torch.zeros(2, 4, 9, 70, 70)).shape)
    (2, 4, 20, 70, 70)
    """

    def __init__(self, in_channels: int, filters: int, kernel_size: int = 3):
        super().__init__()
        self.cell = ConvLSTMCell(in_channels, filters, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [B, T, C, H, W] -> hidden states [B, T, filters, H, W]."""
        b, t = x.shape[:2]
        return from_time_major(self.forward_time_major(to_time_major(x), t), b)

    def forward_time_major(self, frames: torch.Tensor, t: int) -> torch.Tensor:
        """``frames`` [T*B, C, H, W] (time-major: step 0 of every video first) -> hidden states
        [T*B, filters, H, W], time-major and channels-last (see :func:`to_time_major`)."""
        # the input convolution does not depend on the state: one convolution over all steps;
        # time-major, each step's gates are one contiguous block (unbind's gradient is one stack,
        # where indexing [:, step] would zero-fill a copy of all steps for every step)
        x_gates = self.cell.kernel(frames.contiguous(memory_format=torch.channels_last))
        if (x_gates.dtype == torch.float32 and self.cell.kernel_size % 2
                and not torch.compiler.is_compiling()):
            # the written-out recurrence (see convlstm_recurrence): a float32 training step of the
            # note's network measured 1.03-1.11x the plain loop below with freed memory kept (1.2x
            # without), but none faster under bfloat16 autocast; Inductor fuses the plain loop on
            # its own, and an even kernel's 'same' padding is uneven
            return convlstm_recurrence(x_gates, self.cell.recurrent_kernel.weight, t)
        state, outputs = None, []
        for gates in x_gates.unflatten(0, (t, -1)).unbind(0):
            state = self.cell.step(gates, state)
            outputs.append(state[0])
        return torch.cat(outputs).contiguous(memory_format=torch.channels_last)


def to_time_major(x: torch.Tensor) -> torch.Tensor:
    """[B, T, C, H, W] -> [T*B, C, H, W], time-major and channels-last, in one copy (integer
    input becomes float32, values unchanged).

    oneDNN's CPU convolutions run on channels-last memory as it is, where on the default
    layout they reorder their input and output at every call; time-major keeps each step's
    frames in one block.
    """
    b, t, c, h, w = x.shape
    dtype = x.dtype if x.is_floating_point() else torch.float32
    out = torch.empty((t, b, h, w, c), dtype=dtype, device=x.device)
    out.copy_(x.permute(1, 0, 3, 4, 2))
    return out.view(t * b, h, w, c).permute(0, 3, 1, 2)


def from_time_major(frames: torch.Tensor, b: int) -> torch.Tensor:
    """[T*B, ...] (time-major) -> a [B, T, ...] view."""
    return frames.unflatten(0, (-1, b)).transpose(0, 1)


class LSTM(nn.Module):
    """LSTM over a sequence with Keras' single bias, returning every step.

    ``4*(units*(in+units) + units)`` parameters (PyTorch's ``nn.LSTM`` has two biases).

    Parameters
    ----------
    input_size : int
        Features per step.
    units : int
        Size of the hidden state.

    Examples
    --------
    >>> import torch
    >>> from amnetvid_sk.layers import LSTM
    >>> layer = LSTM(1, 32)
    >>> sum(p.numel() for p in layer.parameters())
    4352
    >>> tuple(layer(torch.zeros(5, 4, 1)).shape)
    (5, 4, 32)
    """

    def __init__(self, input_size: int, units: int):
        super().__init__()
        self.input_size = input_size
        self.units = units
        self.kernel = nn.Parameter(torch.empty(input_size, 4 * units))
        self.recurrent_kernel = nn.Parameter(torch.empty(units, 4 * units))
        self.bias = nn.Parameter(torch.zeros(4 * units))
        nn.init.xavier_uniform_(self.kernel)
        nn.init.orthogonal_(self.recurrent_kernel)
        with torch.no_grad():
            self.bias[units:2 * units] = 1.0  # Keras unit_forget_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [B, T, input_size] -> hidden states [B, T, units]."""
        x_gates = x @ self.kernel + self.bias  # all steps at once
        h = c = None
        outputs = []
        for step in range(x.shape[1]):
            gates = x_gates[:, step] if h is None else x_gates[:, step] + h @ self.recurrent_kernel
            h, c = _lstm_update(gates, c)
            outputs.append(h)
        return torch.stack(outputs, dim=1)

