"""Fitted models saved as data: round trips of the shipped recipes and of sklearn pipelines,
refused classes, incompatible versions, damaged files, and pickles that never get to run."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys

import joblib
import numpy as np
import pytest
from sklearn.ensemble import StackingRegressor
from sklearn.linear_model import LinearRegression, RidgeCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from amnetvid_sk import __version__
from amnetvid_sk.errors import ModelFileError
from amnetvid_sk.model_files import ALLOWED_PREFIXES, load_model, model_file_info, save_model
from amnetvid_sk.model_sources import read_model_file
from amnetvid_sk.pipelines import load_recipe, reader_step, role_params
from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store

RECIPES = ["mean_score", "score_lstm", "amnetvid_raw", "amnetvid"]


# -- an independent reader of the safetensors layout, so the tests check the format, not our code

def read_container(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write_container(path, header, data):
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + data)


def edit_metadata(src, dst, **changes):
    """Copy a model file, changing metadata entries (``model`` as a function of the parsed doc)."""
    header, data = read_container(src)
    meta = header["__metadata__"]
    for key, value in changes.items():
        meta[key] = json.dumps(value(json.loads(meta[key]))) if callable(value) else value
    write_container(dst, header, data)
    return dst


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory):
    """A store of 24 synthetic videos (4 frames of 3x14x14 maps) with labels."""
    path = tmp_path_factory.mktemp("store") / "store"
    maps, scores, y = make_moving_peak_dataset(24, seed=1)
    ids = write_synthetic_store(path, maps, scores, y)
    return path, ids, y


def _tiny(name, store):
    pipe = load_recipe(name).pipeline(str(store))
    pipe.set_params(**role_params(pipe, network={"max_epochs": 2, "train_split": None, "device": "cpu",
                                                 "batch_size": 8}))
    if name == "amnetvid":  # JET renders at 14x14 instead of 70x70: the same code, 25x less work
        pipe.set_params(**role_params(pipe, reader={"size": 14}, network={"module__map_size": 14}))
    return pipe


@pytest.mark.parametrize("name", RECIPES)
def test_shipped_recipe_round_trip(name, synthetic_store, tmp_path, one_torch_thread):
    """A fitted shipped recipe saved and loaded predicts exactly as before; the file says where it came from."""
    store, ids, y = synthetic_store
    pipe = _tiny(name, store).fit(ids[:16], y[:16])
    path = tmp_path / "model.safetensors"
    save_model(pipe, path, recipe=name)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict(ids), pipe.predict(ids))
    assert [type(s) for _, s in loaded.steps] == [type(s) for _, s in pipe.steps]
    _, reader = reader_step(pipe)
    info = model_file_info(path)
    assert info["recipe"] == {"name": name, "path": None}
    assert (info["frame_model"], info["sampling"]) == (reader.model_, reader.sampling_)
    assert info["frame_model"].startswith("synthetic.")
    assert reader_step(loaded)[1].store_ == reader.store_
    # a safetensors file: every metadata value a string, the arrays tile the data without gaps
    header, data = read_container(path)
    assert all(isinstance(v, str) for v in header.pop("__metadata__").values())
    spans = sorted(tuple(t["data_offsets"]) for t in header.values())
    ends = [0] + [end for _, end in spans]
    assert [begin for begin, _ in spans] == ends[:-1] and ends[-1] == len(data)
    if name != "mean_score":  # the network weights are arrays of the file
        assert any(".module_." in k for k in header)


def test_sklearn_pipelines_round_trip(tmp_path):
    """StandardScaler + RidgeCV, and a StackingRegressor with nested fitted estimators, come back exact."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5))
    y = X @ rng.normal(size=5) + rng.normal(0.0, 0.1, size=40)
    ridge = Pipeline([("scale", StandardScaler()), ("ridge", RidgeCV(alphas=(0.1, 1.0, 10.0)))]).fit(X, y)
    stack = StackingRegressor([("ridge", RidgeCV()), ("ols", LinearRegression())],
                              final_estimator=RidgeCV()).fit(X, y)
    for est in (ridge, stack):
        save_model(est, tmp_path / "m")
        loaded = load_model(tmp_path / "m")
        np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    assert type(loaded.final_estimator_) is RidgeCV and loaded.final_estimator_.alpha_ == stack.final_estimator_.alpha_
    assert [type(e) for e in loaded.estimators_] == [RidgeCV, LinearRegression]
    assert loaded.named_estimators_.ols.coef_.dtype == stack.named_estimators_.ols.coef_.dtype
    save_model(ridge, tmp_path / "r")
    scaler = load_model(tmp_path / "r").named_steps["scale"]
    assert type(scaler.n_samples_seen_) is type(ridge.named_steps["scale"].n_samples_seen_)
    np.testing.assert_array_equal(scaler.scale_, ridge.named_steps["scale"].scale_)


