"""``amnetvid report``: the HTML report of a feature store (:func:`amnetvid_sk.report.write_report`).

The report module (matplotlib, and torch for the attention figures) is imported when the command
runs, never when the parser is built.
"""

from __future__ import annotations

from .parser import EXIT_STATUS, _positive_int, add_store_arg

REPORT_EXAMPLES = """examples:
  amnetvid report                                  # store/ -> report/index.html
  amnetvid report --store my_store --out my_report --videos video10 video42"""


def cmd_report(args) -> int:
    from ..report import write_report

    index = write_report(args.store, args.out, videos=args.videos, n_videos=args.n_videos, model=args.frame_model,
                         sampling=args.sampling)
    print(f"report: {index}")
    return 0


def add_report_commands(sub) -> None:
    p = sub.add_parser(
        "report", help="write an HTML report of a store: runs with 95%% intervals, figures, failures",
        description="Writes DIR/index.html and its PNGs: how the store was made (frame model, sampling, "
                    "counts); the latest evaluation runs in the layout of the note's Table 1, each Spearman "
                    "with its 95% bootstrap interval and its paired difference to the mean-score baseline, "
                    "and a bar chart with interval whiskers; each model's out-of-fold predictions against "
                    "the labels; the videos predicted worst; the note's Figure 1 (a frame beside its three "
                    "attention maps) for a few videos and its Figure 4 (densities of mean frame scores and "
                    "labels); failed and left-out videos; example SQL. A store without runs gets a report "
                    "too, with a line saying how to add them (amnetvid table1).",
        epilog=REPORT_EXAMPLES + "\n\n" + EXIT_STATUS,
    )
    add_store_arg(p)
    p.add_argument("--out", default="report", metavar="DIR",
                   help="folder of index.html and its PNGs, made if missing; the PNGs of an earlier report "
                        "there are replaced (default: %(default)s/)")
    p.add_argument("--videos", nargs="+", metavar="ID",
                   help="video ids drawn as the note's Figure 1 (default: --n-videos spread from the least to "
                        "the most memorable, among those whose file still exists)")
    p.add_argument("--n-videos", type=_positive_int, default=3, metavar="N",
                   help="videos drawn when --videos is not given, >= 1 (default %(default)s)")
    p.add_argument("--frame-model", metavar="MODEL",
                   help="the stored frame model the figures read: fingerprint, unique prefix or name "
                        "(default: the store's only one; `amnetvid info` lists them)")
    p.add_argument("--sampling", metavar="KEY",
                   help="the sampling the figures read, e.g. frames=28 or fps=4 (default: the model's only one)")
    p.set_defaults(func=cmd_report)
