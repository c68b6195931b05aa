"""The 3D-convolutional comparison model: its size, shapes, learning, sklearn API, errors and recipe."""

import copy
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from skorch.helper import SliceDict

from amnetvid_sk.conv3d import Conv3DNet, Conv3DRegressor
from amnetvid_sk.estimators import ConvLSTMRegressor, MeanScoreRegressor
from amnetvid_sk.layers import count_params
from amnetvid_sk.metrics import spearman, spearman_scorer
from amnetvid_sk.networks import AMNetVidNet, ScoreLSTMNet
from amnetvid_sk.pipelines import load_recipe, network_step, reader_step, role_params
from amnetvid_sk.subsets import spread_positions
from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, moving_peak_inputs, write_synthetic_store

AMNETVID_PARAMS = 230_937  # AMNetVidNet at the note's settings (tests/test_networks.py)
# raw maps sum to 1; map_scale=14*14 makes a uniform map all ones (see AMNetVidNet)
RAW = dict(module__map_channels=3, module__map_size=14, module__map_scale=196)
# a small network for the API tests (the learning test uses the default architecture)
TINY = dict(RAW, module__filters=(4, 2, 2), module__frame_dense=(16, 8), module__maps_dense=16,
            module__score_units=(4, 4), module__score_dense=16, module__fusion_dense=8)

pytestmark = pytest.mark.usefixtures("one_torch_thread")




# ----------------------------------------------------------------------------------
# the network


def test_param_count_close_to_amnetvid():
    """At the note's settings Conv3DNet has within 20% of AMNetVidNet's 230,937 parameters, counted alike."""
    net = Conv3DNet()
    n = count_params(net)
    print(f"Conv3DNet at the note's settings: {n:,} parameters (AMNetVidNet {AMNETVID_PARAMS:,}, "
          f"{n / AMNETVID_PARAMS - 1:+.1%})")
    assert 0.8 * AMNETVID_PARAMS <= n <= 1.2 * AMNETVID_PARAMS
    assert count_params(AMNetVidNet()) == AMNETVID_PARAMS
    # counted the way 230,937 is: trainable parameters plus the head's BatchNorm moving statistics
    assert n - sum(p.numel() for p in net.parameters()) == 2 * 128
    # the scores branch and the head are AMNetVid's: without maps it is the score LSTM
    assert count_params(Conv3DNet(use_maps=False)) == count_params(ScoreLSTMNet())


def test_maps_branch_param_formula():
    """Each Conv3D layer has k_t*k_h*k_w*in*out + out parameters; then AMNetVid's Dense stack."""
    net = Conv3DNet(filters=(5, 4), kernel_size=(1, 3, 2), pools=(2, 2), map_channels=3, map_size=14)
    convs = net.maps_branch.convs
    assert [sum(p.numel() for p in c.parameters()) for c in convs] == [6 * 3 * 5 + 5, 6 * 5 * 4 + 4]
    assert net.maps_branch.out_side == 4  # 14 -> 7 -> 4 ('same' pooling)
    assert net.maps_branch.frame_dense[0].in_features == 4 * 4 * 4


@pytest.mark.parametrize("n_frames", [1, 3, 4, 7])
@pytest.mark.parametrize("kind", ["raw", "jet"])
def test_output_shapes_for_raw_and_jet_maps(n_frames, kind, seed):
    """Raw 3x14x14 float maps and 9x70x70 uint8 JET maps give one prediction in (0, 1) per video, for any T."""
    if kind == "raw":
        net = Conv3DNet(n_frames=n_frames, map_channels=3, map_size=14, map_scale=196)
        maps = torch.rand(3, n_frames, 3, 14, 14)
    else:
        net = Conv3DNet(n_frames=n_frames)
        maps = torch.randint(0, 256, (3, n_frames, 9, 70, 70), dtype=torch.uint8)
    out = net.eval()(maps=maps, scores=torch.rand(3, n_frames))
    assert tuple(out.shape) == (3, 1)
    assert bool(((out > 0) & (out < 1)).all())


@pytest.mark.parametrize("kernel_size", [3, (1, 3, 3), (3, 1, 1)])
def test_kernel_sizes_keep_shapes(kernel_size, seed):
    """An int kernel is a cube; (1,3,3) and (3,1,1) also keep the 'same' shapes through the branch."""
    net = Conv3DNet(n_frames=2, map_channels=3, map_size=14, kernel_size=kernel_size).eval()
    k = (kernel_size,) * 3 if isinstance(kernel_size, int) else kernel_size
    assert all(c.kernel_size == k for c in net.maps_branch.convs)
    assert tuple(net(maps=torch.rand(2, 2, 3, 14, 14), scores=torch.rand(2, 2)).shape) == (2, 1)


