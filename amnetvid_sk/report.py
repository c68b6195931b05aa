"""A report people can look at: the working note's Figure 1 and Figure 4, a Spearman
bar chart, and one ``index.html`` with the Table 1 layout and example SQL."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from .atomic_files import write_file_atomic
from .video_ids import video_id_from_name


def _save_figure(fig, path) -> Path:
    """Save a figure as PNG atomically: a full disk leaves no half-written image."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return write_file_atomic(path, buffer.getvalue(), "report figure")

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


def _figure(width, height):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def density_figure(path, mean_scores, short, long) -> Path:
    """The note's Figure 4: density of mean frame scores, short- and long-term labels."""
    from scipy.stats import gaussian_kde

    fig = _figure(7, 4)
    ax = fig.add_subplot(1, 1, 1)
    grid = np.linspace(0, 1, 400)
    for values, label in ((mean_scores, "mean frame score"), (short, "short-term label"),
                          (long, "long-term label")):
        values = np.asarray(values, dtype=float)
        values = values[np.isfinite(values)]
        if len(values) > 1 and np.ptp(values) > 0:
            ax.plot(grid, gaussian_kde(values)(grid), label=f"{label} (n={len(values)})")
    ax.set_xlabel("memorability")
    ax.set_ylabel("density")
    ax.set_title("Distributions (the working note's Figure 4)")
    ax.legend()
    fig.tight_layout()
    return _save_figure(fig, path)


def spearman_bar_chart(path, table, beyond=None) -> Path:
    """Mean Spearman per model and target, with the fold standard deviation as error bars.

    ``beyond`` (the second block's table) adds its models after a gap, hatched, so that the
    note's three models and the ones beyond it are told apart at a glance.
    """
    from .evaluate import TARGETS

    blocks = [(table, "")] + ([(beyond, "//")] if beyond is not None else [])
    bars = [(t, name, hatch) for t, hatch in blocks for name, _ in t.columns]
    fig = _figure(9 if beyond is not None else 7, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    slots = len(bars) + (len(blocks) - 1)  # one empty slot between the blocks
    width = 0.85 / slots
    x = np.arange(len(TARGETS))
    slot = 0
    for k, (t, name, hatch) in enumerate(bars):
        if k == len(table.columns):
            slot += 1
        means = [t.results[(name, g)].mean if (name, g) in t.results else np.nan for g in TARGETS]
        stds = [t.results[(name, g)].std if (name, g) in t.results else 0 for g in TARGETS]
        offset = (slot - (slots - 1) / 2) * width
        ax.bar(x + offset, means, width, yerr=stds, capsize=3, label=t.label(name), hatch=hatch,
               edgecolor="black" if hatch else None, linewidth=0.5)
        slot += 1
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, [f"{t}-term" for t in TARGETS])
    ax.set_ylabel("Spearman (mean ± std over folds)")
    ax.set_title("Spearman per model and target" + (" (hatched: beyond the note)" if beyond is not None else ""))
    # below the axes: inside, it would cover the bars
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=min(len(bars), 4))
    fig.tight_layout()
    return _save_figure(fig, path)


