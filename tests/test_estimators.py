"""Tests of the estimators and metrics: they learn, they are sklearn estimators, they fail clearly."""

import copy
import pickle
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import ConstantInputWarning
from sklearn.base import clone
from sklearn.exceptions import DataConversionWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, ShuffleSplit
from sklearn.utils import estimator_checks as ec
from sklearn.utils.estimator_checks import parametrize_with_checks
from skorch.dataset import ValidSplit
from skorch.exceptions import DeviceWarning
from skorch.helper import SliceDict
from torch import nn

from amnetvid_sk.estimators import DEFAULT_DEVICE, ConvLSTMRegressor, MeanScoreRegressor, ScoreLSTMRegressor
from amnetvid_sk.metrics import spearman, spearman_scorer
from amnetvid_sk.networks import LSTM, AMNetVidNet
from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, make_score_order_dataset, moving_peak_inputs

# raw maps sum to 1; map_scale=14*14 makes a uniform map all ones (see AMNetVidNet)
RAW = dict(module__map_channels=3, module__map_size=14, module__map_scale=196)
# a small AMNetVid for API tests (the learning tests use the real default architecture)
TINY_CONV = dict(RAW, module__filters=(4, 2, 2), module__frame_dense=(16, 8), module__maps_dense=16,
                 module__score_units=(4, 4), module__score_dense=16, module__fusion_dense=8)
TINY_LSTM = dict(module__units=(4,), module__dense=8, module__fusion_dense=4)


pytestmark = pytest.mark.usefixtures("one_torch_thread")




# ----------------------------------------------------------------------------------
# learning: fitted once per module (the slow part of this file)


@pytest.fixture(scope="module")
def peak_fit():
    """The default AMNetVid architecture (raw 3x14x14 maps) fitted on the moving-peak set."""
    X_train, y_train = moving_peak_inputs(500, seed=0)
    X_test, y_test = moving_peak_inputs(200, seed=1)
    reg = ConvLSTMRegressor(max_epochs=8, random_state=0, **RAW).fit(X_train, y_train)
    return reg, X_test, y_test


@pytest.fixture(scope="module")
def order_fit():
    """The default score LSTM fitted on the score-order set."""
    X_train, y_train = make_score_order_dataset(600, seed=0)
    X_test, y_test = make_score_order_dataset(300, seed=1)
    reg = ScoreLSTMRegressor(max_epochs=20, random_state=0).fit(X_train, y_train)
    return reg, X_test, y_test


def test_convlstm_learns_peak_motion(peak_fit):
    """ConvLSTMRegressor reaches Spearman >= 0.8 on held-out videos whose label is the peak's speed."""
    reg, X_test, y_test = peak_fit
    assert spearman(y_test, reg.predict(X_test)) >= 0.8


def test_mean_score_is_blind_to_peak_motion():
    """The mean of frame scores does not predict the moving-peak label (|rho| < 0.2)."""
    X, y = moving_peak_inputs(3000, seed=2)
    pred = MeanScoreRegressor().fit(X["scores"], y).predict(X["scores"])
    assert abs(spearman(y, pred)) < 0.2


def test_score_lstm_learns_score_order(order_fit):
    """ScoreLSTMRegressor reaches Spearman >= 0.8 when the label is the order of the frame scores."""
    reg, X_test, y_test = order_fit
    assert spearman(y_test, reg.predict(X_test)) >= 0.8
    # the same multiset in every order: the mean cannot see it
    assert abs(spearman(y_test, MeanScoreRegressor().fit(X_test, y_test).predict(X_test))) < 0.2


def _rows(X, idx):
    return {k: v[idx] for k, v in X.items()} if isinstance(X, dict) else X[idx]