@pytest.mark.parametrize("kernel_size, reaches_back", [((3, 3, 3), True), ((1, 3, 3), False)])
def test_temporal_kernel_reaches_the_next_frame(kernel_size, reaches_back, seed):
    """A temporal kernel of 3 mixes neighbouring frames in the first Conv3D layer; 1 keeps them apart."""
    conv = Conv3DNet(map_channels=3, map_size=14, kernel_size=kernel_size).maps_branch.convs[0]
    maps = torch.rand(2, 3, 4, 14, 14)  # Conv3d's layout [B, C, T, H, W]
    changed = maps.clone()
    changed[:, :, 3] += 1.0  # only the last frame
    with torch.no_grad():
        diff = (conv(changed) - conv(maps)).abs().amax(dim=(0, 1, 3, 4))  # per output frame
    assert diff[3] > 1e-3 and bool((diff[:2] == 0).all())
    assert (diff[2] > 1e-3) == reaches_back


def test_bad_network_arguments_are_named():
    """Bad architecture arguments fail at construction with the argument named, as AMNetVidNet's do."""
    with pytest.raises(ValueError, match=r"kernel_size must hold 3 ints; got \(3, 3\)"):
        Conv3DNet(kernel_size=(3, 3))
    with pytest.raises(ValueError, match="pools must hold 3 ints"):
        Conv3DNet(pools=(2, 2))
    with pytest.raises(ValueError, match="at least one branch"):
        Conv3DNet(use_maps=False, use_scores=False)
    with pytest.raises(ValueError, match=r"maps_dense \(64\) must equal score_dense \(128\)"):
        Conv3DNet(maps_dense=64)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        Conv3DNet(dropout=1.0)


def test_shape_errors_are_amnetvids(seed):
    """A wrong maps or scores shape gets the same message as AMNetVidNet, naming the module__ fix."""
    maps, scores = torch.rand(2, 4, 3, 14, 14), torch.rand(2, 4)
    for net_class in (AMNetVidNet, Conv3DNet):
        with pytest.raises(ValueError, match=r"set module__map_size=14, module__map_channels=3"):
            net_class()(maps=maps, scores=scores)
        with pytest.raises(ValueError, match=r"set module__n_frames=5"):
            net_class(map_channels=3, map_size=14)(maps=maps, scores=torch.rand(2, 5))


# ----------------------------------------------------------------------------------
# learning


def test_learns_peak_motion():
    """The default architecture on raw maps reaches held-out Spearman >= 0.8 where the mean baseline is near 0."""
    X_train, y_train = moving_peak_inputs(300, seed=0)
    X_test, y_test = moving_peak_inputs(200, seed=1)
    reg = Conv3DRegressor(max_epochs=8, random_state=0, **RAW).fit(X_train, y_train)
    rho = spearman(y_test, reg.predict(X_test))
    baseline = spearman(y_test, MeanScoreRegressor().fit(X_test["scores"], y_test).predict(X_test["scores"]))
    print(f"held-out Spearman: Conv3D {rho:.3f}, mean frame score {baseline:.3f}")
    assert rho >= 0.8 and abs(baseline) < 0.2
    losses = reg.history[:, "train_loss"]
    assert losses[-1] < 0.5 * losses[0]


# ----------------------------------------------------------------------------------
# the sklearn / skorch estimator


def test_training_defaults_are_convlstms():
    """Apart from the module, a fresh Conv3DRegressor has ConvLSTMRegressor's parameters and values."""
    ours, theirs = Conv3DRegressor().get_params(), ConvLSTMRegressor().get_params()
    assert ours.pop("module") is Conv3DNet and theirs.pop("module") is AMNetVidNet
    assert sorted(ours) == sorted(theirs)
    for key in ("criterion", "optimizer", "lr", "max_epochs", "batch_size", "device", "random_state",
                "iterator_train__shuffle", "callbacks__early_stopping__patience"):
        assert ours[key] == theirs[key], key
    assert (ours["lr"], ours["max_epochs"], ours["batch_size"]) == (1e-3, 20, 32)
    assert ours["train_split"] is theirs["train_split"]