class LocalScaler(StandardScaler):
    """A class outside the allowed packages (this test module)."""


def test_save_refuses_what_is_not_data(tmp_path):
    """Classes and functions outside the allow-list, unfitted models and missing folders: nothing written."""
    X, y = np.arange(1.0, 13.0).reshape(6, 2), np.arange(6.0)
    cases = [("LocalScaler", LocalScaler()), ("posix:getcwd" if os.name == "posix" else "getcwd",
                                              FunctionTransformer(os.getcwd)),
             ("numpy.ufunc", FunctionTransformer(np.log1p))]
    for needle, first in cases:
        pipe = Pipeline([("first", first), ("ridge", RidgeCV())])
        if needle != "posix:getcwd":
            pipe.fit(X, y)
        else:  # os.getcwd takes no array: a fitted-looking state is enough to reach the check
            pipe.steps[1][1].fit(X, y)
            first.fit(X)
        with pytest.raises(ModelFileError, match=r"cannot save pipeline\.steps\[0\]\[1\]") as info:
            save_model(pipe, tmp_path / "m")
        assert needle in str(info.value)
    with pytest.raises(ModelFileError, match="(?i)not fitted"):
        save_model(Pipeline([("r", RidgeCV())]), tmp_path / "m")
    with pytest.raises(ModelFileError, match="does not exist"):
        save_model(RidgeCV().fit(X, y), tmp_path / "no" / "m")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def ridge_file(tmp_path):
    X, y = np.arange(12.0).reshape(6, 2), np.arange(6.0)
    save_model(Pipeline([("s", StandardScaler()), ("r", RidgeCV())]).fit(X, y), tmp_path / "good", recipe="x")
    return tmp_path / "good"


def test_incompatible_versions_name_both(ridge_file, tmp_path):
    """Another major.minor of amnetvid-sk, or a newer format: an error naming both versions; a patch loads."""
    major, minor = (int(v) for v in __version__.split(".")[:2])
    newer = f"{major}.{minor + 1}.0"
    bad = edit_metadata(ridge_file, tmp_path / "v", amnetvid_sk_version=newer)
    with pytest.raises(ModelFileError, match=rf"{newer}.*{__version__}"):
        load_model(bad)
    bad = edit_metadata(ridge_file, tmp_path / "f", format_version="2")
    with pytest.raises(ModelFileError, match=r"format version 2.*reads format versions 1 to 1"):
        load_model(bad)
    patch = edit_metadata(ridge_file, tmp_path / "p", amnetvid_sk_version=f"{major}.{minor}.99")
    assert type(load_model(patch)).__name__ == "Pipeline"


