"""Tests of the torch modules: Keras parameter counts, shapes, layer semantics, shape errors."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from amnetvid_sk.layers import same_max_pool
from conftest import textbook_lstm_step
from amnetvid_sk.networks import (
    LSTM,
    AMNetVidNet,
    ConvLSTM,
    ScoreLSTMNet,
    count_params,
    pooled_size,
)

RAW = dict(map_channels=3, map_size=14)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def seed():
    torch.manual_seed(0)
    return np.random.default_rng(0)


def test_amnetvid_param_count_matches_keras():
    """AMNetVidNet at the note's settings has exactly Keras' 230,937 parameters."""
    assert count_params(AMNetVidNet()) == 230_937


def test_score_lstm_param_count_matches_keras():
    """ScoreLSTMNet has exactly the note's 38,017 parameters."""
    assert count_params(ScoreLSTMNet()) == 38_017


def test_scores_only_amnetvid_is_the_score_lstm():
    """AMNetVidNet without its maps branch has the score LSTM's parameter count."""
    assert count_params(AMNetVidNet(use_maps=False)) == count_params(ScoreLSTMNet())


@pytest.mark.parametrize("in_ch, filters, k", [(9, 20, 3), (20, 10, 3), (3, 7, 5)])
def test_convlstm_param_formula(in_ch, filters, k):
    """ConvLSTM has Keras ConvLSTM2D's 4*f*(k*k*(in+f)) + 4*f parameters (one bias)."""
    layer = ConvLSTM(in_ch, filters, k)
    assert sum(p.numel() for p in layer.parameters()) == 4 * filters * (k * k * (in_ch + filters)) + 4 * filters


@pytest.mark.parametrize("in_size, units", [(1, 32), (32, 32), (5, 3)])
def test_lstm_param_formula(in_size, units):
    """LSTM has Keras' 4*(h*(in+h)+h) parameters (one bias)."""
    assert sum(p.numel() for p in LSTM(in_size, units).parameters()) == 4 * (units * (in_size + units) + units)


def test_lstm_matches_torch_lstm(seed):
    """The Keras-like LSTM computes what torch.nn.LSTM computes with the same weights (gates i, f, g, o)."""
    ours = LSTM(3, 5)
    ref = torch.nn.LSTM(3, 5, batch_first=True)
    with torch.no_grad():
        ref.weight_ih_l0.copy_(ours.kernel.T)
        ref.weight_hh_l0.copy_(ours.recurrent_kernel.T)
        ref.bias_ih_l0.copy_(ours.bias)
        ref.bias_hh_l0.zero_()
    x = torch.randn(4, 6, 3)
    torch.testing.assert_close(ours(x), ref(x)[0])


def test_convlstm_is_one_conv_on_concat(seed):
    """ConvLSTM equals one 'same' conv over concat[x, h] with a single bias, tanh/sigmoid gates."""
    layer = ConvLSTM(2, 3, 3)
    x = torch.randn(2, 3, 2, 5, 5)
    weight = torch.cat([layer.cell.kernel.weight, layer.cell.recurrent_kernel.weight], dim=1)
    bias = layer.cell.kernel.bias
    h = torch.zeros(2, 3, 5, 5)
    c = torch.zeros(2, 3, 5, 5)
    expected = []
    for t in range(3):
        gates = F.conv2d(torch.cat([x[:, t], h], dim=1), weight, bias, padding=1)
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        expected.append(h)
    torch.testing.assert_close(layer(x), torch.stack(expected, dim=1))


@pytest.mark.parametrize("size, pools, sides", [(70, (2, 3, 2), [35, 12, 6]), (14, (2, 3, 2), [7, 3, 2])])
def test_pooled_sizes(size, pools, sides):
    """Keras 'same' pooling sizes: 70 -> 35 -> 12 -> 6 (JET) and 14 -> 7 -> 3 -> 2 (raw)."""
    got = []
    for pool in pools:
        size = pooled_size(size, pool)
        got.append(size)
    assert got == sides


