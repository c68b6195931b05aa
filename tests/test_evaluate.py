"""Evaluation: recipes, Spearman cross-validation, grid search, Table 1, results in the store."""

import re
import shutil

import numpy as np
import pytest
from skorch.callbacks import Callback

from amnetvid_sk.evaluate import (CVResult, Table1, change_text, cross_validate, grid_search, labelled_data,
                                  load_recipe, paper_protocol, table1)
from amnetvid_sk.labels import import_labels
from amnetvid_sk.store import FeatureStore

from conftest import ROOT, run_cli

QUICK = {"net__max_epochs": 3, "net__module__filters": (8, 4, 2), "net__module__frame_dense": (32, 8),
         "net__module__maps_dense": 16, "net__module__score_dense": 16}


def test_recipes_build_pipelines_with_grids():
    """Each recipe in pipelines/ builds a Pipeline and exposes a param_grid valid for it."""
    for name in ("mean_score", "score_lstm", "amnetvid", "amnetvid_raw"):
        recipe = load_recipe(ROOT / "pipelines" / f"{name}.py")
        pipe = recipe.pipeline("somewhere")
        for key, values in recipe.param_grid.items():
            pipe.set_params(**{key: values[-1]})
            assert pipe.get_params()[key] == values[-1], (name, key)
        assert load_recipe(name).recipe_name == name


def test_unknown_recipe_lists_known_ones():
    """A recipe that does not exist gets an error listing the known names."""
    with pytest.raises(FileNotFoundError, match="amnetvid_raw"):
        load_recipe("no_such_recipe")


def test_cross_validate_writes_results(moving_peak_store, tmp_path):
    """Mean-score CV on the moving-peak set is near 0; fold scores land in the results table."""
    path, *_ = moving_peak_store
    query = "SELECT run_id, fold, spearman FROM results WHERE recipe = 'mean_score' AND target = 'short' ORDER BY fold"
    before = {r["run_id"] for r in FeatureStore(path).sql(query).to_pylist()}  # other tests' runs share the store
    res = cross_validate("mean_score", path, "short", cv=4, set_params={"frames__n_frames": 4})
    assert len(res.scores) == 4 and abs(res.mean) < 0.25
    rows = [r for r in FeatureStore(path).sql(query).to_pylist() if r["run_id"] not in before]
    assert [r["fold"] for r in rows] == [0, 1, 2, 3]
    np.testing.assert_allclose([r["spearman"] for r in rows], res.scores)


def test_convlstm_recipe_beats_mean_in_cv(moving_peak_store):
    """AMNetVid on raw maps learns the peak's movement under honest CV, the mean baseline does not."""
    path, *_ = moving_peak_store
    res = cross_validate("amnetvid_raw", path, "short", cv=3, write=False,
                         set_params={"net__max_epochs": 8})
    assert res.mean > 0.5, res.scores


class _TestPartProbe(Callback):
    """Records, after every epoch of every fit, scipy's Spearman of the network's predictions on its
    validation part (in the note's protocol: the round's test part), and those predictions. It predicts
    inside ``torch.random.fork_rng``, so the training it watches draws the same random numbers as without it."""

    def __init__(self):
        self.fits = []  # per fit: {"y": validation labels, "rho": [per epoch], "pred": [per epoch]}

    def on_train_begin(self, net, **kwargs):
        self.fits.append({"y": None, "rho": [], "pred": []})

    def on_epoch_end(self, net, dataset_valid=None, **kwargs):
        import torch
        from scipy.stats import spearmanr

        fit = self.fits[-1]
        fit["y"] = np.asarray(dataset_valid.y, dtype=np.float64).reshape(-1)
        with torch.random.fork_rng(devices=[]):
            pred = np.asarray(net.predict(dataset_valid.X), dtype=np.float64)
        fit["pred"].append(pred)
        fit["rho"].append(spearmanr(fit["y"], pred).statistic)