def test_damaged_files_are_one_clear_error(ridge_file, tmp_path):
    """Cut, garbled (data, header, description) and empty files: one ModelFileError naming the file."""
    raw = ridge_file.read_bytes()
    header, data = read_container(ridge_file)
    n_head = len(raw) - len(data)
    flipped_data = bytearray(raw)
    flipped_data[n_head + len(data) // 2] ^= 0xFF
    flipped_head = bytearray(raw)
    flipped_head[20] ^= 0x55
    variants = {"half": raw[: len(raw) // 2], "header_cut": raw[:40], "data_flip": bytes(flipped_data),
                "head_flip": bytes(flipped_head), "empty": b"", "last_byte": raw[:-1]}
    for name, content in variants.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ModelFileError, match=name):
            load_model(path)
        with pytest.raises(ModelFileError, match=name):
            read_model_file(path)
    # a description that no longer parses as a pipeline (checksum recomputed, as a crafter would)
    with pytest.raises(ModelFileError, match="malformed|cannot load"):
        load_model(_crafted(ridge_file, tmp_path / "odd", lambda doc: {**doc, "pipeline": {"$": "tuple"}}))


def _crafted(src, dst, change):
    """A model file whose description is changed and whose checksum is made to match."""
    header, data = read_container(src)
    meta = header["__metadata__"]
    meta["model"] = json.dumps(change(json.loads(meta["model"])))
    meta["sha256"] = checksum(header, data)
    write_container(dst, header, data)
    return dst


def checksum(header, data) -> str:
    """The file's sha256 as model_files computes it: the description, then each array's name and bytes."""
    import hashlib

    digest = hashlib.sha256(header["__metadata__"]["model"].encode())
    for name in sorted(k for k in header if k != "__metadata__"):
        begin, end = header[name]["data_offsets"]
        digest.update(name.encode())
        digest.update(data[begin:end])
    return digest.hexdigest()


def _replace_class(node, new):
    if isinstance(node, dict):
        if node.get("$") == "estimator" and node["class"].endswith(":StandardScaler"):
            return {**node, "class": new}
        return {k: _replace_class(v, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_class(v, new) for v in node]
    return node


@pytest.mark.parametrize("name", ["evil_mod:Evil", "sklearn_evil:Evil", "sklearn_evil.sub:Evil",
                                  "os:system", "sklearn.utils:check_array", "sklearn:__loader__"])
def test_crafted_class_is_refused_and_nothing_imported(ridge_file, tmp_path, monkeypatch, name):
    """A class outside the allow-list (or an alias, or a dunder) in a crafted file: refused, never imported."""
    flag = tmp_path / "FLAG"
    for module in ("evil_mod", "sklearn_evil"):
        (tmp_path / "mods" / module).mkdir(parents=True)
        (tmp_path / "mods" / module / "__init__.py").write_text(
            f"open({str(flag)!r}, 'w').close()\nclass Evil:\n    pass\n")
        (tmp_path / "mods" / module / "sub.py").write_text("from . import Evil\n")
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    crafted = _crafted(ridge_file, tmp_path / "crafted", lambda doc: _replace_class(doc, name))
    with pytest.raises(ModelFileError, match="outside the packages|not a class or function defined there"):
        load_model(crafted)
    assert not flag.exists()
    assert "evil_mod" not in sys.modules and "sklearn_evil" not in sys.modules
    assert "sklearn_evil" not in ALLOWED_PREFIXES


class Evil:
    """Unpickling this runs a shell command that creates a file."""

    def __init__(self, flag):
        self.flag = flag

    def __reduce__(self):
        return os.system, (f"touch {self.flag}",)


@pytest.fixture
def evil_files(tmp_path):
    flag = tmp_path / "FLAG"
    paths = [tmp_path / "model.joblib", tmp_path / "model.pkl", tmp_path / "model_no_suffix"]
    joblib.dump(Evil(flag), paths[0])
    with open(paths[1], "wb") as f:
        pickle.dump(Evil(flag), f)
    joblib.dump(Evil(flag), paths[2], compress=3)  # zlib: the pickle is inside the compressed stream
    assert not flag.exists()
    return flag, paths


def test_pickles_are_refused_and_never_run(evil_files):
    """read_model_file refuses pickles and joblib files (saying why, naming --allow-pickle); nothing runs."""
    flag, paths = evil_files
    for path in paths:
        with pytest.raises(ModelFileError, match=r"pickle.*run any code.*--allow-pickle") as info:
            read_model_file(path)
        assert str(path) in str(info.value)
    assert not flag.exists()
    with pytest.raises(ModelFileError, match="not an amnetvid-sk model file"):
        (paths[0].parent / "notes.txt").write_text("hello")
        read_model_file(paths[0].parent / "notes.txt")


def test_pickle_refused_in_a_real_subprocess(evil_files, tmp_path):
    """The same refusal in a fresh interpreter; with allow_pickle=True the file does run (it is real)."""
    flag, paths = evil_files
    code = "import sys; from amnetvid_sk.model_sources import read_model_file; read_model_file(sys.argv[1]{})"
    for path in paths:
        proc = subprocess.run([sys.executable, "-c", code.format(""), str(path)], capture_output=True, text=True,
                              timeout=120, cwd=tmp_path)
        assert proc.returncode == 1 and "--allow-pickle" in proc.stderr, proc.stderr
        assert not flag.exists()
    # the control: the file is a real attack, which allow_pickle=True (for trusted files only) lets run
    proc = subprocess.run([sys.executable, "-c", code.format(", allow_pickle=True"), str(paths[1])],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert flag.exists() and "not a fitted pipeline" in proc.stderr, proc.stderr


def test_trusted_pickle_and_model_file_through_read_model_file(ridge_file, tmp_path):
    """allow_pickle=True loads a trusted joblib pipeline; a model file loads either way."""
    pipe = load_model(ridge_file)
    joblib.dump(pipe, tmp_path / "trusted.joblib")
    X = np.arange(8.0).reshape(4, 2)
    np.testing.assert_array_equal(read_model_file(tmp_path / "trusted.joblib", allow_pickle=True).predict(X),
                                  pipe.predict(X))
    np.testing.assert_array_equal(read_model_file(ridge_file).predict(X), pipe.predict(X))
    with pytest.raises(ModelFileError, match="does not exist"):
        read_model_file(tmp_path / "missing")


def test_recipe_is_recorded_by_name_or_path(tmp_path, monkeypatch):
    """A shipped recipe is recorded by name; a user's recipe file (or ./pipelines copy) by its path."""
    monkeypatch.chdir(tmp_path)
    X, y = np.arange(12.0).reshape(6, 2), np.arange(6.0)
    model = RidgeCV().fit(X, y)
    (tmp_path / "pipelines").mkdir()
    mine = tmp_path / "pipelines" / "mean_score.py"
    mine.write_text("")
    for recipe, expected in [("score_lstm", {"name": "score_lstm", "path": None}),
                             ("mean_score", {"name": "mean_score", "path": str(mine.resolve())}),
                             (mine, {"name": "mean_score", "path": str(mine.resolve())}),
                             (None, None)]:
        save_model(model, tmp_path / "m", recipe=recipe)
        assert model_file_info(tmp_path / "m")["recipe"] == expected


def test_string_categories_and_dtype_parameters_round_trip(tmp_path):
    """OneHotEncoder's object arrays of categories, its dtype parameter and private state come back."""
    from sklearn.preprocessing import OneHotEncoder

    X = np.array([["a", "x"], ["b", "y"], ["a", "y"], ["c", "x"]], dtype=object)
    pipe = Pipeline([("onehot", OneHotEncoder(dtype=np.float32, handle_unknown="ignore")),
                     ("ridge", RidgeCV())]).fit(X, [0.1, 0.5, 0.3, 0.9])
    save_model(pipe, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(X), pipe.predict(X))
    np.testing.assert_array_equal(loaded.predict([["zzz", "x"]]), pipe.predict([["zzz", "x"]]))
    assert loaded[0].dtype is np.float32
    assert [c.tolist() for c in loaded[0].categories_] == [["a", "b", "c"], ["x", "y"]]
    assert loaded[0].categories_[0].dtype == object


def test_net_saved_on_a_gpu_loads_where_there_is_none(tmp_path, one_torch_thread):
    """A skorch net whose file says device='cuda' loads onto the CPU when torch sees no GPU."""
    import torch

    from amnetvid_sk import ScoreLSTMRegressor
    from amnetvid_sk.testing.synthetic import make_score_order_dataset

    X, y = make_score_order_dataset(24)
    net = ScoreLSTMRegressor(max_epochs=2, train_split=None, device="cpu", random_state=0).fit(X, y)
    save_model(net, tmp_path / "net")

    def on_cuda(doc):
        doc["pipeline"]["params"]["device"] = "cuda"
        return doc

    loaded = load_model(_crafted(tmp_path / "net", tmp_path / "cuda", on_cuda))
    if torch.cuda.is_available():
        assert loaded.device == "cuda"
        np.testing.assert_allclose(loaded.predict(X), net.predict(X), rtol=1e-5, atol=1e-6)
    else:
        assert loaded.device == "cpu"
        np.testing.assert_array_equal(loaded.predict(X), net.predict(X))
    assert len(loaded.history_) == 2 and loaded.n_features_in_ == 4


def test_a_model_file_is_a_safetensors_file(ridge_file):
    """The safetensors library itself reads a model file: its arrays and the format's metadata."""
    from safetensors import safe_open

    with safe_open(str(ridge_file), framework="np") as f:
        meta, names = f.metadata(), list(f.keys())
        arrays = {name: f.get_tensor(name) for name in names}
    assert meta["format"] == "amnetvid-sk model" and meta["format_version"] == "1"
    assert names and all(isinstance(a, np.ndarray) for a in arrays.values())
    assert any(name.endswith("coef_") for name in names)


def test_training_target_and_size_are_recorded(tmp_path):
    """save_model(target=, y=) records the target, the number of training videos and the label range, which
    model_file_info shows; a bad target or y is refused naming the parameter, and nothing is written."""
    X, y = np.arange(12.0).reshape(6, 2), np.array([0.3, 0.5, 0.4, 0.9, 0.6, 0.7])
    pipe = Pipeline([("s", StandardScaler()), ("r", RidgeCV())]).fit(X, y)
    save_model(pipe, tmp_path / "m", recipe="mean_score", target="long", y=y)
    info = model_file_info(tmp_path / "m")
    assert (info["target"], info["n_videos"], info["label_range"]) == ("long", 6, [0.3, 0.9])
    header, _ = read_container(tmp_path / "m")  # in the file's JSON description, as the format says
    doc = json.loads(header["__metadata__"]["model"])
    assert (doc["target"], doc["n_videos"], doc["label_range"]) == ("long", 6, [0.3, 0.9])
    np.testing.assert_array_equal(load_model(tmp_path / "m").predict(X), pipe.predict(X))
    with pytest.raises(ValueError, match="'target' parameter of save_model.*'medium'"):
        save_model(pipe, tmp_path / "bad", target="medium", y=y)
    with pytest.raises(ValueError, match="'y' parameter of save_model"):
        save_model(pipe, tmp_path / "bad", target="short", y=[0.5, float("nan")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_files_written_before_training_fields_load_with_them_unknown(ridge_file, tmp_path):
    """A model file without target, n_videos and label_range (as written before they were recorded) loads and
    predicts; model_file_info gives each as None."""
    legacy = _crafted(ridge_file, tmp_path / "legacy", lambda doc: {k: v for k, v in doc.items()
                                                                    if k not in ("target", "n_videos", "label_range")})
    assert "target" not in json.loads(read_container(legacy)[0]["__metadata__"]["model"])
    X = np.arange(12.0).reshape(6, 2)
    np.testing.assert_array_equal(load_model(legacy).predict(X), load_model(ridge_file).predict(X))
    info = model_file_info(legacy)
    assert (info["target"], info["n_videos"], info["label_range"]) == (None, None, None)
    assert info["recipe"] == {"name": "x", "path": None}


def test_predict_mediaeval_with_one_model_of_unknown_target_keeps_its_refusal(ridge_file, tmp_path):
    """``predict MODEL --format mediaeval`` with a file that records no target (older, or saved without one)
    is refused as before: exit 2, one line pointing at --short-model/--long-model; nothing is written."""
    from conftest import run_cli

    legacy = _crafted(ridge_file, tmp_path / "legacy.safetensors",
                      lambda doc: {k: v for k, v in doc.items() if k not in ("target", "n_videos", "label_range")})
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")  # never read: the refusal comes first
    for model in (ridge_file, legacy):
        proc = run_cli("predict", model, video, "--format", "mediaeval", "--out", tmp_path / "run.csv")
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert "mediaeval puts each model's predictions under its target; give --short-model FILE and/or " \
               "--long-model FILE instead of MODEL (this model file does not record its target)" in lines[0]
    assert not (tmp_path / "run.csv").exists()
