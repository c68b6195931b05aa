"""The note's Figure 1 for videos of a store: a stored frame beside its three attention maps.

Which videos (a spread from the least to the most memorable, unless named), what the maps are
called for the frame model at hand (its class's ``map_titles``, looked up by the name the store's
models table records, without loading any weights), and the frame itself, decoded again from the
video file the ``videos`` table names. A file that is gone or unreadable costs the frame image,
not the figure: its maps are drawn, and the panel says why the frame is missing.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import AmnetvidError, MissingVideosError
from ..render import MAP_TITLES, save_attention_figure
from ..sampling_keys import parse_sampling_key

__all__ = ["Figure1", "check_videos", "choose_videos", "draw_figure1", "map_titles"]

#: videos drawn when none are named: the least memorable, the middle and the most memorable
N_FIGURE_VIDEOS = 3


def map_titles(name: str, params: dict | None = None) -> tuple[str, ...]:
    """The titles of a frame model's three map panels, from its class's ``map_titles``.

    ``name`` is looked up among the registered frame model names (the shipped ones and the
    installed plug-ins): the class is imported, never built, so no weights load. Fields in braces
    are filled from ``params`` (the constructor parameters the store's ``models`` table records)
    over the constructor's defaults. An unknown name (a ``module:Class`` model of one's own, a
    synthetic store), a class without ``map_titles`` or titles that cannot be filled give
    :data:`~amnetvid_sk.render.MAP_TITLES`.

    Examples
    --------
    >>> map_titles("resmem")
    ('Grad-CAM of layer2', 'Grad-CAM of layer3', 'Grad-CAM of layer4')
    >>> map_titles("resmem", {"layers": ["layer1", "layer3", "layer4"]})[0]
    'Grad-CAM of layer1'
    >>> map_titles("amnet")[2], map_titles("synthetic")[0]
    ('attention step 3', 'attention map 1')
    """
    from ..frame_models import frame_model_class, frame_model_names

    if name not in frame_model_names():
        return MAP_TITLES
    try:
        cls = frame_model_class(name)
    except (AmnetvidError, ImportError):  # a plug-in that is installed but broken
        return MAP_TITLES
    templates = getattr(cls, "map_titles", None)
    if not templates or len(templates) != len(MAP_TITLES):
        return MAP_TITLES
    values = {p.name: p.default for p in inspect.signature(cls).parameters.values()
              if p.default is not inspect.Parameter.empty}
    values.update(params or {})
    try:
        return tuple(str(t).format(**values) for t in templates)
    except (KeyError, IndexError, AttributeError, TypeError, ValueError):
        return MAP_TITLES


def choose_videos(summary, n: int = N_FIGURE_VIDEOS) -> list[str]:
    """``n`` videos spread from the least to the most memorable (short-term label, else long-term,
    else mean frame score), among those whose video file still exists when any does.

    ``summary`` is a :class:`~amnetvid_sk.report.store_summary.StoreSummary`.
    """
    ids = list(summary.mean_scores)
    if not ids:
        return []
    present = [v for v in ids if os.path.exists(summary.paths.get(v, ""))]
    ids = present or ids

    def memorability(v):
        short, long = summary.labels.get(v, (np.nan, np.nan))
        return next((x for x in (short, long, summary.mean_scores[v]) if np.isfinite(x)), 0.0)

    ranked = sorted(ids, key=lambda v: (memorability(v), v))
    picks = np.unique(np.linspace(0, len(ranked) - 1, min(n, len(ranked))).round().astype(int))
    return [ranked[i] for i in picks]


@dataclass
class Figure1:
    """One drawn Figure 1: the video, its PNG's name, and what the caption says."""

    video_id: str
    png: str
    path: str
    frame_index: int
    note: str = ""  # why the frame image is missing, or that the file changed


def _video_rows(fs, ids, model, sampling) -> dict:
    rows = fs.sql("SELECT video_id, path, size, mtime, width, height FROM videos WHERE model = ? AND sampling = ? "
                  "AND list_contains(?, video_id)", [model, sampling, list(ids)]).to_pylist()
    return {r["video_id"]: r for r in rows}


