"""ResMem + Grad-CAM frame model, with the real ResMem weights of the installed resmem package."""

import sys

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import spearmanr

from amnetvid_sk.errors import MissingDependencyError
from amnetvid_sk.demo import photo_frames
from amnetvid_sk.frame_models import make_frame_model
from amnetvid_sk.frame_models.resmem_gradcam import ResMemGradCAM, load_resmem

from conftest import torch_threads


@pytest.fixture(scope="module")
def model():
    pytest.importorskip("resmem")
    # float32 on every CPU (auto would pick bfloat16 where it is native): the reference outputs
    return ResMemGradCAM(device="cpu", precision="float32")


@pytest.fixture(scope="module")
def clip_frames(tmp_path_factory):
    """4 frames sampled from a real H.264 clip: a slow pan over a photograph."""
    from skimage import data

    from amnetvid_sk.testing.clips import write_clip
    from amnetvid_sk.video import sample_frames

    photo = data.astronaut()
    frames = np.stack([photo[40 + 6 * i: 40 + 6 * i + 192, 30 + 10 * i: 30 + 10 * i + 256] for i in range(12)])
    frames = np.stack([np.asarray(Image.fromarray(f).resize((128, 96))) for f in frames])
    path = write_clip(tmp_path_factory.mktemp("clips") / "pan.mp4", frames, fps=25, codec="h264")
    sampled = sample_frames(path, n_frames=4)
    assert sampled.frames.shape == (4, 96, 128, 3)
    return sampled.frames


@pytest.fixture(scope="module")
def clip_outputs(model, clip_frames):
    return model.predict(clip_frames)


@pytest.mark.slow
def test_real_clip_scores_maps_and_determinism(model, clip_frames, clip_outputs):
    """Real weights on a real clip: scores in (0,1), maps are distributions, a second run is identical."""
    scores, maps = clip_outputs
    assert scores.shape == (4,) and scores.dtype == np.float32
    assert ((scores > 0) & (scores < 1)).all()
    assert maps.shape == (4, 3, 14, 14) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and (maps >= 0).all()
    np.testing.assert_allclose(maps.sum(axis=(2, 3)), 1.0, atol=1e-5)
    # Grad-CAM localises: no map is the uniform fallback, and the three depths differ
    assert (maps.reshape(4, 3, -1).max(axis=-1) > 2.0 / 196).all()
    assert not np.allclose(maps[:, 0], maps[:, 2], atol=1e-3)

    # again, and under a caller's inference_mode (Grad-CAM must still get its gradients)
    with torch.inference_mode():
        again_scores, again_maps = model.predict(clip_frames)
    assert np.array_equal(scores, again_scores)
    assert np.array_equal(maps, again_maps)


@pytest.mark.slow
def test_scores_are_resmems_own(clip_frames, clip_outputs):
    """Scores equal ResMem's own pipeline (resmem.transformer on PIL images, then the network)."""
    import resmem

    x = torch.stack([resmem.transformer(Image.fromarray(f)) for f in clip_frames])
    with torch.inference_mode():
        reference = load_resmem("cpu")(x).reshape(-1).numpy()
    np.testing.assert_allclose(clip_outputs[0], reference, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_batches_split_over_threads_give_the_whole_batchs_outputs(model, clip_frames):
    """Two threads running ResMem side by side (each its half of the batch, with Grad-CAM): each gets its own
    stages and scores from the shared network's hooks, as the whole batch run at once gives them."""
    with torch_threads(2):
        split = model.predict_outputs(clip_frames, embeddings=True)
        whole_model = ResMemGradCAM(device="cpu", precision="float32")
        whole_model.thread_safe_forward = False
        whole = whole_model.predict_outputs(clip_frames, embeddings=True)
    np.testing.assert_allclose(split.scores, whole.scores, rtol=0, atol=1e-5)
    np.testing.assert_allclose(split.maps, whole.maps, rtol=0, atol=1e-3)  # Grad-CAM: float rounding, not a mix-up
    np.testing.assert_allclose(split.embeddings, whole.embeddings, rtol=1e-4, atol=1e-4)
    assert np.abs(split.maps[0] - split.maps[3]).max() > 1e-2  # frames far apart in the pan: a mix-up would show


@pytest.mark.slow
def test_bfloat16_ranks_like_float32(model):
    """bfloat16 autocast scores rank photographs like float32 (Spearman >= 0.99); maps stay close."""
    from amnetvid_sk.precision import native_bfloat16

    # 8 photographs where bfloat16 is native; 4 where it is emulated (about 20x slower), which
    # still checks that the emulated path runs and ranks alike, in the suite's time budget
    native = native_bfloat16(model.device)[0]
    frames = photo_frames(8 if native else 4)
    scores32, maps32 = model.predict(frames)
    bf = ResMemGradCAM(device="cpu", precision="bfloat16")
    assert bf.network is model.network  # loaded once per process
    scores16, maps16 = bf.predict(frames)
    assert spearmanr(scores16, scores32).statistic >= 0.99
    assert not np.array_equal(scores16, scores32)
    np.testing.assert_allclose(maps16.sum(axis=(2, 3)), 1.0, atol=1e-5)
    # the bfloat16 maps put their mass where the float32 maps do. Their lowest correlation, measured
    # with 1 and 2 threads alike: 0.957 where bfloat16 is native (AVX512, 8 photographs), 0.877 where
    # it is emulated (ATEN_CPU_CAPABILITY=avx2, 4 photographs): the emulated kernels round otherwise,
    # and Grad-CAM's ReLU on a flat map magnifies it. (auto picks float32 where it is emulated.)
    corr = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(maps16, maps32)]
    assert min(corr) > (0.9 if native else 0.8), corr