def _assert_batch_invariant(reg, X):
    """One video's prediction does not depend on the other videos of its batch, up to float32
    rounding: rows permuted, each row alone, other batch boundaries.

    Not exact (see FLOAT32_LAST_BIT_CHECKS below): up to 4 float32 steps (2e-7) were seen on
    AVX-512 and AVX2 with 1 or 2 threads. 2e-6 leaves room for other CPUs, while real mistakes
    (dropout or batch statistics at predict time, rows mixed up) move predictions by 1e-3 and more.
    """
    tol = dict(rtol=0, atol=2e-6)
    n = len(next(iter(X.values()))) if isinstance(X, dict) else len(X)
    full = reg.predict(X)
    order = np.random.default_rng(0).permutation(n)
    np.testing.assert_allclose(reg.predict(_rows(X, order)), full[order], **tol)
    alone = np.concatenate([reg.predict(_rows(X, slice(i, i + 1))) for i in range(min(n, 8))])
    np.testing.assert_allclose(alone, full[:len(alone)], **tol)
    # batches of 7 instead of 32: most rows at another place of a batch of another size
    other = copy.deepcopy(reg).set_params(batch_size=7)
    np.testing.assert_allclose(other.predict(X), full, **tol)


@pytest.mark.parametrize("fit", ["peak_fit", "order_fit"])
def test_predictions_do_not_depend_on_batch_composition(fit, request):
    """Both default architectures predict a video alike, up to float32 rounding, whatever its batch holds."""
    reg, X_test, _ = request.getfixturevalue(fit)
    _assert_batch_invariant(reg, X_test)


@pytest.mark.parametrize("fit", ["peak_fit", "order_fit"])
def test_training_loss_goes_down(fit, request):
    """The training loss recorded in the history falls by more than half from the first epoch."""
    reg = request.getfixturevalue(fit)[0]
    losses = reg.history[:, "train_loss"]
    assert losses[-1] < 0.5 * losses[0]
    assert np.all(np.isfinite(reg.history[:, "valid_spearman"]))


def test_jet_input_path_runs(seed):
    """A short fit on JET-rendered 9x70x70 maps (uint8, as AttentionSequences returns them) runs and predicts."""
    from amnetvid_sk.render import render_jet

    maps, scores, y = make_moving_peak_dataset(6, seed=seed)
    jet = render_jet(maps, size=70)
    assert jet.shape == (6, 4, 9, 70, 70) and jet.dtype == np.uint8
    X = {"maps": jet, "scores": scores}
    reg = ConvLSTMRegressor(max_epochs=1, batch_size=3, train_split=None, random_state=0).fit(X, y)
    pred = reg.predict(X)
    assert pred.shape == (6,) and np.all((pred > 0) & (pred < 1))
    assert len(reg.history) == 1
    # the bytes are read as /255: the same predictions as float32 maps in [0, 1]
    as_float = reg.predict({"maps": jet.astype(np.float32) / 255.0, "scores": scores})
    np.testing.assert_allclose(pred, as_float, rtol=1e-5)


# ----------------------------------------------------------------------------------
# training behaviour


def _conv_output_dtypes(reg, X) -> set:
    """The dtypes the first ConvLSTM's input convolution gave while ``reg`` predicted ``X``."""
    seen = set()
    handle = reg.module_.maps_branch.convlstms[0].cell.kernel.register_forward_hook(
        lambda module, args, out: seen.add(out.dtype))
    try:
        reg.predict(X)
    finally:
        handle.remove()
    return seen


def test_bfloat16_trains_with_float32_weights_loss_and_optimiser(seed):
    """precision='bfloat16' runs the network under bfloat16 autocast; weights, loss and Adam's state stay float32."""
    X, y = moving_peak_inputs(24, seed=seed)
    reg = ConvLSTMRegressor(max_epochs=2, train_split=None, random_state=0, precision="bfloat16", **TINY_CONV)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # emulated bfloat16 on some CPUs: slow, still right
        reg.fit(X, y)
    assert reg.precision_ == "bfloat16"
    assert _conv_output_dtypes(reg, X) == {torch.bfloat16}
    assert {p.dtype for p in reg.module_.parameters()} == {torch.float32}
    states = [t for state in reg.optimizer_.state.values() for t in state.values() if t.ndim]
    assert states and {t.dtype for t in states} == {torch.float32}
    assert np.isfinite(reg.history[:, "train_loss"]).all()
    pred = reg.predict(X)
    assert pred.dtype == np.float32 and np.all((pred > 0) & (pred < 1))
    # the head runs in float32: predictions rounded to bfloat16 (8 bits) tied most of a barely
    # trained network's videos, and a Spearman ranks them
    assert len(np.unique(pred)) == len(pred), np.unique(pred, return_counts=True)
    fp32 = clone(reg).set_params(precision="float32").fit(X, y)
    assert fp32.precision_ == "float32" and _conv_output_dtypes(fp32, X) == {torch.float32}


