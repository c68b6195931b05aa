"""``amnetvid demo``: the whole method once, on clips made from real photographs.

The demo set: each photograph (scikit-image's sample images, which ship inside
the package) becomes four short clips: a pan left-to-right, a pan right-to-left,
a zoom in and a zoom out. The two clips of a pair hold the same frames in
opposite order.

Label rule (synthetic, not human data), applied to what the frame model gave each
clip, with one term for each family of models to see:

- ``m``, the mean frame score (the mean-score baseline sees it);
- ``r``, how the frame scores *rise* over the clip (their least-squares slope over
  time, a recency effect: the score LSTM sees the order of the scores);
- ``a``, how the attention *moves* (:func:`attention_drift`: the slope of the
  attention's horizontal centre plus that of its spread; AMNetVid and the Conv3D
  network see the maps in order);
- ``c``, what the photograph is (:func:`content_axis`: the main axis of the clips'
  mean embeddings; the embedding ridge sees it).

With ``z()`` standardising over the demo set, ``short_term = 0.75 + 0.03 z(m) +
0.03 z(r) + 0.04 z(a) + 0.03 z(c) + noise(sd 0.015)`` and ``long_term = 0.45 +
0.02 z(m) + 0.02 z(r) + 0.03 z(a) + 0.03 z(c) + noise(sd 0.03)``, clipped to
[0, 1]. Both clips of a pan or zoom pair have the same mean score and content but
opposite ``r`` and ``a``.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .sampling_keys import DEFAULT_N_FRAMES
from .video_ids import video_id_from_name

# photographs bundled with scikit-image (no download needed)
TRAIN_IMAGES = (
    "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
    "retina", "camera", "coins", "moon", "cell", "brick",
)
HELD_OUT_IMAGES = ("grass", "gravel")
MOTIONS = ("pan_right", "pan_left", "zoom_in", "zoom_out")


@dataclass
class DemoSettings:
    """Sizes of a demo run. The defaults fit ~10 minutes on 2 CPU cores with ResMem.

    Full scale (the working note): ``DEFAULT_N_FRAMES`` frames per clip stored, 4 used by
    the sequence models, JET maps at 70x70, 20 epochs, thousands of clips.

    Examples
    --------
    >>> DemoSettings(n_images=2).n_images * len(MOTIONS)  # training clips: 4 per photograph
    8
    """

    # 8 photographs, 32 clips: with the block beyond the note the demo stays within ~10 minutes
    # from a fresh clone on a 2-core AVX2 CPU
    n_images: int = 8
    clip_frames: int = 24
    clip_fps: int = 12
    width: int = 128
    height: int = 96
    stored_frames: int = 8
    model_frames: int = 4
    cv: int = 3
    # ~21 training clips per fold: batches of 4 give the networks enough steps, and a fixed
    # number of epochs replaces early stopping, whose validation part (3-4 clips) would be noise
    max_epochs: int = 15
    batch_size: int = 4
    # auto: bfloat16 where the hardware computes it natively (ResMem + Grad-CAM ~1.8x faster there,
    # same ranking of frame scores), float32 elsewhere (an AVX2 CPU emulates bfloat16, ~20x slower)
    precision: str = "auto"
    seed: int = 0
    # the second block ("beyond the note") on the short-term target only: its stacked ensemble
    # trains each member network cv + 1 times per fold, which both targets would not fit in 10 minutes
    beyond_targets: tuple = ("short",)
    # folds inside the stacked ensemble's fit (its members' out-of-fold predictions)
    stack_cv: int = 2


def _photo(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = (img.astype(np.float64) / img.max() * 255).astype(np.uint8)
    return img


def photo_frames(n: int, height: int = 96, width: int = 128) -> np.ndarray:
    """``n`` different crops of scikit-image's sample photographs, uint8 ``[n, height, width, 3]``.

    Varied natural frames for tests and benchmarks of the frame models.
    """
    from PIL import Image

    names = ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry", "coins",
             "hubble_deep_field")
    images = [_photo(name) for name in names]
    frames = []
    for i in range(n):
        img = images[i % len(images)]
        k = i // len(images)  # later rounds over the same photographs take other crops
        h, w = img.shape[:2]
        crop = np.ascontiguousarray(img[k * h // 6: h - (1 - k % 2) * h // 8, k * w // 5: w])
        frames.append(np.asarray(Image.fromarray(crop).resize((width, height))))
    return np.stack(frames)


def _crop_resize(img: np.ndarray, y0, x0, h, w, out_hw) -> np.ndarray:
    from PIL import Image

    crop = img[int(y0): int(y0 + h), int(x0): int(x0 + w)]
    return np.asarray(Image.fromarray(crop).resize((out_hw[1], out_hw[0]), Image.BICUBIC))


def motion_frames(img: np.ndarray, motion: str, n: int, out_hw) -> np.ndarray:
    """Frames of a pan or zoom over a photograph, ``[n, H, W, 3]`` uint8."""
    H, W = img.shape[:2]
    aspect = out_hw[1] / out_hw[0]
    frames = []
    for t in np.linspace(0.0, 1.0, n):
        if motion.startswith("pan"):
            h = min(H, W * 0.6 / aspect)
            w = h * aspect
            x = (W - w) * (t if motion == "pan_right" else 1 - t)
            frames.append(_crop_resize(img, (H - h) / 2, x, h, w, out_hw))
        else:
            s = 1.0 - 0.55 * (t if motion == "zoom_in" else 1 - t)
            h0 = min(H, W / aspect)
            h, w = h0 * s, h0 * s * aspect
            frames.append(_crop_resize(img, (H - h) / 2, (W - w) / 2, h, w, out_hw))
    return np.stack(frames)


REPORT_DESCRIPTION = """<p>Clips made from scikit-image photographs (pans and zooms, 4 per photograph);
frame model ResMem with Grad-CAM attention maps. <b>The labels come from a stated synthetic rule, not from
people</b>, with one term for each family of models to see. With <i>z()</i> standardising over the demo set:</p>
<ul>
<li><i>m</i>, the mean frame score ResMem gives the clip (the mean-score baseline sees it);</li>
<li><i>r</i>, how the frame scores <i>rise</i> over the clip (their least-squares slope over time, a recency
effect: the score LSTM sees the order of the scores);</li>
<li><i>a</i>, how the attention <i>moves</i>: the slope of the attention's horizontal centre plus that of its
spread (a pan moves it, a zoom widens or narrows it: AMNetVid and the Conv3D network see the maps in order);</li>
<li><i>c</i>, what the photograph is: the clip's position on the main axis (first principal component) of the
clips' mean ResMem embeddings (the embedding ridge sees it).</li>
</ul>
<p><code>short_term = 0.75 + 0.03 z(m) + 0.03 z(r) + 0.04 z(a) + 0.03 z(c) + noise (sd 0.015)</code> and
<code>long_term = 0.45 + 0.02 z(m) + 0.02 z(r) + 0.03 z(a) + 0.03 z(c) + noise (sd 0.03)</code>, clipped to
[0, 1]. The two clips of a pan or zoom pair hold the same frames in opposite order: same <i>m</i> and <i>c</i>,
opposite <i>r</i> and <i>a</i>.</p>"""


def make_demo_clips(folder, settings: DemoSettings | None = None):
    """Write the demo clips into ``folder``; returns ``(train_paths, held_out_paths)``.

    Clips already there are kept as they are, so their features stay valid in the store
    (a rewritten file would be extracted again).
    """
    from .testing.clips import write_clip

    s = settings or DemoSettings()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def clip(name, motion):
        path = folder / f"{name}_{motion}.mp4"
        if not path.exists():
            frames = motion_frames(_photo(name), motion, s.clip_frames, (s.height, s.width))
            tmp = path.with_name(f".{path.stem}.tmp.mp4")
            write_clip(tmp, frames, fps=s.clip_fps, codec="h264")
            os.replace(tmp, path)  # a clip is either whole or absent
        return path

    train = [clip(name, motion) for name in TRAIN_IMAGES[: s.n_images] for motion in MOTIONS]
    held_out = [clip(HELD_OUT_IMAGES[0], "pan_right"), clip(HELD_OUT_IMAGES[1], "zoom_out")]
    return train, held_out


def _slope(values: np.ndarray) -> np.ndarray:
    """Least-squares slope over time (0..1) of each row of ``values`` ``[n, T]``."""
    t = np.linspace(0.0, 1.0, values.shape[1])
    t = t - t.mean()
    return ((values - values.mean(axis=1, keepdims=True)) * t).sum(axis=1) / max((t ** 2).sum(), 1e-12)


def _z(v: np.ndarray) -> np.ndarray:
    return (v - v.mean()) / (v.std() or 1.0)


def attention_drift(maps: np.ndarray) -> np.ndarray:
    """How the attention moves over a clip, one number per clip, from maps ``[n, T, K, h, w]``.

    The slope over time of the horizontal centre of the attention (the K maps averaged) plus
    the slope of its spread (mean distance from that centre), each standardised: a pan moves
    the centre, a zoom widens or narrows the spread. Only a model that sees the maps in
    order (AMNetVid, the Conv3D network) can tell it.

    Examples
    --------
    >>> maps = np.zeros((2, 3, 1, 4, 4)); maps[0, [0, 1, 2], 0, 1, [0, 1, 2]] = 1; maps[1, [0, 1, 2], 0, 1, [2, 1, 0]] = 1
    >>> drift = attention_drift(maps)
    >>> bool(drift[0] > drift[1])  # moving right beats moving left
    True
    """
    m = np.asarray(maps, dtype=np.float64).mean(axis=2)  # [n, T, h, w]
    m = m / np.maximum(m.sum(axis=(-2, -1), keepdims=True), 1e-12)
    h, w = m.shape[-2:]
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    cx = (m * xx).sum(axis=(-2, -1))
    cy = (m * yy).sum(axis=(-2, -1))
    spread = (m * np.hypot(xx[None, None] - cx[..., None, None], yy[None, None] - cy[..., None, None])).sum(axis=(-2, -1))
    return _z(_z(_slope(cx)) + _z(_slope(spread)))


def content_axis(embeddings: np.ndarray) -> np.ndarray:
    """The clips' position on the main axis of their frame model's internal state, one number per clip.

    The first principal component of the clips' mean embeddings ``[n, D]``: what the photographs
    are, beyond how memorable the frame model finds each frame. A ridge on the embeddings can learn it.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> axis = content_axis(rng.normal(size=(6, 5)))
    >>> axis.shape, bool(abs(axis.mean()) < 1e-9)
    ((6,), True)
    """
    e = np.asarray(embeddings, dtype=np.float64)
    e = (e - e.mean(axis=0)) / np.maximum(e.std(axis=0), 1e-12)
    _, _, vt = np.linalg.svd(e, full_matrices=False)
    pc = e @ vt[0]
    return _z(pc * np.sign(vt[0].sum() or 1.0))  # the sign fixed, so the same data give the same labels


def demo_labels(scores: np.ndarray, maps: np.ndarray, embeddings: np.ndarray, seed: int = 0):
    """The demo's label rule (see the module docstring and the README).

    Parameters
    ----------
    scores : ndarray of shape (n, T)
        Frame scores.
    maps : ndarray of shape (n, T, K, h, w)
        Attention maps of the same frames.
    embeddings : ndarray of shape (n, D)
        Each clip's mean frame embedding.
    seed : int, default=0
        Seed of the noise.

    Returns
    -------
    short_term, long_term : ndarray of shape (n,), in [0, 1]

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> short, long = demo_labels(rng.random((8, 4)), rng.random((8, 4, 3, 14, 14)), rng.normal(size=(8, 16)))
    >>> short.shape, bool(((0 <= long) & (long <= 1)).all())
    ((8,), True)
    """
    scores = np.asarray(scores, dtype=np.float64)
    m, r = _z(scores.mean(axis=1)), _z(_slope(scores))
    a, c = attention_drift(maps), content_axis(embeddings)
    rng = np.random.default_rng(seed)
    short = 0.75 + 0.03 * m + 0.03 * r + 0.04 * a + 0.03 * c + rng.normal(0, 0.015, len(m))
    long = 0.45 + 0.02 * m + 0.02 * r + 0.03 * a + 0.03 * c + rng.normal(0, 0.03, len(m))
    return np.clip(short, 0, 1), np.clip(long, 0, 1)


def write_demo_labels(path, ids, short, long) -> Path:
    """Write labels in the MediaEval 2018/2019 format (``video,short-term_memorability,...``)."""
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "short-term_memorability", "nb_short-term_annotations",
                    "long-term_memorability", "nb_long-term_annotations"])
        for vid, s_, l_ in zip(ids, short, long):
            w.writerow([f"{vid}.mp4", f"{s_:.3f}", 40, f"{l_:.3f}", 12])
    return path


#: the raw 3x14x14 maps in place of JET renders at 70x70 (as the ``amnetvid_raw`` recipe has them)
RAW_MAPS = {"module__map_channels": 3, "module__map_size": 14, "module__map_scale": 196.0}


def _raw_maps(pipe) -> dict:
    """``set_params`` that make every map reader and maps network of ``pipe`` use the raw maps
    (found by role: readers with a ``maps`` parameter, networks that take maps)."""
    from .estimators import ConvLSTMRegressor
    from .evaluate import network_steps
    from .pipelines import store_steps

    out = {f"{name}__maps": "raw" for name, step in store_steps(pipe) if "maps" in step.get_params(deep=False)}
    for name, net in network_steps(pipe):
        if isinstance(net, ConvLSTMRegressor):
            out.update({f"{name}__{key}": value for key, value in RAW_MAPS.items()})
    return out


def beyond_params(store: str, s: DemoSettings) -> dict:
    """The demo's ``set_params`` for the second block's recipes (see :data:`BEYOND_RECIPES`).

    The networks train as in Table 1, on the raw 3x14x14 maps (the JET renders that Table 1's
    AMNetVid reads would cost several times the demo's budget: the stacked ensemble trains its
    members ``stack_cv + 1`` times per fold). AMNetVid with frame subsets reads every stored
    frame and trains on a random ``model_frames`` of them per clip and epoch, predicting with the
    mean over ``stored_frames // model_frames`` evenly spread subsets (no frame used twice).

    Examples
    --------
    >>> params = beyond_params("store", DemoSettings())
    >>> sorted(params)
    ['amnetvid_augmented', 'amnetvid_conv3d', 'embedding_ridge', 'stacked']
    >>> params["stacked"]["stack__cv"], params["amnetvid_conv3d"]["sequences__maps"]
    (2, 'raw')
    """
    from .evaluate import BEYOND_RECIPES, load_recipe, role_params

    net = {"max_epochs": s.max_epochs, "batch_size": s.batch_size, "train_split": None,
           "module__n_frames": s.model_frames}
    params = {}
    for name, _ in BEYOND_RECIPES:
        pipe = load_recipe(name).pipeline(store)
        if name == "amnetvid_augmented":
            subsets = {"test_subsets": max(1, s.stored_frames // s.model_frames)}
            params[name] = role_params(pipe, reader={"n_frames": s.stored_frames}, network={**net, **subsets})
        elif name == "stacked":
            params[name] = {**role_params(pipe, network=net), "stack__cv": s.stack_cv}
        elif name == "embedding_ridge":
            params[name] = {}  # every stored frame's embedding, averaged
        else:
            params[name] = role_params(pipe, reader={"n_frames": s.model_frames}, network=net)
        params[name].update(_raw_maps(pipe))
    return params


def _report_sections(predictions: dict, settings: DemoSettings) -> list:
    """The demo's own sections of its report: the held-out clips' predictions and the settings."""
    from .report.page import esc, html_table, ident

    rows = [[ident(vid), f"{p:.4f}"] for vid, p in predictions.items()]
    return [("predictions", "Predictions for two clips not seen in training (AMNetVid, short-term)",
             html_table(["video", "predicted short-term memorability"], rows)),
            ("settings", "Demo settings", f"<pre>{esc(repr(settings))}</pre>")]


def run_demo(out=".", settings: DemoSettings | None = None, progress: bool = True) -> dict:
    """Run the whole method once and write ``report/`` (see the module docstring).

    Parameters
    ----------
    out : str or Path, default="."
        Folder for ``store/``, ``demo_clips/`` and ``report/``.
    settings : DemoSettings, default=None

    Returns
    -------
    dict with the Table 1 rows, the predictions for the held-out clips and timings.

    Examples
    --------
    Not run: it extracts ResMem features and trains the networks (minutes).

    >>> from amnetvid_sk.demo import DemoSettings, run_demo
    >>> run_demo("demo_out", DemoSettings(n_images=2, stored_frames=4))  # doctest: +SKIP
    """
    from .evaluate import TABLE1_RECIPES, beyond_note, labelled_data, load_recipe, network_step, role_params, table1
    from .extraction import extract
    from .labels import import_labels
    from .model_files import save_model
    from .predict import predict_videos
    from .report import write_report

    s = settings or DemoSettings()
    out = Path(out)
    store = out / "store"
    timings = {}

    def step(title):
        print(f"\n== {title}", flush=True)
        return time.perf_counter()

    t = step("1/6 demo clips from scikit-image photographs")
    train, held_out = make_demo_clips(out / "demo_clips", s)
    print(f"{len(train)} training clips, {len(held_out)} held-out clips in {out / 'demo_clips'}")
    timings["clips"] = time.perf_counter() - t

    t = step("2/6 features (ResMem + Grad-CAM attention maps + embeddings) into the store")
    summary = extract(train, store=store, frame_model="resmem", n_frames=s.stored_frames,
                      precision=s.precision, embeddings=True, progress=progress)
    print(summary.report())
    from .store import FeatureStore

    ids = [video_id_from_name(p) for p in train]
    fs = FeatureStore(store)
    frame_scores, frame_maps = fs.read_arrays(ids, n_frames=s.stored_frames)
    labels_csv = write_demo_labels(out / "demo_clips" / "ground-truth_dev-set.csv", ids,
                                   *demo_labels(frame_scores, frame_maps, fs.read_embeddings(ids, pooling="mean"),
                                                seed=s.seed))
    n_labels = import_labels(labels_csv, store, format="mediaeval")
    print(f"labels by the demo's rule (see README) for {n_labels} clips: {labels_csv}")
    timings["extract"] = time.perf_counter() - t

    t = step("3/6 Table 1 (honest cross-validation)")
    net = {"max_epochs": s.max_epochs, "batch_size": s.batch_size, "train_split": None,
           "module__n_frames": s.model_frames}
    params = {}
    for name, _ in TABLE1_RECIPES:
        pipe = load_recipe(name).pipeline(str(store))
        # the sequence models read model_frames; the mean baseline every stored frame
        frames = s.model_frames if network_step(pipe) else s.stored_frames
        params[name] = role_params(pipe, reader={"n_frames": frames}, network=net)
    result = table1(store, protocol="cv", cv=s.cv, set_params=params, random_state=s.seed)
    print(result.format())
    timings["table1"] = time.perf_counter() - t

    t = step(f"4/6 beyond the note ({', '.join(s.beyond_targets)}-term; same folds)")
    beyond = beyond_note(store, protocol="cv", cv=s.cv, set_params=beyond_params(str(store), s),
                         random_state=s.seed, targets=s.beyond_targets, baseline=result)
    print(beyond.format())
    timings["beyond"] = time.perf_counter() - t

    t = step("5/6 predict two clips that were not in training")
    recipe = load_recipe("amnetvid")
    ids, y = labelled_data(store, "short")
    pipe = recipe.pipeline(str(store)).set_params(**params["amnetvid"])
    pipe.fit(ids, y)
    model_path = out / "report" / "amnetvid_short.safetensors"
    model_path.parent.mkdir(parents=True, exist_ok=True)
    save_model(pipe, model_path, recipe="amnetvid", target="short", y=y)
    pred_ids, preds, _ = predict_videos(model_path, held_out, progress=progress)
    predictions = {str(i): float(p) for i, p in zip(pred_ids, preds)}
    for i, p in predictions.items():
        print(f"  {i}: predicted short-term memorability {p:.3f}")
    timings["predict"] = time.perf_counter() - t

    t = step("6/6 report")
    figures = [out / "demo_clips" / f"{TRAIN_IMAGES[0]}_pan_right.mp4", held_out[1]]
    if s.n_images > 1:
        figures.insert(1, out / "demo_clips" / f"{TRAIN_IMAGES[1]}_zoom_in.mp4")
    index = write_report(store, out / "report", tables=[result, beyond],
                         videos=[video_id_from_name(p) for p in figures], title="amnetvid-sk demo report",
                         description=REPORT_DESCRIPTION, sections=_report_sections(predictions, s))
    print(f"report: {index}")
    timings["report"] = time.perf_counter() - t
    summary_out = {"table1": result.rows(), "beyond": beyond.rows(), "predictions": predictions, "timings": timings}
    (out / "report" / "summary.json").write_text(json.dumps(summary_out, indent=2, default=float))
    return summary_out
