"""Frame model outputs beyond scores and maps: embeddings, scores without maps, still images as input."""

import json

import numpy as np
import pytest
from PIL import Image

from amnetvid_sk.demo import photo_frames
from amnetvid_sk.frame_models import FrameModelSpec, FrameOutputs, spec_of
from amnetvid_sk.frame_models.amnet import AMNet
from amnetvid_sk.video import IMAGE_SUFFIXES, ImageReadError, read_image

from test_frame_model_plugins import PLUGIN_DIR


@pytest.fixture(scope="module")
def frames():
    return photo_frames(6)


@pytest.fixture(scope="module")
def amnet_outputs(amnet, frames):
    return amnet.predict_outputs(frames, embeddings=True)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A PNG, a JPEG of another size and an RGBA PNG, written with PIL; and their frames as PIL decodes them."""
    folder = tmp_path_factory.mktemp("images")
    photos = photo_frames(3)
    png = folder / "wide.png"
    Image.fromarray(photos[0][:60, :90]).save(png)
    jpg = folder / "tall.JPG"
    Image.fromarray(photos[1][:80, :50]).save(jpg, quality=90)
    rgba = np.concatenate([photos[2][:40, :40], np.full((40, 40, 1), 255, np.uint8)], axis=-1)
    rgba[:20, :, 3] = 0  # the top half fully transparent
    rgba_png = folder / "alpha.png"
    Image.fromarray(rgba, mode="RGBA").save(rgba_png)
    return {"png": png, "jpg": jpg, "rgba": rgba_png, "rgba_pixels": rgba}


def test_amnet_embeddings_shape_dtype_and_content(amnet, frames, amnet_outputs):
    """AMNet gives float32 [N, 1024] embeddings (pooled post-ReLU features: >= 0, varied) with its scores and maps."""
    assert isinstance(amnet_outputs, FrameOutputs)
    scores, maps, emb = amnet_outputs
    assert amnet.embedding_dim == 1024
    assert emb.shape == (len(frames), 1024) and emb.dtype == np.float32
    assert np.isfinite(emb).all() and (emb >= 0).all()
    assert np.abs(emb[0] - emb[1]).max() > 1e-3  # two photographs have different internal states
    # the same pass as predict: scores and maps equal to predict's, bit for bit (same batch, same kernels)
    s, m = amnet.predict(frames)
    assert np.array_equal(scores, s) and np.array_equal(maps, m)
    assert amnet.predict_outputs(frames).embeddings is None  # only when asked


def test_embeddings_do_not_depend_on_the_batch_size(frames, amnet_outputs):
    """Embeddings (and scores) computed in batches of 4 and 2 equal those of one batch of 6, to float32 rounding."""
    small = AMNet.from_random(seed=0, device="cpu", precision="float32", batch_size=4)
    got = small.predict_outputs(frames, embeddings=True)
    # oneDNN picks kernels by batch size: last bits may differ; the features are O(0.1-1)
    np.testing.assert_allclose(got.embeddings, amnet_outputs.embeddings, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got.scores, amnet_outputs.scores, rtol=0, atol=1e-5)


def test_scores_only_mode(amnet, frames, amnet_outputs):
    """maps='none' gives maps None, its own fingerprint, scores and embeddings close to the attention path's."""
    none = AMNet.from_random(seed=0, device="cpu", precision="float32", maps="none")
    out = none.predict_outputs(frames, embeddings=True)
    assert out.maps is None and out.scores.dtype == np.float32 and out.scores.shape == (len(frames),)
    np.testing.assert_allclose(out.scores, amnet_outputs.scores, rtol=0, atol=1e-5)
    np.testing.assert_allclose(out.embeddings, amnet_outputs.embeddings, rtol=1e-4, atol=1e-5)
    scores, maps = none.predict(frames)
    assert maps is None and np.array_equal(scores, out.scores)

    assert none.fingerprint != amnet.fingerprint
    assert none.fingerprint == amnet.fingerprint.replace(".maps-3x14x14.", ".maps-none.")
    assert none.describe() == "frame model: amnet, scores only, float32 (as asked)"
    assert (none.config["maps"], none.config["embedding_dim"]) == ("none", 1024)
    assert (amnet.config["maps"], amnet.config["embedding_dim"]) == ("attention", 1024)