def test_precision_auto_follows_the_frame_models_rule(seed):
    """precision='auto' (ConvLSTMRegressor's default) resolves as the frame models' rule says; the score LSTM
    defaults to float32; a bad value names the allowed ones."""
    from amnetvid_sk.precision import resolve_precision

    X, y = moving_peak_inputs(12, seed=seed)
    reg = ConvLSTMRegressor(max_epochs=1, train_split=None, random_state=0, **TINY_CONV).fit(X, y)
    assert reg.precision == "auto"
    assert reg.precision_ == resolve_precision("auto", torch.device("cpu"))[0]
    assert ScoreLSTMRegressor().precision == "float32"
    with pytest.raises(ValueError, match="'precision' parameter of ConvLSTMRegressor must be a str among"):
        ConvLSTMRegressor(precision="fp16", **TINY_CONV).fit(X, y)


def test_precision_auto_picks_float32_where_bfloat16_is_emulated(tmp_path):
    """With torch's CPU kernels limited to AVX2 (bfloat16 emulated), 'auto' trains in float32; an explicit
    'bfloat16' warns that it is emulated."""
    import subprocess
    import sys

    code = ("import warnings, torch\n"
            "from amnetvid_sk.estimators import ConvLSTMRegressor\n"
            "from amnetvid_sk.testing.synthetic import moving_peak_inputs\n"
            "X, y = moving_peak_inputs(8, seed=0)\n"
            "small = dict(module__map_channels=3, module__map_size=14, module__filters=(2, 2, 2),"
            " module__frame_dense=(4, 4), module__maps_dense=4, module__score_units=(2,), module__score_dense=4,"
            " module__fusion_dense=4, max_epochs=1, train_split=None, device='cpu')\n"
            "auto = ConvLSTMRegressor(**small).fit(X, y)\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    ConvLSTMRegressor(precision='bfloat16', **small).fit(X, y)\n"
            "print(torch.backends.cpu.get_cpu_capability(), auto.precision_,"
            " any('emulated' in str(w.message) for w in caught))\n")
    env = {**__import__("os").environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    capability, precision, warned = done.stdout.split()[-3:]
    assert capability in ("AVX2", "DEFAULT") and precision == "float32"
    # where the CPU has no native bfloat16 at all, the warning comes all the same
    assert warned == "True"


def test_early_stopping_restores_the_best_epoch(seed, tmp_path, monkeypatch):
    """After early stopping the net predicts with the best epoch's weights, kept in memory (no files)."""
    monkeypatch.chdir(tmp_path)  # skorch's Checkpoint would write here; nothing must
    X, y = make_score_order_dataset(300, seed=seed)
    split = ValidSplit(0.15, stratified=False, random_state=0)
    reg = ScoreLSTMRegressor(max_epochs=30, train_split=split, random_state=0,
                             callbacks__early_stopping__patience=2).fit(X, y)
    scores = np.asarray(reg.history[:, "valid_spearman"])
    best = int(np.argmax(scores))
    _, valid_idx = next(ShuffleSplit(test_size=0.15, random_state=0).split(X))
    rho = spearman(y[valid_idx], reg.predict(X[valid_idx]))
    assert rho == pytest.approx(scores[best], abs=1e-6)
    assert dict(reg.callbacks_)["early_stopping"].best_epoch_ == best + 1
    assert best + 1 < len(reg.history) < 30  # it stopped early, after the best epoch
    assert list(tmp_path.iterdir()) == []


def test_early_stopping_survives_constant_predictions(seed):
    """Constant predictions make valid_spearman nan: recorded as -inf with a warning, and training stops cleanly."""

    class ConstantNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, scores):
            return 0.5 + 0.0 * self.w * scores[:, :1]

    X, y = make_score_order_dataset(80, seed=seed)
    reg = ScoreLSTMRegressor(module=ConstantNet, max_epochs=10, random_state=0)
    with pytest.warns(ConstantInputWarning, match="valid_spearman is undefined"):
        reg.fit(X, y)
    assert np.all(np.isneginf(reg.history[:, "valid_spearman"]))
    assert len(reg.history) == 5  # patience: no epoch ever improved
    assert np.allclose(reg.predict(X), 0.5)


