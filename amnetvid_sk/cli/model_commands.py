"""Commands of the estimators layer: ``evaluate``, ``table1``, ``grid``, ``fit``, ``predict``, and the demo.

The evaluation module (scikit-learn) and the networks (torch) are imported when a command runs,
never when the parser is built; the names the parser lists come from
:mod:`amnetvid_sk.pipelines`, which imports neither.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from ..errors import ModelFileError
from ..pipelines import PROTOCOLS, TABLE1_RECIPES, TARGETS, shipped_recipes
from ..precision import PRECISIONS
from .parser import (EXIT_STATUS, _int_at_least, _n_jobs, _positive_int, add_dask_args, add_store_arg,
                     one_line)

GRID_BACKENDS = ("local", "dask")


def _report_videos(target: str, n_used: int, left_out, count: bool = True) -> None:
    """Say how many labelled videos were used (``count``); warn on stderr when some were left out."""
    if count:
        print(f"{target}-term: {n_used} labelled videos used, {len(left_out)} left out (no features)")
    if len(left_out):
        named = ", ".join(map(str, left_out[:5])) + (", ..." if len(left_out) > 5 else "")
        print(f"warning: {len(left_out)} of {n_used + len(left_out)} videos with a {target}-term label have no "
              f"features for this frame model and sampling and were left out: {named} "
              "(the store's failures table says why)", file=sys.stderr)


def cmd_evaluate(args) -> int:
    from ..evaluate import cross_validate

    res = cross_validate(args.recipe, args.store, args.target, cv=args.cv, n_jobs=args.n_jobs,
                         random_state=args.seed)
    _report_videos(args.target, res.n_videos, res.left_out)
    for i, s in enumerate(res.scores):
        print(f"fold {i + 1}: spearman {s:.4f}")
    print(f"{res.recipe} {args.target}-term: mean {res.mean:.4f}, std {res.std:.4f} "
          f"({len(res.scores)} folds, {res.seconds:.1f} s)")
    return 0


def _max_epochs_params(max_epochs, store) -> dict | None:
    """``table1``'s ``set_params``: ``max_epochs`` for each Table 1 recipe that trains a network."""
    if max_epochs is None:
        return None
    from ..evaluate import load_recipe, role_params

    return {name: role_params(load_recipe(name).pipeline(store), network={"max_epochs": max_epochs})
            for name, _ in TABLE1_RECIPES}


def cmd_table1(args) -> int:
    from ..evaluate import table1

    t = table1(args.store, protocol=args.protocol, cv=args.cv, n_jobs=args.n_jobs, random_state=args.seed,
               set_params=_max_epochs_params(args.max_epochs, args.store))
    print(t.format())  # it says how many videos were used
    for target, (n_used, left_out) in t.videos().items():
        _report_videos(target, n_used, left_out, count=False)
    return 0


def cmd_grid(args) -> int:
    from ..evaluate import grid_search

    search, rows = grid_search(args.recipe, args.store, args.target, cv=args.cv, n_jobs=args.n_jobs,
                               backend=args.backend if args.backend != "local" else None,
                               scheduler=args.scheduler)
    print(f"{'rank':<5} {'mean':>8} {'std':>8}  params")
    for r in rows:
        print(f"{r['rank']:<5} {r['mean_spearman']:8.4f} {r['std_spearman']:8.4f}  {r['params']}")
    print(f"best: {search.best_params_} (mean spearman {search.best_score_:.4f})")
    return 0


def cmd_fit(args) -> int:
    import joblib

    from ..evaluate import labelled_data, load_recipe

    folder = Path(args.out).resolve().parent
    if not folder.is_dir():  # checked before a fit that may take long
        args.parser.error(f"argument --out: the folder {str(folder)!r} does not exist")
    recipe = load_recipe(args.recipe)
    pipe = recipe.pipeline(args.store)
    ids, y, left_out = labelled_data(args.store, args.target, pipeline=pipe, return_left_out=True)
    _report_videos(args.target, len(ids), left_out)
    pipe.fit(ids, y)
    joblib.dump(pipe, args.out)
    print(f"fitted {recipe.recipe_name} on {len(ids)} videos ({args.target}-term); saved to {args.out}")
    return 0


