"""Tests of sequences drawn from all stored frames: random T-frame subsets in training, the mean
over evenly spread subsets at prediction (amnetvid_sk.subsets and the estimators' hooks)."""

import copy

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from amnetvid_sk._validation import SklearnInvalidParameterError as InvalidParameterError
from skorch.dataset import ValidSplit
from torch import nn

from amnetvid_sk import AttentionSequences, FrameMinMaxScaler, FrameScores
from amnetvid_sk.estimators import ConvLSTMRegressor, ScoreLSTMRegressor
from amnetvid_sk.metrics import spearman, spearman_scorer
from amnetvid_sk.store.read import positions
from amnetvid_sk.subsets import RandomSubsets, random_positions, spread_positions
from amnetvid_sk.testing.synthetic import (
    make_moving_peak_dataset,
    make_score_order_dataset,
    write_synthetic_store,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STORED = 28  # frames stored per video, as the working note stored them
TINY_LSTM = dict(module__units=(4,), module__dense=8, module__fusion_dense=4)
TINY_CONV = dict(module__map_channels=3, module__map_size=14, module__map_scale=196, module__filters=(4, 2, 2),
                 module__frame_dense=(16, 8), module__maps_dense=16, module__score_units=(4, 4),
                 module__score_dense=16, module__fusion_dense=8)


class RecordingNet(nn.Module):
    """A linear score network that records every input it sees, and whether it was training."""

    def __init__(self, n_frames=4):
        super().__init__()
        self.n_frames = n_frames
        self.linear = nn.Linear(n_frames, 1)
        self.seen = []

    def forward(self, scores):
        self.seen.append((self.training, scores.detach().clone()))
        return torch.sigmoid(self.linear(scores / 1000.0))


class RecordingMapsNet(RecordingNet):
    """Records the maps and scores of each forward pass."""

    def forward(self, maps, scores):
        self.seen.append((self.training, maps.detach().clone(), scores.detach().clone()))
        return torch.sigmoid(self.linear(scores / 1000.0))


def _numbered(n):
    """X[i, t] = 28 * i + t: each value names its video and its stored frame."""
    return (STORED * np.arange(n)[:, None] + np.arange(STORED)[None, :]).astype(np.float32)


def _draws(reg, training=True):
    return [x for was_training, x in reg.module_.seen if was_training == training]


# ----------------------------------------------------------------------------------
# positions


def test_spread_positions_one_is_the_stores_uniform_pick_and_many_cover_the_video():
    """K=1 is the store's uniform pick; K subsets are each sorted, distinct and interleaved."""
    for stored, t in [(28, 4), (8, 4), (5, 4), (28, 1), (9, 3)]:
        np.testing.assert_array_equal(spread_positions(stored, t)[0], positions(np.array([stored]), t)[0])
        for k in (2, 5, 9):
            spread = spread_positions(stored, t, k)
            assert spread.shape == (k, t) and spread.min() >= 0 and spread.max() < stored
            assert np.all(np.diff(spread, axis=1) > 0)  # time order, no frame twice
    spread = spread_positions(28, 4, 5)
    assert spread[0, 0] == 0 and spread[-1, -1] == 27  # together they span the whole video
    assert len(np.unique(spread)) == 20  # 20 distinct frames of the 28 are seen


def test_spread_positions_refuse_bad_counts():
    """More frames per subset than stored, or counts below 1, are errors naming the argument."""
    with pytest.raises(ValueError, match="n_stored must be an int >= 4"):
        spread_positions(3, 4)
    with pytest.raises(ValueError, match="n_subsets must be an int >= 1"):
        spread_positions(28, 4, 0)


def test_random_positions_are_sorted_distinct_and_reach_every_frame():
    """Random draws are sorted, distinct, from the generator given, and reach every stored frame."""
    gen = torch.Generator().manual_seed(0)
    draws = np.array([random_positions(STORED, 4, gen) for _ in range(300)])
    assert np.all(np.diff(draws, axis=1) > 0)
    assert set(draws.ravel()) == set(range(STORED))
    again = np.array([random_positions(STORED, 4, torch.Generator().manual_seed(0)) for _ in range(2)])
    np.testing.assert_array_equal(again[0], draws[0])
    assert len({tuple(d) for d in draws}) > 250  # not a handful of subsets over and over


def test_random_subsets_index_lazily_and_draw_anew_per_access():
    """RandomSubsets takes the frames of one item (dict items too) and draws again on each access."""
    maps = np.arange(10 * STORED, dtype=np.float32).reshape(10, STORED, 1, 1, 1).repeat(2, axis=2)
    data = [({"maps": maps[i], "scores": maps[i, :, 0, 0, 0]}, 0.5) for i in range(10)]
    items = RandomSubsets(data, 4, generator=torch.Generator().manual_seed(1))
    first, second = items[3][0], items[3][0]
    assert first["maps"].shape == (4, 2, 1, 1)
    np.testing.assert_array_equal(first["maps"][:, 0, 0, 0], first["scores"])  # one draw for both keys
    assert np.all(np.diff(first["scores"]) > 0) and np.all(first["scores"] // STORED == 3)
    assert not np.array_equal(first["scores"], second["scores"])


# ----------------------------------------------------------------------------------
# the estimators


def test_training_draws_are_sorted_new_each_epoch_and_repeat_with_random_state():
    """fit shows each video T sorted frames of its own, other ones each epoch, the same for the same seed."""
    X, y = _numbered(12), np.linspace(0.2, 0.8, 12).astype(np.float32)

    def fit(seed):
        return ScoreLSTMRegressor(RecordingNet, max_epochs=3, batch_size=12, train_split=None, random_state=seed,
                                  train_subsets="random").fit(X, y)

    reg = fit(0)
    epochs = _draws(reg)
    assert len(epochs) == 3 and all(e.shape == (12, 4) for e in epochs)
    for rows in epochs:
        video, frame = rows.numpy() // STORED, rows.numpy() % STORED
        assert np.all(video == video[:, :1])  # a row holds frames of one video
        assert np.all(np.diff(frame, axis=1) > 0)  # in time order, each frame once
        assert sorted(video[:, 0].tolist()) == list(range(12))  # every video once per epoch
    by_video = [{int(r[0]) // STORED: tuple(r.tolist()) for r in rows} for rows in epochs]
    assert by_video[0] != by_video[1] != by_video[2]
    again = _draws(fit(0))
    assert all(torch.equal(a, b) for a, b in zip(epochs, again))
    assert not all(torch.equal(a, b) for a, b in zip(epochs, _draws(fit(1))))


def test_predict_is_the_mean_over_evenly_spread_subsets():
    """predict (and the validation part during fit) is the mean of the network over K spread subsets."""
    X, y = _numbered(20), np.linspace(0.2, 0.8, 20).astype(np.float32)
    split = ValidSplit(0.25, stratified=False, random_state=0)
    reg = ScoreLSTMRegressor(RecordingNet, max_epochs=2, train_split=split, random_state=0,
                             train_subsets="random", test_subsets=3).fit(X, y)
    spread = spread_positions(STORED, 4, 3)
    for rows in _draws(reg, training=False):  # the validation part: 5 videos x 3 subsets per epoch
        assert rows.shape == (15, 4)
        videos = (rows.numpy()[::3, 0] // STORED).astype(int)
        np.testing.assert_array_equal(rows.numpy(), _subsets_of(X, videos, spread))
    reg.module_.seen.clear()
    pred = reg.predict(X)
    seen = torch.cat(_draws(reg, training=False)).numpy()
    np.testing.assert_array_equal(seen, _subsets_of(X, np.arange(20), spread))
    with torch.no_grad():
        direct = reg.module_(torch.from_numpy(X[:, spread].reshape(-1, 4))).reshape(20, 3).mean(1)
    np.testing.assert_allclose(pred, direct.numpy(), rtol=0, atol=1e-6)


def _subsets_of(X, videos, spread):
    """Rows of the K subsets of each video, video by video: [len(videos) * K, T]."""
    return X[videos][:, spread].reshape(-1, spread.shape[1])


def test_uniform_training_on_all_frames_is_reading_the_uniform_pick():
    """train_subsets="uniform", test_subsets=1 on 28 frames gives what the plain 4-frame read gives."""
    X, y = make_score_order_dataset(40, n_frames=STORED, seed=0)
    pick = spread_positions(STORED, 4)[0]
    plain = ScoreLSTMRegressor(max_epochs=2, random_state=0, **TINY_LSTM).fit(X[:, pick], y)
    uniform = ScoreLSTMRegressor(max_epochs=2, random_state=0, train_subsets="uniform", **TINY_LSTM).fit(X, y)
    np.testing.assert_allclose(uniform.predict(X), plain.predict(X[:, pick]), rtol=0, atol=1e-6)
    # the same network, asked for the mean over 5 spread subsets, predicts otherwise
    assert not np.allclose(uniform.set_params(test_subsets=5).predict(X), plain.predict(X[:, pick]))


def test_convlstm_maps_and_scores_take_the_same_frames():
    """The dict input's maps and scores are subset alike, in training and at prediction."""
    n = 8
    stamp = _numbered(n)
    X = {"maps": np.broadcast_to(stamp[:, :, None, None, None], (n, STORED, 3, 2, 2)).copy(), "scores": stamp}
    y = np.linspace(0.2, 0.8, n).astype(np.float32)
    reg = ConvLSTMRegressor(RecordingMapsNet, max_epochs=2, batch_size=4, train_split=None, random_state=0,
                            train_subsets="random", test_subsets=2).fit(X, y)
    assert reg.predict(X).shape == (n,)
    for _, maps, scores in reg.module_.seen:
        assert maps.shape[1:] == (4, 3, 2, 2)
        torch.testing.assert_close(maps[:, :, 0, 0, 0], scores, rtol=0, atol=0)


def test_convlstm_learns_from_random_subsets_of_28_raw_maps():
    """The AMNetVid network fits and predicts 28-frame raw maps through random 4-frame subsets."""
    maps, scores, y = make_moving_peak_dataset(24, n_frames=STORED, max_speed=0.35, jitter=0.3, seed=0)
    reg = ConvLSTMRegressor(max_epochs=20, batch_size=8, train_split=None, random_state=0, train_subsets="random",
                            test_subsets=2, **TINY_CONV).fit({"maps": maps, "scores": scores}, y)
    pred = reg.predict({"maps": maps, "scores": scores})
    assert pred.shape == (24,) and np.all((pred > 0) & (pred < 1))
    assert len(reg.history) == 20 and np.isfinite(reg.history[-1, "train_loss"])
    # a prediction is the mean of the network's predictions on the 2 evenly spread 4-frame subsets
    one = copy.deepcopy(reg).set_params(test_subsets=1)
    per_subset = [one.predict({"maps": maps[:, pos], "scores": scores[:, pos]})
                  for pos in spread_positions(STORED, 4, 2)]
    np.testing.assert_allclose(pred, np.mean(per_subset, axis=0), rtol=0, atol=1e-6)
    # it learned the peak's speed: the order of unseen 28-frame videos, far better than chance (0)
    maps2, scores2, y2 = make_moving_peak_dataset(60, n_frames=STORED, max_speed=0.35, jitter=0.3, seed=1)
    rho = spearman(y2, reg.predict({"maps": maps2, "scores": scores2}))
    assert rho > 0.3, rho


def test_pipeline_reads_all_stored_frames_from_a_store(tmp_path):
    """AttentionSequences(n_frames=28) from a real store into the ConvLSTM with random subsets."""
    maps, scores, y = make_moving_peak_dataset(16, n_frames=STORED, max_speed=0.35, seed=0)
    ids = write_synthetic_store(tmp_path / "store", maps, scores, y)
    pipe = Pipeline([
        ("sequences", AttentionSequences(str(tmp_path / "store"), n_frames=STORED, maps="raw")),
        ("net", ConvLSTMRegressor(max_epochs=1, batch_size=8, train_split=None, random_state=0,
                                  train_subsets="random", test_subsets=3, **TINY_CONV)),
    ])
    pred = pipe.fit(ids, y).predict(ids[:5])
    assert pred.shape == (5,)
    # the reader hands the network all 28 stored frames of each video, in the order of the ids
    X = pipe[0].transform(ids)
    assert X["maps"].shape == (16, STORED, 3, 14, 14) and X["scores"].shape == (16, STORED)
    np.testing.assert_allclose(X["maps"], maps, rtol=0, atol=1e-6)
    np.testing.assert_allclose(X["scores"], scores, rtol=0, atol=5e-3)  # stored at lower precision
    # and the prediction is the mean over the 3 evenly spread 4-frame subsets of those frames
    net = pipe[-1]
    one = copy.deepcopy(net).set_params(test_subsets=1)
    per_subset = [one.predict({"maps": X["maps"][:5, pos], "scores": X["scores"][:5, pos]})
                  for pos in spread_positions(STORED, 4, 3)]
    np.testing.assert_allclose(pred, np.mean(per_subset, axis=0), rtol=0, atol=1e-6)
    assert np.ptp(pred) > 0  # videos get their own predictions


# ----------------------------------------------------------------------------------
# parameters


def test_subset_parameters_are_reachable_by_clone_set_params_and_grid_search():
    """train_subsets / test_subsets survive clone and set_params and are grid-searched as net__*."""
    reg = ScoreLSTMRegressor(train_subsets="random", test_subsets=5)
    assert reg.get_params()["train_subsets"] == "random" and clone(reg).get_params()["test_subsets"] == 5
    defaults = ConvLSTMRegressor().get_params()
    assert defaults["train_subsets"] is None and defaults["test_subsets"] == 1  # the note's protocol
    assert clone(reg.set_params(test_subsets=2)).test_subsets == 2

    X, y = make_score_order_dataset(24, n_frames=STORED, seed=0)
    pipe = Pipeline([("scale", FrameMinMaxScaler()),
                     ("net", ScoreLSTMRegressor(max_epochs=1, train_split=None, random_state=0, **TINY_LSTM))])
    grid = {"net__train_subsets": ["uniform", "random"], "net__test_subsets": [1, 3]}
    gs = GridSearchCV(pipe, grid, scoring=spearman_scorer, cv=2).fit(X, y)
    assert sorted((p["net__train_subsets"], p["net__test_subsets"]) for p in gs.cv_results_["params"]) == [
        ("random", 1), ("random", 3), ("uniform", 1), ("uniform", 3)]
    assert np.all(np.isfinite(gs.cv_results_["mean_test_score"]))
    assert gs.best_estimator_.named_steps["net"].train_subsets == gs.best_params_["net__train_subsets"]


@pytest.mark.parametrize("params, message", [
    ({"train_subsets": "rnd"},
     r"The 'train_subsets' parameter of ScoreLSTMRegressor must be a str among "
     r"\{'(random|uniform)', '(uniform|random)'\} or None\. Got 'rnd' instead"),
    ({"train_subsets": True}, r"The 'train_subsets' parameter of ScoreLSTMRegressor must be"),
    ({"test_subsets": 0}, r"The 'test_subsets' parameter of ScoreLSTMRegressor must be an int in the range "
                          r"\[1, inf\)\. Got 0 instead"),
    ({"test_subsets": 2.5}, r"The 'test_subsets' parameter of ScoreLSTMRegressor must be an int"),
])
def test_bad_subset_parameters_are_refused(params, message):
    """Bad values fail at fit with sklearn's message naming the parameter and the allowed values."""
    X, y = make_score_order_dataset(8, n_frames=STORED, seed=0)
    with pytest.raises(InvalidParameterError, match=message):
        ScoreLSTMRegressor(max_epochs=1, train_subsets="random", **TINY_LSTM).set_params(**params).fit(X, y)


def test_frame_count_mismatches_say_what_to_set():
    """All stored frames without train_subsets, or fewer frames than the network takes, fail clearly."""
    X, y = make_score_order_dataset(8, n_frames=STORED, seed=0)
    with pytest.raises(ValueError, match=r"X holds 28 frames per video but ScoreLSTMRegressor's network takes "
                                         r"module__n_frames=4; set module__n_frames=28.*train_subsets='random'"):
        ScoreLSTMRegressor(max_epochs=1, **TINY_LSTM).fit(X, y)
    with pytest.raises(ValueError, match=r"X holds 3 frames per video .* module__n_frames=4; set "
                                         r"module__n_frames=3 to match the input, or read 4 frames per video\.$"):
        ScoreLSTMRegressor(max_epochs=1, train_subsets="random", **TINY_LSTM).fit(X[:, :3], y)
    # the plain 4-frame input is untouched by train_subsets (nothing to choose)
    plain = ScoreLSTMRegressor(max_epochs=1, random_state=0, **TINY_LSTM).fit(X[:, :4], y).predict(X[:, :4])
    chosen = ScoreLSTMRegressor(max_epochs=1, random_state=0, train_subsets="random", test_subsets=5,
                                **TINY_LSTM).fit(X[:, :4], y).predict(X[:, :4])
    np.testing.assert_array_equal(plain, chosen)


def test_moving_peak_jitter_keeps_the_old_arrays_when_off():
    """make_moving_peak_dataset without jitter gives the arrays it always gave; jitter shakes only the maps."""
    still = make_moving_peak_dataset(10, n_frames=STORED, max_speed=0.35, seed=4)
    off = make_moving_peak_dataset(10, n_frames=STORED, max_speed=0.35, seed=4, jitter=0.0)
    shaken = make_moving_peak_dataset(10, n_frames=STORED, max_speed=0.35, seed=4, jitter=0.5)
    for a, b in zip(still, off):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(still[0], shaken[0])
    np.testing.assert_array_equal(still[1], shaken[1])
    np.testing.assert_array_equal(still[2], shaken[2])
    np.testing.assert_allclose(shaken[0].sum(axis=(-2, -1)), 1.0, rtol=1e-5)


# ----------------------------------------------------------------------------------
# it helps where it should


@pytest.mark.slow  # six trainings of 40 epochs: about 15-25 s on 2 busy cores
def test_random_subsets_beat_the_uniform_pick_on_a_small_training_set(tmp_path):
    """32 training videos of 28 stored frames whose label is the order of all 28 scores: random
    4-frame subsets in training and the mean over 5 spread ones at prediction reach a higher
    held-out Spearman than the plain 4-frame uniform pick (the working note's input), on average
    over three training sets and seeds (one set of 32 is a noisy sample)."""
    sets = [make_score_order_dataset(32, n_frames=STORED, seed=seed) for seed in range(3)]
    X_test, y_test = make_score_order_dataset(300, n_frames=STORED, seed=100)
    scores = np.concatenate([X for X, _ in sets] + [X_test])
    maps = np.full((len(scores), STORED, 3, 14, 14), 1 / 196, dtype=np.float32)  # the scores carry the label
    ids = write_synthetic_store(tmp_path / "store", maps, scores, np.concatenate([y for _, y in sets] + [y_test]))
    test = ids[96:]

    def held_out(seed, n_frames, **subsets):
        pipe = Pipeline([
            ("frames", FrameScores(str(tmp_path / "store"), n_frames=n_frames)),
            ("scale", FrameMinMaxScaler()),
            ("lstm", ScoreLSTMRegressor(max_epochs=40, batch_size=8, train_split=None, random_state=seed,
                                        **subsets)),
        ])
        return spearman(y_test, pipe.fit(ids[32 * seed:32 * (seed + 1)], sets[seed][1]).predict(test))

    plain = np.mean([held_out(seed, 4) for seed in range(3)])
    augmented = np.mean([held_out(seed, STORED, train_subsets="random", test_subsets=5) for seed in range(3)])
    assert augmented >= plain
    # measured (AVX-512): 0.33 without, 0.73 with; the margin keeps a tie or one lucky seed from passing
    assert augmented >= plain + 0.1
