"""The recurrence of a ConvLSTM layer over all its time steps, forward and backward written out.

Written with autograd, each step of a ConvLSTM on the working note's 70x70 maps runs a dozen
element-wise passes over 50 MB gate tensors (a 32-video batch) between its convolutions, most
of them over one gate of the channels-last convolution output, where the four gates interleave
pixel by pixel; with the concatenation of the steps' outputs and its gradient, that was 40% of
a float32 training step on 2 cores (``torch.profiler``). Here:

- each step's gate arithmetic runs over a few videos at a time (:data:`CHUNK_BYTES`), so that
  a chunk's intermediate values stay in the CPU's caches between passes;
- the gates are transposed once per step into a gate-major copy (each gate one contiguous
  block), and the gate gradients are written back in the convolution's layout in one pass;
- tanh is computed as ``2 sigmoid(2x) - 1``, several times faster on CPUs than ``torch.tanh``;
- the hidden states are written straight into the layer's output, and the gradients of every
  step's gates straight into one tensor (no concatenation, no stack in the backward);
- the convolutions run on the whole batch: the recurrent one step by step, as the recurrence
  demands, and its weight gradient once over all steps.

The values are those of the plain per-step loop (``ConvLSTMCell.step``), to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

__all__ = ["convlstm_recurrence"]

#: Bytes of one chunk's gate pre-activations on a CPU: with the chunk's other tensors, a
#: working set that the L3 cache of a current x86 CPU holds; on the note's first layer, five
#: videos of a batch. Measured on 2 cores (AVX512, 32 MB L3), 1 to 64 MB trained within 5% of
#: each other once freed memory is kept (amnetvid_sk.freed_memory); 8 MB was the fastest.
CHUNK_BYTES = 8 << 20


def _chunks(batch: int, gate_bytes_per_video: int, device: torch.device) -> list[slice]:
    """Slices of the batch, each a few MB of gates on a CPU; the whole batch on a GPU (one
    kernel launch per pass beats cache reuse there)."""
    if device.type != "cpu":
        return [slice(0, batch)]
    size = max(1, CHUNK_BYTES // max(1, gate_bytes_per_video))
    return [slice(start, min(start + size, batch)) for start in range(0, batch, size)]


def _gate_major(gates: torch.Tensor) -> torch.Tensor:
    """[n, 4F, H, W] channels-last -> a [4, n, H, W, F] view of the same memory (gate first)."""
    return gates.unflatten(1, (4, -1)).permute(1, 0, 3, 4, 2)


def _nhwc(x: torch.Tensor | None) -> torch.Tensor | None:
    """[n, F, H, W] -> its [n, H, W, F] view (the memory order of channels-last), like a gate block."""
    return None if x is None else x.permute(0, 2, 3, 1)


def _tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh(x) as 2 sigmoid(2x) - 1: the same values to float32 rounding (an absolute error of a
    few 1e-8), several times faster on CPUs than ``torch.tanh``'s accurate vector code."""
    return torch.sigmoid(x * 2).mul_(2).sub_(1)


def _step_forward(x_gates, rec, c_prev, act, c, h) -> None:
    """One step of one chunk.

    Writes ``act`` [4, n, H, W, F] (gate-major: each gate one contiguous block, where the
    channels-last gates interleave them pixel by pixel): the sigmoids of i, f and o, and
    ``sigmoid(2 g)``, from which ``tanh(g) = 2 sigmoid(2 g) - 1``; the cell state ``c`` and the
    hidden state ``h``.
    """
    c_prev, c, h = _nhwc(c_prev), _nhwc(c), _nhwc(h)
    if rec is None:
        act.copy_(_gate_major(x_gates))
    else:
        torch.add(_gate_major(x_gates), _gate_major(rec), out=act)
    act[2].mul_(2)
    act.sigmoid_()
    i, f, s_g, o = act.unbind(0)
    g = s_g * 2 - 1
    torch.mul(i, g, out=c)
    if c_prev is not None:
        c.addcmul_(f, c_prev)
    torch.mul(o, _tanh(c), out=h)