def test_train_split_none_trains_all_epochs(seed):
    """Without a validation part there is no early stopping: all max_epochs epochs run."""
    X, y = make_score_order_dataset(40, seed=seed)
    reg = ScoreLSTMRegressor(max_epochs=3, train_split=None, random_state=0, **TINY_LSTM).fit(X, y)
    assert len(reg.history) == 3
    assert "valid_spearman" not in reg.history[-1]


@pytest.mark.parametrize("make", ["conv", "lstm"])
def test_same_random_state_same_predictions(make, seed):
    """Two fits with the same random_state predict identically; another seed differs; global RNG untouched."""
    if make == "conv":
        X, y = moving_peak_inputs(60, seed=seed)
        build = lambda rs: ConvLSTMRegressor(max_epochs=2, random_state=rs, **TINY_CONV)  # noqa: E731
    else:
        X, y = make_score_order_dataset(60, seed=seed)
        build = lambda rs: ScoreLSTMRegressor(max_epochs=2, random_state=rs, **TINY_LSTM)  # noqa: E731
    state = torch.get_rng_state()
    first = build(7).fit(X, y)
    # fit seeds inside torch.random.fork_rng: the global stream is as before
    # (predict is not checked: every torch DataLoader iteration draws a base seed)
    assert torch.equal(state, torch.get_rng_state())
    a = first.predict(X)
    b = build(7).fit(X, y).predict(X)
    c = build(8).fit(X, y).predict(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_column_y_accepted_with_warning_and_1d_predictions(seed):
    """y of shape (n, 1) is accepted with sklearn's DataConversionWarning; predict returns 1-D."""
    X, y = make_score_order_dataset(40, seed=seed)
    reg = ScoreLSTMRegressor(max_epochs=1, random_state=0, **TINY_LSTM)
    with pytest.warns(DataConversionWarning):
        reg.fit(X, y.reshape(-1, 1))
    pred = reg.predict(X)
    assert pred.shape == (40,)
    # the column is taken as the 1-D labels it holds: the same fit as from y itself
    flat = ScoreLSTMRegressor(max_epochs=1, random_state=0, **TINY_LSTM).fit(X, y).predict(X)
    np.testing.assert_allclose(pred, flat, rtol=0, atol=1e-6)


def test_y_outside_unit_interval_warns(seed):
    """Targets outside [0, 1] (the sigmoid's range) give a UserWarning."""
    X, y = make_score_order_dataset(40, seed=seed)
    with pytest.warns(UserWarning, match=r"outside \[0, 1\]") as record:
        ScoreLSTMRegressor(max_epochs=1, random_state=0, **TINY_LSTM).fit(X, y * 10)
    assert sum("outside [0, 1]" in str(w.message) for w in record) == 1  # checked once per fit


def test_device_defaults_to_cuda_when_present(seed):
    """device defaults to cuda when torch sees a GPU, else cpu; fit keeps the parameter as given and puts the net there."""
    X, y = make_score_order_dataset(40, seed=seed)
    reg = ScoreLSTMRegressor(max_epochs=1, random_state=0, **TINY_LSTM).fit(X, y)
    assert DEFAULT_DEVICE == ("cuda" if torch.cuda.is_available() else "cpu")
    assert reg.device == DEFAULT_DEVICE
    assert next(reg.module_.parameters()).device.type == reg.device
    on_cpu = ScoreLSTMRegressor(max_epochs=1, random_state=0, device="cpu", **TINY_LSTM).fit(X, y)
    assert on_cpu.device == "cpu" and next(on_cpu.module_.parameters()).device.type == "cpu"


def test_net_pickled_on_cuda_loads_on_a_cpu_only_machine(seed, monkeypatch):
    """A net whose device is "cuda" unpickles where CUDA is absent onto the CPU (skorch's DeviceWarning), same predictions."""
    X, y = make_score_order_dataset(40, seed=seed)
    reg = ScoreLSTMRegressor(max_epochs=1, random_state=0, device="cpu", **TINY_LSTM).fit(X, y)
    expected = reg.predict(X)
    reg.device = "cuda"  # as a net trained on a GPU records it; skorch maps the weights on load
    data = pickle.dumps(reg)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(DeviceWarning):
        back = pickle.loads(data)
    assert torch.device(back.device).type == "cpu"  # skorch records the device it mapped to
    assert next(back.module_.parameters()).device.type == "cpu"
    np.testing.assert_array_equal(back.predict(X), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device to train on")
def test_net_trained_on_cuda_loads_without_cuda(seed, tmp_path):
    """A net trained on the GPU loads and predicts in a process that sees no GPU, on the CPU."""
    import subprocess
    import sys

    X, y = make_score_order_dataset(40, seed=seed)
    reg = ScoreLSTMRegressor(max_epochs=1, random_state=0, device="cuda", **TINY_LSTM).fit(X, y)
    assert next(reg.module_.parameters()).device.type == "cuda"
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "expected.npy", reg.predict(X))
    (tmp_path / "net.pkl").write_bytes(pickle.dumps(reg))
    code = ("import pickle, sys, numpy as np, torch; assert not torch.cuda.is_available(); "
            "net = pickle.loads(open(sys.argv[1] + '/net.pkl', 'rb').read()); "
            "assert torch.device(net.device).type == 'cpu' and next(net.module_.parameters()).device.type == 'cpu'; "
            "got = net.predict(np.load(sys.argv[1] + '/X.npy')); "
            "np.testing.assert_allclose(got, np.load(sys.argv[1] + '/expected.npy'), rtol=0, atol=1e-5)")
    env = {**__import__("os").environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_predict_before_fit_raises(seed):
    """predict on an unfitted net raises NotFittedError."""
    with pytest.raises(NotFittedError):
        ScoreLSTMRegressor().predict(np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(NotFittedError):
        ConvLSTMRegressor().predict({"maps": np.zeros((1, 4, 9, 70, 70)), "scores": np.zeros((1, 4))})


# ----------------------------------------------------------------------------------
# input errors


def test_convlstm_shape_error_names_module_params(seed):
    """Raw maps into the default (JET-sized) network fail with the module__ parameters to set."""
    X, y = moving_peak_inputs(8, seed=seed)
    with pytest.raises(ValueError, match=r"module__map_size=14, module__map_channels=3"):
        ConvLSTMRegressor(max_epochs=1).fit(X, y)


def test_score_lstm_frame_count_mismatch(seed):
    """6 frame scores into the default 4-frame score LSTM fail naming module__n_frames=6."""
    X, y = make_score_order_dataset(10, n_frames=6, seed=seed)
    with pytest.raises(ValueError, match=r"module__n_frames=6"):
        ScoreLSTMRegressor(max_epochs=1).fit(X, y)


# ----------------------------------------------------------------------------------
# sklearn conformance: clone, params, pickling, grid search


def _tiny_estimators(seed):
    X_peak, y_peak = moving_peak_inputs(60, seed=seed)
    X_order, y_order = make_score_order_dataset(60, seed=seed)
    return [
        (MeanScoreRegressor(), X_order, y_order),
        (ScoreLSTMRegressor(max_epochs=2, random_state=0, **TINY_LSTM), X_order, y_order),
        (ConvLSTMRegressor(max_epochs=2, random_state=0, **TINY_CONV), X_peak, y_peak),
    ]


def test_clone_and_params_round_trip(seed):
    """clone keeps every parameter (module__*, callbacks__*, random_state) and set_params reaches the network."""
    reg = ConvLSTMRegressor(random_state=3, **TINY_CONV)
    reg.set_params(module__filters=(3, 2, 2), module__dropout=0.25, callbacks__early_stopping__patience=2)
    params = reg.get_params()
    assert params["random_state"] == 3 and params["module"] is AMNetVidNet and params["device"] == DEFAULT_DEVICE
    twin = clone(reg)
    assert twin.get_params()["module__filters"] == (3, 2, 2)
    assert twin.get_params()["callbacks__early_stopping__patience"] == 2
    X, y = moving_peak_inputs(30, seed=seed)
    twin.set_params(max_epochs=1).fit(X, y)
    convlstms = twin.module_.maps_branch.convlstms
    assert [layer.cell.filters for layer in convlstms] == [3, 2, 2]
    assert twin.module_.maps_branch.frame_dense[1].p == 0.25
    assert dict(twin.callbacks_)["early_stopping"].patience == 2
    assert reg.get_params()["max_epochs"] == 20  # the original is untouched


def test_unknown_module_param_suggests_fix():
    """A misspelt parameter (module_filters) fails with skorch's 'did you mean' message."""
    with pytest.raises(ValueError, match="did you mean module__filters"):
        ConvLSTMRegressor(module_filters=(4, 2, 2)).initialize()


def test_pickle_fitted_round_trip(seed):
    """Each fitted estimator survives pickling with identical predictions and parameters."""
    for est, X, y in _tiny_estimators(seed):
        est.fit(X, y)
        back = pickle.loads(pickle.dumps(est))
        np.testing.assert_array_equal(back.predict(X), est.predict(X))
        assert sorted(back.get_params(deep=False)) == sorted(est.get_params(deep=False))
        assert getattr(back, "device", None) == getattr(est, "device", None)


def test_grid_search_parallel(seed):
    """GridSearchCV(n_jobs=2) with spearman_scorer fits each estimator over a tiny grid."""
    grids = [{}, {"lr": [1e-3, 3e-3]}, {"module__dropout": [0.2, 0.5]}]
    for (est, X, y), grid in zip(_tiny_estimators(seed), grids):
        if isinstance(X, dict):
            X = SliceDict(**X)  # sklearn's splitters index the dict's arrays together
        gs = GridSearchCV(est, grid, scoring=spearman_scorer, cv=2, n_jobs=2).fit(X, y)
        assert len(gs.cv_results_["params"]) == max(1, sum(len(v) for v in grid.values()))
        assert np.all(np.isfinite(gs.cv_results_["mean_test_score"]))
        assert gs.best_estimator_.predict(X).shape == (len(y),)


# ----------------------------------------------------------------------------------
# metrics


def test_spearman_matches_scipy_and_accepts_columns(seed):
    """spearman equals scipy's rho and takes (n, 1) columns as skorch passes them."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(seed)
    a, b = rng.random(50), rng.random(50)
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert spearman(a.reshape(-1, 1), b.reshape(-1, 1)) == pytest.approx(spearmanr(a, b).statistic)
    with pytest.raises(ValueError):
        spearman(a, b[:10])


def test_spearman_scorer_constant_predictions_is_nan_with_warning():
    """spearman_scorer on constant predictions returns nan with a ConstantInputWarning, no exception."""
    X = np.array([[0.2, 0.8], [0.5, 0.5], [0.0, 1.0], [0.4, 0.6]])  # every row means 0.5
    y = np.array([0.1, 0.4, 0.7, 0.9])
    est = MeanScoreRegressor().fit(X, y)
    with pytest.warns(ConstantInputWarning, match="y_pred is constant"):
        assert np.isnan(spearman_scorer(est, X, y))


# ----------------------------------------------------------------------------------
# scikit-learn's common checks


class AnyWidthScoreNet(nn.Module):
    """A score network for any number of frames (LSTM, mean over time), so the common
    checks, which fit arrays of 1 to 10 columns, can exercise the skorch wrapper."""

    def __init__(self, units=4):
        super().__init__()
        self.lstm = LSTM(1, units)
        self.out = nn.Linear(units, 1)

    def forward(self, scores):
        return torch.sigmoid(self.out(self.lstm(scores.unsqueeze(-1)).mean(1)))


# skorch design choices that the common checks reject, for every skorch net. (skorch's
# set_params(callbacks=<non-list>) also re-initialises the callbacks at once and fails on smoke
# values such as -1; check_do_not_raise_errors_in_init_or_set_params fuzzes only the parameters
# an __init__ signature names, and the regressors', like skorch's own, name their module and
# pass the rest through **kwargs.)
SKORCH_GAPS = {
    "check_no_attributes_set_in_init": (
        "skorch's NeuralNet.__init__ sets history_, initialized_ and virtual_params_, and stores the "
        "prefixed **kwargs (module__*, iterator_train__shuffle) as attributes; that is how module__* "
        "parameters reach get_params/set_params"
    ),
    "check_regressors_train": (
        "the networks end in a sigmoid (memorability is in [0, 1]); the check's standardised targets "
        "span about [-3, 3], so the required R^2 > 0.5 is out of reach by design"
    ),
}

# checks that fit arrays whose width (1, 2, 3, 5 or 10 columns) differs from module__n_frames;
# the default ScoreLSTMNet flattens its n_frames steps into a Dense layer, so only X with
# exactly n_frames columns can fit it (it fails with a ValueError naming module__n_frames)
_FIXED_WIDTH_REASON = "fits X whose width differs from module__n_frames=4 (fixed by the network's flatten)"
FIXED_WIDTH_GAPS = {name: _FIXED_WIDTH_REASON for name in [
    "check_fit_score_takes_y", "check_estimators_overwrite_params", "check_dont_overwrite_parameters",
    "check_estimators_fit_returns_self", "check_readonly_memmap_input",
    "check_estimators_dtypes", "check_dtype_object", "check_pipeline_consistency",
    "check_estimators_nan_inf", "check_estimators_pickle", "check_f_contiguous_array_estimator",
    "check_regressor_data_not_an_array", "check_estimators_partial_fit_n_features",
    "check_supervised_y_2d", "check_regressors_int", "check_methods_sample_order_invariance",
    "check_methods_subset_invariance", "check_fit2d_1feature", "check_dict_unchanged",
    "check_fit_idempotent", "check_fit_check_is_fitted", "check_n_features_in", "check_fit2d_predict1d",
]}


# Checks that compare one row's prediction made in two different batches at about one float32
# step: sample order at rtol=1e-7 (one step near 0.5 is 6e-8), each row alone against all rows
# at atol=1e-7. A float32 torch network does not promise that: an elementwise kernel runs the
# elements that fill whole SIMD vectors through vector code and the remainder through scalar
# code, and the two round tanh/sigmoid/exp differently in the last bit. Which rows fall in the
# remainder depends on the batch size and the vector width: for these checks' 20 rows the final
# sigmoid is all scalar on AVX-512 (passes) but 16 vector + 4 scalar on AVX2 (fails by one step);
# BLAS and oneDNN also choose kernels by shape. Exact invariance would need one video per forward
# pass: measured here (AVX-512, and torch's AVX2 kernels), the score LSTM then predicts 2,000 rows
# in 12-15 s instead of 0.5-0.75 s (skorch's per-batch cost), and GPUs lose their batching. float64
# inference is not exact either (only smaller differences) and halves the default ConvLSTM's speed
# (12-14 against 22-29 rows/s, one thread). So predictions stay float32 and these checks may fail
# on one CPU and pass on another. Not a strict xfail, which would fail where the check passes:
# when the check fails, the test requires the same comparisons at float32 tolerance
# (_assert_batch_invariant), then reports an xfail with the reason.
_LAST_BIT_REASON = (
    "compares one row's prediction from two batch compositions at about one float32 step; torch's "
    "vector and scalar kernel paths differ in the last bit and which rows take which depends on the "
    "batch size and the CPU's vector width (holds at float32 tolerance: _assert_batch_invariant)"
)
FLOAT32_LAST_BIT_CHECKS = {
    "check_methods_sample_order_invariance": _LAST_BIT_REASON,
    "check_methods_subset_invariance": _LAST_BIT_REASON,
}


def _expected_failed_checks(estimator):
    if isinstance(estimator, MeanScoreRegressor):
        return {"check_n_features_in_after_fitting": "a mean over frames takes any number of frames: clips "
                "differ in length, so predict does not hold X to the width seen in fit"}
    gaps = dict(SKORCH_GAPS)
    if estimator.module is not AnyWidthScoreNet:
        gaps.update(FIXED_WIDTH_GAPS)
    return gaps


@parametrize_with_checks(
    [
        MeanScoreRegressor(),
        ScoreLSTMRegressor(module=AnyWidthScoreNet, max_epochs=2, random_state=0),
        ScoreLSTMRegressor(max_epochs=2, random_state=0, **TINY_LSTM),
    ],
    # strict: a listed gap that starts passing fails (pyproject's xfail_strict; the argument of
    # the same name needs scikit-learn 1.8)
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_common_checks(estimator, check):
    """scikit-learn's common estimator checks pass (known gaps are xfail with their reason)."""
    name = check.func.__name__
    last_bits = name in FLOAT32_LAST_BIT_CHECKS and name not in _expected_failed_checks(estimator)
    with warnings.catch_warnings():
        # the checks' random targets lie outside [0, 1]; the warning about it is expected
        warnings.filterwarnings("ignore", message="y has values outside", category=UserWarning)
        # skorch's eager callback initialisation in set_params (see above SKORCH_GAPS) makes
        # check_set_params warn; the check itself passes
        warnings.filterwarnings("ignore", message=".*(delay parameter validation|changed after set_params)")
        try:
            check(estimator)
            return
        except AssertionError:
            if not last_bits:
                raise
        # the check's data and seed, compared at float32 tolerance
        X = 3 * np.random.RandomState(0).uniform(size=(20, 3))
        fitted = clone(estimator).set_params(random_state=1).fit(X, X[:, 0].astype(np.int64))
        _assert_batch_invariant(fitted, X)
    pytest.xfail(FLOAT32_LAST_BIT_CHECKS[name])


# ConvLSTMRegressor takes a dict X (tags: two_d_array=False, dict=True), so sklearn's
# generator yields no check for it. These API checks use no data and apply as they are:
CONVLSTM_API_CHECKS = [
    ec.check_estimator_cloneable,
    ec.check_estimator_tags_renamed,
    ec.check_valid_tag_types,
    ec.check_estimator_repr,
    ec.check_mixin_order,
    ec.check_parameters_default_constructible,
    ec.check_get_params_invariance,
    ec.check_set_params,
]
# every other common check builds 2-D arrays (or 1-D / sparse / DataFrames) as X and cannot
# apply to a dict of [n,T,C,H,W] maps and [n,T] scores; the behaviours they test are covered
# for ConvLSTMRegressor by the tests above (fit returns self, pickling, clone, params,
# NotFittedError, determinism, 1-D y, clear input errors) and, through the shared base
# class, by the common checks of ScoreLSTMRegressor.


@pytest.mark.parametrize("check", CONVLSTM_API_CHECKS, ids=lambda c: c.__name__)
def test_convlstm_api_checks(check):
    """The data-free API checks of scikit-learn pass for ConvLSTMRegressor."""
    with warnings.catch_warnings():
        # check_set_params fuzzes callbacks=-inf/inf/None; skorch's set_params initialises the
        # callbacks at once and raises a TypeError (see above SKORCH_GAPS), which the check reports
        # as warnings; the check itself passes
        warnings.filterwarnings("ignore", message=".*(delay parameter validation|changed after set_params)")
        check("ConvLSTMRegressor", ConvLSTMRegressor(max_epochs=1, random_state=0, **TINY_CONV))


def test_convlstm_tags_declare_dict_input():
    """ConvLSTMRegressor's tags say it takes a dict, not a 2-D array; the skorch gap list is written down."""
    from sklearn.utils import get_tags

    tags = get_tags(ConvLSTMRegressor())
    assert tags.input_tags.dict and not tags.input_tags.two_d_array
    with pytest.raises(AssertionError):
        ec.check_no_attributes_set_in_init("ConvLSTMRegressor", ConvLSTMRegressor())
