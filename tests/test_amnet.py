"""AMNet frame model: weights files (published and legacy formats, refusals), outputs, fingerprints."""

import copyreg
import pickle
import types
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from amnetvid_sk.frame_models.amnet import AMNet, build_amnet_network, load_amnet_state_dict, save_amnet_checkpoint
from amnetvid_sk.errors import WeightsError
from amnetvid_sk.demo import photo_frames
from amnetvid_sk.frame_models import FrameModel, make_fingerprint, make_frame_model


class _Meta:
    """A custom class pickled into a checkpoint: loading it needs arbitrary unpickling."""

    def __init__(self):
        self.note = "trained on LaMem"


def save_like_pytorch03(path, state_dict):
    """Write {'model': state_dict} as PyTorch 0.3 did: legacy format, tensors as _rebuild_tensor(storage, ...)."""

    def reduce_tensor(t):
        storage = torch.storage.TypedStorage(wrap_storage=t.untyped_storage(), dtype=t.dtype, _internal=True)
        return torch._utils._rebuild_tensor, (storage, t.storage_offset(), tuple(t.size()), t.stride())

    class Pickler(pickle.Pickler):
        dispatch_table = {**copyreg.dispatch_table, torch.Tensor: reduce_tensor}

    module = types.SimpleNamespace(__name__="pickle", Pickler=Pickler, dump=pickle.dump)
    state = OrderedDict((k, v) for k, v in state_dict.items() if not k.endswith("num_batches_tracked"))
    torch.save({"model": state}, path, pickle_module=module, pickle_protocol=2, _use_new_zipfile_serialization=False)
    return path


def assert_close_to_batch_of_16(got, outputs):
    """Outputs of the first frames, computed in a smaller batch, equal the batch-of-16 outputs up to
    float32 rounding.

    oneDNN and MKL pick kernels by batch size, so the last bits may differ (maps by 1e-7 on AVX2,
    one thread). A map value is about 5e-3 and two frames' maps differ by 1e-2, random-weight
    scores by 3e-3: these tolerances still catch wrong weights, frames or preprocessing.
    """
    scores, maps = got
    np.testing.assert_allclose(scores, outputs[0][:len(scores)], rtol=0, atol=1e-5)
    np.testing.assert_allclose(maps, outputs[1][:len(maps)], rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def frames():
    return photo_frames(16)


@pytest.fixture(scope="module")
def model(amnet):
    return amnet


@pytest.fixture(scope="module")
def outputs(model, frames):
    return model.predict(frames)


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    return save_amnet_checkpoint(tmp_path_factory.mktemp("weights") / "weights_35.pkl", model.network)


def test_round_trip_published_format_gives_identical_outputs(model, frames, outputs, checkpoint):
    """A checkpoint written as {'model': state_dict} reloads with identical outputs and fingerprint."""
    raw = torch.load(checkpoint, weights_only=True)
    assert list(raw) == ["model"]
    keys = set(raw["model"])
    assert not any(k.endswith("num_batches_tracked") for k in keys)
    assert {"core_cnn.core_cnn.layer4.2.conv3.weight", "core_cnn.core_cnn.fc.weight", "inconv.weight",
            "bn1.running_var", "e1.weight", "eh3.weight", "rnn.weight_hh_l0", "regnet4.bias"} <= keys

    loaded = AMNet(weights=checkpoint, device="cpu", precision="float32")
    scores, maps = loaded.predict(frames)
    # the same 16 frames in one batch in this process: the same kernels, so equal bit for bit
    assert np.array_equal(scores, outputs[0])
    assert np.array_equal(maps, outputs[1])
    assert loaded.fingerprint == model.fingerprint
    assert loaded.weights == str(checkpoint)


def test_legacy_format_checkpoint_loads(model, frames, outputs, tmp_path):
    """A checkpoint in the legacy (non-zip, PyTorch <= 1.5 style) serialization loads with weights_only."""
    path = save_amnet_checkpoint(tmp_path / "legacy.pkl", model, legacy_format=True)
    assert not zipfile.is_zipfile(path)
    loaded = AMNet(weights=path, device="cpu", precision="float32")
    assert loaded.weights_sha256 == model.weights_sha256
    assert_close_to_batch_of_16(loaded.predict(frames[:2]), outputs)


def test_pytorch03_style_checkpoint_loads(model, tmp_path):
    """A file pickled like PyTorch 0.3's (_rebuild_tensor, typed storages, protocol 2) loads safely."""
    path = save_like_pytorch03(tmp_path / "weights_35.pkl", model.network.state_dict())
    head = path.read_bytes()[:200_000]
    assert b"_rebuild_tensor\n" in head and b"_rebuild_tensor_v2" not in head and b"FloatStorage" in head
    loaded = AMNet(weights=path, device="cpu", precision="float32")
    assert loaded.weights_sha256 == model.weights_sha256


def test_modern_state_dict_with_num_batches_tracked_loads(model, tmp_path):
    """num_batches_tracked keys (absent from the published files) are accepted when present."""
    path = tmp_path / "modern.pt"
    torch.save({"model": model.network.state_dict()}, path)
    assert any(k.endswith("num_batches_tracked") for k in torch.load(path, weights_only=True)["model"])
    assert AMNet(weights=path, device="cpu", precision="float32").fingerprint == model.fingerprint


def test_no_weights_says_where_they_come_from():
    """weights=None is refused with the AMNet release and LaMem file named, never random weights."""
    with pytest.raises(WeightsError, match=r"ok1zjf/AMNet") as info:
        AMNet(weights=None)
    assert "lamem_ResNet50FC_lstm3_train_5/weights_35.pkl" in str(info.value)
    with pytest.raises(WeightsError, match="weights=None"):
        make_frame_model("amnet")


def test_unreadable_or_absent_file_is_refused(tmp_path):
    """A missing file and a file that is no checkpoint raise WeightsError naming the file."""
    with pytest.raises(WeightsError, match="nowhere.pkl' does not exist"):
        AMNet(weights=tmp_path / "nowhere.pkl")
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"not a checkpoint at all" * 20)
    with pytest.raises(WeightsError, match="junk.pkl' is not a readable PyTorch checkpoint"):
        AMNet(weights=junk)
    with pytest.raises(WeightsError, match="junk.pkl' is not a readable PyTorch checkpoint"):
        AMNet(weights=junk, allow_unsafe_weights=True)


