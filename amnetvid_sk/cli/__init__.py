"""The ``amnetvid`` command line. Each subcommand is a thin layer over the Python API.

A user error (a bad option, file, id or value) is one line on stderr, ``error: ...``,
and exit status 2; exit status 1 means that some videos failed. An unexpected
exception (a bug) keeps its traceback, so that it can be reported.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path

from .. import __version__
from ..errors import AmnetvidError, MissingDependencyError, ModelFileError
from ..precision import PRECISIONS  # no torch import: precision.py loads it lazily
from ..video_ids import ID_MODES

DEFAULT_STORE = "store"
# Environment variable that shows the traceback of a user error too (for bug reports).
TRACEBACK_ENV = "AMNETVID_TRACEBACK"
_PACKAGE_DIR = Path(__file__).resolve().parent.parent
_CLI_DIR = Path(__file__).resolve().parent

EXIT_STATUS = f"""exit status:
  0  everything succeeded
  1  some videos failed (listed in the summary and in the store's failures table)
  2  bad arguments or input: one line on stderr says which ({TRACEBACK_ENV}=1 also shows where)"""


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line and keeps help texts as written.

    Subcommand parsers are made by ``add_subparsers``, which uses the parent's class,
    so every subcommand (the demo's too) behaves the same.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"error: {_one_line(message)} (see {self.prog} --help)\n")


def _one_line(text: str) -> str:
    """A message on one line: a list that follows a colon stays a list, separated by '; '."""
    parts = [line.strip() for line in str(text).splitlines() if line.strip()]
    out = parts[0] if parts else ""
    for part in parts[1:]:
        out += (" " if out.endswith(":") else "; ") + part
    return out


# ---------------------------------------------------------------- option types
# Numbers are checked while parsing, so that a bad value is refused before any model loads;
# argparse prefixes the message with the option's name.
def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an int >= {low}; got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an int >= {low}; got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number > 0; got {text!r}")
    return value


def _n_jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, or -1 for all cores; got {text!r}")
    return value


def _device(text: str) -> str:
    # whether CUDA is really there is checked when the frame model is built (it needs torch)
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"must be 'cpu', 'cuda' or 'cuda:N'; got {text!r}")
    return text


def _store_folder(text: str) -> str:
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a feature store folder")
    return text


_SQL_TYPES = {"int": int, "float": float, "text": str}


def _sql_param(text: str):
    """``--param`` value: text as given, unless it starts with ``int:``, ``float:`` or ``text:``."""
    kind, sep, rest = text.partition(":")
    if not sep or kind not in _SQL_TYPES:
        return text  # '00042' stays the text '00042'; a colon elsewhere ('a:b') is text too
    try:
        return _SQL_TYPES[kind](rest)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {rest!r} is not {'an int' if kind == 'int' else 'a float'}") from None


# ---------------------------------------------------------------- shared options
def _add_frame_model_args(p: argparse.ArgumentParser, precision: bool = True) -> None:
    p.add_argument("--frame-model", choices=("resmem", "amnet"), default="resmem",
                   help="still-image memorability model (default: resmem)")
    p.add_argument("--weights", metavar="FILE", help="weights file (needed for --frame-model amnet)")
    p.add_argument("--allow-unsafe-weights", action="store_true",
                   help="allow a weights file that needs arbitrary unpickling (trusted files only)")
    p.add_argument("--device", type=_device, help="cpu, cuda or cuda:N (default: cuda when present)")
    p.add_argument("--batch-size", type=_positive_int, metavar="N",
                   help="frames per forward pass (default: the frame model's)")
    if precision:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help="frame model precision; auto (default): bfloat16 only where the device "
                            "computes it natively, float32 elsewhere (emulated bfloat16 is many times slower)")
        g.add_argument("--bfloat16", dest="precision", action="store_const", const="bfloat16",
                       help="the same as --precision bfloat16 (older spelling)")


def _add_sampling_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--frames", type=_positive_int, metavar="N",
                   help="frames spread uniformly over each clip (default 28)")
    g.add_argument("--fps", type=_positive_float, metavar="RATE",
                   help="frames per second to sample instead (the note used 4)")


def _store_arg(p: argparse.ArgumentParser, default=DEFAULT_STORE, help=None) -> None:
    p.add_argument("--store", type=_store_folder, default=default, metavar="DIR",
                   help=help or f"feature store folder (default: {DEFAULT_STORE}/)")


def _add_dask_args(p: argparse.ArgumentParser, backends, help: str) -> None:
    p.add_argument("--backend", choices=backends, default="local", help=help)
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="Dask scheduler address for --backend dask, e.g. tcp://HOST:8786")


def _check_dask(args) -> None:
    """--backend dask needs a scheduler and the dask extra; --scheduler needs --backend dask."""
    if getattr(args, "backend", None) is None:
        return
    if args.backend == "dask":
        if not args.scheduler:
            args.parser.error("--backend dask needs --scheduler ADDRESS (e.g. tcp://HOST:8786)")
        try:
            import distributed  # noqa: F401
        except ImportError as exc:
            raise MissingDependencyError(
                f'--backend dask needs Dask distributed ({exc}): pip install "amnetvid-sk[dask]"') from exc
    elif args.scheduler:
        args.parser.error(f"--scheduler is only used with --backend dask (got --backend {args.backend})")


def _print_table(table, fmt: str = "table", out=None) -> None:
    """Print a pyarrow Table as an aligned text table, CSV or JSON lines."""
    out = out or sys.stdout
    rows = table.to_pylist()
    cols = table.column_names
    if fmt == "json":
        for row in rows:
            out.write(json.dumps(row, default=str) + "\n")
        return
    if fmt == "csv":
        import csv

        w = csv.writer(out)
        w.writerow(cols)
        for row in rows:
            w.writerow([row[c] for c in cols])
        return

    def cell(v):
        if isinstance(v, float):
            return f"{v:.4f}"
        if isinstance(v, list) and len(v) > 6:
            return "[" + ", ".join(f"{x:.3g}" if isinstance(x, float) else str(x) for x in v[:3]) + f", ... ({len(v)})]"
        return "" if v is None else str(v)

    cells = [[cell(r[c]) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    out.write("  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for r in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() + "\n")
    out.write(f"({len(rows)} rows)\n")


# ---------------------------------------------------------------- score
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
            print(f"error: {_one_line(exc)}", file=sys.stderr)
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


# ---------------------------------------------------------------- extract
def cmd_extract(args) -> int:
    from ..extract import extract

    summary = extract(
        args.paths, store=args.store, frame_model=args.frame_model, weights=args.weights,
        n_frames=args.frames, fps=args.fps, batch_size=args.batch_size, workers=args.workers,
        device=args.device, precision=args.precision, allow_unsafe_weights=args.allow_unsafe_weights,
        backend=args.backend, scheduler=args.scheduler, n_jobs=args.n_jobs,
        flush_every=args.flush_every, progress=not args.no_progress, ids=args.ids, replace=args.replace,
    )
    print(summary.report())
    return 0 if summary.ok else 1


# ---------------------------------------------------------------- labels
def cmd_labels_import(args) -> int:
    from ..labels import import_labels

    n = import_labels(args.file, args.store, format=args.format)
    print(f"imported {n} labels from {args.file} into {args.store}")
    return 0


# ---------------------------------------------------------------- sql / info
def cmd_sql(args) -> int:
    from ..store import FeatureStore

    table = FeatureStore(args.store).sql(args.query, args.param)
    _print_table(table, args.format)
    return 0


def _open_checked(fs) -> None:
    """Open the store's views through ``sql``, whose errors name a damaged part file
    (``info`` and ``compact`` open them without that check)."""
    fs.sql("SELECT 1")


def cmd_info(args) -> int:
    from ..store import FeatureStore

    fs = FeatureStore(args.store)
    _open_checked(fs)
    info = fs.info()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"store: {Path(args.store).resolve()}")
    size = info.get("size_bytes", 0)
    print(f"size on disk: {size / 1e6:.2f} MB")
    print("tables:")
    for name, count in info.get("tables", {}).items():
        print(f"  {name:<10} {count} rows")
    models = info.get("models", [])
    print(f"frame models: {len(models)}")
    for m in models:
        if isinstance(m, dict):
            print(f"  {m.get('name', '')}: {m.get('model', m.get('fingerprint', ''))}")
        else:
            print(f"  {m}")
    return 0


def cmd_compact(args) -> int:
    from ..store import FeatureStore

    fs = FeatureStore(args.store)
    _open_checked(fs)
    done = fs.compact(drop_orphans=args.drop_orphans)
    for table, (before, after) in done.items():
        print(f"  {table:<10} {before} part files -> {after}")
    return 0


# ---------------------------------------------------------------- parser
SQL_PARAMS = """parameters:
  Each --param binds the next ? of QUERY. Values are text as given: --param 00042 binds
  the text '00042'. Prefix a type to bind a number: --param int:42, --param float:0.5
  (and --param text:int:7 for the text 'int:7')."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="amnetvid",
        description="Predict how memorable videos are (AMNetVid): frame models, feature store, "
                    "sklearn pipelines.",
        epilog=EXIT_STATUS,
    )
    parser.add_argument("--version", action="version", version=f"amnetvid-sk {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("score", help="score videos with a frame model (no store)",
                       description="Print one row per video: id, frames, mean frame memorability. "
                                   "The frame model and its precision are named on stderr first.",
                       epilog=EXIT_STATUS)
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    _add_frame_model_args(p)
    _add_sampling_args(p)
    p.add_argument("--maps-out", metavar="DIR", help="write a frame + 3 attention maps PNG per sampled frame")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("extract", help="extract features of videos into the store",
                       description="Extract frame scores and attention maps into the feature store. "
                                   "PATH may be a file, a folder, a glob or a .txt file listing paths. "
                                   "Videos already extracted (same path, size, mtime, model and sampling) "
                                   "are skipped; failures are recorded and the run continues.",
                       epilog=EXIT_STATUS)
    p.add_argument("paths", nargs="+", metavar="PATH", help="video file, folder, glob or .txt list")
    _store_arg(p)
    _add_frame_model_args(p)
    _add_sampling_args(p)
    p.add_argument("--ids", choices=ID_MODES, default="stem",
                   help="how files are named in the store: stem (default), the file name without "
                        "extension; relpath, the path relative to the folder given (a/clip for "
                        "videos/a/clip.mp4 given as videos/), for same-named files in several folders")
    p.add_argument("--replace", action="store_true",
                   help="let a file whose id the store already holds from another path replace it")
    p.add_argument("--workers", type=_positive_int, default=2, metavar="N", help="decoding threads (default 2)")
    _add_dask_args(p, ("local", "joblib", "dask"),
                   "local (default): this process; joblib: parallel chunks; dask: a Dask cluster")
    p.add_argument("--n-jobs", type=_n_jobs, default=2, metavar="N",
                   help="parallel chunks for --backend joblib (default 2; -1: all cores)")
    p.add_argument("--flush-every", type=_positive_int, default=16, metavar="N",
                   help="videos per written part file (default 16)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("labels", help="label files",
                       description="Memorability labels: import a label file into the store.")
    lsub = p.add_subparsers(dest="labels_command", metavar="ACTION")
    lsub.required = True
    q = lsub.add_parser("import", help="import a label file into the store",
                        description="Validate a label file and import it; a file with bad rows is "
                                    "rejected with the line numbers and nothing is written.",
                        epilog=EXIT_STATUS)
    q.add_argument("file", metavar="FILE", help="label file (CSV; JSON for memento10k)")
    _store_arg(q)
    q.add_argument("--format", choices=("mediaeval", "memento10k", "csv"), default="mediaeval",
                   help="mediaeval (default): ground-truth_dev-set.csv; memento10k; "
                        "csv: video_id,short_term[,long_term]")
    q.set_defaults(func=cmd_labels_import)

    p = sub.add_parser("sql", help="run a read-only SQL query on the store",
                       description="Run one read-only query. Tables: videos, frames, models, labels, "
                                   "failures, results.",
                       epilog=SQL_PARAMS + "\n\n" + EXIT_STATUS)
    p.add_argument("query", metavar="QUERY", help="one SELECT (or WITH, DESCRIBE, ...) statement")
    _store_arg(p)
    p.add_argument("--format", choices=("table", "csv", "json"), default="table",
                   help="output: aligned table (default), CSV or JSON lines")
    p.add_argument("--param", action="append", type=_sql_param, metavar="VALUE",
                   help="value bound to the next ? (repeatable); text unless prefixed int: or float:")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("info", help="tables, row counts, frame models and size of the store",
                       description="Summarise the store: rows per table, frame models, size on disk.")
    _store_arg(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("compact", help="rewrite each table of the store into one part file",
                       description="Reading many small part files is slower; extraction writes one per "
                                   "--flush-every videos. Run when no other process reads the store.")
    _store_arg(p)
    p.add_argument("--drop-orphans", action="store_true",
                   help="also remove frames of interrupted writes (only when no extraction runs)")
    p.set_defaults(func=cmd_compact)

    _add_model_commands(sub)
    for action in sub.choices.values():
        # each command's own parser, for errors found after parsing (see _check_dask)
        action.set_defaults(parser=action)
    return parser


def _add_model_commands(sub) -> None:
    """Subcommands of the estimators layer and the demo."""
    def target_arg(p):
        p.add_argument("--target", choices=("short", "long"), required=True, help="memorability target")

    def cv_args(p, seed=True):
        p.add_argument("--cv", type=_int_at_least(2), default=5, metavar="K",
                       help="cross-validation folds (default 5)")
        p.add_argument("--n-jobs", type=_n_jobs, default=1, metavar="N",
                       help="fits run in parallel (default 1; -1: all cores)")
        if seed:
            p.add_argument("--seed", type=_int_at_least(0), default=0,
                           help="random seed of the fold split (default 0)")

    recipe_help = "a recipe name (mean_score, score_lstm, amnetvid, amnetvid_raw) or a path to a recipe .py file"

    p = sub.add_parser("evaluate", help="cross-validate a recipe, Spearman per fold",
                       description="Honest K-fold cross-validation of RECIPE; fold scores also go to the "
                                   "store's results table. Says how many labelled videos were used and "
                                   "how many were left out because they have no features.",
                       epilog=EXIT_STATUS)
    p.add_argument("recipe", metavar="RECIPE", help=recipe_help)
    _store_arg(p)
    target_arg(p)
    cv_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("table1", help="the working note's Table 1: three models, both targets",
                       description="Run the mean frame score, the LSTM on scores and the AMNetVid ConvLSTM "
                                   "on both targets and print them in the layout of the note's Table 1.",
                       epilog=EXIT_STATUS)
    _store_arg(p)
    p.add_argument("--protocol", choices=("cv", "paper"), default="cv",
                   help="cv: honest K-fold (default); paper: the note's optimistic protocol")
    cv_args(p)
    p.add_argument("--max-epochs", type=_positive_int, metavar="N", help="override the networks' epochs (quick runs)")
    p.set_defaults(func=cmd_table1)

    p = sub.add_parser("grid", help="grid search over a recipe's param_grid",
                       description="GridSearchCV over RECIPE's param_grid, scored by Spearman; prints the "
                                   "ranked parameter sets.",
                       epilog=EXIT_STATUS)
    p.add_argument("recipe", metavar="RECIPE", help=recipe_help)
    _store_arg(p)
    target_arg(p)
    cv_args(p, seed=False)
    _add_dask_args(p, ("local", "dask"), "local (default): joblib on this machine; dask: a Dask cluster")
    p.set_defaults(func=cmd_grid)

    p = sub.add_parser("fit", help="fit a recipe on all labelled videos and save it",
                       description="Fit RECIPE on every labelled video that has features and save the "
                                   "fitted pipeline for `amnetvid predict`.",
                       epilog=EXIT_STATUS)
    p.add_argument("recipe", metavar="RECIPE", help=recipe_help)
    _store_arg(p)
    target_arg(p)
    p.add_argument("--out", required=True, metavar="FILE", help="output file (joblib)")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("predict", help="predict memorability of video files with a saved pipeline",
                       description="Extracts the features that are missing (same frame model, precision and "
                                   "sampling as in training), then prints one row per video.",
                       epilog=EXIT_STATUS)
    p.add_argument("model", metavar="MODEL.joblib", help="a pipeline saved by `amnetvid fit`")
    p.add_argument("paths", nargs="+", metavar="PATH", help="video file, folder, glob or .txt list")
    _store_arg(p, default=None, help="feature store (default: the one the pipeline was trained on)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_predict)

    from ..demo import add_demo_command

    add_demo_command(sub)


def _max_epochs_params(max_epochs):
    if max_epochs is None:
        return None
    return {"score_lstm": {"lstm__max_epochs": max_epochs}, "amnetvid": {"net__max_epochs": max_epochs}}


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


def cmd_table1(args) -> int:
    from ..evaluate import table1

    t = table1(args.store, protocol=args.protocol, cv=args.cv, n_jobs=args.n_jobs, random_state=args.seed,
               set_params=_max_epochs_params(args.max_epochs))
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
        raise ModelFileError(f"cannot read model file {path!r} ({type(exc).__name__}: {_one_line(exc)}); "
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


# ---------------------------------------------------------------- errors and main
def _is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a user error (one line, exit 2) rather than a bug (a traceback).

    User errors: this package's own error types; a file the system refused (an OSError naming
    it: missing, unreadable, a full disk); and a ValueError or TypeError raised inside this
    package by a parameter check. The same types raised deep inside a dependency, or by this
    module (whose own checks raise the package's types), are bugs.
    """
    if isinstance(exc, AmnetvidError):
        return True
    if isinstance(exc, OSError) and exc.filename is not None:
        return True
    if not isinstance(exc, (ValueError, TypeError, FileNotFoundError)) or exc.__traceback__ is None:
        return False
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    where = Path(tb.tb_frame.f_code.co_filename).resolve()
    return _PACKAGE_DIR in where.parents and _CLI_DIR not in where.parents


def _error_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None and not isinstance(exc, AmnetvidError):
        names = " -> ".join(repr(str(f)) for f in (exc.filename, exc.filename2) if f is not None)
        return f"error: {exc.strerror or exc}: {names}"
    return f"error: {_one_line(exc)}"


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _check_dask(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted: what was complete is kept; run the same command again to continue",
              file=sys.stderr)
        return 130
    except Exception as exc:
        if not _is_user_error(exc) or os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        print(_error_line(exc), file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