@pytest.mark.slow
def test_fingerprint_and_parameters(model):
    """The fingerprint names weights hash, preprocessing, layers, map size and precision."""
    fp = model.fingerprint
    assert fp.startswith("resmem.w-")
    assert fp.endswith(".pre-256sq-crop227.gradcam-layer2-layer3-layer4.maps-3x14x14.emb-2048.fp32")
    assert ResMemGradCAM(device="cpu", precision="bfloat16").fingerprint == fp[:-4] + "bf16"
    assert ResMemGradCAM(device="cpu", precision="float32",
                         layers=("layer1", "layer2", "layer3")).fingerprint != fp
    m = make_frame_model("resmem", device="cpu", precision="float32")
    assert isinstance(m, ResMemGradCAM) and m.batch_size == 8 and m.fingerprint == fp
    with pytest.raises(ValueError, match=r"'layers' parameter of ResMemGradCAM must be 3 names among"):
        ResMemGradCAM(device="cpu", layers=("layer2", "layer5", "layer4"))
    with pytest.raises(ValueError, match=r"'maps' parameter of ResMemGradCAM must be a str among "
                                         r"\{'attention', 'none'\}. Got 'raw' instead."):
        ResMemGradCAM(device="cpu", maps="raw")
    # scores only: its own fingerprint, which names no Grad-CAM layers (they change nothing then)
    none = make_frame_model("resmem", device="cpu", precision="float32", maps="none")
    assert none.fingerprint == fp.replace(".gradcam-layer2-layer3-layer4.maps-3x14x14.", ".maps-none.")
    assert none.config["maps"] == "none" and none.config["embedding_dim"] == 2048
    scores, maps = model.predict(np.zeros((0, 32, 32, 3), np.uint8))
    assert scores.shape == (0,) and maps.shape == (0, 3, 14, 14)


@pytest.mark.slow
def test_spec_rebuilds_custom_layers_and_bfloat16(model):
    """A ResMemGradCAM with other layers, or in bfloat16, rebuilds from its spec to the same fingerprint."""
    from amnetvid_sk.frame_models import spec_of

    custom = ResMemGradCAM(device="cpu", precision="float32", batch_size=2, layers=("layer1", "layer2", "layer3"))
    spec = spec_of(custom)
    assert spec.params == {"batch_size": 2, "layers": ["layer1", "layer2", "layer3"]}
    rebuilt = spec.build()
    assert rebuilt.fingerprint == custom.fingerprint != model.fingerprint
    assert rebuilt.layers == ("layer1", "layer2", "layer3") and rebuilt.batch_size == 2
    bf = ResMemGradCAM(device="cpu", precision="bfloat16")
    assert spec_of(bf).build().fingerprint == bf.fingerprint == model.fingerprint[:-4] + "bf16"
    assert custom.config["class"] == "amnetvid_sk.frame_models.resmem_gradcam:ResMemGradCAM"


def test_score_figures_name_the_gradcam_layers(model):
    """`amnetvid score --maps-out` panels say what each map is: the Grad-CAM layers this model was built
    with (they said "attention step 1/2/3", AMNet's words, for ResMem too)."""
    from amnetvid_sk.cli.score_commands import panel_titles

    assert panel_titles(model) == ("Grad-CAM of layer2", "Grad-CAM of layer3", "Grad-CAM of layer4")
    custom = ResMemGradCAM(device="cpu", precision="float32", layers=("layer1", "layer2", "layer3"))
    assert panel_titles(custom)[0] == "Grad-CAM of layer1"


def test_missing_resmem_package_names_the_extra(monkeypatch):
    """Without the resmem package, a MissingDependencyError says which extra to install."""
    monkeypatch.setitem(sys.modules, "resmem", None)  # makes `import resmem` fail like an absent package
    with pytest.raises(MissingDependencyError, match=r'pip install "amnetvid-sk\[resmem\]"'):
        ResMemGradCAM(device="cpu")
    with pytest.raises(ImportError):
        make_frame_model("resmem", device="cpu")