def _step_backward(dh, dc_next, act, c, c_prev, d_gates, dc_prev) -> None:
    """The gradients of one step of one chunk: writes ``d_gates`` (of the gate pre-activations,
    channels-last) and ``dc_prev`` (reaching the previous cell state); ``dh`` and ``dc_next``
    reach this step's hidden and cell states from the loss and from the next step."""
    dh, dc_next, c, c_prev, dc_prev = (_nhwc(v) for v in (dh, dc_next, c, c_prev, dc_prev))
    i, f, s_g, o = act.unbind(0)
    tanh_c = _tanh(c)  # recomputed: cheaper than a tensor written and read back per step
    # each gate's gradient is sigmoid_backward(m, s) = m s (1 - s) with its own m; for the
    # candidate, d tanh(g) = (1 - tanh(g)^2) = 4 s_g (1 - s_g), so one pass gives all four
    m = torch.empty_like(act)
    torch.mul(dh, tanh_c, out=m[3])
    dc = torch.ops.aten.tanh_backward(dh * o, tanh_c)
    if dc_next is not None:
        dc.add_(dc_next)
    torch.mul(dc, s_g * 2 - 1, out=m[0])
    torch.mul(dc, i, out=m[2]).mul_(4)
    if c_prev is None:
        m[1].zero_()
    else:
        torch.mul(dc, c_prev, out=m[1])
        torch.mul(dc, f, out=dc_prev)
    torch.ops.aten.sigmoid_backward.grad_input(m, act, grad_input=_gate_major(d_gates))


def _channels_last_like(shape, like: torch.Tensor) -> torch.Tensor:
    """An empty [N, C, H, W] tensor, channels-last, of ``like``'s dtype and device."""
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=torch.channels_last)


class _Recurrence(torch.autograd.Function):
    """Hidden states of every step from the input's gate pre-activations and the recurrent kernel."""

    @staticmethod
    def forward(ctx, x_gates: torch.Tensor, weight: torch.Tensor, steps: int):
        tb, four_f, hgt, wid = x_gates.shape
        batch, filters = tb // steps, four_f // 4
        chunks = _chunks(batch, four_f * hgt * wid * x_gates.element_size(), x_gates.device)
        padding = weight.shape[-1] // 2
        act = x_gates.new_empty((steps, 4, batch, hgt, wid, filters))  # gate-major, see _step_forward
        cells = _channels_last_like((tb, filters, hgt, wid), x_gates)
        out = _channels_last_like((tb, filters, hgt, wid), x_gates)
        xg, c_t, h_t = (v.unflatten(0, (steps, batch)) for v in (x_gates, cells, out))
        # the dtypes are the caller's (bfloat16 under autocast): autocast must not recast them here
        with torch.autocast(x_gates.device.type, enabled=False):
            for t in range(steps):
                rec = None if t == 0 else F.conv2d(h_t[t - 1], weight, padding=padding)
                for s in chunks:
                    _step_forward(xg[t, s], None if rec is None else rec[s],
                                  None if t == 0 else c_t[t - 1, s], act[t, :, s], c_t[t, s], h_t[t, s])
        ctx.steps, ctx.chunks, ctx.padding = steps, chunks, padding
        ctx.save_for_backward(weight, act, cells, out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out: torch.Tensor):
        weight, act, cells, out = ctx.saved_tensors
        steps, chunks, padding = ctx.steps, ctx.chunks, ctx.padding
        batch = out.shape[0] // steps
        d_x_gates = _channels_last_like((out.shape[0], 4 * out.shape[1], *out.shape[2:]), out)
        d_t, c_t, h_t, dx_t = (v.unflatten(0, (steps, batch)) for v in (d_out, cells, out, d_x_gates))
        conv_args = ([0], [1, 1], [padding, padding], [1, 1], False, [0, 0], 1)
        dh_rec = dc_next = None  # what reaches step t's h through step t+1's convolution, and its c
        for t in reversed(range(steps)):
            dc_prev = None if t == 0 else torch.empty_like(c_t[t])
            for s in chunks:
                dh = d_t[t, s] if dh_rec is None else d_t[t, s] + dh_rec[s]
                _step_backward(dh, None if dc_next is None else dc_next[s], act[t, :, s], c_t[t, s],
                               None if t == 0 else c_t[t - 1, s], dx_t[t, s], None if t == 0 else dc_prev[s])
            if t > 0:
                dh_rec = torch.ops.aten.convolution_backward(
                    dx_t[t], h_t[t - 1], weight, *conv_args, (True, False, False))[0]
            dc_next = dc_prev
        d_weight = None
        if ctx.needs_input_grad[1] and steps > 1:
            # one weight gradient over every step that used the recurrent kernel (1..T-1):
            # time-major, those steps' gradients and inputs are each one contiguous block
            d_weight = torch.ops.aten.convolution_backward(
                d_x_gates[batch:], out[:-batch], weight, *conv_args, (False, True, False))[1]
        elif ctx.needs_input_grad[1]:
            d_weight = torch.zeros_like(weight)
        return d_x_gates, d_weight, None


