"""The report's sections that describe the store: how it was made, what failed or was left out,
the Figure-1 videos, the videos predicted worst, and SQL to go further."""

from __future__ import annotations

from .page import arrow_table, esc, html_table, ident, ids_text
from .store_summary import LIST_LIMIT

__all__ = ["EXAMPLE_QUERIES", "failures_html", "figure1_html", "no_runs_html", "sql_html", "store_html",
           "worst_html"]

EXAMPLE_QUERIES = (
    (
        "The five videos with the highest mean frame score, with their labels",
        """SELECT f.video_id, round(avg(f.score), 4) AS mean_score,
       l.short_term, l.long_term
FROM frames f JOIN labels l USING (video_id)
GROUP BY f.video_id, l.short_term, l.long_term
ORDER BY mean_score DESC
LIMIT 5""",
    ),
    (
        "The latest cross-validation run per recipe and target",
        """SELECT recipe, target, protocol, count(*) AS folds,
       round(avg(spearman), 4) AS mean_spearman,
       round(stddev_pop(spearman), 4) AS std_spearman
FROM results
WHERE run_id IN (SELECT arg_max(run_id, created_at) FROM results
                 GROUP BY recipe, target, protocol)  -- the latest run of each
GROUP BY recipe, target, protocol
ORDER BY target, recipe""",
    ),
)


def counted(n: int, noun: str) -> str:
    """``"1 video"``, ``"3 videos"``.

    Examples
    --------
    >>> counted(1, "failed video"), counted(0, "evaluation run")
    ('1 failed video', '0 evaluation runs')
    """
    return f"{n} {noun}{'' if n == 1 else 's'}"


def store_html(summary) -> str:
    """Where the store is, what it holds, and the frame models and samplings that made it."""
    t = summary.tables
    labels = summary.label_counts()
    out = [f"<p>Store <code>{esc(summary.path)}</code>: {t.get('videos', 0)} extracted videos, "
           f"{t.get('frames', 0)} stored frames, {t.get('embeddings', 0)} frame embeddings; labels for "
           f"{labels['short']} videos (short-term) and {labels['long']} (long-term); "
           f"{counted(summary.runs, 'evaluation run')}; {counted(t.get('failures', 0), 'failed video')}.</p>"]
    rows = []
    for m in summary.models:
        shape = "x".join(map(str, m["map_shape"])) if m["map_shape"] else "none (scores only)"
        used = "these figures" if m["model"] == summary.model else ""
        rows.append([ident(m["name"]), f"<code>{esc(m['model'])}</code>", esc(shape), esc(m["embedding_dim"] or "none"),
                     esc(", ".join(m["samplings"]) or "none"), str(m["n_videos"]), used])
    if rows:
        out.append(html_table(["frame model", "fingerprint (weights hash, preprocessing, maps, precision)",
                               "attention maps", "embedding size", "samplings", "videos", "read by"], rows))
    if summary.model is None:
        out.append("<p class='note'>No video has been extracted into this store yet: "
                   f"<code>amnetvid extract VIDEOS --store {esc(summary.path)}</code> adds them.</p>")
    elif summary.frames_per_video is not None:
        lo, mid, hi = summary.frames_per_video
        out.append(f"<p>The figures read frame model <code>{esc(summary.model)}</code> with sampling "
                   f"<code>{esc(summary.sampling)}</code>: {lo} to {hi} stored frames per video (median {mid:g}).</p>")
    return "".join(out)


def no_runs_html(summary) -> str:
    """The line that says how to add runs to a store that has none."""
    return ("<p class='note'>No evaluation runs in this store yet. "
            f"<code>amnetvid table1 --store {esc(summary.path)}</code> runs the note's three models on both "
            f"targets (<code>amnetvid evaluate RECIPE --store {esc(summary.path)}</code> one recipe); then make "
            "this report again.</p>")


