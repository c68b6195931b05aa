"""The ``score`` command: a frame model run on videos or still images, the scores printed (no store)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import AmnetvidError
from .output import ROW_FORMATS, RowWriter, check_out_file
from .parser import (EXIT_STATUS, add_frame_model_args, add_maps_arg, add_output_args, add_sampling_args,
                     check_paths_exist, one_line)

#: columns of one row per video or image, and of one row per scored frame (``--per-frame``)
SUMMARY_COLUMNS = ("video_id", "frames", "mean_score")
PER_FRAME_COLUMNS = ("video_id", "frame_index", "timestamp", "score")

def _frames_of(path: str, n_frames, fps):
    """(id, frames [n,H,W,3], frame indices, timestamps in seconds or None, note for stderr) of a video or image."""
    from ..video import is_image_path, read_image, sample_frames
    from ..video_ids import video_id_from_name

    if is_image_path(path):
        # a still image is one frame, with no time; its id is its name without the suffix
        return Path(path).stem, read_image(path)[None], [0], [None], ""
    sampled = sample_frames(path, n_frames=n_frames, fps=fps)
    note = (f"short clip: {len(sampled.indices)} frames, fewer than the {sampled.n_requested} asked"
            if sampled.short else "")
    return (video_id_from_name(path), sampled.frames, [int(i) for i in sampled.indices],
            [float(t) for t in sampled.timestamps], note)


def panel_titles(model) -> tuple[str, ...]:
    """What each of ``model``'s three maps is, for the panels of its figures: its class's
    ``map_titles`` filled from the instance (ResMem: the Grad-CAM layers it was built with), else
    :data:`~amnetvid_sk.render.MAP_TITLES`."""
    from ..render import MAP_TITLES

    templates = getattr(type(model), "map_titles", None)
    try:
        titles = tuple(str(t).format(**vars(model)) for t in templates or ())
    except (KeyError, IndexError, AttributeError, TypeError, ValueError):
        return MAP_TITLES
    return titles if len(titles) == len(MAP_TITLES) else MAP_TITLES


def _save_figures(out: Path, vid: str, frames, maps, scores, indices, timestamps, titles) -> None:
    from ..render import save_attention_figure

    out.mkdir(parents=True, exist_ok=True)
    for frame, m, s, idx, ts in zip(frames, maps, scores, indices, timestamps):
        title = f"{vid} (image)" if ts is None else f"{vid} frame {idx} (t={ts:.2f} s)"
        save_attention_figure(frame, m, out / f"{vid}_frame{idx:05d}.png", title=title, score=float(s),
                              map_titles=titles)


def cmd_score(args) -> int:
    if args.maps == "none" and args.maps_out:
        args.parser.error("argument --maps-out: the figures show attention maps, which --maps none does not "
                          "compute; leave out --maps-out or use --maps attention")
    check_out_file(args.parser, args.out)
    check_paths_exist(args.parser, args.videos, "VIDEO")
    from ..frame_models import make_frame_model
    from ..video import DEFAULT_N_FRAMES

    # the default asks for nothing new, so a frame model of one's own without a 'maps' parameter still runs
    maps = {} if args.maps == "attention" else {"maps": args.maps}
    model = make_frame_model(args.frame_model, weights=args.weights, device=args.device,
                             batch_size=args.batch_size, precision=args.precision,
                             allow_unsafe_weights=args.allow_unsafe_weights, **maps)
    print(model.describe(), file=sys.stderr)
    n_frames = None if args.fps else (args.frames or DEFAULT_N_FRAMES)
    failed = 0
    columns = PER_FRAME_COLUMNS if args.per_frame else SUMMARY_COLUMNS
    with RowWriter(columns, args.format, args.out) as rows:
        for path in args.videos:
            try:
                vid, frames, indices, timestamps, note = _frames_of(path, n_frames, args.fps)
            except AmnetvidError as exc:
                print(f"error: {one_line(exc)}", file=sys.stderr)
                failed += 1
                continue
            scores, frame_maps = model.predict(frames)
            if args.per_frame:  # the note once per file, with its first frame
                for k, (idx, ts, s) in enumerate(zip(indices, timestamps, scores)):
                    rows.write({"video_id": vid, "frame_index": idx, "timestamp": ts, "score": float(s)},
                               note="" if k else note)
            else:
                rows.write({"video_id": vid, "frames": len(scores), "mean_score": float(scores.mean())}, note=note)
            if args.maps_out:
                _save_figures(Path(args.maps_out), vid, frames, frame_maps, scores, indices, timestamps,
                              panel_titles(model))
    return 1 if failed else 0


def add_score_commands(sub) -> None:
    """The parser of ``score``."""
    p = sub.add_parser("score", help="score videos or images with a frame model (no store)",
                       description="Print one row per video or still image: id, frames, mean frame "
                                   "memorability; with --per-frame one row per scored frame: id, frame "
                                   "index, timestamp (seconds from the first frame) and score. A still image "
                                   "(a file ending in .jpg, .png, ...) is one frame: index 0, no timestamp; "
                                   "its id is its file name without the suffix. The frame model and its "
                                   "precision are named on stderr first; a clip with fewer frames than asked "
                                   "is noted there too (`note: ID: short clip: ...`), never in the rows.",
                       epilog=EXIT_STATUS)
    p.add_argument("videos", nargs="+", metavar="VIDEO",
                   help="video files and still images (.jpg, .png, ...), in any mix")
    add_frame_model_args(p)
    add_sampling_args(p)
    add_maps_arg(p)
    add_output_args(p, ROW_FORMATS, "rows")
    p.add_argument("--per-frame", action="store_true",
                   help="one row per scored frame (video_id, frame_index, timestamp, score) instead of one "
                        "per file (default: video_id, frames, mean_score)")
    p.add_argument("--maps-out", metavar="DIR",
                   help="write a frame + 3 attention maps PNG per sampled frame into DIR (default: none; "
                        "not with --maps none)")
    p.set_defaults(func=cmd_score)
