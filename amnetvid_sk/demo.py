"""``amnetvid demo``: the whole method once, on clips made from real photographs.

Where things are: :mod:`~amnetvid_sk.demo_clips` (pans and zooms over scikit-image's sample
photographs), :mod:`~amnetvid_sk.demo_labels` (the synthetic label rule, stated there and in the
README); this module holds the run's settings and its six steps: clips, features and labels,
Table 1, the block beyond the note, predictions for two held-out clips, the report.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from .demo_clips import (  # noqa: F401  (the clips' names and frames: re-exported here)
    HELD_OUT_IMAGES, MOTIONS, TRAIN_IMAGES, motion_frames, photo_frames, write_demo_clips,
)
from .demo_labels import (  # noqa: F401  (the label rule: re-exported here)
    REPORT_DESCRIPTION, attention_drift, content_axis, demo_labels, write_demo_labels,
)
from .sampling_keys import DEFAULT_N_FRAMES
from .video_ids import video_id_from_name


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
    # auto: bfloat16 where the hardware computes it natively (faster there, the same ranking of
    # frame scores), float32 elsewhere (a CPU without it emulates bfloat16, many times slower)
    precision: str = "auto"
    seed: int = 0
    # the second block ("beyond the note") on the short-term target only: its stacked ensemble
    # trains each member network cv + 1 times per fold, which both targets would not fit in 10 minutes
    beyond_targets: tuple = ("short",)
    # folds inside the stacked ensemble's fit (its members' out-of-fold predictions)
    stack_cv: int = 2


def make_demo_clips(folder, settings: DemoSettings | None = None):
    """Write the demo clips into ``folder``; returns ``(train_paths, held_out_paths)`` (see
    :func:`~amnetvid_sk.demo_clips.write_demo_clips`: clips already there are kept)."""
    s = settings or DemoSettings()
    return write_demo_clips(folder, s.n_images, s.clip_frames, s.clip_fps, s.height, s.width)


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


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def _extract_and_label(train, store: Path, labels_csv: Path, s: DemoSettings, progress: bool) -> None:
    """Extract the training clips' features into ``store``, then label them by the demo's rule."""
    from .extraction import extract
    from .labels import import_labels
    from .store import FeatureStore

    summary = extract(train, store=store, frame_model="resmem", n_frames=s.stored_frames,
                      precision=s.precision, embeddings=True, progress=progress)
    print(summary.report())
    ids = [video_id_from_name(p) for p in train]
    fs = FeatureStore(store)
    frame_scores, frame_maps = fs.read_arrays(ids, n_frames=s.stored_frames)
    labels = demo_labels(frame_scores, frame_maps, fs.read_embeddings(ids, pooling="mean"), seed=s.seed)
    write_demo_labels(labels_csv, ids, *labels)
    n_labels = import_labels(labels_csv, store, format="mediaeval")
    print(f"labels by the demo's rule (see README) for {n_labels} clips: {labels_csv}")


def _table1_params(store: str, s: DemoSettings) -> dict:
    """The demo's ``set_params`` for Table 1's recipes: the sequence models read ``model_frames``
    frames, the mean baseline every stored frame; the networks train ``max_epochs`` epochs."""
    from .evaluate import TABLE1_RECIPES, load_recipe, network_step, role_params

    net = {"max_epochs": s.max_epochs, "batch_size": s.batch_size, "train_split": None,
           "module__n_frames": s.model_frames}
    params = {}
    for name, _ in TABLE1_RECIPES:
        pipe = load_recipe(name).pipeline(store)
        frames = s.model_frames if network_step(pipe) else s.stored_frames
        params[name] = role_params(pipe, reader={"n_frames": frames}, network=net)
    return params


def _predict_held_out(store: Path, model_path: Path, params: dict, held_out, progress: bool) -> dict:
    """Fit AMNetVid on every labelled clip (short-term), save it to ``model_path``, and predict the
    held-out clips from that file: ``{video id: prediction}``."""
    from .evaluate import labelled_data, load_recipe
    from .model_files import save_model
    from .predict import predict_videos

    ids, y = labelled_data(store, "short")
    pipe = load_recipe("amnetvid").pipeline(str(store)).set_params(**params)
    pipe.fit(ids, y)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    save_model(pipe, model_path, recipe="amnetvid", target="short", y=y)
    pred_ids, preds, _ = predict_videos(model_path, held_out, progress=progress)
    return {str(i): float(p) for i, p in zip(pred_ids, preds)}


def _write_demo_report(out: Path, store: Path, tables, held_out, predictions: dict, s: DemoSettings) -> Path:
    """The report of the demo's store, with Figure 1 of two training clips (one when a single
    photograph was used) and a held-out one; returns its ``index.html``."""
    from .report import write_report

    figures = [out / "demo_clips" / f"{TRAIN_IMAGES[0]}_pan_right.mp4", held_out[1]]
    if s.n_images > 1:
        figures.insert(1, out / "demo_clips" / f"{TRAIN_IMAGES[1]}_zoom_in.mp4")
    return write_report(store, out / "report", tables=tables, videos=[video_id_from_name(p) for p in figures],
                        title="amnetvid-sk demo report", description=REPORT_DESCRIPTION,
                        sections=_report_sections(predictions, s))


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
    from .evaluate import beyond_note, table1

    s = settings or DemoSettings()
    out = Path(out)
    store = out / "store"
    timings = {}

    t = _step("1/6 demo clips from scikit-image photographs")
    train, held_out = make_demo_clips(out / "demo_clips", s)
    print(f"{len(train)} training clips, {len(held_out)} held-out clips in {out / 'demo_clips'}")
    timings["clips"] = time.perf_counter() - t

    t = _step("2/6 features (ResMem + Grad-CAM attention maps + embeddings) into the store")
    _extract_and_label(train, store, out / "demo_clips" / "ground-truth_dev-set.csv", s, progress)
    timings["extract"] = time.perf_counter() - t

    t = _step("3/6 Table 1 (honest cross-validation)")
    params = _table1_params(str(store), s)
    result = table1(store, protocol="cv", cv=s.cv, set_params=params, random_state=s.seed)
    print(result.format())
    timings["table1"] = time.perf_counter() - t

    t = _step(f"4/6 beyond the note ({', '.join(s.beyond_targets)}-term; same folds)")
    beyond = beyond_note(store, protocol="cv", cv=s.cv, set_params=beyond_params(str(store), s),
                         random_state=s.seed, targets=s.beyond_targets, baseline=result)
    print(beyond.format())
    timings["beyond"] = time.perf_counter() - t

    t = _step("5/6 predict two clips that were not in training")
    model_path = out / "report" / "amnetvid_short.safetensors"
    predictions = _predict_held_out(store, model_path, params["amnetvid"], held_out, progress)
    for i, p in predictions.items():
        print(f"  {i}: predicted short-term memorability {p:.3f}")
    timings["predict"] = time.perf_counter() - t

    t = _step("6/6 report")
    index = _write_demo_report(out, store, [result, beyond], held_out, predictions, s)
    print(f"report: {index}")
    timings["report"] = time.perf_counter() - t
    summary_out = {"table1": result.rows(), "beyond": beyond.rows(), "predictions": predictions, "timings": timings}
    (out / "report" / "summary.json").write_text(json.dumps(summary_out, indent=2, default=float))
    return summary_out