def _load_pipeline(path: str):
    """The fitted pipeline saved in ``path``, or a ModelFileError saying what the file is instead."""
    if not os.path.isfile(path):
        what = "is a folder" if os.path.isdir(path) else "does not exist"
        raise ModelFileError(f"model file {path!r} {what}; give a file saved by `amnetvid fit`")
    import joblib

    try:
        pipeline = joblib.load(path)
    except Exception as exc:  # any failure to unpickle means: not a model file
        raise ModelFileError(f"cannot read model file {path!r} ({type(exc).__name__}: {one_line(exc)}); "
                             "give a file saved by `amnetvid fit`") from exc
    if not (hasattr(pipeline, "steps") and hasattr(pipeline, "predict")):
        raise ModelFileError(f"model file {path!r} holds a {type(pipeline).__name__}, not a fitted pipeline; "
                             "give a file saved by `amnetvid fit`")
    return pipeline


def cmd_predict(args) -> int:
    from ..predict import predict_videos

    pipeline = _load_pipeline(args.model)
    ids, pred, summary = predict_videos(pipeline, args.paths, store=args.store,
                                        progress=not args.no_progress)
    print("video_id\tprediction")
    for i, p in zip(ids, pred):
        print(f"{i}\t{p:.4f}")
    for path, reason in summary.failed:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    return 0 if summary.ok else 1


def cmd_demo(args) -> int:
    from ..demo import TRAIN_IMAGES, DemoSettings, run_demo

    if not 1 <= args.images <= len(TRAIN_IMAGES):
        args.parser.error(f"argument --images: must be between 1 and {len(TRAIN_IMAGES)}; got {args.images}")
    s = DemoSettings(n_images=args.images, stored_frames=args.frames, model_frames=args.model_frames,
                     cv=args.cv, max_epochs=args.epochs, precision=args.precision)
    started = time.perf_counter()
    run_demo(args.out, s, progress=not args.no_progress)
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s")
    return 0


def _target_arg(p) -> None:
    p.add_argument("--target", choices=TARGETS, required=True,
                   help=f"memorability target, one of {', '.join(TARGETS)} (required)")


def _cv_args(p, seed: bool = True) -> None:
    p.add_argument("--cv", type=_int_at_least(2), default=5, metavar="K",
                   help="cross-validation folds, >= 2 (default %(default)s)")
    p.add_argument("--n-jobs", type=_n_jobs, default=1, metavar="N",
                   help="fits run in parallel (default %(default)s; -1: all cores)")
    if seed:
        p.add_argument("--seed", type=_int_at_least(0), default=0, metavar="N",
                       help="random seed of the fold split, >= 0 (default %(default)s)")


def _recipe_arg(p) -> None:
    p.add_argument("recipe", metavar="RECIPE",
                   help=f"a recipe name (shipped: {', '.join(shipped_recipes())}; ./pipelines/NAME.py "
                        "first) or a path to a recipe .py file")


