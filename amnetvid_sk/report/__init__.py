"""The report of a feature store: ``amnetvid report`` and :func:`write_report`.

One ``index.html`` beside its PNGs: how the store was made, the evaluation runs in the layout of
the note's Table 1 with their 95% intervals and a bar chart with interval whiskers, each model's
out-of-fold predictions against the labels, the videos predicted worst, the note's Figure 1 for a
few videos and its Figure 4, failures and left-out videos, and SQL to go further. The demo writes
its report with the same function.

Where things are: :mod:`.store_summary` (what the store holds, read with SQL), :mod:`.results`
(the runs by protocol, predictions per video, the worst predicted), :mod:`.figures` (bar chart,
predicted against true, Figure 4), :mod:`.figure1` (which videos, the map titles of the frame
model, the frames decoded again), :mod:`.page` (HTML, tables of results) and :mod:`.sections`
(the sections about the store).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic_files import write_file_atomic
from .figure1 import N_FIGURE_VIDEOS, check_videos, choose_videos, draw_figure1, map_titles
from .figures import density_figure, predicted_figure, save_figure, spearman_figure
from .page import esc, page, results_html
from .results import N_WORST, block_title, by_protocol, targets_of, worst_predicted
from .sections import failures_html, figure1_html, no_runs_html, sql_html, store_html, worst_html
from .store_summary import summarise_store

__all__ = ["map_titles", "write_report"]

# the PNGs a report writes: those of an earlier report in the same folder are removed first
_FIGURES = ("figure1_*.png", "spearman_*.png", "predicted_*.png", "figure4_densities.png", "spearman.png")


def _clear(folder: Path) -> None:
    for pattern in _FIGURES:
        for old in folder.glob(pattern):
            old.unlink()


def _results(folder: Path, tables, summary, extra) -> list:
    """The sections of the runs: tables and bar charts, caller's sections, predicted against true, worst."""
    if not tables:
        return [("results", "Evaluation runs", no_runs_html(summary)), *extra]
    blocks = by_protocol(tables)
    content, predicted = [], []
    for protocol, group in blocks.items():
        chart = f"spearman_{protocol}.png"
        save_figure(spearman_figure(group, f"Spearman per model and target ({protocol})"), folder / chart)
        content.append(results_html(protocol, group, chart))
        for k, table in enumerate(group):
            fig = predicted_figure(table)
            if fig is not None:
                name = f"predicted_{protocol}_{k}.png"
                save_figure(fig, folder / name)
                predicted.append(f"<h3>{esc(block_title(table))} ({esc(protocol)})</h3><img src='{esc(name)}' "
                                 f"alt='{esc(block_title(table))}: predicted against true'>")
    worsts = [w for t in targets_of(tables) if (w := worst_predicted(tables, t, N_WORST)) is not None]
    predicted_text = "".join(predicted) or "<p>No run kept out-of-fold predictions.</p>"
    return [
        ("results", "Evaluation runs (Spearman with 95% intervals)", "".join(content)),
        *extra,
        ("predicted", "Predicted against true (out of fold)",
         "<p>Each point is a video, predicted by the model that did not see it in training.</p>" + predicted_text),
        ("worst", "Videos predicted worst", worst_html(worsts)),
    ]


def write_report(store, out="report", *, videos=None, n_videos: int = N_FIGURE_VIDEOS, tables=None,
                 model: str | None = None, sampling: str | None = None, title: str | None = None,
                 description: str = "", sections=()) -> Path:
    """Write the report of a feature store into folder ``out``; returns the path of its ``index.html``.

    Parameters
    ----------
    store : str or Path
        The feature store folder.
    out : str or Path, default="report"
        Folder of ``index.html`` and its PNGs (made if missing; PNGs of an earlier report there
        are replaced).
    videos : sequence of str, default=None
        Video ids drawn as the note's Figure 1; None: ``n_videos`` spread from the least to the
        most memorable (among those whose video file still exists, when any does).
    n_videos : int, default=3
    tables : list of Table1, default=None
        The blocks of results to show; None: those of the store's latest runs
        (:func:`amnetvid_sk.runs.stored_tables`). A store with no runs gets a line saying how to
        add them.
    model, sampling : str, default=None
        The frame model and sampling of the figures; None: the store's only ones.
    title : str, default=None
        The page's title; None: "amnetvid-sk report" and the store's folder.
    description : str, default=""
        HTML put under the title.
    sections : sequence of (id, heading, html), default=()
        More sections, put after the results.

    Raises
    ------
    MissingVideosError
        A video of ``videos`` has no features of the frame model and sampling.
    StoreError
        The store holds several frame models (or samplings) and none was chosen.

    Examples
    --------
    >>> from amnetvid_sk.report import write_report
    >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store
    >>> ids = write_synthetic_store("store_report", *make_moving_peak_dataset(6))
    >>> write_report("store_report", "report_out").name
    'index.html'
    """
    from ..store import FeatureStore

    fs = FeatureStore(store)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    summary = summarise_store(fs, model, sampling)
    if tables is None:
        from ..runs import stored_tables

        tables = stored_tables(store)
    chosen = list(videos) if videos is not None else choose_videos(summary, n_videos)
    rows = check_videos(fs, summary, chosen)  # before anything is written: a bad id changes nothing
    _clear(folder)
    drawn = draw_figure1(fs, summary, rows, folder)
    labels = np.array(list(summary.labels.values()), dtype=float).reshape(-1, 2)
    save_figure(density_figure(list(summary.mean_scores.values()), labels[:, 0], labels[:, 1]),
                folder / "figure4_densities.png")
    parts = [("store", "How the store was made", store_html(summary)),
             *_results(folder, list(tables), summary, list(sections)),
             ("figure1", "Frames and their attention maps (the note's Figure 1)", figure1_html(drawn, summary)),
             ("figure4", "Distributions (the note's Figure 4)",
              "<img src='figure4_densities.png' alt='densities of mean frame scores and labels'>"),
             ("failures", "Failures and left-out videos", failures_html(summary)),
             ("sql", "SQL on the store", sql_html(fs))]
    text = page(title or f"amnetvid-sk report: {fs.path}", description, parts)
    return write_file_atomic(folder / "index.html", text.encode(), "report page")
