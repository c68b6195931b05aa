"""Commands on the feature store: ``sql``, ``info``, ``compact``, ``verify`` and ``labels import``.

They import neither torch nor scikit-learn (``amnetvid sql`` starts quickly).
"""

from __future__ import annotations

import json
import sys

from .parser import EXIT_STATUS, TRACEBACK_ENV, _sql_param, add_store_arg

SQL_PARAMS = """parameters:
  Each --param binds the next ? of QUERY. Values are text as given: --param 00042 binds
  the text '00042'. Prefix a type to bind a number: --param int:42, --param float:0.5
  (and --param text:int:7 for the text 'int:7')."""
SQL_FORMATS = ("table", "csv", "json")
LABEL_FORMATS = ("mediaeval", "memento10k", "csv")
VERIFY_STATUS = f"""exit status:
  0  every part file reads whole
  1  damaged part files were found (also when --repair moved them into quarantine: run verify
     again to see 0)
  2  bad arguments, or no store folder: one line on stderr says which ({TRACEBACK_ENV}=1 also shows where)"""


def print_table(table, fmt: str = "table", out=None) -> None:
    """Print a pyarrow Table as an aligned text table, CSV or JSON lines.

    Examples
    --------
    >>> import pyarrow as pa
    >>> print_table(pa.table({"video_id": ["clip0"], "n": [4]}), "json")
    {"video_id": "clip0", "n": 4}
    """
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


def cmd_labels_import(args) -> int:
    from ..labels import import_labels
    from ..store.schema import fmt_ids

    done = import_labels(args.file, args.store, format=args.format, return_report=True)
    print(f"imported {done.n_rows} labels from {args.file} into {args.store}: {done.n_rows - done.replaced} new, "
          f"{done.replaced} replaced (a video's latest import is its label)")
    if done.not_in_store:  # not an error: labels often come before the videos are extracted
        print(f"warning: {len(done.not_in_store)} of the {done.n_rows} labelled videos are not in the store (yet): "
              f"{fmt_ids(done.not_in_store)}; extract them (`amnetvid extract VIDEOS --store {args.store}`), or "
              "check that each id is its video's file name without the extension", file=sys.stderr)
    return 0


def cmd_sql(args) -> int:
    from ..store import FeatureStore

    table = FeatureStore(args.store).sql(args.query, args.param)
    print_table(table, args.format)
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
    print(f"store: {fs.path}")
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


def cmd_verify(args) -> int:
    from ..store import FeatureStore

    report = FeatureStore(args.store).verify(repair=args.repair)
    print(report)
    return 0 if report.ok else 1


def add_store_commands(sub) -> None:
    """The parsers of ``labels import``, ``sql``, ``info``, ``compact`` and ``verify``."""
    p = sub.add_parser("labels", help="label files",
                       description="Memorability labels: import a label file into the store.")
    lsub = p.add_subparsers(dest="labels_command", metavar="ACTION", help="what to do with a label file")
    lsub.required = True
    q = lsub.add_parser("import", help="import a label file into the store",
                        description="Validate a label file and import it; a file with bad rows is "
                                    "rejected with the line numbers and nothing is written. Says how "
                                    "many labels are new and how many replaced a video's earlier label, "
                                    "and warns (exit 0) naming ids the store holds no video for (yet).",
                        epilog=EXIT_STATUS)
    q.add_argument("file", metavar="FILE", help="label file (CSV; JSON for memento10k)")
    add_store_arg(q, create=True)
    q.add_argument("--format", choices=LABEL_FORMATS, default="mediaeval",
                   help="mediaeval (default): ground-truth_dev-set.csv; memento10k; "
                        "csv: video_id,short_term[,long_term]")
    q.set_defaults(func=cmd_labels_import, parser=q)  # its errors point at its own help

    p = sub.add_parser("sql", help="run a read-only SQL query on the store",
                       description="Run one read-only query. Tables: videos, frames, embeddings, models, "
                                   "labels, failures, results, predictions (each row once, as the store's dedup rules "
                                   "say); TABLE_all (videos_all, frames_all, ...) hold every row written, "
                                   "with the part file it is in.",
                       epilog=SQL_PARAMS + "\n\n" + EXIT_STATUS)
    p.add_argument("query", metavar="QUERY", help="one SELECT (or WITH, DESCRIBE, ...) statement")
    add_store_arg(p)
    p.add_argument("--format", choices=SQL_FORMATS, default="table",
                   help="output: table (default), an aligned text table; csv; json, one JSON object a line")
    p.add_argument("--param", action="append", type=_sql_param, metavar="VALUE",
                   help="value bound to the next ? (repeatable; default: none); text unless prefixed "
                        "int: or float:")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("info", help="tables, row counts, frame models and size of the store",
                       description="Summarise the store: rows per table, frame models, size on disk.",
                       epilog=EXIT_STATUS)
    add_store_arg(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON (default: text)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("compact", help="rewrite each table of the store into one part file",
                       description="Reading many small part files is slower; extraction writes one per "
                                   "--flush-every videos. Run when no other process reads the store.",
                       epilog=EXIT_STATUS)
    add_store_arg(p)
    p.add_argument("--drop-orphans", action="store_true",
                   help="also remove frames of interrupted writes (only when no extraction runs; "
                        "default: kept)")
    p.set_defaults(func=cmd_compact)

    p = sub.add_parser("verify", help="read every part file of the store whole; --repair quarantines damaged ones",
                       description="Read the footer and every column of every row group of each part file, "
                                   "and name each damaged file with the videos it held. --repair moves "
                                   "damaged files into <store>/quarantine/<table>/ (never read), so their "
                                   "videos count as not extracted and the next extract redoes them. Run "
                                   "--repair when nothing else writes the store.",
                       epilog=VERIFY_STATUS)
    add_store_arg(p)
    p.add_argument("--repair", action="store_true",
                   help="move the damaged part files into the store's quarantine folder (default: only report)")
    p.set_defaults(func=cmd_verify)