def convlstm_recurrence(x_gates: torch.Tensor, recurrent_weight: torch.Tensor, steps: int) -> torch.Tensor:
    """Hidden states [T*B, F, H, W] (time-major, channels-last) of a ConvLSTM layer.

    ``x_gates`` [T*B, 4F, H, W] are the input convolution's gate pre-activations (bias included,
    time-major: step 0 of every video first); ``recurrent_weight`` [4F, F, k, k] (odd k) is the
    recurrent kernel, applied with 'same' padding. The state starts at zero. Runs in
    ``x_gates``' dtype, the weight cast to it (:class:`~amnetvid_sk.layers.ConvLSTM` calls it in
    float32 only: under bfloat16 autocast its plain loop measured as fast).

    Examples
    --------
    >>> import torch
    >>> from amnetvid_sk.convlstm_recurrence import convlstm_recurrence
    >>> h = convlstm_recurrence(torch.randn(2 * 3, 8, 5, 5), torch.randn(8, 2, 3, 3), steps=2)
    >>> tuple(h.shape)
    (6, 2, 5, 5)
    """
    _check_shapes(x_gates, recurrent_weight, steps)
    x_gates = x_gates.contiguous(memory_format=torch.channels_last)
    weight = recurrent_weight.to(x_gates.dtype)
    return _Recurrence.apply(x_gates, weight, steps)


def _check_shapes(x_gates: torch.Tensor, weight: torch.Tensor, steps: int) -> None:
    """ValueError naming what does not fit: the recurrence would otherwise split the batch wrongly
    or fail deep inside a convolution."""
    if x_gates.dim() != 4 or x_gates.shape[1] % 4:
        raise ValueError(f"x_gates must be [T*B, 4F, H, W] (four gates of F channels); "
                         f"got shape {tuple(x_gates.shape)}")
    if not (isinstance(steps, int) and steps >= 1 and x_gates.shape[0] % steps == 0):
        raise ValueError(f"steps must be a positive int that divides x_gates' first dimension "
                         f"({x_gates.shape[0]} = T*B); got {steps!r}")
    filters = x_gates.shape[1] // 4
    k = weight.shape[-1] if weight.dim() == 4 else 0
    if tuple(weight.shape) != (4 * filters, filters, k, k) or k % 2 == 0:
        raise ValueError(f"recurrent_weight must be [4F, F, k, k] with F={filters} (from x_gates) and an odd k; "
                         f"got shape {tuple(weight.shape)}")