def test_same_pool_pads_like_tensorflow():
    """7 -> 3 with pool 3 pads one cell on each side (TF 'same'), not two after (torch ceil_mode)."""
    x = torch.arange(7.0).reshape(1, 1, 1, 7).expand(1, 1, 3, 7)
    out = same_max_pool(x, 3)
    assert out.shape == (1, 1, 1, 3)
    # TF windows: [-1, 0, 1], [2, 3, 4], [5, 6, 7] -> maxima 1, 4, 6
    assert out.flatten().tolist() == [1.0, 4.0, 6.0]


def test_flatten_sizes_follow_constructor():
    """The per-frame flatten is 6x6x5=180 for 70x70 maps and 2x2x5=20 for raw 14x14 maps."""
    assert AMNetVidNet().maps_branch.frame_dense[0].in_features == 180
    assert AMNetVidNet(**RAW).maps_branch.frame_dense[0].in_features == 20


def test_forward_shape_jet(seed):
    """JET input [n,4,9,70,70] + scores [n,4] gives [n,1] in (0, 1)."""
    net = AMNetVidNet().eval()
    with torch.no_grad():
        out = net(maps=torch.rand(2, 4, 9, 70, 70), scores=torch.rand(2, 4))
    assert out.shape == (2, 1)
    assert ((out > 0) & (out < 1)).all()


def test_forward_shape_raw(seed):
    """Raw input [n,4,3,14,14] gives [n,1] with module__map_channels=3, module__map_size=14."""
    net = AMNetVidNet(**RAW).eval()
    with torch.no_grad():
        out = net(maps=torch.rand(5, 4, 3, 14, 14), scores=torch.rand(5, 4))
    assert out.shape == (5, 1)


def test_other_frame_counts_and_kernel(seed):
    """n_frames, filters, pools and kernel_size are honoured (8 frames, 2 layers, 5x5 kernels)."""
    net = AMNetVidNet(n_frames=8, filters=(4, 2), pools=(2, 2), kernel_size=5, **RAW).eval()
    with torch.no_grad():
        out = net(maps=torch.rand(3, 8, 3, 14, 14), scores=torch.rand(3, 8))
    assert out.shape == (3, 1)
    assert net.maps_branch.frame_dense[0].in_features == 4 * 4 * 2


def test_uint8_maps_are_divided_by_255(seed):
    """uint8 maps (JET bytes) give the same output as the float maps /255."""
    net = AMNetVidNet(**RAW).eval()
    maps = torch.randint(0, 256, (2, 4, 3, 14, 14), dtype=torch.uint8)
    scores = torch.rand(2, 4)
    with torch.no_grad():
        torch.testing.assert_close(net(maps=maps, scores=scores), net(maps=maps.float() / 255, scores=scores))


def test_map_scale_multiplies_the_maps(seed):
    """map_scale=196 on maps m equals map_scale=1 on 196*m (same weights); it adds no parameter."""
    scaled = AMNetVidNet(map_scale=196, **RAW).eval()
    plain = AMNetVidNet(**RAW).eval()
    plain.load_state_dict(scaled.state_dict())
    maps, scores = torch.rand(2, 4, 3, 14, 14), torch.rand(2, 4)
    with torch.no_grad():
        torch.testing.assert_close(scaled(maps=maps, scores=scores), plain(maps=maps * 196, scores=scores))
    assert count_params(scaled) == count_params(plain)


def test_score_lstm_forward_shape(seed):
    """ScoreLSTMNet maps [n, T] to [n, 1]."""
    with torch.no_grad():
        assert ScoreLSTMNet().eval()(torch.rand(7, 4)).shape == (7, 1)


def test_raw_maps_into_jet_network_names_the_fix():
    """Raw maps fed to the JET-sized network raise a ValueError naming module__map_size=14, module__map_channels=3."""
    with pytest.raises(ValueError, match=r"module__map_size=14, module__map_channels=3"):
        AMNetVidNet()(maps=torch.rand(2, 4, 3, 14, 14), scores=torch.rand(2, 4))


def test_channels_last_maps_get_a_transpose_hint():
    """Keras-layout (channels-last) maps raise a ValueError suggesting the transpose."""
    with pytest.raises(ValueError, match=r"channels-last"):
        AMNetVidNet()(maps=torch.rand(1, 4, 70, 70, 9), scores=torch.rand(1, 4))