def test_clone_and_set_params_reach_the_network(seed):
    """clone keeps module__* and callbacks__* parameters, and they reach the fitted Conv3DNet."""
    reg = Conv3DRegressor(random_state=3, **TINY)
    reg.set_params(module__kernel_size=(1, 3, 3), module__dropout=0.25, callbacks__early_stopping__patience=2)
    twin = clone(reg)
    params = twin.get_params()
    assert params["module"] is Conv3DNet and params["random_state"] == 3
    assert params["module__kernel_size"] == (1, 3, 3) and params["callbacks__early_stopping__patience"] == 2
    X, y = moving_peak_inputs(30, seed=seed)
    twin.set_params(max_epochs=1).fit(X, y)
    assert isinstance(twin.module_, Conv3DNet)
    assert [c.kernel_size for c in twin.module_.maps_branch.convs] == [(1, 3, 3)] * 3
    assert twin.module_.maps_branch.frame_dense[1].p == 0.25
    assert dict(twin.callbacks_)["early_stopping"].patience == 2
    assert reg.get_params()["max_epochs"] == 20  # the original is untouched


def test_same_random_state_same_predictions_and_pickling(seed):
    """Two fits with the same random_state predict the same on this CPU and thread count; a pickled
    fitted net predicts what it did."""
    X, y = moving_peak_inputs(40, seed=seed)
    first = Conv3DRegressor(max_epochs=2, random_state=5, **TINY).fit(X, y)
    b = Conv3DRegressor(max_epochs=2, random_state=5, **TINY).fit(X, y).predict(X)
    np.testing.assert_array_equal(first.predict(X), b)
    back = pickle.loads(pickle.dumps(first))
    assert isinstance(back.module_, Conv3DNet)
    np.testing.assert_array_equal(back.predict(X), b)


def test_grid_search(seed):
    """GridSearchCV with spearman_scorer searches a module__ parameter of the network."""
    X, y = moving_peak_inputs(40, seed=seed)
    est = Conv3DRegressor(max_epochs=2, random_state=0, **TINY)
    grid = {"module__kernel_size": [(3, 3, 3), (1, 3, 3)]}
    gs = GridSearchCV(est, grid, scoring=spearman_scorer, cv=2).fit(SliceDict(**X), y)
    assert [p["module__kernel_size"] for p in gs.cv_results_["params"]] == grid["module__kernel_size"]
    assert np.all(np.isfinite(gs.cv_results_["mean_test_score"]))
    assert isinstance(gs.best_estimator_.module_, Conv3DNet)
    assert gs.best_estimator_.predict(SliceDict(**X)).shape == (40,)
    # the best is the candidate of highest mean Spearman, and the refitted network has its kernel
    best = int(np.argmax(gs.cv_results_["mean_test_score"]))
    assert gs.best_params_ == gs.cv_results_["params"][best] and gs.cv_results_["rank_test_score"][best] == 1
    kernel = tuple(gs.best_params_["module__kernel_size"])
    assert all(conv.kernel_size == kernel for conv in gs.best_estimator_.module_.maps_branch.convs)
    # each candidate's first fold score is Spearman on that fold (KFold(2): videos 0-19), fitted on the rest
    for i, params in enumerate(gs.cv_results_["params"]):
        fold = clone(est).set_params(**params).fit({k: v[20:] for k, v in X.items()}, y[20:])
        rho = spearman(y[:20], fold.predict({k: v[:20] for k, v in X.items()}))
        assert gs.cv_results_["split0_test_score"][i] == pytest.approx(rho, abs=1e-6), params


@pytest.mark.parametrize("make", [ConvLSTMRegressor, Conv3DRegressor])
def test_maps_only_needs_no_scores(make, seed):
    """With module__use_scores=False the dict may hold only 'maps', for both regressors."""
    X, y = moving_peak_inputs(20, seed=seed)
    reg = make(max_epochs=1, module__use_scores=False, random_state=0, **TINY)
    pred = reg.fit({"maps": X["maps"]}, y).predict({"maps": X["maps"]})
    assert pred.shape == (20,) and np.all((pred > 0) & (pred < 1))
    # the network has no scores branch at all, and its predictions come from the maps: they differ by video
    assert reg.module_.scores_branch is None and reg.module_.maps_branch is not None
    assert np.ptp(pred) > 0


