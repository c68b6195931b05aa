"""Stores of real, irregular clips: videos of different lengths, short ones, several samplings,
tiny sets; the out-of-fold predictions, intervals and paired differences computed from them."""

import warnings

import numpy as np
import pytest

from amnetvid_sk import FeatureStore, FrameScores, MeanScoreRegressor
from amnetvid_sk.errors import FewVideosWarning, LeftOutWarning, StoreError, TooFewVideosError
from amnetvid_sk.evaluate import cross_validate, paper_protocol, training_set
from amnetvid_sk.pipelines import load_recipe
from amnetvid_sk.runs import stored_tables
from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store
from amnetvid_sk.uncertainty import OutOfFold, paired_difference, spearman_interval

from conftest import run_cli

STORED = [6, 3, 2, 6, 1, 5, 4, 6]  # frames each video holds, as --fps gives clips of different lengths


@pytest.fixture
def irregular(tmp_path):
    """A store of 8 videos holding 1 to 6 frames (sampling fps=4); their full 6-frame scores."""
    maps, scores, y = make_moving_peak_dataset(len(STORED), n_frames=6, max_speed=1.0, seed=3)
    ids = write_synthetic_store(tmp_path / "store", maps, scores, y, stored=STORED)
    return tmp_path / "store", ids, scores


def test_read_fills_short_videos_as_asked(irregular):
    """read_arrays: T frames over each video's own frames; a short video's row stretched, its last frame
    repeated, NaN-padded, or an error naming it and its count."""
    path, ids, scores = irregular
    fs = FeatureStore(path)
    with pytest.raises(StoreError, match=r"'syn0002', 'syn0004'.*short_videos='stretch'"):
        fs.read_arrays(ids, n_frames=4, maps=False)
    with pytest.raises(StoreError, match="different numbers of stored frames"):
        fs.read_arrays(ids, maps=False)
    last, _ = fs.read_arrays(ids[[2, 0]], n_frames=4, maps=False, short="repeat-last")
    np.testing.assert_array_equal(last[0], scores[2, [0, 1, 1, 1]])
    np.testing.assert_array_equal(last[1], scores[0, [0, 2, 3, 5]])  # 4 of 6 spread: positions 0, 2, 3, 5
    stretched, maps = fs.read_arrays(ids[[1]], n_frames=4, short="stretch")
    np.testing.assert_array_equal(stretched[0], scores[1, [0, 1, 1, 2]])
    assert maps.shape == (1, 4, 3, 14, 14) and np.isfinite(maps).all()
    padded, maps = fs.read_arrays(ids, short="nan")  # every stored frame: rows as long as the longest
    assert padded.shape == (8, 6)
    for i, n in enumerate(STORED):
        np.testing.assert_array_equal(padded[i, :n], scores[i, :n])
        assert np.isnan(padded[i, n:]).all() and np.isnan(maps[i, n:]).all() and np.isfinite(maps[i, :n]).all()


def test_mean_score_averages_each_videos_own_frames(irregular):
    """The baseline on clips of different lengths: each prediction is the mean of that video's stored frames."""
    path, ids, scores = irregular
    pipe = load_recipe("mean_score").pipeline(str(path))
    pred = pipe.fit(ids, np.zeros(len(ids))).predict(ids)
    np.testing.assert_allclose(pred, [scores[i, :n].mean() for i, n in enumerate(STORED)], rtol=1e-6)
    # a video longer than any seen in fit is fine: a mean does not depend on the number of frames
    assert MeanScoreRegressor().fit([[0.2, np.nan]]).predict([[0.1, 0.2, 0.3]]).tolist() == pytest.approx([0.2])