def test_paper_protocol_picks_best_epoch_on_test(moving_peak_store):
    """The note's protocol gives one score per round, the best epoch's Spearman on the test part."""
    from scipy.stats import spearmanr

    path, ids, *_ = moving_peak_store
    probe = _TestPartProbe()
    # lr 3e-2: a test Spearman that need not rise every epoch (whether it falls depends on the CPU's
    # arithmetic, so it is not asserted), where picking the best epoch is more than taking the last
    res = paper_protocol("amnetvid_raw", path, "long", rounds=2, write=False,
                         set_params={**QUICK, "net__lr": 3e-2, "net__callbacks": [("test_part_probe", probe)]})
    assert res.protocol == "paper" and len(res.scores) == 2 and np.isfinite(res.scores).all()
    oof = res.predictions
    assert len(probe.fits) == 2  # one training per round
    test_ids = oof.video_id[oof.fold == 0]
    assert len(test_ids) == int(np.ceil(0.15 * len(ids))) and set(test_ids) <= set(ids)  # the 15% test part
    for r, fit in enumerate(probe.fits):
        mask = oof.fold == r
        # the same test part every round, and it is what the network was validated on each epoch
        assert list(oof.video_id[mask]) == list(test_ids)
        np.testing.assert_allclose(fit["y"], oof.label[mask], atol=1e-6)
        # every epoch ran (patience beyond max_epochs), each scored on the test part
        assert len(fit["rho"]) == QUICK["net__max_epochs"] and np.isfinite(fit["rho"]).all()
        best = int(np.argmax(fit["rho"]))
        # the round's score is the best epoch's test Spearman ...
        assert res.scores[r] == pytest.approx(max(fit["rho"]), abs=1e-6), (r, res.scores[r], fit["rho"])
        # ... because the predictions kept are that epoch's (its weights restored at the end)
        np.testing.assert_allclose(oof.prediction[mask], fit["pred"][best], atol=1e-5)
        assert spearmanr(oof.label[mask], oof.prediction[mask]).statistic == pytest.approx(res.scores[r], abs=1e-6)


def test_grid_search_sorted_by_mean(moving_peak_store):
    """grid_search runs the recipe's grid and returns rows sorted by rank."""
    path, *_ = moving_peak_store
    from sklearn.model_selection import ParameterGrid

    search, rows = grid_search("mean_score", path, "short", cv=3)
    assert [r["rank"] for r in rows] == sorted(r["rank"] for r in rows)
    n_grid = len(ParameterGrid(load_recipe("mean_score").param_grid))
    assert n_grid >= 2 and len(rows) == n_grid and "frames__n_frames" in search.best_params_


@pytest.fixture(scope="module")
def small_peak_store(tmp_path_factory):
    """30 moving-peak videos: enough for 3-fold CV of every Table 1 model, a second to train on."""
    from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store

    maps, scores, y = make_moving_peak_dataset(30, n_frames=4, seed=0)
    path = tmp_path_factory.mktemp("small_peak") / "store"
    ids = write_synthetic_store(path, maps, scores, y, np.clip(y + 0.05, 0, 1))
    return path, ids


@pytest.fixture
def store_with_ghosts(small_peak_store, tmp_path):
    """A copy of a small moving-peak store plus labels for two videos that have no features (as when they
    could not be decoded)."""
    path, ids = small_peak_store
    copy = tmp_path / "store"
    shutil.copytree(path, copy)
    extra = tmp_path / "extra.csv"
    extra.write_text("video_id,short_term,long_term\nghost1,0.5,0.3\nghost2,0.6,0.4\n")
    import_labels(extra, copy, format="csv")
    return copy, ids


@pytest.mark.slow
def test_table1_cli_prints_both_targets(store_with_ghosts):
    """``amnetvid table1`` prints the note's layout for both targets and three models, with the videos used."""
    path, ids = store_with_ghosts
    proc = run_cli("table1", "--store", path, "--cv", "2", "--max-epochs", "1", check=0)
    out = proc.stdout
    assert "short-term" in out and "long-term" in out
    assert "mean frame score" in out and "LSTM on scores" in out and "AMNetVid ConvLSTM" in out
    # each of the 6 cells: the fold-mean Spearman and its 95% interval; 4 paired differences to the baseline
    assert len(re.findall(r"-?\d\.\d{4} \[-?\d\.\d\d, -?\d\.\d\d\]", out)) == 6, out
    assert len(re.findall(r"[+-]\d\.\d{3} \[[+-]\d\.\d\d, [+-]\d\.\d\d\]", out)) == 4, out
    assert "the data support" in out
    for target in ("short", "long"):
        assert f"{target}-term: {len(ids)} labelled videos with features (2 left out: no features)" in out
    left = [line for line in proc.stderr.splitlines() if line.startswith("warning:") and "left out" in line]
    assert len(left) == 2 and all("ghost1" in w and "ghost2" in w for w in left), proc.stderr


