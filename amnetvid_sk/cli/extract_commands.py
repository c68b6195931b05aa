"""The ``extract`` command: a frame model run on videos, its outputs written into the store."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import AmnetvidError
from ..video_ids import ID_MODES
from .parser import (EXIT_STATUS, _n_jobs, _positive_float, _positive_int, add_dask_args, add_frame_model_args,
                     add_maps_arg, add_sampling_args, add_store_arg, check_paths_exist, one_line)

EXTRACT_BACKENDS = ("local", "joblib", "dask")


def cmd_extract(args) -> int:
    check_paths_exist(args.parser, args.paths, "PATH")
    from ..extraction import extract

    summary = extract(
        args.paths, store=args.store, frame_model=args.frame_model, weights=args.weights,
        n_frames=args.frames, fps=args.fps, batch_size=args.batch_size, workers=args.workers,
        video_time_limit=args.video_time_limit,
        device=args.device, precision=args.precision, allow_unsafe_weights=args.allow_unsafe_weights,
        backend=args.backend, scheduler=args.scheduler, n_jobs=args.n_jobs,
        flush_every=args.flush_every, progress=not args.no_progress, ids=args.ids, replace=args.replace,
        embeddings=args.embeddings, maps=args.maps,
    )
    print(summary.report())
    return 0 if summary.ok else 1


def add_extract_commands(sub) -> None:
    """The parser of ``extract``."""
    p = sub.add_parser("extract", help="extract features of videos into the store",
                       description="Extract frame scores and attention maps (and, with --embeddings, "
                                   "frame embeddings) into the feature store. "
                                   "PATH may be a file, a folder, a glob or a .txt file listing paths. "
                                   "Videos already extracted (same path, size, mtime, model and sampling) "
                                   "are skipped; failures are recorded and the run continues.",
                       epilog=EXIT_STATUS)
    p.add_argument("paths", nargs="+", metavar="PATH", help="video file, folder, glob or .txt list")
    add_store_arg(p, create=True)
    add_frame_model_args(p)
    add_sampling_args(p)
    add_maps_arg(p)
    p.add_argument("--embeddings", action="store_true",
                   help="also store one embedding per frame (ResMem 2048 values, AMNet 1024; float16) from "
                        "the same forward pass; videos extracted before without them get them added "
                        "(default: none)")
    p.add_argument("--ids", choices=ID_MODES, default="stem",
                   help="how files are named in the store: stem (default), the file name without "
                        "extension; relpath, the path relative to the folder given (a/clip for "
                        "videos/a/clip.mp4 given as videos/), for same-named files in several folders")
    p.add_argument("--replace", action="store_true",
                   help="let a file whose id the store already holds from another path replace it "
                        "(default: refused)")
    p.add_argument("--workers", type=_positive_int, default=2, metavar="N",
                   help="decoding threads, >= 1 (default %(default)s)")
    p.add_argument("--video-time-limit", type=_positive_float, metavar="SECONDS",
                   help="seconds one video's decoding may take (the frame model's work not counted); a video "
                        "past it is recorded in the failures table and the run goes on (default: no limit)")
    add_dask_args(p, EXTRACT_BACKENDS,
                  "local (default): this process; joblib: parallel chunks; dask: a Dask cluster")
    p.add_argument("--n-jobs", type=_n_jobs, default=2, metavar="N",
                   help="parallel chunks for --backend joblib (default %(default)s; -1: all cores)")
    p.add_argument("--flush-every", type=_positive_int, default=16, metavar="N",
                   help="videos per written part file, >= 1 (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown)")
    p.set_defaults(func=cmd_extract)
