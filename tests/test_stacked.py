"""The stacked recipe like any recipe: cross-validation, grid search, a model file, and new files
predicted from their paths. Real clips, a real store with embeddings (AMNet with random weights)."""

import numpy as np
import pytest

from amnetvid_sk.evaluate import cross_validate, grid_search, load_recipe, role_params
from amnetvid_sk.extraction import extract
from amnetvid_sk.frame_models.amnet import AMNet
from amnetvid_sk.labels import import_labels
from amnetvid_sk.model_files import load_model, save_model
from amnetvid_sk.predict import predict_videos
from amnetvid_sk.store import FeatureStore
from amnetvid_sk.testing.clips import write_clip

from conftest import moving_frames

#: tiny training: one epoch of the member networks, raw maps, two inner folds
QUICK = {"max_epochs": 1, "batch_size": 4, "train_split": None}
RAW = {"module__map_channels": 3, "module__map_size": 14, "module__map_scale": 196.0}


@pytest.fixture(scope="module")
def stacked_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("stacked")
    (root / "videos").mkdir()
    (root / "new").mkdir()
    for i in range(14):
        write_clip(root / "videos" / f"v{i:02d}.mp4", moving_frames(8, seed=i), fps=8, codec="h264")
    for i in range(2):
        write_clip(root / "new" / f"n{i}.mp4", moving_frames(8, seed=50 + i), fps=8, codec="h264")
    model = AMNet.from_random(seed=0, device="cpu", precision="float32", batch_size=8)
    summary = extract(root / "videos", store=root / "store", frame_model=model, n_frames=4,
                      embeddings=True, progress=False)
    assert summary.ok
    # labels that follow the mean frame score: the mean-score member predicts them, so the
    # ensemble's predictions vary and every fold has a Spearman
    ids = [f"v{i:02d}" for i in range(14)]
    scores, _ = FeatureStore(root / "store").read_arrays(ids, maps=False)
    mean = scores.mean(axis=1)
    y = 0.4 + 0.5 * (mean - mean.min()) / (np.ptp(mean) or 1.0)
    (root / "labels.csv").write_text("video_id,short_term\n" + "".join(f"{v},{x:.4f}\n" for v, x in zip(ids, y)))
    import_labels(root / "labels.csv", root / "store", format="csv")
    return root


def _quick(store) -> dict:
    pipe = load_recipe("stacked").pipeline(str(store))
    params = {**role_params(pipe, network=QUICK), "stack__cv": 2}
    # the AMNetVid member on raw maps (its JET renders would make the test slow)
    params.update({f"stack__amnetvid__net__{key}": value for key, value in RAW.items()})
    params["stack__amnetvid__sequences__maps"] = "raw"
    return params


def test_stacked_cross_validates_grid_searches_and_predicts_new_files(stacked_store, tmp_path):
    store = stacked_store / "store"
    params = _quick(store)
    res = cross_validate("stacked", store, "short", cv=2, set_params=params, write=False)
    assert len(res.scores) == 2 and all(np.isfinite(res.scores))

    search, rows = grid_search("stacked", store, "short", cv=2, set_params=params)
    assert len(rows) == 2  # the recipe's grid: a ridge or a non-negative blend over the members
    fitted = search.best_estimator_
    assert [name for name, _ in fitted[-1].named_estimators_.items()] == [
        "mean_score", "score_lstm", "amnetvid", "embedding_ridge"]

    path = tmp_path / "stacked.safetensors"
    save_model(fitted, path, recipe="stacked")
    ids = FeatureStore(store).labelled_ids("short", extracted=True)
    np.testing.assert_array_equal(load_model(path).predict(ids), fitted.predict(ids))

    new_ids, predictions, summary = predict_videos(path, sorted((stacked_store / "new").glob("*.mp4")),
                                                   progress=False, device="cpu")
    assert list(new_ids) == ["n0", "n1"] and summary.ok and np.isfinite(predictions).all()
    # the new files were extracted with embeddings: the embedding ridge member could read them
    assert FeatureStore(store).read_embeddings(["n0", "n1"], pooling="mean").shape[0] == 2


def test_members_are_the_shipped_recipes_whatever_the_working_folder_holds(tmp_path, monkeypatch):
    """A recipe of a member's name in ./pipelines does not change the stacked ensemble; members passed do."""
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "mean_score.py").write_text(
        "from sklearn.dummy import DummyRegressor\nfrom sklearn.pipeline import Pipeline\n\nparam_grid = {}\n\n\n"
        "def pipeline(store='store'):\n    return Pipeline([('dummy', DummyRegressor())])\n")
    monkeypatch.chdir(tmp_path)
    # the name alone finds the user's copy ...
    assert [type(s).__name__ for _, s in load_recipe("mean_score").pipeline("store").steps] == ["DummyRegressor"]
    # ... but the ensemble's members are the shipped recipes
    members = dict(load_recipe("stacked").pipeline("store").named_steps["stack"].estimators)
    assert list(members) == ["mean_score", "score_lstm", "amnetvid", "embedding_ridge"]
    assert [type(s).__name__ for _, s in members["mean_score"].steps] == ["FrameScores", "MeanScoreRegressor"]
    # members given explicitly are the ones used
    mine = dict(load_recipe("stacked").pipeline("store", members=["mean_score"]).named_steps["stack"].estimators)
    assert list(mine) == ["mean_score"]
    assert [type(s).__name__ for _, s in mine["mean_score"].steps] == ["DummyRegressor"]