def test_labelled_ids_extracted_only(store_with_ghosts):
    """``labelled_ids(extracted=True)`` keeps the labelled videos that have features; labels(ids) aligns."""
    path, ids = store_with_ghosts
    fs = FeatureStore(path)
    assert {"ghost1", "ghost2"} <= set(fs.labelled_ids("short"))
    got = fs.labelled_ids("short", extracted=True)
    np.testing.assert_array_equal(got, sorted(ids))
    np.testing.assert_array_equal(fs.labelled_ids("short", extracted=True, sampling="frames=4"), got)
    assert len(fs.labels(got, target="short")) == len(ids)
    with pytest.raises(ValueError, match="extracted=True"):
        fs.labelled_ids("short", sampling="frames=4")
    with pytest.raises(ValueError, match="frames=28"):
        fs.labelled_ids("short", extracted=True, sampling="frames=28")
    assert len(FeatureStore(path.parent / "nothing", create=True).labelled_ids("short", extracted=True)) == 0


def test_labelled_data_reports_left_out(store_with_ghosts):
    """labelled_data gives the ids used and, when asked, the labelled ids left out for lack of features."""
    path, ids = store_with_ghosts
    used, y, left = labelled_data(path, "long", return_left_out=True)
    assert len(used) == len(y) == len(ids) and list(left) == ["ghost1", "ghost2"]


def test_evaluate_cli_says_how_many_videos_were_used(store_with_ghosts):
    """``amnetvid evaluate`` prints the videos used and left out, and warns on stderr naming those left out."""
    path, ids = store_with_ghosts
    proc = run_cli("evaluate", "mean_score", "--store", path, "--target", "short", "--cv", "3", check=0)
    assert f"short-term: {len(ids)} labelled videos used, 2 left out (no features)" in proc.stdout
    assert f"warning: 2 of {len(ids) + 2} videos" in proc.stderr and "ghost1, ghost2" in proc.stderr


def test_evaluate_cli_names_why_each_video_was_left_out(store_with_ghosts):
    """The evaluate warning names each left-out video with the store's reason: a failed decode with the
    failures table's reason, or not extracted (no row at all)."""
    path, ids = store_with_ghosts
    fs = FeatureStore(path, create=True)
    fs.write_failure(path.parent / "ghost2.mp4", "cannot read video: moov atom not found", fs.resolve_model(),
                     "frames=4")
    proc = run_cli("evaluate", "mean_score", "--store", path, "--target", "short", "--cv", "3", check=0)
    warning = [line for line in proc.stderr.splitlines() if line.startswith("warning:") and "no features" in line]
    assert len(warning) == 1 and warning[0].endswith(
        "were left out: ghost1 (not extracted); ghost2 (failed to decode: cannot read video: moov atom not found)"
    ), proc.stderr


def test_left_out_reasons_follow_the_model_and_sampling(store_with_ghosts):
    """left_out_reasons: a failure counts for its own frame model and sampling; an extracted video says how
    many frames it has; an id the store never saw is not extracted."""
    from amnetvid_sk.left_out import left_out_reasons

    path, ids = store_with_ghosts
    fs = FeatureStore(path, create=True)
    fs.write_failure(path.parent / "ghost2.mp4", "truncated file", fs.resolve_model(), "fps=4")
    assert left_out_reasons(path, ["ghost2", ids[0], "ghost1"]) == {
        "ghost2": "failed to decode: truncated file", ids[0]: "extracted, 4 frames stored", "ghost1": "not extracted"}
    assert left_out_reasons(fs, ["ghost2", ids[0]], model="synthetic", sampling="frames=4") == {
        "ghost2": "not extracted", ids[0]: "extracted, 4 frames stored"}