def test_frame_subsets_are_inherited(seed):
    """ConvLSTMRegressor's train_subsets / test_subsets work unchanged: 8 stored frames, 4 per subset."""
    maps, scores, y = make_moving_peak_dataset(24, n_frames=8, seed=seed, max_speed=1.0)
    X = {"maps": maps, "scores": scores}
    reg = Conv3DRegressor(max_epochs=2, train_subsets="random", test_subsets=3, random_state=0, **TINY)
    assert reg.get_params()["train_subsets"] == "random" and clone(reg).get_params()["test_subsets"] == 3
    pred = reg.fit(X, y).predict(X)
    assert pred.shape == (24,) and np.all(np.isfinite(pred))
    assert reg.module_.n_frames == 4
    # a prediction is the mean of the network's on the 3 evenly spread 4-frame subsets of the 8 frames
    one = copy.deepcopy(reg).set_params(test_subsets=1)
    per_subset = [one.predict({"maps": maps[:, pos], "scores": scores[:, pos]}) for pos in spread_positions(8, 4, 3)]
    np.testing.assert_allclose(pred, np.mean(per_subset, axis=0), rtol=0, atol=1e-6)
    # the random training subsets are drawn from the seeded generator: a second fit repeats the first
    again = Conv3DRegressor(max_epochs=2, train_subsets="random", test_subsets=3, random_state=0, **TINY).fit(X, y)
    np.testing.assert_allclose(again.predict(X), pred, rtol=0, atol=1e-6)
    # without subsets the network still takes exactly module__n_frames frames
    with pytest.raises(ValueError, match=r"module__n_frames=8"):
        Conv3DRegressor(max_epochs=1, **TINY).fit(X, y)


@pytest.mark.parametrize("make", [ConvLSTMRegressor, Conv3DRegressor])
def test_bad_inputs_fail_as_for_convlstm(make, seed):
    """Bad X gives both regressors the same messages, each naming itself, the keys or the module__ fix."""
    X, y = moving_peak_inputs(8, seed=seed)
    reg = make(max_epochs=1, **TINY)
    with pytest.raises(TypeError, match=rf"{make.__name__} takes X as a dict \{{'maps'"):
        reg.fit(X["maps"], y)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['frames'\]"):
        reg.fit({**X, "frames": X["maps"]}, y)
    with pytest.raises(ValueError, match=r"lacks the key\(s\) \['scores'\]"):
        reg.fit({"maps": X["maps"]}, y)
    with pytest.raises(ValueError, match="different numbers of videos"):
        reg.fit({"maps": X["maps"], "scores": X["scores"][:5]}, y)
    with pytest.raises(ValueError, match=r"X holds 8 videos but y holds 7 labels"):
        reg.fit(X, y[:7])
    with pytest.raises(ValueError, match=r"module__map_size=14, module__map_channels=3"):
        make(max_epochs=1).fit(X, y)


# ----------------------------------------------------------------------------------
# the recipe


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    """A real store of 20 synthetic moving-peak videos (raw maps, frame scores, labels)."""
    maps, scores, y = make_moving_peak_dataset(20, seed=3)
    path = tmp_path_factory.mktemp("conv3d") / "store"
    write_synthetic_store(path, maps, scores, y)
    return path


def test_recipe_builds_the_note_settings():
    """amnetvid_conv3d reads like amnetvid (4 JET frames at 70x70) into a Conv3DRegressor found by its role."""
    recipe = load_recipe("amnetvid_conv3d")
    pipe = recipe.pipeline("somewhere")
    reference = load_recipe("amnetvid").pipeline("somewhere")
    assert reader_step(pipe)[1].get_params() == reader_step(reference)[1].get_params()
    name, net = network_step(pipe)
    assert isinstance(net, Conv3DRegressor)
    assert role_params(pipe, network={"max_epochs": 2}) == {f"{name}__max_epochs": 2}
    net.initialize()
    assert count_params(net.module_) == count_params(Conv3DNet())
    for key, values in recipe.param_grid.items():
        pipe.set_params(**{key: values[-1]})
        assert pipe.get_params()[key] == values[-1], key


def test_recipe_grid_search_on_a_store(tiny_store):
    """The recipe's grid runs on a real store: ids in, JET renders, the default Conv3DNet, predictions out."""
    from amnetvid_sk.evaluate import grid_search, labelled_data

    pipe = load_recipe("amnetvid_conv3d").pipeline(str(tiny_store))
    quick = role_params(pipe, network={"max_epochs": 1, "train_split": None})
    search, rows = grid_search("amnetvid_conv3d", str(tiny_store), "short", cv=2, set_params=quick)
    assert len(rows) == 4 and [r["rank"] for r in rows] == sorted(r["rank"] for r in rows)
    assert all(np.isfinite(r["mean_spearman"]) for r in rows)
    ids, _ = labelled_data(str(tiny_store), "short")
    pred = search.best_estimator_.predict(ids)
    assert pred.shape == (20,) and np.all((pred > 0) & (pred < 1))
    assert isinstance(search.best_estimator_[-1].module_, Conv3DNet)