def test_unsafe_pickle_refused_then_accepted_with_opt_in(model, frames, outputs, tmp_path):
    """A checkpoint pickling a custom class is refused unless allow_unsafe_weights=True."""
    path = tmp_path / "unsafe.pkl"
    torch.save({"model": model.network.state_dict(), "meta": _Meta()}, path)
    with pytest.raises(WeightsError, match=r"allow_unsafe_weights=True") as info:
        AMNet(weights=path, device="cpu")
    assert "_Meta" in str(info.value) and "unsafe.pkl" in str(info.value)
    with pytest.raises(WeightsError, match="arbitrary unpickling"):
        make_frame_model("amnet", weights=path, device="cpu")

    loaded = make_frame_model("amnet", weights=path, device="cpu", allow_unsafe_weights=True,
                              precision="float32")
    assert loaded.weights_sha256 == model.weights_sha256
    assert_close_to_batch_of_16(loaded.predict(frames[:2]), outputs)


def test_missing_and_unexpected_keys_are_listed(model, tmp_path):
    """A file lacking keys (and with foreign ones) is refused with the keys named."""
    state = dict(model.network.state_dict())
    del state["regnet4.weight"], state["rnn.weight_hh_l0"]
    state["attention.extra"] = torch.zeros(3)
    path = save_amnet_checkpoint(tmp_path / "missing.pkl", state)
    with pytest.raises(WeightsError) as info:
        AMNet(weights=path, device="cpu")
    message = str(info.value)
    assert "missing.pkl" in message
    assert "missing keys: rnn.weight_hh_l0, regnet4.weight" in message
    assert "unexpected keys: attention.extra" in message


def test_misshaped_keys_are_listed(model, tmp_path):
    """A file whose tensors have other shapes is refused with both shapes named."""
    state = dict(model.network.state_dict())
    state["eh1.weight"] = torch.zeros(49, 1024)
    state["eh1.bias"] = torch.zeros(49)
    path = save_amnet_checkpoint(tmp_path / "shape.pkl", state)
    with pytest.raises(WeightsError, match="mis-shaped keys") as info:
        AMNet(weights=path, device="cpu")
    assert "eh1.weight (file [49, 1024], network [196, 1024])" in str(info.value)
    assert "eh1.bias (file [49], network [196])" in str(info.value)
    assert "missing keys" not in str(info.value)


def test_maps_are_distributions(outputs, frames):
    """Scores are float32 [N]; maps float32 [N,3,14,14], non-negative, each summing to 1."""
    scores, maps = outputs
    assert scores.shape == (len(frames),) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    assert np.unique(scores).size == len(frames)
    assert maps.shape == (len(frames), 3, 14, 14) and maps.dtype == np.float32
    assert (maps >= 0).all()
    np.testing.assert_allclose(maps.sum(axis=(2, 3)), 1.0, atol=1e-5)
    # AMNet's three attention steps look at different places
    assert not np.allclose(maps[:, 0], maps[:, 2])


