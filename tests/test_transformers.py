"""Store-backed pipeline steps: ids in, model inputs out."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone

from amnetvid_sk import AttentionSequences, FrameMinMaxScaler, FrameScores, MissingVideosError
from amnetvid_sk.render import render_jet


def test_frame_scores_reads_in_id_order(moving_peak_store):
    """FrameScores returns the stored scores in the order of the ids, without fitting."""
    path, ids, maps, scores, y = moving_peak_store
    order = [5, 0, 17, 5]
    got = FrameScores(path, n_frames=4).transform(ids[order])
    np.testing.assert_allclose(got, scores[order], rtol=1e-6)
    assert FrameScores(path, n_frames=2).fit(ids).transform(ids[:3]).shape == (3, 2)


def test_attention_sequences_raw_and_jet(moving_peak_store):
    """Raw mode gives the stored maps; jet mode the note's 9-channel renders; scores scaled on fit."""
    path, ids, maps, scores, y = moving_peak_store
    step = AttentionSequences(path, n_frames=4, maps="raw").fit(ids[:100])
    out = step.transform(ids[100:103])
    np.testing.assert_allclose(out["maps"], maps[100:103], rtol=1e-6)
    lo, hi = scores[:100].min(), scores[:100].max()
    assert step.score_min_ == pytest.approx(lo) and step.score_max_ == pytest.approx(hi)
    np.testing.assert_allclose(out["scores"], (scores[100:103] - lo) / (hi - lo), rtol=1e-5)
    jet = AttentionSequences(path, n_frames=4, maps="jet", size=20).fit(ids[:10]).transform(ids[:2])
    assert jet["maps"].shape == (2, 4, 9, 20, 20) and jet["maps"].dtype == np.uint8
    np.testing.assert_array_equal(jet["maps"], render_jet(maps[:2], size=20))


def test_unknown_ids_fail_with_store_error(moving_peak_store):
    """Ids not in the store raise MissingVideosError naming them."""
    path, ids, *_ = moving_peak_store
    with pytest.raises(MissingVideosError, match="nope"):
        FrameScores(path, n_frames=4).transform(np.array(["nope", ids[0]], dtype=object))


def test_bad_parameters_are_named_at_fit(moving_peak_store):
    """A bad 'maps' value is reported in scikit-learn's words when fit runs, not in __init__."""
    path, ids, *_ = moving_peak_store
    step = AttentionSequences(path, maps="rgb")
    # scikit-learn lists a set's options in hash order: either order is its wording
    with pytest.raises(ValueError, match=r"The 'maps' parameter of AttentionSequences must be a str among "
                                         r"\{('jet', 'raw'|'raw', 'jet')\}. Got 'rgb' instead."):
        step.fit(ids)
    with pytest.raises(ValueError, match="n_frames"):
        FrameScores(path, n_frames=0).fit(ids)


def test_unfitted_frame_scores_checks_its_parameters_in_transform(moving_peak_store):
    """FrameScores needs no fit: used unfitted, transform checks the parameters fit would have checked."""
    path, ids, *_ = moving_peak_store
    with pytest.raises(ValueError, match=r"The 'n_frames' parameter of FrameScores must be an int in the range "
                                         r"\[1, inf\) or None. Got 0 instead."):
        FrameScores(path, n_frames=0).transform(ids)


@pytest.mark.parametrize("make", [FrameScores, AttentionSequences], ids=lambda c: c.__name__)
def test_parameter_tables_cover_every_parameter(make, moving_peak_store):
    """scikit-learn's check_param_validation: one constraint per parameter, each bad value refused by fit."""
    from sklearn.utils.estimator_checks import check_param_validation

    path, *_ = moving_peak_store
    check_param_validation(make.__name__, make(path))


def test_steps_clone_and_pickle(moving_peak_store):
    """Every step clones, and pickles fitted, with the same output."""
    path, ids, *_ = moving_peak_store
    for step in (FrameScores(path, 4), AttentionSequences(path, 4, maps="raw")):
        fitted = clone(step).fit(ids[:20])
        again = pickle.loads(pickle.dumps(fitted))
        a, b = fitted.transform(ids[:3]), again.transform(ids[:3])
        a = a["maps"] if isinstance(a, dict) else a
        b = b["maps"] if isinstance(b, dict) else b
        np.testing.assert_array_equal(a, b)
        assert clone(step).get_params() == step.get_params()


def test_frame_min_max_scaler_uses_one_range():
    """FrameMinMaxScaler scales with one min and max over all frames, not per column."""
    X = np.array([[0.5, 0.7], [0.6, 0.9]])
    out = FrameMinMaxScaler().fit_transform(X)
    np.testing.assert_allclose(out, [[0.0, 0.5], [0.25, 1.0]])


@pytest.fixture
def two_samplings(tmp_path):
    """A store whose videos are stored under two samplings, 6 and 3 frames."""
    from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store

    path = tmp_path / "store"
    maps6, scores6, y = make_moving_peak_dataset(12, n_frames=6, max_speed=1.0, seed=0)
    ids = write_synthetic_store(path, maps6, scores6, y)
    maps3, scores3, _ = make_moving_peak_dataset(12, n_frames=3, seed=1)
    write_synthetic_store(path, maps3, scores3, y)
    return path, ids, scores6, scores3


def test_sampling_is_chosen_recorded_and_required_when_ambiguous(two_samplings):
    """With two samplings None is an error listing them; fit records the one read, as predict needs."""
    from amnetvid_sk import StoreError

    path, ids, scores6, scores3 = two_samplings
    with pytest.raises(StoreError, match=r"\['frames=3', 'frames=6'\]"):
        FrameScores(path).fit(ids)
    step = FrameScores(path, sampling="frames=3").fit(ids)
    assert step.sampling_ == "frames=3"
    np.testing.assert_allclose(step.transform(ids[:2]), scores3[:2], rtol=1e-6)
    seq = AttentionSequences(path, n_frames=6, maps="raw", sampling="frames=6").fit(ids)
    assert seq.sampling_ == "frames=6" and seq.transform(ids[:1])["maps"].shape == (1, 6, 3, 14, 14)
    with pytest.raises(StoreError, match="no videos extracted .* sampling 'fps=4'"):
        FrameScores(path, sampling="fps=4").fit(ids)


def test_more_frames_than_stored_names_the_stored_count(two_samplings):
    """n_frames=4 on the 3-frame sampling raises an error with the stored count, never repeats frames."""
    from amnetvid_sk import StoreError

    path, ids, *_ = two_samplings
    with pytest.raises(StoreError, match=r"n_frames=4 .*fewest: 3"):
        FrameScores(path, n_frames=4, sampling="frames=3").fit(ids).transform(ids)
    with pytest.raises(StoreError, match=r"n_frames=4 .*fewest: 3"):
        AttentionSequences(path, n_frames=4, maps="raw", sampling="frames=3").fit(ids)


def test_fitted_steps_keep_working_after_cd_and_follow_a_moved_store(two_samplings, tmp_path, monkeypatch):
    """A relative store path is made absolute at fit; setting store after fit points at a moved store."""
    path, ids, scores6, _ = two_samplings
    monkeypatch.chdir(path.parent)
    step = FrameScores("store", sampling="frames=6").fit(ids)
    assert step.store_ == str(path.resolve()) and step.store == "store"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    np.testing.assert_allclose(step.transform(ids[:2]), scores6[:2], rtol=1e-6)
    moved = tmp_path / "moved_store"
    path.rename(moved)
    step.set_params(store=str(moved))
    np.testing.assert_allclose(step.transform(ids[:2]), scores6[:2], rtol=1e-6)