def test_invalid_maps_value_is_refused(amnet_weights):
    """A maps value other than 'attention' or 'none' raises a ValueError naming 'maps' and the allowed values."""
    expected = r"The 'maps' parameter of AMNet must be a str among \{'attention', 'none'\}. Got 'jet' instead."
    with pytest.raises(ValueError, match=expected):
        AMNet.from_random(seed=0, device="cpu", maps="jet")
    with pytest.raises(ValueError, match=expected):
        AMNet(weights=amnet_weights, device="cpu", maps="jet")
    with pytest.raises(ValueError, match=r"'maps' parameter of AMNet must be a str among .*Got None instead"):
        AMNet.from_random(seed=0, device="cpu", maps=None)


def test_spec_rebuild_keeps_maps_and_embedding_dim(amnet_weights):
    """A scores-only model rebuilds from its spec (through JSON, as workers get it) with maps and embedding size kept."""
    model = AMNet(weights=amnet_weights, device="cpu", precision="float32", maps="none")
    spec = spec_of(model)
    assert spec.params == {"weights": str(amnet_weights), "batch_size": 16, "allow_unsafe_weights": False,
                           "maps": "none"}
    rebuilt = FrameModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))).build()
    assert (rebuilt.maps, rebuilt.embedding_dim) == ("none", 1024)
    assert rebuilt.fingerprint == model.fingerprint
    # from the store's config too (the models table)
    from_config = FrameModelSpec.from_config(json.loads(json.dumps(model.config)), model.fingerprint).build()
    assert from_config.maps == "none" and from_config.fingerprint == model.fingerprint
    # the default mode leaves its spec as it was before 'maps' existed, and rebuilds to attention maps
    plain = AMNet.from_random(seed=2, device="cpu", precision="float32")
    assert "maps" not in spec_of(plain).params
    assert spec_of(plain).build().maps == "attention"


def test_image_paths_of_different_sizes(amnet, images):
    """predict takes image paths (str or Path, PNG and JPEG of different sizes): each scored as its own frame."""
    paths = [images["png"], str(images["jpg"]), images["rgba"]]
    out = amnet.predict_outputs(paths, embeddings=True)
    assert out.scores.shape == (3,) and out.maps.shape == (3, 3, 14, 14) and out.embeddings.shape == (3, 1024)
    # the same as each image read alone and given as a one-frame array
    for i, path in enumerate(paths):
        frame = read_image(path)
        alone = amnet.predict_outputs(frame[None], embeddings=True)
        np.testing.assert_allclose(out.scores[i], alone.scores[0], rtol=0, atol=1e-5)
        np.testing.assert_allclose(out.maps[i], alone.maps[0], rtol=0, atol=1e-6)
        np.testing.assert_allclose(out.embeddings[i], alone.embeddings[0], rtol=1e-4, atol=1e-5)
    assert np.unique(out.scores).size == 3
    # one path alone
    scores, maps = amnet.predict(str(images["jpg"]))
    assert scores.shape == (1,) and maps.shape == (1, 3, 14, 14)
    np.testing.assert_allclose(scores[0], out.scores[1], rtol=0, atol=1e-5)