def test_evaluate_cli_no_warning_when_nothing_left_out(moving_peak_store):
    """With features for every labelled video, nothing is left out and nothing is warned."""
    path, ids, *_ = moving_peak_store
    proc = run_cli("evaluate", "mean_score", "--store", path, "--target", "short", "--cv", "2", check=0)
    assert f"{len(ids)} labelled videos used, 0 left out" in proc.stdout and "warning" not in proc.stderr


def _result(recipe, mean):
    return CVResult(recipe, "short", "cv", np.array([mean, mean]))


def test_stacked_ensemble_below_its_members_is_explained():
    """A stacked ensemble that falls below its best member gets one sentence saying why (its weights come
    from inner out-of-fold predictions of a few videos); one above its members gets none."""
    from amnetvid_sk.evaluate import BEYOND_RECIPES

    base = {("mean_score", "short"): _result("mean_score", 0.40)}
    low = {("embedding_ridge", "short"): _result("embedding_ridge", 0.35), ("stacked", "short"): _result("stacked", 0.29)}
    for r in low.values():
        r.n_videos = 32
    text = Table1("cv", low, columns=BEYOND_RECIPES, baseline=base).format()
    assert "the stacked ensemble falls below its best member" in text and "of 16 training videos" in text, text
    high = {**low, ("stacked", "short"): _result("stacked", 0.45)}
    assert "falls below" not in Table1("cv", high, columns=BEYOND_RECIPES, baseline=base).format()


def test_table1_change_is_absolute_near_a_zero_baseline():
    """Relative change against a baseline >= 0.05; the absolute difference against one near zero or negative."""
    assert change_text(0.4384, 0.4214) == " (+4.0%)"
    assert change_text(-0.5333, -0.2667) == " (-0.2666 abs)"
    assert change_text(0.03, 0.01) == " (+0.0200 abs)"
    assert change_text(0.2, 0.0) == " (+0.2000 abs)"
    assert change_text(0.5, float("nan")) == ""
    t = Table1("cv", {("mean_score", "short"): _result("mean_score", -0.2667),
                      ("score_lstm", "short"): _result("score_lstm", -0.5333),
                      ("amnetvid", "short"): _result("amnetvid", 0.1)})
    assert t.cell("score_lstm", "short") == "-0.5333 ± 0.0000 (-0.2666 abs)"
    assert t.cell("amnetvid", "short") == "0.1000 ± 0.0000 (+0.3667 abs)"
    rows = [line for line in t.format().splitlines() if line.startswith("short-term |")]
    assert len(rows) == 1 and "%" not in rows[0] and "abs)" in rows[0]
    t = Table1("cv", {("mean_score", "long"): _result("mean_score", 0.1867),
                      ("amnetvid", "long"): _result("amnetvid", 0.2015)})
    assert t.cell("amnetvid", "long") == "0.2015 ± 0.0000 (+7.9%)"


def test_evaluate_and_grid_commands(moving_peak_store):
    """``amnetvid evaluate`` prints one Spearman per fold; ``amnetvid grid`` with 2 jobs prints ranked rows."""
    path, *_ = moving_peak_store
    out = run_cli("evaluate", "mean_score", "--store", path, "--target", "long", "--cv", "3", check=0).stdout
    assert out.count("fold ") == 3 and "mean_score long-term: mean" in out
    out = run_cli("grid", "mean_score", "--store", path, "--target", "short", "--cv", "2", "--n-jobs", "2",
                  check=0).stdout
    from sklearn.model_selection import ParameterGrid

    lines = out.strip().splitlines()
    n_grid = len(ParameterGrid(load_recipe("mean_score").param_grid))
    assert lines[0].split()[:3] == ["rank", "mean", "std"] and len(lines) == n_grid + 2
    assert lines[-1].startswith("best: {'frames__n_frames'")


