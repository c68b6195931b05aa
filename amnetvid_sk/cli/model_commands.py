"""Commands of the estimators layer: ``evaluate``, ``table1``, ``grid``, ``fit``, ``predict``, and the demo.

The evaluation module (scikit-learn) and the networks (torch) are imported when a command runs,
never when the parser is built; the names the parser lists come from
:mod:`amnetvid_sk.pipelines`, which imports neither.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from ..pipelines import PROTOCOLS, TABLE1_RECIPES, TARGETS, shipped_recipes
from ..precision import PRECISIONS
from ..short_videos import SHORT_VIDEOS
from .output import ROW_FORMATS, RowWriter, check_out_file
from .parser import (EXIT_STATUS, _int_at_least, _n_jobs, _positive_int, add_dask_args, add_output_args,
                     add_store_arg, check_paths_exist)
from .reader_options import add_reader_args, features_line, reader_params

GRID_BACKENDS = ("local", "dask")
# a positional with one of these next to --short-model/--long-model is a model given twice
MODEL_SUFFIXES = (".safetensors", ".joblib", ".pkl", ".pickle")
PREDICT_EXAMPLES = """examples:
  amnetvid predict model.safetensors new_videos/
  amnetvid predict short.safetensors new_videos/ --format mediaeval --out run.csv  # fitted --target short
  amnetvid predict --short-model short.safetensors --long-model long.safetensors new_videos/ \\
      --format mediaeval --out run.csv
  amnetvid labels import run.csv --format mediaeval --store other_store/"""
#: a fold's Spearman where it has none
UNDEFINED = "undefined (constant predictions or labels, or one video in the fold)"
#: ``predict --format``: the row formats, and a MediaEval run file (``labels import --format mediaeval``
#: reads it back)
PREDICT_FORMATS = (*ROW_FORMATS, "mediaeval")


def _report_videos(target: str, n_used: int, left_out, store, count: bool = True, features=None) -> None:
    """Say how many labelled videos were used (``count``); warn on stderr when some were left out,
    naming the first few with the store's reason (``features``: the pipeline's ``model`` and ``sampling``)."""
    from ..left_out import left_out_reasons

    if count:
        print(f"{target}-term: {n_used} labelled videos used, {len(left_out)} left out (no features)")
    if len(left_out):
        by_reason: dict[str, list] = {}
        for vid, why in left_out_reasons(store, left_out[:5], **(features or {})).items():
            by_reason.setdefault(why, []).append(vid)
        named = "; ".join(f"{', '.join(ids)} ({why})" for why, ids in by_reason.items())
        print(f"warning: {len(left_out)} of {n_used + len(left_out)} videos with a {target}-term label have no "
              f"features for this frame model and sampling and were left out: {named}"
              + (f"; {len(left_out) - 5} more" if len(left_out) > 5 else ""), file=sys.stderr)


def cmd_evaluate(args) -> int:
    from ..evaluate import cross_validate

    params, pipe = _recipe_params(args.recipe, args)
    _say(features_line(args.store, pipe))
    res = cross_validate(args.recipe, args.store, args.target, cv=args.cv, n_jobs=args.n_jobs,
                         random_state=args.seed, set_params=params)
    _report_videos(args.target, res.n_videos, res.left_out, args.store)
    for i, s in enumerate(res.scores):
        print(f"fold {i + 1}: spearman " + (f"{s:.4f}" if math.isfinite(s) else UNDEFINED))
    n, defined = len(res.scores), sum(math.isfinite(s) for s in res.scores)
    if defined == 0:
        summary = f"undefined in all {n} folds ({res.seconds:.1f} s)"
    else:
        over = f"{n} folds" if defined == n else f"over {defined} of {n} folds; {n - defined} undefined"
        interval = res.interval
        summary = f"mean {interval.text()}, std {res.std:.4f} ({over}, {res.seconds:.1f} s)"
        if math.isfinite(interval.low):  # an undefined interval says so in the line above
            summary += (f"\n[{interval.confidence:.0%} interval of the mean: bootstrap over {interval.n_videos} "
                        f"videos, {interval.method}, {interval.n_resamples} resamples, seed 0]")
    print(f"{res.recipe} {args.target}-term: {summary}")
    return 0


def _recipe_params(recipe, args):
    """A recipe's ``set_params`` from the options (``--max-epochs`` for each network it trains,
    ``--n-frames``/``--sampling``/``--short-videos`` for its store steps; None without any), and
    its pipeline with them set (for the line that says which features it reads)."""
    from ..evaluate import load_recipe, role_params

    pipe = load_recipe(recipe).pipeline(args.store)
    params = reader_params(pipe, args)
    if getattr(args, "max_epochs", None) is not None:
        params.update(role_params(pipe, network={"max_epochs": args.max_epochs}))
    pipe.set_params(**params)
    return params or None, pipe


def _say(line: str) -> None:
    if line:
        print(line)


def cmd_table1(args) -> int:
    from ..evaluate import table1

    setup = {name: _recipe_params(name, args) for name, _ in TABLE1_RECIPES}
    _say(features_line(args.store, setup[TABLE1_RECIPES[0][0]][1]))
    t = table1(args.store, protocol=args.protocol, cv=args.cv, n_jobs=args.n_jobs, random_state=args.seed,
               set_params={name: params for name, (params, _) in setup.items()})
    print(t.format())  # it says how many videos were used
    for target, (n_used, left_out) in t.videos().items():
        _report_videos(target, n_used, left_out, args.store, count=False)
    return 0


def cmd_grid(args) -> int:
    from ..evaluate import grid_search

    search, rows = grid_search(args.recipe, args.store, args.target, cv=args.cv, n_jobs=args.n_jobs,
                               backend=args.backend if args.backend != "local" else None,
                               scheduler=args.scheduler, set_params=_recipe_params(args.recipe, args)[0])
    print(f"{'rank':<5} {'mean':>8} {'std':>8}  params")
    for r in rows:
        print(f"{r['rank']:<5} {r['mean_spearman']:8.4f} {r['std_spearman']:8.4f}  {r['params']}")
    print(f"best: {search.best_params_} (mean spearman {search.best_score_:.4f})")
    return 0


def _save_pipeline(pipeline, path, recipe, target, y) -> None:
    """The one place a fitted pipeline is saved: as data, no pickle (read back by ``predict.load_pipeline``),
    with its target and the count and range of its training labels."""
    from ..model_files import save_model

    save_model(pipeline, path, recipe=recipe, target=target, y=y)


def cmd_fit(args) -> int:
    from .._validation import as_parameter_error
    from ..evaluate import reader_step, training_set

    folder = Path(args.out).resolve().parent
    if not folder.is_dir():  # checked before a fit that may take long
        args.parser.error(f"argument --out: the folder {str(folder)!r} does not exist")
    _, pipe = _recipe_params(args.recipe, args)
    _say(features_line(args.store, pipe))
    data = training_set(args.store, args.target, pipe)
    ids, y, left_out = data.ids, data.y, data.left_out
    reader = reader_step(pipe)[1].get_params(deep=False)
    _report_videos(args.target, len(ids), left_out, args.store,
                   features={"model": reader.get("model"), "sampling": reader.get("sampling")})
    with as_parameter_error():  # a recipe's step refusing one of its parameters: a user error, in one line
        pipe.fit(ids, y)
    _save_pipeline(pipe, args.out, args.recipe, args.target, y)
    # a recipe's name is its file's stem (load_recipe), given as a name or as a path
    print(f"fitted {Path(args.recipe).stem} on {len(ids)} videos ({args.target}-term); saved to {args.out}")
    return 0


def _predict_models(args) -> dict:
    """Column -> model file: MODEL alone gives the column ``prediction``; --short-model and
    --long-model give ``short_term`` and ``long_term`` (a target without a model stays empty)."""
    if args.short_model or args.long_model:
        if args.model is not None:
            if Path(args.model).suffix in MODEL_SUFFIXES:
                args.parser.error(f"give MODEL or --short-model/--long-model, not both (got {args.model!r} "
                                  "and a model option)")
            args.paths.insert(0, args.model)  # with a model option, every positional is a video path
        return {"short_term": args.short_model, "long_term": args.long_model}
    if args.model is None:
        args.parser.error("the following arguments are required: MODEL PATH (or --short-model/"
                          "--long-model FILE, then PATH)")
    return {"prediction": args.model}


def _training(path) -> dict:
    """What a model file that loaded records of its training (``target``, ``n_videos``, ``label_range``),
    each None where unknown: a file written before they were recorded, or a trusted pickle."""
    from ..errors import ModelFileError
    from ..model_files import TRAINING_FIELDS, model_file_info

    try:
        return model_file_info(path)
    except ModelFileError:  # it loaded, so it is a pickle (--allow-pickle), which records none of it
        return dict.fromkeys(TRAINING_FIELDS)


def _by_target(args, models: dict, trained: dict) -> dict:
    """``--format mediaeval`` with one MODEL: its predictions under the target its file records."""
    target = trained[args.model]["target"]
    if target is None:
        args.parser.error("argument --format: mediaeval puts each model's predictions under its target; give "
                          "--short-model FILE and/or --long-model FILE instead of MODEL (this model file "
                          "does not record its target)")
    return {f"{t}_term": models["prediction"] if t == target else None for t in TARGETS}


def _warn_few_videos(trained: dict) -> None:
    """One line on stderr for each model file trained on fewer videos than ``FEW_VIDEOS``."""
    from ..metrics import FEW_VIDEOS

    for path, info in trained.items():
        if info["n_videos"] is not None and info["n_videos"] < FEW_VIDEOS:
            print(f"warning: the model {path} was trained on {info['n_videos']} videos, fewer than {FEW_VIDEOS}: "
                  "its predictions are mostly noise; fit it on more labelled videos", file=sys.stderr)


def cmd_predict(args) -> int:
    from ..predict import load_pipeline, mediaeval_run, predict_files
    from ..pipelines import role_params

    files = _predict_models(args)
    check_out_file(args.parser, args.out)
    check_paths_exist(args.parser, args.paths, "PATH")
    models = {column: None if path is None else load_pipeline(path, allow_pickle=args.allow_pickle)
              for column, path in files.items()}
    if args.short_videos is not None:  # what a fitted model's readers do with a clip too short for them
        for model in models.values():
            if model is not None:
                model.set_params(**role_params(model, reader={"short_videos": args.short_videos}))
    trained = {path: _training(path) for path in files.values() if path is not None}
    if args.format == "mediaeval" and "prediction" in models:
        models = _by_target(args, models, trained)
    _warn_few_videos(trained)
    table, failed = predict_files(models, args.paths, store=args.store, progress=not args.no_progress)
    if args.format == "mediaeval":
        table = mediaeval_run(table)  # refuses scores outside [0, 1] before anything is written
        fmt, columns = "csv", table.column_names
    else:
        fmt, columns = args.format, ["video_id", *models]
    with RowWriter(columns, fmt, args.out) as rows:
        for row in table.to_pylist():
            rows.write(row)
    for path, reason in failed:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    return 1 if failed else 0


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


def _max_epochs_arg(p) -> None:
    p.add_argument("--max-epochs", type=_positive_int, metavar="N",
                   help="override the networks' epochs, >= 1, for quick runs (default: each recipe's)")


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
    _max_epochs_arg(p)
    add_reader_args(p)
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
    _max_epochs_arg(p)
    add_reader_args(p)
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
    _max_epochs_arg(p)
    add_reader_args(p)
    p.set_defaults(func=cmd_grid)

    p = sub.add_parser("fit", help="fit a recipe on all labelled videos and save it",
                       description="Fit RECIPE on every labelled video that has features and save the "
                                   "fitted pipeline for `amnetvid predict`.",
                       epilog=EXIT_STATUS)
    _recipe_arg(p)
    add_store_arg(p)
    _target_arg(p)
    p.add_argument("--out", required=True, metavar="FILE",
                   help="output model file, in an existing folder (required): data only (the recipe, parameters, "
                        "fitted state and network weights in safetensors; the target, the number of training "
                        "videos and the range of their labels), no pickled code")
    _max_epochs_arg(p)
    add_reader_args(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("predict", help="predict memorability of video files with saved pipelines",
                       description="Extracts the features that are missing (same frame model, precision and "
                                   "sampling as in training), then prints one row per video: video_id and "
                                   "prediction with one MODEL; video_id, short_term and long_term "
                                   "with --short-model and/or --long-model (a target without a model is "
                                   "empty). --format mediaeval writes a MediaEval run file: the dev-set "
                                   "ground truth's column names without the annotation counts (video file "
                                   "name with extension, short-term_memorability, long-term_memorability), "
                                   "which `amnetvid labels import FILE --format mediaeval` reads back. Warns "
                                   "(stderr) about a model trained on too few videos for its predictions "
                                   "to mean much.",
                       epilog=PREDICT_EXAMPLES + "\n\n" + EXIT_STATUS)
    p.add_argument("model", nargs="?", metavar="MODEL",
                   help="a pipeline saved by `amnetvid fit` (left out with --short-model/--long-model)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="video file, folder, glob or .txt list")
    p.add_argument("--short-model", metavar="FILE",
                   help="a pipeline fitted with --target short, for the short_term column (default: none)")
    p.add_argument("--long-model", metavar="FILE",
                   help="a pipeline fitted with --target long, for the long_term column (default: none)")
    add_output_args(p, PREDICT_FORMATS, "rows",
                    extra="; mediaeval: a MediaEval run file (CSV; one MODEL's predictions go under the target "
                          "its file records, or give --short-model and/or --long-model)")
    add_store_arg(p, default=None, help="feature store (default: the one the pipeline was trained on)")
    p.add_argument("--short-videos", choices=SHORT_VIDEOS, default=None,
                   help="a clip with fewer stored frames than a model reads: drop (default: left out, named "
                        "in a warning), stretch, repeat-last (filled), error")
    p.add_argument("--allow-pickle", action="store_true",
                   help="also load a pickle/joblib model file (older amnetvid-sk versions, or joblib.dump); "
                        "loading a pickle can run any code in it, so only for files you trust (default: refused)")
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
