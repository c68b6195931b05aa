"""The ``score`` command: a frame model run on videos or images, the scores printed (no store)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import AmnetvidError
from .parser import EXIT_STATUS, add_frame_model_args, add_sampling_args, one_line


def cmd_score(args) -> int:
    from ..frame_models import make_frame_model
    from ..render import save_attention_figure
    from ..video import DEFAULT_N_FRAMES, sample_frames
    from ..video_ids import video_id_from_name

    model = make_frame_model(args.frame_model, weights=args.weights, device=args.device,
                             batch_size=args.batch_size, precision=args.precision,
                             allow_unsafe_weights=args.allow_unsafe_weights)
    print(model.describe(), file=sys.stderr)
    n_frames = None if args.fps else (args.frames or DEFAULT_N_FRAMES)
    failed = 0
    print("video_id\tframes\tmean_score")
    for path in args.videos:
        try:
            sampled = sample_frames(path, n_frames=n_frames, fps=args.fps)
        except AmnetvidError as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr)
            failed += 1
            continue
        scores, maps = model.predict(sampled.frames)
        vid = video_id_from_name(path)
        note = " (short clip: fewer frames than asked)" if sampled.short else ""
        print(f"{vid}\t{len(scores)}\t{float(scores.mean()):.4f}{note}")
        if args.maps_out:
            out = Path(args.maps_out)
            out.mkdir(parents=True, exist_ok=True)
            for frame, m, s, idx, ts in zip(sampled.frames, maps, scores, sampled.indices, sampled.timestamps):
                save_attention_figure(frame, m, out / f"{vid}_frame{int(idx):05d}.png",
                                      title=f"{vid} frame {int(idx)} (t={float(ts):.2f} s)", score=float(s))
    return 1 if failed else 0


def add_score_commands(sub) -> None:
    """The parser of ``score``."""
    p = sub.add_parser("score", help="score videos with a frame model (no store)",
                       description="Print one row per video: id, frames, mean frame memorability. "
                                   "The frame model and its precision are named on stderr first.",
                       epilog=EXIT_STATUS)
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    add_frame_model_args(p)
    add_sampling_args(p)
    p.add_argument("--maps-out", metavar="DIR",
                   help="write a frame + 3 attention maps PNG per sampled frame into DIR (default: none)")
    p.set_defaults(func=cmd_score)