def test_more_folds_than_videos_refused_before_any_fit(small_peak_store):
    """cross_validate and grid_search refuse more folds than labelled videos with one line naming the
    counts and the fix (scikit-learn's KFold would say it in its own terms, after the work began)."""
    from amnetvid_sk.errors import TooFewVideosError

    path, ids = small_peak_store
    message = rf"31-fold cross-validation needs at least 31 .* has {len(ids)} with a short-term label: pass --cv 30"
    with pytest.raises(TooFewVideosError, match=message):
        cross_validate("amnetvid_raw", path, "short", cv=31, write=False)
    with pytest.raises(TooFewVideosError, match=message):
        grid_search("mean_score", path, "short", cv=31)
    # as many folds as videos is allowed: one video a fold, no Spearman in any (counted, not warned per fold)
    res = cross_validate("mean_score", path, "short", cv=len(ids), write=False)
    assert len(res.scores) == len(ids) and np.isnan(res.scores).all()


def test_undefined_folds_are_said_and_counted(tmp_path):
    """A fold without a Spearman (one video, or constant labels) says so; the summary says over how
    many folds it averages, or that no fold has one (it used to print -1.0000 +- 0 for such folds)."""
    from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store

    maps, scores, y = make_moving_peak_dataset(6, n_frames=4, seed=0)
    constant = tmp_path / "constant"
    write_synthetic_store(constant, maps, scores, np.full(6, 0.5))
    out = run_cli("evaluate", "mean_score", "--store", constant, "--target", "short", "--cv", "2", check=0).stdout
    assert out.count("spearman undefined (constant predictions or labels") == 2, out
    assert "mean_score short-term: undefined in all 2 folds (" in out, out
    varied = tmp_path / "varied"
    write_synthetic_store(varied, maps[:5], scores[:5], y[:5])  # 5 videos in 3 folds: one fold holds one video
    out = run_cli("evaluate", "mean_score", "--store", varied, "--target", "short", "--cv", "3", check=0).stdout
    assert out.count("spearman undefined") == 1 and "over 2 of 3 folds; 1 undefined" in out, out


def test_max_epochs_option_sets_the_recipes_networks(store_with_ghosts, tmp_path):
    """``--max-epochs N`` of evaluate, grid and fit sets ``max_epochs`` of each network of the recipe:
    recorded with the fold scores, trained by the saved model; a recipe without a network runs as is."""
    import json

    from amnetvid_sk import load_model

    path, _ = store_with_ghosts
    common = ["--store", path, "--target", "short", "--max-epochs", "2"]
    run_cli("evaluate", "score_lstm", *common, "--cv", "2", check=0)
    params = FeatureStore(path).sql("SELECT DISTINCT params FROM results WHERE recipe = 'score_lstm'").to_pylist()
    assert [json.loads(r["params"]) for r in params] == [{"lstm__max_epochs": 2}]
    model = tmp_path / "model.safetensors"
    run_cli("fit", "score_lstm", *common, "--out", model, check=0)
    net = load_model(model).named_steps["lstm"]
    assert net.max_epochs == 2 and len(net.history_) == 2
    out = run_cli("grid", "mean_score", *common, "--cv", "2", check=0).stdout
    assert out.strip().splitlines()[-1].startswith("best: {'frames__n_frames'")
    assert "--max-epochs" in run_cli("fit", "--help", check=0).stdout


@pytest.mark.slow
def test_grid_search_on_dask_cluster_matches_local(moving_peak_store):
    """grid_search(backend="dask") on a LocalCluster gives the same ranking as a local run."""
    distributed = pytest.importorskip("distributed")
    path, *_ = moving_peak_store
    _, local = grid_search("mean_score", path, "short", cv=3)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        _, remote = grid_search("mean_score", path, "short", cv=3, backend="dask",
                                scheduler=cluster.scheduler_address)
    assert [r["params"] for r in remote] == [r["params"] for r in local]
    np.testing.assert_allclose([r["mean_spearman"] for r in remote], [r["mean_spearman"] for r in local])


def test_bad_evaluation_parameters_name_themselves(moving_peak_store):
    """Unknown target or protocol and too few folds are refused with the parameter's name."""
    path, *_ = moving_peak_store
    with pytest.raises(ValueError, match="'target'.*'long', 'short'.*Got 'medium'"):
        cross_validate("mean_score", path, "medium")
    with pytest.raises(ValueError, match=r"'cv'.*\[2, inf\).*Got 1"):
        cross_validate("mean_score", path, "short", cv=1)
    with pytest.raises(ValueError, match="'protocol'.*'cv', 'paper'.*Got 'optimistic'"):
        table1(path, protocol="optimistic")