def _html_table(table) -> str:
    cols = table.column_names
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for row in table.to_pylist():
        cells = []
        for c in cols:
            v = row[c]
            cells.append(f"<td>{v:.4f}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _table1_html(table) -> str:
    head = "<th>target</th>" + "".join(f"<th>{html.escape(table.label(name))}</th>" for name, _ in table.columns)
    rows = []
    for t in table.targets():
        cells = []
        for name, _ in table.columns:
            res = table.results.get((name, t))
            folds = ", ".join(f"{s:.3f}" for s in res.scores) if res is not None else ""
            cells.append(f"<td title='folds: {folds}'>{html.escape(table.cell(name, t))}</td>")
        rows.append(f"<tr><td>{t}-term</td>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _beyond_html(beyond) -> str:
    if beyond is None:
        return ""
    return ("<h2>Beyond the note (same folds; changes relative to the mean frame score above)</h2>"
            "<p>What the note's outlook asks for: a ridge on the frame model's internal state (embeddings), "
            "a 3D-convolutional network in place of the ConvLSTMs, AMNetVid trained on random frame "
            "subsets, and a stacked ensemble of the models that read video ids.</p>" + _table1_html(beyond))


def write_report(folder, store, table, predictions: dict, figure_clips=(), settings=None,
                 description: str = "", beyond=None) -> Path:
    """Write the report's PNGs and ``index.html`` into ``folder``; returns the HTML path.

    ``beyond`` is the second block of models (:func:`~amnetvid_sk.evaluate.beyond_note`), shown
    after Table 1 and in the same bar chart.

    ``figure_clips`` are video files (in the store) drawn as the note's Figure 1: their
    middle stored frame beside its three attention maps. ``description`` is HTML put
    under the title.
    """
    from .evaluate import note_table1_text
    from .render import save_attention_figure
    from .store import FeatureStore
    from .video import sample_frames

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fs = FeatureStore(store)

    # Figure 1: the middle sampled frame of a few clips beside its three attention maps
    figures = []
    for old in folder.glob("figure1_*.png"):  # a previous run's choice of clips
        old.unlink()
    for path in figure_clips:
        vid = video_id_from_name(str(path))
        scores, maps = fs.read_arrays([vid])
        n = scores.shape[1]
        sampled = sample_frames(path, n_frames=n)
        k = n // 2
        png = folder / f"figure1_{vid}.png"
        save_attention_figure(sampled.frames[k], maps[0, k], png,
                              title=f"{vid}, frame {int(sampled.indices[k])}", score=float(scores[0, k]))
        figures.append(png.name)

    ids = fs.video_ids()
    scores, _ = fs.read_arrays(ids, maps=False, n_frames=None) if len(ids) else (np.zeros((0, 1)), None)
    labelled = fs.sql("SELECT short_term, long_term FROM labels").to_pydict()
    density_figure(folder / "figure4_densities.png", scores.mean(axis=1), labelled["short_term"],
                   labelled["long_term"])
    spearman_bar_chart(folder / "spearman.png", table, beyond)

    queries = []
    for title, sql in EXAMPLE_QUERIES:
        queries.append((title, sql, _html_table(fs.sql(sql))))

    pred_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" for k, v in predictions.items())
    settings_text = html.escape(repr(settings)) if settings is not None else ""
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>amnetvid-sk demo report</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
td, th {{ border: 1px solid #bbb; padding: 4px 8px; text-align: left; }}
pre {{ background: #f4f4f4; padding: 8px; }}
img {{ max-width: 100%; border: 1px solid #ddd; margin: 4px 0; }}
</style></head><body>
<h1>amnetvid-sk demo report</h1>
{description}
<p>Settings: <code>{settings_text}</code></p>
<h2>Table 1 layout (Spearman, honest cross-validation, mean ± std over folds)</h2>
{_table1_html(table)}
<p>The working note (MediaEval 2018, 900-video split): {note_table1_text()}.</p>
{_beyond_html(beyond)}
<img src="spearman.png" alt="Spearman per model and target">
<h2>Predictions for two clips not seen in training (AMNetVid, short-term)</h2>
<table><tr><th>video</th><th>predicted short-term memorability</th></tr>{pred_rows}</table>
<h2>Frames and their attention maps (the note's Figure 1)</h2>
{''.join(f'<img src="{f}" alt="{html.escape(f)}">' for f in figures)}
<h2>Distributions (the note's Figure 4)</h2>
<img src="figure4_densities.png" alt="densities">
<h2>SQL on the store</h2>
{''.join(f'<h3>{html.escape(t)}</h3><pre>{html.escape(q)}</pre>{r}' for t, q, r in queries)}
</body></html>
"""
    index = folder / "index.html"
    return write_file_atomic(index, page.encode(), "report page")
