"""The ``amnetvid`` command line. Each subcommand is a thin layer over the Python API."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import AmnetvidError

DEFAULT_STORE = "store"

EXIT_STATUS = """exit status:
  0  everything succeeded
  1  some videos failed (listed in the summary and in the store's failures table)
  2  bad arguments or input (the message says which)"""


def _add_frame_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frame-model", choices=("resmem", "amnet"), default="resmem",
                   help="still-image memorability model (default: resmem)")
    p.add_argument("--weights", help="weights file (needed for --frame-model amnet)")
    p.add_argument("--allow-unsafe-weights", action="store_true",
                   help="allow a weights file that needs arbitrary unpickling (trusted files only)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--batch-size", type=int, help="frames per forward pass")
    p.add_argument("--bfloat16", action="store_true", help="run the frame model under bfloat16 autocast")


def _add_sampling_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--frames", type=int, help="frames spread uniformly over each clip (default 28)")
    g.add_argument("--fps", type=float, help="frames per second to sample (the note used 4)")


def _store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", default=DEFAULT_STORE, help=f"feature store folder (default: {DEFAULT_STORE}/)")


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
    from .frame_models import make_frame_model
    from .render import save_attention_figure
    from .video import sample_frames

    model = make_frame_model(args.frame_model, weights=args.weights, device=args.device,
                             batch_size=args.batch_size, bfloat16=args.bfloat16,
                             allow_unsafe_weights=args.allow_unsafe_weights)
    n_frames = args.frames if args.frames or args.fps else 28
    failed = 0
    print("video_id\tframes\tmean_score")
    for path in args.videos:
        try:
            sampled = sample_frames(path, n_frames=n_frames if not args.fps else None, fps=args.fps)
        except AmnetvidError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        scores, maps = model.predict(sampled.frames)
        vid = Path(path).stem
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
    from .extract import extract

    summary = extract(
        args.paths, store=args.store, frame_model=args.frame_model, weights=args.weights,
        n_frames=args.frames, fps=args.fps, batch_size=args.batch_size, workers=args.workers,
        device=args.device, bfloat16=args.bfloat16, allow_unsafe_weights=args.allow_unsafe_weights,
        backend=args.backend, scheduler=args.scheduler, n_jobs=args.n_jobs,
        flush_every=args.flush_every, progress=not args.no_progress,
    )
    print(summary.report())
    return 0 if summary.ok else 1


# ---------------------------------------------------------------- labels
def cmd_labels_import(args) -> int:
    from .labels import import_labels

    n = import_labels(args.file, args.store, format=args.format)
    print(f"imported {n} labels from {args.file} into {args.store}")
    return 0


# ---------------------------------------------------------------- sql / info
def cmd_sql(args) -> int:
    from .store import FeatureStore

    params = None
    if args.param:
        params = [_parse_param(v) for v in args.param]
    table = FeatureStore(args.store).sql(args.query, params)
    _print_table(table, args.format)
    return 0


def _parse_param(text: str):
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def cmd_info(args) -> int:
    from .store import FeatureStore

    info = FeatureStore(args.store).info()
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
    from .store import FeatureStore

    done = FeatureStore(args.store).compact(drop_orphans=args.drop_orphans)
    for table, (before, after) in done.items():
        print(f"  {table:<10} {before} part files -> {after}")
    return 0


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amnetvid",
        description="Predict how memorable videos are (AMNetVid): frame models, feature store, "
                    "sklearn pipelines.",
        epilog=EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("score", help="score videos with a frame model (no store)",
                       description="Print one row per video: id, frames, mean frame memorability.",
                       epilog=EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    _add_frame_model_args(p)
    _add_sampling_args(p)
    p.add_argument("--maps-out", metavar="DIR", help="write a frame + 3 attention maps PNG per sampled frame")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("extract", help="extract features of videos into the store",
                       description="Extract frame scores and attention maps into the feature store. "
                                   "PATH may be a file, a folder, a glob or a .txt file listing paths. "
                                   "Videos already extracted (same path, size, mtime, model and sampling) "
                                   "are skipped; failures are recorded and the run continues.",
                       epilog=EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH")
    _store_arg(p)
    _add_frame_model_args(p)
    _add_sampling_args(p)
    p.add_argument("--workers", type=int, default=2, help="decoding threads (default 2)")
    p.add_argument("--backend", choices=("local", "joblib", "dask"), default="local")
    p.add_argument("--scheduler", help="Dask scheduler address for --backend dask")
    p.add_argument("--n-jobs", type=int, default=2, help="parallel chunks for --backend joblib")
    p.add_argument("--flush-every", type=int, default=16, help="videos per written part file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("labels", help="label files")
    lsub = p.add_subparsers(dest="labels_command", metavar="ACTION")
    lsub.required = True
    q = lsub.add_parser("import", help="import a label file into the store",
                        description="Validate a label file and import it; a file with bad rows is "
                                    "rejected with the line numbers and nothing is written.")
    q.add_argument("file", metavar="FILE")
    _store_arg(q)
    q.add_argument("--format", choices=("mediaeval", "memento10k", "csv"), default="mediaeval")
    q.set_defaults(func=cmd_labels_import)

    p = sub.add_parser("sql", help="run a read-only SQL query on the store",
                       description="Tables: videos, frames, models, labels, failures, results.")
    p.add_argument("query", metavar="QUERY")
    _store_arg(p)
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--param", action="append", metavar="VALUE", help="bound parameter for ? (repeatable)")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("info", help="tables, row counts, frame models and size of the store")
    _store_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("compact", help="rewrite each table of the store into one part file",
                       description="Reading many small part files is slower; extraction writes one per "
                                   "--flush-every videos. Run when no other process reads the store.")
    _store_arg(p)
    p.add_argument("--drop-orphans", action="store_true",
                   help="also remove frames of interrupted writes (only when no extraction runs)")
    p.set_defaults(func=cmd_compact)

    _add_model_commands(sub)
    return parser


def _add_model_commands(sub) -> None:
    """Subcommands of the estimators layer and the demo."""
    def target_arg(p):
        p.add_argument("--target", choices=("short", "long"), required=True, help="memorability target")

    p = sub.add_parser("evaluate", help="cross-validate a recipe, Spearman per fold",
                       description="Honest K-fold cross-validation of RECIPE (a path to a recipe .py "
                                   "file or a name in pipelines/); fold scores also go to the store's "
                                   "results table.")
    p.add_argument("recipe", metavar="RECIPE")
    _store_arg(p)
    target_arg(p)
    p.add_argument("--cv", type=int, default=5)
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("table1", help="the working note's Table 1: three models, both targets")
    _store_arg(p)
    p.add_argument("--protocol", choices=("cv", "paper"), default="cv",
                   help="cv: honest K-fold (default); paper: the note's optimistic protocol")
    p.add_argument("--cv", type=int, default=5)
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-epochs", type=int, help="override the networks' epochs (quick runs)")
    p.set_defaults(func=cmd_table1)

    p = sub.add_parser("grid", help="grid search over a recipe's param_grid")
    p.add_argument("recipe", metavar="RECIPE")
    _store_arg(p)
    target_arg(p)
    p.add_argument("--cv", type=int, default=5)
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--backend", choices=("local", "dask"), default="local")
    p.add_argument("--scheduler", help="Dask scheduler address for --backend dask")
    p.set_defaults(func=cmd_grid)

    p = sub.add_parser("fit", help="fit a recipe on all labelled videos and save it")
    p.add_argument("recipe", metavar="RECIPE")
    _store_arg(p)
    target_arg(p)
    p.add_argument("--out", required=True, help="output file (joblib)")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("predict", help="predict memorability of video files with a saved pipeline",
                       description="Extracts the features that are missing (same frame model and "
                                   "sampling as in training), then prints one row per video.",
                       epilog=EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL.joblib")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--store", help="feature store (default: the one the pipeline was trained on)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_predict)

    from .demo import add_demo_command

    add_demo_command(sub)


def _max_epochs_params(max_epochs):
    if max_epochs is None:
        return None
    return {"score_lstm": {"lstm__max_epochs": max_epochs}, "amnetvid": {"net__max_epochs": max_epochs}}


def cmd_evaluate(args) -> int:
    from .evaluate import cross_validate

    res = cross_validate(args.recipe, args.store, args.target, cv=args.cv, n_jobs=args.n_jobs,
                         random_state=args.seed)
    for i, s in enumerate(res.scores):
        print(f"fold {i + 1}: spearman {s:.4f}")
    print(f"{res.recipe} {args.target}-term: mean {res.mean:.4f}, std {res.std:.4f} "
          f"({len(res.scores)} folds, {res.seconds:.1f} s)")
    return 0


def cmd_table1(args) -> int:
    from .evaluate import table1

    t = table1(args.store, protocol=args.protocol, cv=args.cv, n_jobs=args.n_jobs, random_state=args.seed,
               set_params=_max_epochs_params(args.max_epochs))
    print(t.format())
    return 0


def cmd_grid(args) -> int:
    from .evaluate import grid_search

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

    from .evaluate import labelled_data, load_recipe

    recipe = load_recipe(args.recipe)
    ids, y = labelled_data(args.store, args.target)
    pipe = recipe.pipeline(args.store).fit(ids, y)
    joblib.dump(pipe, args.out)
    print(f"fitted {recipe.recipe_name} on {len(ids)} videos ({args.target}-term); saved to {args.out}")
    return 0


def cmd_predict(args) -> int:
    from .predict import predict_videos

    ids, pred, summary = predict_videos(args.model, args.paths, store=args.store,
                                        progress=not args.no_progress)
    print("video_id\tprediction")
    for i, p in zip(ids, pred):
        print(f"{i}\t{p:.4f}")
    for path, reason in summary.failed:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    return 0 if summary.ok else 1


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AmnetvidError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: what was complete is kept; run the same command again to continue",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