def test_wrong_frame_count_names_the_fix():
    """Scores with 5 frames into a 4-frame network raise a ValueError naming module__n_frames=5."""
    with pytest.raises(ValueError, match=r"module__n_frames=5"):
        AMNetVidNet(**RAW)(maps=torch.rand(2, 4, 3, 14, 14), scores=torch.rand(2, 5))
    with pytest.raises(ValueError, match=r"module__n_frames=5"):
        ScoreLSTMNet()(torch.rand(2, 5))


def test_missing_input_and_no_branch_errors():
    """A missing enabled input and a network with no branch raise ValueErrors."""
    with pytest.raises(ValueError, match="'maps'"):
        AMNetVidNet(**RAW)(scores=torch.rand(2, 4))
    with pytest.raises(ValueError, match="at least one branch"):
        AMNetVidNet(use_maps=False, use_scores=False)


def test_single_branch_ignores_the_other_input(seed):
    """With use_scores=False the maps-only network runs and ignores the scores given to it."""
    net = AMNetVidNet(use_scores=False, **RAW).eval()
    maps = torch.rand(3, 4, 3, 14, 14)
    with torch.no_grad():
        torch.testing.assert_close(net(maps=maps, scores=torch.rand(3, 4)), net(maps=maps))


def test_batchnorm_trains_on_a_batch_of_one(seed):
    """A training step on one sample does not fail in BatchNorm (last batch of size 1)."""
    net = AMNetVidNet(**RAW).train()
    out = net(maps=torch.rand(1, 4, 3, 14, 14), scores=torch.rand(1, 4))
    out.sum().backward()
    assert out.shape == (1, 1)


@pytest.mark.parametrize("first_step", [True, False])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_lstm_update_gradients_match_autograd(first_step, layout, seed):
    """The written-out LSTM step gives autograd's values and gradients (gradcheck in float64, both layouts)."""
    from amnetvid_sk.layers import _LSTMUpdate

    gates = torch.randn(2, 8, 4, 4, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_()
    c_prev = None if first_step else torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    inputs = (gates,) if first_step else (gates, c_prev)
    assert torch.autograd.gradcheck(lambda *a: _LSTMUpdate.apply(a[0], None if first_step else a[1]), inputs)
    ours, ref = _LSTMUpdate.apply(gates, c_prev), textbook_lstm_step(gates, c_prev)
    weights = [torch.randn_like(t) for t in ref]
    grads = [torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, out)), inputs) for out in (ours, ref)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b)


def test_convlstm_gradients_match_the_step_by_step_layer(seed):
    """ConvLSTM's batched, time-major, channels-last path has the gradients of the plain per-step loop."""
    layer = ConvLSTM(3, 4, 3)
    x = torch.randn(2, 3, 3, 6, 6)

    def per_step(x):
        cell, state, outputs = layer.cell, None, []
        for t in range(x.shape[1]):
            gates = cell.kernel(x[:, t]) if state is None else cell.kernel(x[:, t]) + cell.recurrent_kernel(state[0])
            state = textbook_lstm_step(gates, None if state is None else state[1])
            outputs.append(state[0])
        return torch.stack(outputs, dim=1)

    weights = torch.randn(2, 3, 4, 6, 6)
    grads = [torch.autograd.grad((f(x) * weights).sum(), list(layer.parameters())) for f in (layer, per_step)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_time_major_round_trip_converts_uint8(seed):
    """to_time_major gives [T*B, C, H, W] float32 channels-last (step 0 of every video first); from_time_major undoes it."""
    from amnetvid_sk.layers import from_time_major, to_time_major

    x = torch.randint(0, 256, (2, 3, 4, 5, 5), dtype=torch.uint8)
    frames = to_time_major(x)
    assert frames.shape == (6, 4, 5, 5) and frames.dtype == torch.float32
    assert frames.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(frames[1], x[1, 0].float())  # t=0 of video 1
    torch.testing.assert_close(from_time_major(frames, 2), x.float())