def add_model_commands(sub) -> None:
    """The parsers of ``evaluate``, ``table1``, ``grid``, ``fit``, ``predict`` and ``demo``."""
    p = sub.add_parser("evaluate", help="cross-validate a recipe, Spearman per fold",
                       description="Honest K-fold cross-validation of RECIPE; fold scores also go to the "
                                   "store's results table. Says how many labelled videos were used and "
                                   "how many were left out because they have no features.",
                       epilog=EXIT_STATUS)
    _recipe_arg(p)
    add_store_arg(p)
    _target_arg(p)
    _cv_args(p)
    p.set_defaults(func=cmd_evaluate)

    models = ", ".join(label for _, label in TABLE1_RECIPES)
    p = sub.add_parser("table1", help="the working note's Table 1: three models, both targets",
                       description=f"Run the models of the working note's Table 1 ({models}) on both "
                                   "targets and print them in its layout, with the note's numbers and "
                                   "how many labelled videos were used.",
                       epilog=EXIT_STATUS)
    add_store_arg(p)
    p.add_argument("--protocol", choices=PROTOCOLS, default="cv",
                   help="cv: honest K-fold (default); paper: the note's optimistic protocol (one 85/15 "
                        "split, best epoch chosen on the test part)")
    _cv_args(p)
    p.add_argument("--max-epochs", type=_positive_int, metavar="N",
                   help="override the networks' epochs, >= 1, for quick runs (default: each recipe's)")
    p.set_defaults(func=cmd_table1)

    p = sub.add_parser("grid", help="grid search over a recipe's param_grid",
                       description="GridSearchCV over RECIPE's param_grid, scored by Spearman; prints the "
                                   "ranked parameter sets and the best one.",
                       epilog=EXIT_STATUS)
    _recipe_arg(p)
    add_store_arg(p)
    _target_arg(p)
    _cv_args(p, seed=False)
    add_dask_args(p, GRID_BACKENDS, "local (default): joblib on this machine; dask: a Dask cluster")
    p.set_defaults(func=cmd_grid)

    p = sub.add_parser("fit", help="fit a recipe on all labelled videos and save it",
                       description="Fit RECIPE on every labelled video that has features and save the "
                                   "fitted pipeline for `amnetvid predict`.",
                       epilog=EXIT_STATUS)
    _recipe_arg(p)
    add_store_arg(p)
    _target_arg(p)
    p.add_argument("--out", required=True, metavar="FILE",
                   help="output file (joblib), in an existing folder (required)")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("predict", help="predict memorability of video files with a saved pipeline",
                       description="Extracts the features that are missing (same frame model, precision and "
                                   "sampling as in training), then prints one row per video.",
                       epilog=EXIT_STATUS)
    p.add_argument("model", metavar="MODEL.joblib", help="a pipeline saved by `amnetvid fit`")
    p.add_argument("paths", nargs="+", metavar="PATH", help="video file, folder, glob or .txt list")
    add_store_arg(p, default=None, help="feature store (default: the one the pipeline was trained on)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown)")
    p.set_defaults(func=cmd_predict)

    _add_demo_command(sub)


def _add_demo_command(sub) -> None:
    from ..demo import TRAIN_IMAGES, DemoSettings  # no torch: the demo imports it when it runs

    p = sub.add_parser(
        "demo", help="run the whole method once on clips it makes, and write report/",
        description="Makes demo clips from scikit-image's photographs, extracts ResMem features into "
                    "the store, runs the three models of the working note's Table 1 with honest "
                    "cross-validation, predicts two held-out clips and writes report/index.html. "
                    "A second run reuses the store. Ctrl-C leaves a store the next run continues from.",
        epilog=EXIT_STATUS,
    )
    d = DemoSettings()
    p.add_argument("--out", default=".", metavar="DIR",
                   help="folder for store/, demo_clips/ and report/ (default: %(default)s)")
    p.add_argument("--images", type=_positive_int, default=d.n_images, metavar="N",
                   help=f"photographs used, 1 to {len(TRAIN_IMAGES)}, 4 clips each (default %(default)s)")
    p.add_argument("--frames", type=_positive_int, default=d.stored_frames, metavar="N",
                   help="frames stored per clip, >= 1 (default %(default)s)")
    p.add_argument("--model-frames", type=_positive_int, default=d.model_frames, metavar="N",
                   help="frames the sequence models see, >= 1 (default %(default)s)")
    p.add_argument("--cv", type=_int_at_least(2), default=d.cv, metavar="K",
                   help="cross-validation folds, >= 2 (default %(default)s)")
    p.add_argument("--epochs", type=_positive_int, default=d.max_epochs, metavar="N",
                   help="epochs of the networks, >= 1 (default %(default)s)")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help=f"frame model precision, one of {', '.join(PRECISIONS)}; auto (default): bfloat16 "
                        "only where the CPU or GPU computes it natively, float32 elsewhere")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown)")
    p.set_defaults(func=cmd_demo)