def test_parameter_errors_are_sklearns_and_the_same_in_every_run():
    """The checks are scikit-learn's (InvalidParameterError, a ValueError and a TypeError), and the
    allowed values are listed in the same order whatever the hash seed."""
    import subprocess
    import sys

    from amnetvid_sk._validation import SklearnInvalidParameterError as InvalidParameterError

    with pytest.raises(InvalidParameterError) as err:
        labelled_data("somewhere", "medium")
    assert isinstance(err.value, ValueError) and isinstance(err.value, TypeError)
    code = ("from amnetvid_sk.evaluate import table1\ntry:\n    table1('somewhere', protocol='x')\n"
            "except ValueError as exc:\n    print(exc)")
    messages = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                               env={**__import__("os").environ, "PYTHONHASHSEED": str(seed)}).stdout
                for seed in (1, 2, 3)}
    assert len(messages) == 1 and "{'cv', 'paper'}" in messages.pop()


def test_steps_are_found_by_role():
    """Each shipped recipe's store-reading steps and networks are found by what they are, not their
    names, inside an ensemble's member pipelines too."""
    from skorch import NeuralNet

    from amnetvid_sk.evaluate import network_step, network_steps, reader_step, role_params
    from amnetvid_sk.pipelines import shipped_recipes, store_steps

    for name in shipped_recipes():
        pipe = load_recipe(name).pipeline("somewhere")
        readers, nets = store_steps(pipe), network_steps(pipe)
        assert readers and reader_step(pipe) == readers[0], name
        assert all(step.get_params()["store"] == "somewhere" for _, step in readers), name
        ensemble = hasattr(pipe[-1], "estimators")
        if not ensemble:
            assert readers == [pipe.steps[0]], name
            found = network_step(pipe)
            assert (found is None) == (not isinstance(pipe[-1], NeuralNet)), name
            assert nets == ([] if found is None else [found]), name
        else:  # the stacked recipe: one reader per member, the members' networks
            assert len(readers) == len(pipe[-1].estimators) and len(nets) >= 2, name
            assert network_step(pipe) is None, name
        params = role_params(pipe, reader={"n_frames": 3}, network={"max_epochs": 2})
        pipe.set_params(**params)
        assert all(step.get_params()["n_frames"] == 3 for _, step in readers), name
        assert all(net.get_params()["max_epochs"] == 2 for _, net in nets), name
        assert len(params) == len(readers) + len(nets), name


def test_pipelines_package_examples_run():
    """The docstring examples of amnetvid_sk.pipelines (outside the library folder) give what they show."""
    import doctest

    import amnetvid_sk.pipelines

    result = doctest.testmod(amnetvid_sk.pipelines)
    assert result.attempted >= 5 and result.failed == 0


def test_note_table1_is_quoted_from_one_place():
    """The note's Table 1 numbers shown by Table1.format come from NOTE_TABLE1."""
    from amnetvid_sk.evaluate import NOTE_TABLE1, note_table1_text

    text = Table1("cv", {("mean_score", "short"): _result("mean_score", 0.3)}).format()
    assert note_table1_text() in text
    assert all(f"{v:.4f}" in note_table1_text() for v in NOTE_TABLE1.values())


def test_readme_table1_is_the_note_table1():
    """The README's copy of the note's Table 1 (for readers) holds NOTE_TABLE1's numbers, in TABLE1_RECIPES order."""
    import re

    from amnetvid_sk.evaluate import NOTE_TABLE1, TABLE1_RECIPES

    rows = {m.group(1): re.findall(r"\|\s*(0\.\d{4})", m.group(2))
            for m in re.finditer(r"^\| (short|long)-term\s*(\|.*)$", (ROOT / "README.md").read_text(), re.M)}
    assert set(rows) == {"short", "long"}, rows
    for target, values in rows.items():
        assert values == [f"{NOTE_TABLE1[(name, target)]:.4f}" for name, _ in TABLE1_RECIPES], (target, values)