def failures_html(summary) -> str:
    """Videos that could not be extracted (with the reason), labelled videos left out, short clips."""
    out = []
    n = summary.tables.get("failures", 0)
    if n:
        shown = f" (the latest {LIST_LIMIT})" if n > LIST_LIMIT else ""
        out.append(f"<p>{counted(n, 'video')} could not be extracted{shown}; the store's <code>failures</code> "
                   "table keeps each with its reason.</p>")
        rows = [[ident(r["path"]), ident(r["video_id"]), ident(r["reason"]), esc(str(r["failed_at"])[:19])]
                for r in summary.failures]
        out.append(html_table(["file", "video id", "reason", "when"], rows))
    else:
        out.append("<p>No video failed.</p>")
    where = (f"frame model <code>{esc(summary.model)}</code> with sampling <code>{esc(summary.sampling)}</code>"
             if summary.model is not None else "any frame model (nothing is extracted)")
    items = []
    for target, ids in summary.left_out.items():
        if len(ids):
            items.append(f"<li>{target}-term: {counted(len(ids), 'labelled video')} without features of {where}, left "
                         f"out of every evaluation: {ids_text(ids, LIST_LIMIT)}</li>")
    if summary.short:
        items.append(f"<li>{counted(len(summary.short), 'clip')} with fewer frames than the sampling asked for "
                     "(a model that reads more frames than they have leaves them out, with a warning): "
                     f"{ids_text(summary.short, LIST_LIMIT)}</li>")
    out.append(f"<ul>{''.join(items)}</ul>" if items else "<p>No labelled video is left out.</p>")
    return "".join(out)


def figure1_html(drawn, summary) -> str:
    """The Figure-1 images with their captions."""
    if summary.model is None:
        return "<p>Nothing to draw: no video has been extracted.</p>"
    row = summary.model_row or {}
    if row.get("maps") == "none":
        return (f"<p>Frame model <code>{esc(summary.model)}</code> stored scores only (<code>--maps none</code>): "
                "there are no attention maps to draw.</p>")
    out = ["<p>The middle stored frame of each video beside its three attention maps, each map coloured from "
           "its own minimum (blue) to its own maximum (red), on black, as the note drew them. Choose the videos "
           "with <code>amnetvid report --videos ID ...</code>; by default a spread from the least to the most "
           "memorable.</p>"]
    for fig in drawn:
        short, long = summary.labels.get(fig.video_id, (float("nan"), float("nan")))
        labels = ", ".join(f"{name} {value:.3f}" for name, value in (("short-term", short), ("long-term", long))
                           if value == value)
        note = f" <b>{esc(fig.note)}</b>." if fig.note else ""
        out.append(f"<figure><img src='{esc(fig.png)}' alt='{esc(fig.video_id)}: frame and attention maps'>"
                   f"<figcaption>{esc(fig.video_id)} (<code>{esc(fig.path)}</code>)"
                   f"{': labels ' + esc(labels) if labels else ''}.{note}</figcaption></figure>")
    return "".join(out)


def worst_html(worsts) -> str:
    """For each target, the videos the best model ranked furthest from their labels."""
    if not worsts:
        return "<p>No run kept out-of-fold predictions.</p>"
    out = ["<p>Spearman compares ranks within each fold: a video's error is how far its predicted percentile "
           "rank lies from its label's, within its fold (averaged over the rounds of the note's protocol).</p>"]
    for w in worsts:
        rows = [[ident(r["video_id"]), f"{r['label']:.3f}", f"{r['prediction']:.3f}", f"{r['label_rank']:.0f}",
                 f"{r['predicted_rank']:.0f}", f"{r['off_by']:+.0f}"] for r in w.rows]
        out.append(f"<h3>{esc(w.target)}-term, {esc(w.label)} ({esc(w.protocol)})</h3>")
        out.append(html_table(["video", "label", "predicted", "label rank (%)", "predicted rank (%)",
                               "off by (points)"], rows))
    return "".join(out)


def sql_html(fs) -> str:
    """Example queries on the store with their results here."""
    out = [f"<p>The store's tables answer SQL (DuckDB): <code>amnetvid sql \"QUERY\" --store {esc(fs.path)}</code>, "
           "or <code>FeatureStore(path).sql(query)</code> in Python.</p>"]
    for title, query in EXAMPLE_QUERIES:
        out.append(f"<h3>{esc(title)}</h3><pre>{esc(query)}</pre>{arrow_table(fs.sql(query))}")
    return "".join(out)
