"""The report's figures, drawn with matplotlib's Agg canvas (no pyplot, no display).

Each figure is built by a function that returns the :class:`matplotlib.figure.Figure` (so that
tests can check where its texts and bars are) and saved by :func:`save_figure`, atomically.
Constrained layout keeps every title, label and legend inside the canvas; titles wider than their
axes are broken into lines (:func:`~amnetvid_sk.render.wrap_to_width`).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..atomic_files import write_file_atomic
from ..render import wrap_to_width
from .results import fold_stats, per_video, targets_of

__all__ = ["bar_values", "density_figure", "predicted_figure", "save_figure", "spearman_figure"]

# the gap between two blocks of bars at one target, in bar widths
_BLOCK_GAP = 0.5


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path) -> Path:
    """Save ``fig`` as a PNG atomically: a full disk leaves no half-written image."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return write_file_atomic(path, buffer.getvalue(), "report figure")


def density_figure(mean_scores, short, long):
    """The note's Figure 4: densities of the mean frame scores and of the short- and long-term labels."""
    from scipy.stats import gaussian_kde

    fig = _figure(7, 4)
    ax = fig.add_subplot(1, 1, 1)
    grid = np.linspace(0, 1, 400)
    drawn = 0
    for values, label in ((mean_scores, "mean frame score"), (short, "short-term label"),
                          (long, "long-term label")):
        values = np.asarray(values, dtype=float)
        values = values[np.isfinite(values)]
        if len(values) > 1 and np.ptp(values) > 0:
            ax.plot(grid, gaussian_kde(values)(grid), label=f"{label} (n={len(values)})")
            drawn += 1
    ax.set_xlabel("memorability")
    ax.set_ylabel("density")
    ax.set_title("Distributions (the working note's Figure 4)")
    if drawn:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "nothing to draw yet: no two different values", ha="center", va="center",
                transform=ax.transAxes)
    return fig


def bar_values(res) -> tuple[float, float, float]:
    """``(height, low, high)`` of one result's bar: its Spearman with its 95% interval (NaN bounds
    where the run kept no predictions or the interval is undefined)."""
    interval = res.interval
    if interval is not None and np.isfinite(interval.estimate):
        return interval.estimate, interval.low, interval.high
    return fold_stats(res)[0], float("nan"), float("nan")


def _bar_slots(tables, target) -> list[tuple[int, str, float]]:
    """``(block, recipe, slot)`` of the bars at ``target``: only the models with a result there,
    a half-slot gap between blocks."""
    slots, slot, last = [], 0.0, None
    for block, table in enumerate(tables):
        for recipe, _ in table.columns:
            if (recipe, target) not in table.results:
                continue
            if last is not None and block != last:
                slot += _BLOCK_GAP
            slots.append((block, recipe, slot))
            slot += 1
            last = block
    return slots


def spearman_figure(tables, title: str = "Spearman per model and target"):
    """Bars of each model's Spearman per target, with their 95% bootstrap intervals as whiskers.

    ``tables`` are the blocks of one protocol (Table 1, then the block beyond the note, hatched).
    Each target's bars are centred on its tick: a model without a result for a target leaves no
    empty slot there. A bar without whiskers is a run that kept no predictions.
    """
    targets = targets_of(tables)
    layouts = {t: _bar_slots(tables, t) for t in targets}
    span = max((slots[-1][2] + 1 for slots in layouts.values() if slots), default=1.0)
    width = min(0.8 / span, 0.3)  # one model alone is not a slab
    models = [(block, recipe) for block, table in enumerate(tables) for recipe, _ in table.columns]
    fig = _figure(max(6.0, 2.2 + 2.4 * len(targets) + 0.25 * len(models)), 4.8)
    ax = fig.add_subplot(1, 1, 1)
    labelled = set()
    for i, target in enumerate(targets):
        slots = layouts[target]
        centre = (slots[0][2] + slots[-1][2]) / 2
        for block, recipe, slot in slots:
            table = tables[block]
            height, low, high = bar_values(table.results[(recipe, target)])
            x = i + (slot - centre) * width
            yerr = None
            if np.isfinite(low) and np.isfinite(high):
                yerr = [[max(height - low, 0.0)], [max(high - height, 0.0)]]
            k = models.index((block, recipe))
            ax.bar(x, height, width, yerr=yerr, capsize=3, color=f"C{k % 10}", hatch="//" if block else None,
                   edgecolor="black" if block else None, linewidth=0.5,
                   label=table.label(recipe) if (block, recipe) not in labelled else "_nolegend_")
            labelled.add((block, recipe))
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(targets)), [f"{t}-term" for t in targets])
    ax.set_xlim(-0.5, len(targets) - 0.5)
    ax.set_ylabel("Spearman (whiskers: 95% interval)")
    hatched = " (hatched: beyond the note)" if len(tables) > 1 else ""
    ax.set_title(wrap_to_width(title + hatched, fig.get_figwidth() - 1.0, 12), fontsize=12)
    if labelled:
        # below the axes: inside, it would cover the bars
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=min(len(labelled), 3))
    return fig


def predicted_figure(table):
    """Each model's out-of-fold prediction against the label, one panel per model and target
    (rows: targets; columns: models), or None when no result of ``table`` kept predictions."""
    targets = table.targets()
    recipes = [r for r, _ in table.columns if any((r, t) in table.results and table.results[(r, t)].predictions
                                                  is not None for t in targets)]
    if not recipes:
        return None
    panel = 3.0
    fig = _figure(panel * len(recipes) + 0.4, (panel + 0.3) * len(targets))
    axes = fig.subplots(len(targets), len(recipes), squeeze=False)
    for row, target in enumerate(targets):
        for col, recipe in enumerate(recipes):
            ax = axes[row, col]
            res = table.results.get((recipe, target))
            if res is None or res.predictions is None:
                ax.set_axis_off()
                ax.text(0.5, 0.5, "no predictions kept", ha="center", va="center", transform=ax.transAxes)
                continue
            _, labels, predictions = per_video(res.predictions)
            ax.scatter(labels, predictions, s=8, alpha=0.6, color=f"C{col % 10}", linewidths=0)
            ax.set_xlabel(f"{target}-term label", fontsize=9)
            ax.set_ylabel("predicted (out of fold)", fontsize=9)
            ax.tick_params(labelsize=8)
            interval = res.interval
            mean = fold_stats(res)[0]
            rho = interval.text() if interval is not None else f"{mean:.4f}" if np.isfinite(mean) else "undefined"
            ax.set_title(wrap_to_width(f"{table.label(recipe)}\nSpearman {rho}", panel - 0.2, 9), fontsize=9)
    return fig
