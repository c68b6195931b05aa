"""Frame models of a user's own: names, "module:Class", entry points, exact rebuilds in workers and predict."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from amnetvid_sk import FrameScores, MeanScoreRegressor
from amnetvid_sk.extraction import extract
from amnetvid_sk.frame_models import (
    FrameModelLookupError, FrameModelRebuildError, FrameModelSpec, frame_model_class, frame_model_names,
    make_frame_model, spec_of,
)
from amnetvid_sk.frame_models.amnet import AMNet, build_amnet_network
from amnetvid_sk.store import FeatureStore

from conftest import ROOT, fresh_loky_workers

PLUGIN_DIR = Path(__file__).resolve().parent / "plugin_pkg"
TINY = "tiny_frame_model:TinyFrameModel"


@pytest.fixture
def plugin_path(monkeypatch):
    """The plug-in's folder importable here and in every worker process started from now on."""
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(PLUGIN_DIR), os.environ.get("PYTHONPATH")])))
    return PLUGIN_DIR


def _rows(store):
    fs = FeatureStore(store, create=True)
    return fs.sql("SELECT video_id, frame_index, timestamp, model, sampling FROM frames ORDER BY 1, 2").to_pylist()


def _models(store):
    return FeatureStore(store).sql("SELECT DISTINCT model FROM videos ORDER BY 1").column(0).to_pylist()