def test_read_image_converts_to_rgb(images, tmp_path):
    """read_image gives uint8 RGB [H,W,3]: sizes kept, transparency over white, grey and palette to RGB, EXIF applied."""
    assert read_image(images["png"]).shape == (60, 90, 3)
    assert read_image(images["jpg"]).shape == (80, 50, 3)
    rgba = read_image(images["rgba"])
    assert rgba.shape == (40, 40, 3) and rgba.dtype == np.uint8
    assert (rgba[:20] == 255).all()  # transparent: white
    assert np.array_equal(rgba[20:], images["rgba_pixels"][20:, :, :3])  # opaque: the pixels as they were

    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((5, 7), 90, np.uint8), mode="L").save(grey)
    assert np.array_equal(read_image(grey), np.full((5, 7, 3), 90, np.uint8))
    palette = tmp_path / "palette.bmp"
    Image.fromarray(np.full((4, 4, 3), (200, 10, 10), np.uint8)).convert("P").save(palette)
    assert read_image(palette).shape == (4, 4, 3)

    # EXIF orientation 6 (camera turned 90 degrees): a 30 x 20 stored image is shown 20 wide, 30 tall
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(rotated, exif=exif.tobytes())
    assert read_image(rotated).shape == (30, 20, 3)
    assert {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"} <= set(IMAGE_SUFFIXES)


def test_unreadable_images_name_the_file(amnet, images, tmp_path):
    """A missing image, or a file PIL cannot decode, raises an ImageReadError (a ValueError) naming it."""
    missing = tmp_path / "nowhere.jpg"
    with pytest.raises(ImageReadError, match=r"cannot read image '.*nowhere\.jpg': no such file"):
        read_image(missing)
    with pytest.raises(ValueError, match=r"nowhere\.jpg"):
        amnet.predict([images["png"], missing])
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG not really" * 10)
    with pytest.raises(ImageReadError, match=r"junk\.png': not an image PIL can decode"):
        amnet.predict_outputs([junk])
    with pytest.raises(ValueError, match="a list mixing paths with ndarray"):
        amnet.predict([images["png"], np.zeros((8, 8, 3), np.uint8)])


def test_old_style_subclass_still_works(monkeypatch, images):
    """A frame model without embeddings (a plug-in's _forward_batch): maps, images; no embeddings, said clearly."""
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    from tiny_frame_model import TinyFrameModel

    tiny = TinyFrameModel(gain=2.0, device="cpu", precision="float32")
    assert (tiny.maps, tiny.embedding_dim, tiny.input_size) == ("attention", 0, None)
    assert tiny.fingerprint.endswith(".pre-grey14.maps-3x14x14.fp32")  # the form it always had
    frames = np.full((3, 20, 30, 3), 51, np.uint8)
    out = tiny.predict_outputs(frames)
    np.testing.assert_allclose(out.scores, 2.0 * 0.2, atol=1e-6)
    assert out.maps.shape == (3, 3, 14, 14) and out.embeddings is None
    np.testing.assert_allclose(out.maps.sum(axis=(2, 3)), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match=r"frame model 'tiny' \(TinyFrameModel\) gives no embeddings"):
        tiny.predict_outputs(frames, embeddings=True)
    # images of different sizes and no input_size: each size in its own batch, the order kept
    paths = [images["png"], images["jpg"], images["rgba"]]
    scores, maps = tiny.predict(paths)
    expected = [2.0 * read_image(p).mean() / 255.0 for p in paths]
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert maps.shape == (3, 3, 14, 14)


@pytest.mark.slow
def test_resmem_embeddings_with_real_weights():
    """Real ResMem weights, 2 frames: 2048-d pooled features; scores only agrees with the Grad-CAM path."""
    pytest.importorskip("resmem")
    from amnetvid_sk.frame_models.resmem_gradcam import ResMemGradCAM

    frames = photo_frames(2)
    cam = ResMemGradCAM(device="cpu", precision="float32", batch_size=2)
    full = cam.predict_outputs(frames, embeddings=True)
    assert full.embeddings.shape == (2, 2048) and full.embeddings.dtype == np.float32
    assert np.isfinite(full.embeddings).all() and (full.embeddings >= 0).all()  # average of post-ReLU features
    assert np.abs(full.embeddings[0] - full.embeddings[1]).max() > 1e-2
    assert full.maps.shape == (2, 3, 14, 14)

    none = ResMemGradCAM(device="cpu", precision="float32", batch_size=2, maps="none")
    fast = none.predict_outputs(frames, embeddings=True)
    assert fast.maps is None
    np.testing.assert_allclose(fast.scores, full.scores, rtol=0, atol=1e-5)
    np.testing.assert_allclose(fast.embeddings, full.embeddings, rtol=1e-4, atol=1e-5)
    assert none.fingerprint.endswith(".pre-256sq-crop227.maps-none.emb-2048.fp32")
    assert cam.fingerprint.endswith(".gradcam-layer2-layer3-layer4.maps-3x14x14.emb-2048.fp32")
    assert spec_of(none).build().fingerprint == none.fingerprint