def test_training_set_leaves_out_short_videos_and_names_them(irregular):
    """A model reading 4 frames leaves out the videos holding fewer, with one warning naming and counting
    them; short_videos='stretch' keeps them; below FEW_VIDEOS a warning says a Spearman is noise."""
    path, ids, _ = irregular
    pipe = load_recipe("score_lstm").pipeline(str(path))
    with pytest.warns(LeftOutWarning, match=r"3 of 8 videos .* 'syn0001' \(3 of 4\), 'syn0002' \(2 of 4\), "
                                            r"'syn0004' \(1 of 4\)") as caught:
        data = training_set(path, "short", pipe)
    assert sorted(data.short) == ["syn0001", "syn0002", "syn0004"] and len(data) == 5
    assert any(issubclass(w.category, FewVideosWarning) for w in caught)
    pipe.set_params(frames__short_videos="stretch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewVideosWarning)
        warnings.simplefilter("error", LeftOutWarning)
        assert len(training_set(path, "short", pipe)) == 8
    pipe.set_params(frames__short_videos="drop")
    with pytest.raises(StoreError, match="'syn0002'"):  # a dropped video that still reaches a read
        FrameScores(str(path), n_frames=4).fit_transform(ids)


def test_cross_validate_keeps_out_of_fold_predictions_in_the_store(irregular):
    """cross_validate stores each video's out-of-fold prediction; the table rebuilt from the store has the
    same figures, the interval and the paired difference to the baseline."""
    path, ids, scores = irregular
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewVideosWarning)
        res = cross_validate("mean_score", path, "short", cv=2)
    oof = res.predictions
    assert sorted(oof.video_id) == sorted(ids) and set(oof.fold) == {0, 1}
    np.testing.assert_allclose(oof.prediction[np.argsort(oof.video_id)],
                               [scores[i, :n].mean() for i, n in enumerate(STORED)], rtol=1e-6)
    rows = FeatureStore(path).sql("SELECT count(*) AS n, count(DISTINCT run_id) AS runs FROM predictions").to_pylist()
    assert rows == [{"n": 8, "runs": 1}]
    (table,) = stored_tables(path)
    again = table.results[("mean_score", "short")]
    np.testing.assert_allclose(again.scores, res.scores)
    assert again.run_id == res.run_id
    fields = ("estimate", "low", "high", "n_videos")
    np.testing.assert_equal([getattr(again.interval, f) for f in fields], [getattr(res.interval, f) for f in fields])


def test_interval_is_seeded_and_the_paired_difference_is_narrower():
    """The bootstrap is reproducible; two models that rank alike have a paired difference whose interval
    is much narrower than either model's own; a real difference excludes 0."""
    rng = np.random.default_rng(0)
    y = rng.random(300)
    shared = y + rng.normal(0, 0.6, 300)
    a = OutOfFold.from_arrays([f"v{i}" for i in range(300)], np.arange(300) % 5, shared, y)
    b = OutOfFold.from_arrays(a.video_id, a.fold, shared + rng.normal(0, 0.05, 300), y)
    first, second = spearman_interval(a), spearman_interval(a)
    assert first == second and first.method == "BCa" and first.n_resamples == 2000
    assert first.low < first.estimate < first.high
    diff = paired_difference(a, b)
    assert (diff.high - diff.low) < 0.3 * (first.high - first.low)
    better = OutOfFold.from_arrays(a.video_id, a.fold, y + rng.normal(0, 0.1, 300), y)
    assert paired_difference(better, a).excludes_zero and not diff.excludes_zero


def test_two_samplings_are_named_or_picked(tmp_path):
    """A store with two samplings: evaluate without --sampling refuses, naming them and the option;
    with --sampling it reads that one and says which."""
    maps, scores, y = make_moving_peak_dataset(6, n_frames=6, max_speed=1.0)
    path = tmp_path / "store"
    write_synthetic_store(path, maps, scores, y)  # frames=6
    write_synthetic_store(path, maps, scores, y, stored=[6, 5, 4, 6, 5, 4])  # fps=4
    refused = run_cli("evaluate", "mean_score", "--store", path, "--target", "short", "--cv", "2", check=2)
    assert "['fps=4', 'frames=6'] with --sampling KEY" in refused.stderr
    done = run_cli("evaluate", "mean_score", "--store", path, "--target", "short", "--cv", "2",
                   "--sampling", "fps=4", check=0)
    assert "sampling fps=4" in done.stdout and "mean " in done.stdout and " [" in done.stdout