def test_registry_import_does_not_import_torch():
    """Importing the registry, listing names and reading a spec module leave torch unimported."""
    code = ("import sys; import amnetvid_sk.frame_models as fm; import amnetvid_sk.frame_models.spec; "
            "names = fm.frame_model_names(); assert fm.FRAME_MODEL_NAMES == ('resmem', 'amnet'); "
            "print(names); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=True).stdout.splitlines()
    assert out[0].startswith("('resmem', 'amnet'")
    assert out[1] == "False"


def test_module_class_builds_a_users_model(plugin_path):
    """'module:Class' names any importable FrameModel subclass; its parameters pass through."""
    from tiny_frame_model import TinyFrameModel

    assert frame_model_class(TINY) is TinyFrameModel
    model = make_frame_model(TINY, device="cpu", batch_size=2, precision="float32", gain=2.0)
    assert isinstance(model, TinyFrameModel) and (model.gain, model.batch_size) == (2.0, 2)
    assert model.fingerprint.startswith("tiny.w-") and model.fingerprint.endswith(".pre-grey14.maps-3x14x14.fp32")
    scores, maps = model.predict(np.full((3, 20, 30, 3), 51, np.uint8))
    np.testing.assert_allclose(scores, 0.4, rtol=1e-5)
    np.testing.assert_allclose(maps.sum(axis=(2, 3)), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match=r"takes no parameter 'colour'; its parameters are: .*gain"):
        make_frame_model(TINY, colour="red")
    with pytest.raises(ValueError, match=r"'weights' parameter must be None for name='tiny_frame_model:Tiny"):
        make_frame_model(TINY, weights="w.pkl")


def test_module_class_errors_say_what_is_wrong(plugin_path):
    """A missing module, a missing class, a non-FrameModel and a malformed name each get their own message."""
    with pytest.raises(FrameModelLookupError, match=r"no module named 'no_such_module_xyz'.*PYTHONPATH"):
        make_frame_model("no_such_module_xyz:Model")
    with pytest.raises(FrameModelLookupError, match=r"module 'tiny_frame_model' has no attribute 'Nope'"):
        make_frame_model("tiny_frame_model:Nope")
    with pytest.raises(FrameModelLookupError, match=r"is the class NotAFrameModel, not a subclass of "
                                                    r"amnetvid_sk\.frame_models\.FrameModel"):
        make_frame_model("tiny_frame_model:NotAFrameModel")
    with pytest.raises(FrameModelLookupError, match=r"is a str, not a subclass"):
        make_frame_model("os:sep")
    with pytest.raises(FrameModelLookupError, match=r"must be written 'module:Class'.*Got 'a:b:c'"):
        make_frame_model("a:b:c")
    with pytest.raises(ValueError, match=r"among \{'amnet', 'resmem'\}\. Got 'vgg' instead\. .*'module:Class'"):
        make_frame_model("vgg")


def _write_dist_info(site: Path, entries: dict) -> None:
    """A distribution's metadata as an installer writes it, without installing anything."""
    info = site / "tinyplug-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyplug\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entries.items())
    (info / "entry_points.txt").write_text(f"[amnetvid_sk.frame_models]\n{lines}")


def test_entry_point_plugin_gives_a_short_name(plugin_path, tmp_path, monkeypatch):
    """A plug-in's entry point adds its name; a shipped name is never replaced; a broken one is named."""
    from tiny_frame_model import TinyFrameModel

    site = tmp_path / "site"
    _write_dist_info(site, {"tiny": TINY, "amnet": TINY, "broken": "no_such_plugin_module:Model"})
    monkeypatch.syspath_prepend(str(site))
    assert frame_model_names() == ("resmem", "amnet", "broken", "tiny")
    model = make_frame_model("tiny", device="cpu", gain=3.0)
    assert type(model) is TinyFrameModel and model.gain == 3.0
    assert frame_model_class("amnet") is AMNet
    with pytest.raises(FrameModelLookupError, match=r"'broken' of the entry point 'no_such_plugin_module:Model'"):
        make_frame_model("broken")
    with pytest.raises(ValueError, match=r"among \{'amnet', 'broken', 'resmem', 'tiny'\}"):
        make_frame_model("vgg")


def test_spec_rebuilds_bfloat16_seeded_and_custom_models(plugin_path):
    """A spec (through JSON) rebuilds AMNet.from_random in bfloat16 and a custom model to the same fingerprint."""
    amnet = AMNet.from_random(seed=3, device="cpu", batch_size=3, precision="bfloat16")
    spec = FrameModelSpec.from_dict(json.loads(json.dumps(spec_of(amnet).to_dict())))
    assert (spec.model_class, spec.factory, spec.params) == (AMNet.class_path(), "from_random",
                                                              {"seed": 3, "batch_size": 3})
    rebuilt = spec.build()
    assert (rebuilt.fingerprint, rebuilt.precision, rebuilt.batch_size) == (amnet.fingerprint, "bfloat16", 3)
    assert rebuilt.fingerprint != AMNet.from_random(seed=0, device="cpu", precision="bfloat16").fingerprint

    tiny = make_frame_model(TINY, device="cpu", precision="float32", gain=2.5)
    spec = spec_of(tiny)
    assert spec.model_class == TINY and spec.params == {"gain": 2.5, "batch_size": 4}
    assert spec.build().fingerprint == tiny.fingerprint
    assert tiny.config["class"] == TINY and tiny.config["params"] == {"gain": 2.5, "batch_size": 4}


def test_models_that_cannot_be_rebuilt_are_refused(plugin_path):
    """Unreproducible weights, an in-memory state dict and a forgotten parameter each stop with the reason."""
    unseeded = make_frame_model("tiny_frame_model:UnseededFrameModel", device="cpu")
    with pytest.raises(FrameModelRebuildError, match=r"has the fingerprint .* not reproducible from its parameters"):
        spec_of(unseeded).build()
    in_memory = AMNet(weights=build_amnet_network(seed=0).state_dict(), device="cpu")
    with pytest.raises(FrameModelRebuildError, match=r"in-memory state dict; save it with save_amnet_checkpoint"):
        spec_of(in_memory)
    forgetful = make_frame_model("tiny_frame_model:ForgetfulFrameModel", device="cpu")
    with pytest.raises(FrameModelRebuildError, match=r"takes the parameter 'colour' but keeps no attribute"):
        spec_of(forgetful)
    assert forgetful.config["params"] is None


def test_predict_rebuilds_a_custom_model(clips, tmp_path, plugin_path):
    """predict_videos rebuilds a 'module:Class' model from the store's config and extracts with its fingerprint."""
    from amnetvid_sk.predict import predict_videos

    store = tmp_path / "store"
    tiny = make_frame_model(TINY, device="cpu", precision="float32", gain=2.0)
    train = sorted(clips.glob("clip[0-3].*"))
    extract(train, store=store, frame_model=tiny, n_frames=3, progress=False)
    ids = np.array([p.stem for p in train], dtype=object)
    pipe = Pipeline([("frames", FrameScores(store)), ("mean", MeanScoreRegressor())]).fit(ids, np.linspace(0, 1, 4))
    got_ids, pred, summary = predict_videos(pipe, sorted(clips.glob("clip[45].*")), progress=False, device="cpu")
    assert list(got_ids) == ["clip4", "clip5"] and pred.shape == (2,) and summary.ok
    assert _models(store) == [tiny.fingerprint]
    expected = pipe.predict(np.array(["clip4", "clip5"], dtype=object))
    np.testing.assert_allclose(pred, expected, rtol=1e-6)


@pytest.mark.slow
def test_custom_model_on_joblib_and_dask_gives_local_rows(clips, tmp_path, plugin_path):
    """A custom model with a non-default parameter, extracted on joblib and Dask workers: local rows, its fingerprint."""
    distributed = pytest.importorskip("distributed")
    paths = sorted(clips.glob("clip[0-3].*"))
    tiny = make_frame_model(TINY, device="cpu", batch_size=3, precision="float32", gain=2.0)
    local = tmp_path / "local"
    extract(paths, store=local, frame_model=tiny, n_frames=3, progress=False)
    ids = [p.stem for p in paths]
    s0, m0 = FeatureStore(local).read_arrays(ids)

    with fresh_loky_workers():
        summary = extract(paths, store=tmp_path / "joblib", frame_model=tiny, n_frames=3, backend="joblib",
                          n_jobs=2, progress=False)
    assert len(summary.extracted) == 4 and summary.ok
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        summary = extract(paths, store=tmp_path / "dask", frame_model=tiny, n_frames=3, backend="dask",
                          scheduler=cluster.scheduler_address, progress=False)
    assert len(summary.extracted) == 4 and summary.ok
    for name in ("joblib", "dask"):
        store = tmp_path / name
        assert _models(store) == [tiny.fingerprint]
        assert _rows(store) == _rows(local)
        s1, m1 = FeatureStore(store).read_arrays(ids)
        np.testing.assert_allclose(s1, s0, rtol=1e-5)
        np.testing.assert_allclose(m1, m0, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_bfloat16_seeded_amnet_instance_keeps_its_fingerprint_on_joblib(clips, tmp_path):
    """AMNet.from_random(seed=3) in bfloat16, passed built to backend joblib, writes rows under its own fingerprint."""
    # one frame per clip: bfloat16 may be emulated (slow) on this CPU
    model = AMNet.from_random(seed=3, device="cpu", batch_size=2, precision="bfloat16")
    paths = sorted(clips.glob("clip[01].*"))
    store = tmp_path / "store"
    with fresh_loky_workers():
        summary = extract(paths, store=store, frame_model=model, n_frames=1, backend="joblib", n_jobs=2,
                          progress=False)
    assert len(summary.extracted) == 2 and summary.ok
    assert _models(store) == [model.fingerprint] and model.fingerprint.endswith(".bf16")
    assert [r["video_id"] for r in _rows(store)] == ["clip0", "clip1"]
    config = FeatureStore(store).sql("SELECT config FROM models").column(0).to_pylist()
    assert json.loads(config[0])["params"] == {"seed": 3, "batch_size": 2}
    assert dataclasses.replace(spec_of(model), device=None).build().fingerprint == model.fingerprint


@pytest.mark.slow
def test_cli_extracts_with_module_class_on_joblib_and_dask(clips, tmp_path, plugin_path):
    """``amnetvid extract --frame-model module:Class`` works with --backend joblib and dask: local rows."""
    from conftest import run_cli

    distributed = pytest.importorskip("distributed")
    paths = [str(p) for p in sorted(clips.glob("clip[0-2].*"))]
    local = tmp_path / "local"
    extract(paths, store=local, frame_model=make_frame_model(TINY, device="cpu", precision="float32"),
            n_frames=3, progress=False)
    common = ["--frame-model", TINY, "--device", "cpu", "--precision", "float32", "--frames", "3", "--no-progress"]
    with fresh_loky_workers():  # the CLI runs in this process: its workers must see PYTHONPATH
        run_cli("extract", *paths, "--store", tmp_path / "joblib", *common, "--backend", "joblib", "--n-jobs", "2",
                check=0)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        run_cli("extract", *paths, "--store", tmp_path / "dask", *common, "--backend", "dask",
                "--scheduler", cluster.scheduler_address, check=0)
    for name in ("joblib", "dask"):
        assert _models(tmp_path / name) == _models(local)
        assert FeatureStore(tmp_path / name).models()[0]["name"] == "tiny"
        assert _rows(tmp_path / name) == _rows(local)