def _middle_frame(fs, video_id, model, sampling):
    """(frame index, timestamp, score, maps [3, h, w]) of the middle stored frame of a video."""
    scores, maps = fs.read_arrays([video_id], model=model, n_frames=1, sampling=sampling)
    frames = fs.sql("SELECT frame_index, timestamp FROM frames WHERE video_id = ? AND model = ? AND sampling = ? "
                    "ORDER BY frame_index", [video_id, model, sampling]).to_pylist()
    middle = frames[int(np.floor((len(frames) - 1) / 2 + 0.5))]  # read_arrays' pick for n_frames=1
    return middle["frame_index"], middle["timestamp"], float(scores[0, 0]), maps[0, 0]


def _decode(row: dict, frame_index: int, sampling: str):
    """The RGB frame ``frame_index`` of the video file of ``row``, or (None, why not)."""
    from ..video import is_image_path, read_image, sample_frames

    path = row["path"]
    if not os.path.exists(path):
        return None, f"video file not found: {path}"
    try:
        if is_image_path(path):
            return read_image(path), ""
        n_frames, fps = parse_sampling_key(sampling)
        sampled = sample_frames(path, n_frames=n_frames, fps=fps)
    except (AmnetvidError, OSError, ValueError) as exc:
        return None, f"video file unreadable: {exc}"
    where = np.flatnonzero(sampled.indices == frame_index)
    if not len(where):
        return None, f"frame {frame_index} is no longer in {path} (the file changed since extraction)"
    stat = os.stat(path)
    changed = (stat.st_size, stat.st_mtime) != (row["size"], row["mtime"])
    return sampled.frames[where[0]], "the file changed since extraction" if changed else ""


def check_videos(fs, summary, videos) -> dict:
    """The ``videos`` rows (path, size, mtime, width, height) of the ids to draw, by id.

    Raises
    ------
    MissingVideosError
        Some of ``videos`` have no features of the summary's model and sampling (nothing is drawn).
    """
    model, sampling = summary.model, summary.sampling
    videos = list(dict.fromkeys(str(v) for v in videos))  # in the order given, each once
    if model is None and videos:
        raise MissingVideosError(f"videos to draw ({', '.join(videos[:5])}): the store {summary.path} holds no "
                                 "extracted video yet")
    rows = _video_rows(fs, videos, model, sampling) if videos else {}
    missing = [v for v in videos if v not in rows]
    if missing:
        named = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise MissingVideosError(f"videos to draw: the store holds no features of frame model {model} with "
                                 f"sampling {sampling} for {named} (`amnetvid sql \"SELECT video_id FROM videos\"` "
                                 "lists the ids it holds)")
    return {v: rows[v] for v in videos}


def draw_figure1(fs, summary, rows: dict, folder: Path) -> list[Figure1]:
    """Draw Figure 1 of each video of ``rows`` (:func:`check_videos`) into ``folder`` as ``figure1_<n>.png``."""
    model, sampling = summary.model, summary.sampling
    row = summary.model_row or {}
    if not rows or row.get("maps") == "none":  # nothing to draw, or scores without maps
        return []
    titles = map_titles(row.get("name", ""), (row.get("config") or {}).get("params"))
    drawn = []
    for k, vid in enumerate(rows):
        index, timestamp, score, maps = _middle_frame(fs, vid, model, sampling)
        frame, note = _decode(rows[vid], index, sampling)
        png = f"figure1_{k}.png"  # numbered: a video id may hold characters a file name cannot
        title = f"{vid}, frame {index} (t={timestamp:.2f} s)"
        save_attention_figure(frame, maps, folder / png, title=title, score=score, map_titles=titles,
                              frame_size=(rows[vid]["height"], rows[vid]["width"]),
                              note=note if frame is None else None)
        drawn.append(Figure1(vid, png, rows[vid]["path"], int(index), note))
    return drawn