def test_cli_short_videos_and_n_frames(irregular):
    """evaluate --n-frames/--short-videos reach the recipe's reader: the videos used follow them."""
    path, _, _ = irregular
    args = ("evaluate", "mean_score", "--store", path, "--target", "short", "--cv", "2")
    dropped = run_cli(*args, "--n-frames", "4", check=0)
    assert "5 labelled videos used" in dropped.stdout
    assert "warning: 3 of 8 videos with a short-term label hold fewer stored frames" in dropped.stderr
    kept = run_cli(*args, "--n-frames", "4", "--short-videos", "repeat-last", check=0)
    assert "8 labelled videos used" in kept.stdout and "fewer stored frames" not in kept.stderr
    assert "warning: only 8 labelled videos" in kept.stderr  # below FEW_VIDEOS


def test_stacked_inner_folds_refused_before_any_fit(irregular):
    """The stacked ensemble's inner 5-fold split of 4-video training parts is refused in one line (it was
    a traceback from scikit-learn's inner split)."""
    path, _, _ = irregular
    with pytest.raises(TooFewVideosError, match=r"5 inner folds.* only \d videos"):
        cross_validate("stacked", path, "short", cv=2, write=False,
                       set_params={"stack__amnetvid__sequences__short_videos": "stretch",
                                   "stack__score_lstm__frames__short_videos": "stretch"})


def test_paper_protocol_predictions_are_the_best_epochs(irregular):
    """The note's protocol keeps, for each round, the test predictions of its best epoch: their Spearman
    is the best valid_spearman of that round's history."""
    path, _, _ = irregular
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = paper_protocol("score_lstm", path, "short", rounds=2, test_size=0.5,
                             set_params={"frames__short_videos": "stretch", "lstm__max_epochs": 3})
    assert set(res.predictions.fold) == {0, 1} and len(res.predictions) == 2 * 4
    assert np.isfinite(res.scores).sum() >= 1


def test_cli_folds_library_warnings_into_one_line(tmp_path):
    """fit on 3 videos: no raw library warning lines with site-packages paths; one line of ours says
    how many were folded."""
    maps, scores, y = make_moving_peak_dataset(3, n_frames=4)
    path = tmp_path / "store"
    write_synthetic_store(path, maps, scores, np.full(3, 0.5))
    done = run_cli("fit", "score_lstm", "--store", path, "--target", "short", "--max-epochs", "2",
                   "--out", tmp_path / "m.safetensors", check=0)
    assert "site-packages" not in done.stderr and "Warning:" not in done.stderr, done.stderr
    notes = [line for line in done.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) <= 1 and all("folded into this line" in n for n in notes), done.stderr
    assert "warning: only 3 labelled videos" in done.stderr


def test_bad_inputs_of_the_new_parameters_are_named(irregular, tmp_path):
    """An unknown fill policy, predictions of unequal lengths, bad stored counts, and a store whose every
    video is too short: each an error naming the parameter or the fix."""
    path, ids, _ = irregular
    with pytest.raises(ValueError, match=r"'short' parameter .* \['error', 'stretch', 'repeat-last', 'nan'\]"):
        FeatureStore(path).read_arrays(ids, n_frames=4, short="pad")
    with pytest.raises(ValueError, match="one length"):
        OutOfFold.from_arrays(["a", "b"], [0, 1], [0.5], [0.1, 0.2])
    maps, scores, y = make_moving_peak_dataset(2, n_frames=4)
    with pytest.raises(ValueError, match="stored must hold 2 counts between 1 and 4"):
        write_synthetic_store(tmp_path / "bad", maps, scores, y, stored=[5, 2])
    pipe = load_recipe("score_lstm").pipeline(str(path))
    with pytest.raises(StoreError, match="every labelled video .* fewer stored frames"):
        training_set(path, "short", pipe.set_params(frames__n_frames=7))


def test_too_few_folds_counts_the_short_videos(irregular):
    """A split refused for too few videos says how many more the model could not read, and how to keep them
    (the store's count alone looked wrong next to the labels)."""
    path, _, _ = irregular
    with pytest.raises(TooFewVideosError, match=r"has 5 with a short-term label.*3 more hold fewer stored frames.*"
                                                r"--short-videos stretch"):
        cross_validate("score_lstm", path, "short", cv=6, write=False)
