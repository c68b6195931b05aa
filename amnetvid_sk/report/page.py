"""The report's HTML: one self-contained ``index.html`` beside its PNGs.

Every text that comes from the store or from a caller is escaped here; sections are plain
``(id, heading, html)`` triples, put in order by :func:`page`. The style sheet lets a long word
(a path, a fingerprint, a video id) break anywhere rather than overflow its cell, and gives
``pre`` blocks their own scroll bar.
"""

from __future__ import annotations

import html
import math

import numpy as np

from ..tables import BASELINE, note_table1_text
from .results import PROTOCOL_TEXT, block_title, fold_stats

__all__ = ["STYLE", "arrow_table", "esc", "html_table", "ident", "page", "table1_html"]

STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222;
       overflow-wrap: break-word; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; max-width: 100%; }
td, th { border: 1px solid #bbb; padding: 4px 8px; text-align: left; vertical-align: top; }
code, .id { overflow-wrap: anywhere; }
pre { background: #f4f4f4; padding: 8px; overflow-x: auto; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; margin: 4px 0; }
figure { margin: 1em 0; }
small { color: #555; }
p.note { background: #fff6d5; padding: 6px 10px; }
.supported { font-weight: bold; }
"""
# Long words (a path, a fingerprint, a video id) are the cells that overflowed: ``break-word``
# breaks a word only where it would overflow, but a table sizes its columns to their longest word
# first; identifiers are marked (``code``, ``.id``) to break anywhere, so their columns can shrink.


def esc(value) -> str:
    """``value`` as HTML text."""
    return html.escape(str(value))


def ident(value) -> str:
    """An identifier (video id, path, reason naming a file) as HTML that may break anywhere."""
    return f"<span class='id'>{esc(value)}</span>"


def html_table(header, rows, caption: str = "") -> str:
    """A table of already-made HTML cells (``rows`` of ``<td>`` contents); ``header`` is text."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f"<table>{cap}<tr>{head}</tr>{body}</table>"


def _value(v) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4f}"
    return ident("" if v is None else v)


def arrow_table(table) -> str:
    """An Arrow table (a query's result) as HTML, floats to 4 decimals."""
    return html_table(table.column_names, [[_value(row[c]) for c in table.column_names] for row in table.to_pylist()])


def _cell(table, recipe: str, target: str) -> str:
    res = table.results.get((recipe, target))
    if res is None:
        return "n/a"
    folds = ", ".join("undefined" if not np.isfinite(s) else f"{s:.3f}" for s in res.scores)
    mean, std = fold_stats(res)
    defined = int(np.isfinite(res.scores).sum())
    if not np.isfinite(mean):
        spread = "<small>folds: undefined in every fold</small>"
    else:
        spread = (f"<small>folds: {mean:.4f} ± {std:.4f}" + (f" ({defined} of {len(res.scores)} defined)"
                                                              if defined < len(res.scores) else "") + "</small>")
    interval = table.interval(recipe, target)
    if interval is None:
        return (f"<span title='folds: {esc(folds)}'>{_value(mean) or 'undefined'}</span><br>"
                f"<small>no interval: the run kept no predictions</small><br>{spread}")
    parts = [f"<span title='folds: {esc(folds)}'>{esc(interval.text())}</span>"]
    difference = table.difference(recipe, target)
    if difference is not None:
        mark = " class='supported'" if difference.excludes_zero else ""
        parts.append(f"<small{mark}>vs mean score: {esc(difference.text(signed=True))}</small>")
    return "<br>".join(parts + [spread])


def table1_html(table) -> str:
    """One block (a :class:`~amnetvid_sk.tables.Table1`) with each model's Spearman, its 95% interval,
    its paired difference to the mean-score baseline and the fold spread."""
    header = ["target", *(table.label(recipe) for recipe, _ in table.columns)]
    rows = [[f"{target}-term", *(_cell(table, recipe, target) for recipe, _ in table.columns)]
            for target in table.targets()]
    return html_table(header, rows)


def interval_note(tables) -> str:
    """What the intervals of ``tables`` are, in one paragraph (empty when none has one)."""
    intervals = [table.interval(r, t) for table in tables for (r, t) in table.results]
    intervals = [i for i in intervals if i is not None]
    if not intervals:
        return ""
    methods = sorted({i.method for i in intervals})
    first = intervals[0]
    return (f"<p><small>Each cell: the Spearman (the mean over folds of the Spearman within each fold) with its "
            f"{100 * first.confidence:.0f}% bootstrap interval over videos ({esc(' or '.join(methods))}, "
            f"{first.n_resamples} resamples, seeded); <i>vs mean score</i>: the paired difference to the mean "
            "frame score baseline on the same videos, in bold where its interval excludes 0 (the data support "
            "a difference); then the mean ± standard deviation over folds (hover a value for each fold's). "
            "An interval wider than a difference between two models means that these videos cannot tell "
            "them apart.</small></p>")


def videos_used(table) -> str:
    """"labelled videos used: short-term 900 (3 left out: no features), ..."."""
    used = [f"{t}-term {n} ({len(left)} left out: no features)" for t, (n, left) in table.videos().items()]
    return f"<p><small>labelled videos used: {esc(', '.join(used))}</small></p>" if used else ""


def results_html(protocol: str, tables, chart: str | None) -> str:
    """The blocks of one protocol, their notes and the bar chart's image."""
    out = [f"<p>Protocol: {esc(PROTOCOL_TEXT.get(protocol, protocol))}.</p>"]
    for table in tables:
        out.append(f"<h3>{esc(block_title(table))}</h3>{table1_html(table)}{videos_used(table)}")
        out += [f"<p>{esc(line)}</p>" for line in table.findings()]
        if block_title(table) == "Table 1":
            out.append(f"<p><small>The working note (MediaEval 2018, 900-video split): "
                       f"{esc(note_table1_text())}.</small></p>")
        elif table.baseline and not any(recipe == BASELINE for recipe, _ in table.results):
            out.append("<p><small>Differences are to the mean frame score of the Table 1 above "
                       "(same videos and folds).</small></p>")
    out.append(interval_note(tables))
    if chart:
        out.append(f"<img src='{esc(chart)}' alt='Spearman per model and target ({esc(protocol)}), with 95% "
                   "intervals'>")
    return "".join(out)


def ids_text(ids, limit: int) -> str:
    """Up to ``limit`` ids, then how many more."""
    ids = [str(v) for v in ids]
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return esc(", ".join(ids[:limit]) + more)


def page(title: str, description: str, sections) -> str:
    """The whole page: ``sections`` are ``(id, heading, html)``; ``description`` is HTML put under the title."""
    toc = "".join(f"<li><a href='#{esc(i)}'>{esc(h)}</a></li>" for i, h, _ in sections)
    body = "".join(f"<section id='{esc(i)}'><h2>{esc(h)}</h2>{content}</section>" for i, h, content in sections)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>{STYLE}</style></head><body>
<h1>{esc(title)}</h1>
{description}
<ul>{toc}</ul>
{body}
</body></html>
"""
