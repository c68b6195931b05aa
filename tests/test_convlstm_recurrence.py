"""The written-out ConvLSTM recurrence against autograd of the plain per-step loop."""

import pytest
import torch
import torch.nn.functional as F

from amnetvid_sk import convlstm_recurrence as recurrence_module
from amnetvid_sk.convlstm_recurrence import convlstm_recurrence
from amnetvid_sk.layers import ConvLSTM, to_time_major
from conftest import textbook_lstm_step


def _plain_recurrence(x_gates, weight, steps):
    """The recurrence as autograd sees the textbook expressions (Keras' gate order i, f, c, o)."""
    h = c = None
    outputs = []
    for gates in x_gates.unflatten(0, (steps, -1)).unbind(0):
        if h is not None:
            gates = gates + F.conv2d(h, weight, padding=weight.shape[-1] // 2)
        h, c = textbook_lstm_step(gates, c)
        outputs.append(h)
    return torch.cat(outputs)


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of one or two videos even at test sizes, so the chunk loop runs more than once."""
    monkeypatch.setattr(recurrence_module, "CHUNK_BYTES", 8 * 4 * 5 * 5 * 8 * 2)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_gradcheck_in_float64(steps, small_chunks, seed):
    """Values and gradients of the input gates and the recurrent kernel pass gradcheck (float64),
    over several chunks of the batch."""
    x_gates = torch.randn(steps * 3, 8, 5, 5, dtype=torch.float64).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    weight = (0.3 * torch.randn(8, 2, 3, 3, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w: convlstm_recurrence(x, w, steps), (x_gates, weight))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_matches_autograd_of_the_plain_loop(layout, small_chunks, seed):
    """Hidden states and all gradients equal the textbook loop's, whatever the gradient's layout."""
    steps, batch = 3, 5
    x_gates = torch.randn(steps * batch, 12, 6, 6, dtype=torch.float64).requires_grad_()
    weight = (0.3 * torch.randn(12, 3, 3, 3, dtype=torch.float64)).requires_grad_()
    d_out = torch.randn(steps * batch, 3, 6, 6, dtype=torch.float64).contiguous(memory_format=layout)
    results = []
    for fn in (convlstm_recurrence, _plain_recurrence):
        h = fn(x_gates, weight, steps)
        results.append((h, *torch.autograd.grad(h, (x_gates, weight), d_out)))
    for ours, ref in zip(*results):
        torch.testing.assert_close(ours, ref)
    assert results[0][0].is_contiguous(memory_format=torch.channels_last)


def test_note_sized_layer_float32(seed):
    """At the note's first layer (9 -> 20 filters, 70x70, several chunks of the batch) the layer's
    float32 values and gradients are autograd's of the plain loop, to float32 rounding."""
    layer = ConvLSTM(9, 20)
    maps = torch.rand(6, 4, 9, 70, 70)
    weight = layer.cell.recurrent_kernel.weight
    d_out = torch.randn(24, 20, 70, 70)
    results = []
    for fn in (convlstm_recurrence, _plain_recurrence):
        h = fn(layer.cell.kernel(to_time_major(maps)), weight, 4)
        results.append((h, *torch.autograd.grad(h, (layer.cell.kernel.weight, weight), d_out)))
    for ours, ref in zip(*results):
        # sums over 100k positions: the summation order (thread count, kernel) moves single elements
        # by ~1e-4 of the tensor's scale; the whole tensor agrees to about 1e-6 here
        assert float((ours - ref).detach().norm() / ref.detach().norm()) < 1e-4


def test_bfloat16_stays_close_to_float32(seed):
    """In bfloat16 the recurrence runs in bfloat16 and its states stay within bfloat16's rounding
    of the float32 ones; a float32 kernel's gradient comes back float32."""
    x_gates = torch.randn(3 * 4, 16, 10, 10)
    weight = (0.3 * torch.randn(16, 4, 3, 3)).requires_grad_()
    h16 = convlstm_recurrence(x_gates.bfloat16(), weight, 3)
    assert h16.dtype == torch.bfloat16
    torch.testing.assert_close(h16.float(), convlstm_recurrence(x_gates, weight, 3), rtol=0.05, atol=0.03)
    h16.float().sum().backward()
    assert weight.grad.dtype == torch.float32 and torch.isfinite(weight.grad).all()


def _graph_names(tensor):
    names, todo = set(), [tensor.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and type(node).__name__ not in names:
            names.add(type(node).__name__)
            todo.extend(next_fn for next_fn, _ in node.next_functions)
    return names


def test_the_layer_takes_the_recurrence_in_float32_only(seed):
    """ConvLSTM runs the written-out recurrence in float32 and the plain loop under bfloat16
    autocast, where the recurrence measured no faster."""
    layer, x = ConvLSTM(3, 4), torch.rand(2, 3, 3, 8, 8)
    assert "_RecurrenceBackward" in _graph_names(layer(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert "_RecurrenceBackward" not in _graph_names(layer(x))


@pytest.mark.parametrize("x_shape, w_shape, steps, match", [
    ((6, 10, 5, 5), (8, 2, 3, 3), 2, r"x_gates must be \[T\*B, 4F, H, W\].*\(6, 10, 5, 5\)"),
    ((6, 8, 5, 5), (8, 2, 3, 3), 4, r"steps must be a positive int that divides.*\(6 = T\*B\); got 4"),
    ((6, 8, 5, 5), (8, 2, 3, 3), 0, r"steps must be .*got 0"),
    ((6, 8, 5, 5), (8, 3, 3, 3), 2, r"recurrent_weight must be \[4F, F, k, k\] with F=2.*\(8, 3, 3, 3\)"),
    ((6, 8, 5, 5), (8, 2, 2, 2), 2, r"odd k; got shape \(8, 2, 2, 2\)"),
])
def test_shapes_that_do_not_fit_are_named(x_shape, w_shape, steps, match):
    """Gates, steps or a kernel that do not fit fail with what was expected and what came."""
    with pytest.raises(ValueError, match=match):
        convlstm_recurrence(torch.zeros(x_shape), torch.zeros(w_shape), steps)
