"""Frame-model precision: auto picks bfloat16 only where it is native, and never splits a store."""

import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from amnetvid_sk import FrameScores, MeanScoreRegressor
from amnetvid_sk.frame_models.amnet import AMNet
from amnetvid_sk.extraction import extract
from amnetvid_sk.precision import native_bfloat16, resolve_precision
from amnetvid_sk.predict import predict_videos
from amnetvid_sk.model_files import save_model
from amnetvid_sk.store import FeatureStore

import torch

from conftest import ROOT, run_cli

CPU = torch.device("cpu")
# what auto gives on this machine, and the other precision
AUTO = resolve_precision("auto", CPU)[0]
OTHER = "float32" if AUTO == "bfloat16" else "bfloat16"
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def test_auto_is_bfloat16_exactly_where_it_is_native():
    """auto follows native_bfloat16; explicit choices are kept; the model says which and why."""
    native, why = native_bfloat16(CPU)
    assert AUTO == ("bfloat16" if native else "float32")
    model = AMNet.from_random(seed=0, device="cpu")
    assert model.precision == AUTO and model.bfloat16 == (AUTO == "bfloat16")
    assert model.describe() == f"frame model: amnet, {AUTO} ({why})"
    assert model.fingerprint.endswith(".bf16" if native else ".fp32")
    f32 = AMNet.from_random(seed=0, device="cpu", precision="float32")
    assert f32.fingerprint.endswith(".fp32") and f32.describe().endswith("float32 (as asked)")
    bf = AMNet.from_random(seed=0, device="cpu", precision="bfloat16")
    assert bf.fingerprint.endswith(".bf16")
    assert ("emulated" in bf.describe()) == (not native)
    # an explicit choice is kept, whatever this machine computes natively
    assert AMNet.from_random(seed=0, device="cpu", precision="bfloat16").precision == "bfloat16"
    assert AMNet.from_random(seed=0, device="cpu", precision="float32").precision == "float32"
    assert bf.fingerprint_as("float32") == f32.fingerprint


def test_bad_precision_names_the_parameter_and_values():
    """An unknown precision is refused with the allowed values."""
    with pytest.raises(ValueError, match=r"'precision' parameter of AMNet must be a str among .*'auto'.*Got 'fp16'"):
        AMNet.from_random(seed=0, device="cpu", precision="fp16")


def test_auto_is_float32_where_torch_runs_avx2_kernels():
    """Limited to AVX2 kernels (as on an AVX2-only CPU), auto is float32 and says why."""
    code = ("import torch; from amnetvid_sk.frame_models.amnet import AMNet; "
            "m = AMNet.from_random(seed=0, device='cpu'); print(m.describe()); print(m.fingerprint)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, **AVX2_ENV), check=True).stdout.splitlines()
    assert out[0].startswith("frame model: amnet, float32 (") and "no native bfloat16" in out[0]
    assert out[1].endswith(".fp32")


def test_cli_prints_the_precision_once(clip_dir, tmp_path, amnet_weights):
    """`amnetvid extract` says once which model runs in which precision, and why."""
    proc = run_cli("extract", clip_dir / "clip0.mp4", "--store", tmp_path / "s", "--frame-model", "amnet",
                   "--weights", amnet_weights, "--frames", "2", "--device", "cpu", check=0)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("frame model:")]
    assert lines == [f"frame model: amnet, {AUTO} ({native_bfloat16(CPU)[1]})"]


def _store_precisions(store):
    rows = FeatureStore(store).sql("SELECT DISTINCT model FROM videos").column(0).to_pylist()
    return sorted(r.rsplit(".", 1)[-1] for r in rows)


def test_auto_extends_a_store_in_its_own_precision(clips, tmp_path, amnet_weights, capsys):
    """A store extracted in the precision auto would not pick here keeps it under auto."""
    # two clips of two frames: OTHER may be an emulated bfloat16, ~20x slower than float32
    store = tmp_path / "store"
    first, second = sorted(clips.glob("clip[01].*"))
    extract(first, store=store, frame_model="amnet", weights=amnet_weights, n_frames=2, device="cpu",
            precision=OTHER, progress=False)
    summary = extract([first, second], store=store, frame_model="amnet", weights=amnet_weights, n_frames=2,
                      device="cpu", progress=True)
    assert len(summary.skipped) == 1 and len(summary.extracted) == 1
    tag = {"float32": "fp32", "bfloat16": "bf16"}[OTHER]
    assert _store_precisions(store) == [tag]
    err = capsys.readouterr().err
    assert f"frame model: amnet, {OTHER} (kept from the store, which holds 1 video(s) of this model in {OTHER}" in err
    # an explicit choice is the user's: it adds the other fingerprint
    extract(first, store=store, frame_model="amnet", weights=amnet_weights, n_frames=2, device="cpu",
            precision=AUTO, progress=False)
    assert _store_precisions(store) == sorted({tag, {"float32": "fp32", "bfloat16": "bf16"}[AUTO]})


def test_predict_extracts_with_the_training_fingerprint(clips, tmp_path, amnet_weights):
    """predict extracts new files with exactly the fingerprint and sampling the pipeline was fitted on."""
    # float32 training: where auto is bfloat16 (native), predict must still extract in float32
    store = tmp_path / "store"
    train = sorted(clips.glob("clip[0-3].*"))
    extract(train, store=store, frame_model="amnet", weights=amnet_weights, n_frames=3, device="cpu",
            precision="float32", progress=False)
    # a second sampling in the store: predict must not take "the first one"
    extract(train, store=store, frame_model="amnet", weights=amnet_weights, n_frames=2, device="cpu",
            precision="float32", progress=False)
    ids = np.array([p.stem for p in train], dtype=object)
    pipe = Pipeline([("frames", FrameScores(store, sampling="frames=3")), ("mean", MeanScoreRegressor())])
    pipe.fit(ids, np.linspace(0.2, 0.8, len(ids)))
    model_file = tmp_path / "model.safetensors"
    save_model(pipe, model_file)
    new = sorted(clips.glob("clip[45].*"))
    got_ids, pred, summary = predict_videos(model_file, new, progress=False, device="cpu")
    assert list(got_ids) == ["clip4", "clip5"] and pred.shape == (2,) and summary.ok
    rows = FeatureStore(store).sql(
        "SELECT DISTINCT model, sampling FROM videos WHERE video_id IN ('clip4', 'clip5')").to_pylist()
    assert rows == [{"model": pipe[0].model_, "sampling": "frames=3"}]
    assert pipe[0].model_.endswith(".fp32")