def test_empty_input_and_batching(model, frames, outputs):
    """N=0 gives empty arrays of the right shapes; a smaller batch size gives the same outputs."""
    scores, maps = model.predict(np.zeros((0, 50, 60, 3), np.uint8))
    assert scores.shape == (0,) and scores.dtype == np.float32
    assert maps.shape == (0, 3, 14, 14) and maps.dtype == np.float32

    small = AMNet.from_random(seed=0, device="cpu", batch_size=3, precision="float32")
    assert_close_to_batch_of_16(small.predict(frames[:4]), outputs)  # batches of 3 and 1


def test_bad_frames_are_refused(model):
    """Frames that are not uint8 [N,H,W,3] raise a ValueError naming what was given."""
    with pytest.raises(ValueError, match="dtype float64"):
        model.predict(np.zeros((1, 8, 8, 3)))
    with pytest.raises(ValueError, match=r"shape \(8, 8, 3\)"):
        model.predict(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="'device' parameter"):
        AMNet.from_random(device="tpu")
    with pytest.raises(ValueError, match="'batch_size' parameter of AMNet"):
        AMNet.from_random(batch_size=0)


def test_fingerprint_tracks_weights_precision_and_map_size(model):
    """The fingerprint changes with the weights, bfloat16, the map size, maps mode and embedding size; not otherwise."""
    fp = model.fingerprint
    assert fp == f"amnet.w-{model.weights_sha256[:12]}.pre-224sq-imagenet.maps-3x14x14.emb-1024.fp32"
    bf = AMNet.from_random(seed=0, device="cpu", batch_size=2, precision="bfloat16")
    assert bf.fingerprint == fp[:-4] + "bf16"
    assert AMNet.from_random(seed=1, device="cpu", precision="float32").fingerprint != fp

    # one changed weight is enough
    state = dict(build_amnet_network(seed=0).state_dict())
    state["regnet4.bias"] = state["regnet4.bias"] + 1e-3
    assert AMNet(weights=state, device="cpu", precision="float32").fingerprint != fp

    parts = dict(name="amnet", weights_sha256=model.weights_sha256, preprocessing="224sq-imagenet",
                 map_shape=(3, 14, 14), bfloat16=False, embedding_dim=1024)
    assert make_fingerprint(**parts) == fp
    assert make_fingerprint(**{**parts, "map_shape": (3, 7, 7)}) != fp
    assert make_fingerprint(**{**parts, "preprocessing": "256sq-crop224-imagenet"}) != fp
    assert make_fingerprint(**{**parts, "embedding_dim": 512}) != fp
    assert make_fingerprint(**{**parts, "embedding_dim": 0}) == fp.replace(".emb-1024", "")
    assert make_fingerprint(**{**parts, "maps": "none"}) == fp.replace(".maps-3x14x14.", ".maps-none.")
    with pytest.raises(ValueError, match=r"'maps' parameter of make_fingerprint must be a str among"):
        make_fingerprint(**{**parts, "maps": "jet"})


def test_bfloat16_ranks_like_float32(frames, outputs):
    """bfloat16 autocast scores rank 16 varied frames like float32 (Spearman >= 0.99)."""
    bf = AMNet.from_random(seed=0, device="cpu", precision="bfloat16")
    scores, maps = bf.predict(frames)
    assert scores.dtype == np.float32 and maps.dtype == np.float32
    assert spearmanr(scores, outputs[0]).statistic >= 0.99
    np.testing.assert_allclose(maps.sum(axis=(2, 3)), 1.0, atol=1e-5)
    # bfloat16 really was used: the outputs are close to float32's but not equal
    assert not np.array_equal(scores, outputs[0])
    np.testing.assert_allclose(scores, outputs[0], atol=0.01)


def test_make_frame_model(checkpoint):
    """make_frame_model builds AMNet from a weights file and lists the allowed names otherwise."""
    m = make_frame_model("amnet", weights=checkpoint, device="cpu", batch_size=4, precision="float32")
    assert isinstance(m, AMNet) and isinstance(m, FrameModel)
    assert (m.name, m.batch_size, m.precision, m.map_shape) == ("amnet", 4, "float32", (3, 14, 14))
    assert m.device == torch.device("cpu")
    assert make_frame_model("amnet", weights=checkpoint, device="cpu").batch_size == 16
    with pytest.raises(ValueError, match=r"among \{'amnet', 'resmem'\}. Got 'vgg'"):
        make_frame_model("vgg")
    with pytest.raises(ValueError, match="'weights' parameter must be None for name='resmem'"):
        make_frame_model("resmem", weights=checkpoint)


def test_load_state_dict_accepts_bare_state_dict(model, tmp_path):
    """A file holding a bare state dict (no 'model' wrapper) is read too."""
    path = tmp_path / "bare.pt"
    torch.save(model.network.state_dict(), path)
    state = load_amnet_state_dict(path)
    assert "core_cnn.core_cnn.conv1.weight" in state
    assert AMNet(weights=path, device="cpu", precision="float32").fingerprint == model.fingerprint
