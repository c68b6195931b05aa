"""The layout of results: the working note's Table 1, the second block beyond it, and the note's own figures.

A :class:`Table1` holds one :class:`~amnetvid_sk.evaluate.CVResult` per (recipe, target) and
lays them out with the change of each model relative to the mean-score baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .pipelines import TABLE1_RECIPES, TARGETS

# the working note's Table 1 (Spearman on its 900-video split), for comparison
NOTE_TABLE1 = {
    ("mean_score", "short"): 0.4214, ("score_lstm", "short"): 0.4230, ("amnetvid", "short"): 0.4384,
    ("mean_score", "long"): 0.1867, ("score_lstm", "long"): 0.1866, ("amnetvid", "long"): 0.2015,
}
BASELINE = TABLE1_RECIPES[0][0]


# Below this baseline (or at or below zero) a relative change is meaningless: against -0.27,
# -0.53 reads "-100%"; against 0.01, 0.03 reads "+200%". The absolute difference is shown then.
RELATIVE_BASE_MIN = 0.05


def change_text(value: float, base: float) -> str:
    """The change of ``value`` from the baseline ``base``: relative, or absolute near zero.

    Examples
    --------
    >>> change_text(NOTE_TABLE1[("amnetvid", "short")], NOTE_TABLE1[("mean_score", "short")])
    ' (+4.0%)'
    >>> change_text(-0.5333, -0.2667)
    ' (-0.2666 abs)'
    """
    if not (np.isfinite(value) and np.isfinite(base)):
        return ""
    if base < RELATIVE_BASE_MIN:
        return f" ({value - base:+.4f} abs)"
    return f" ({100 * (value - base) / base:+.1f}%)"


@dataclass
class Table1:
    """Results laid out as the working note's Table 1, or as another block of models (``columns``).

    ``baseline`` holds the mean-score results that a block without that column compares its
    models to (the second block, "beyond the note", takes the first block's).
    """

    protocol: str
    results: dict  # (recipe, target) -> CVResult
    columns: tuple = TABLE1_RECIPES
    title: str = ""
    baseline: dict | None = None  # (BASELINE, target) -> CVResult, when not in results

    def format(self) -> str:
        head = "Spearman, honest K-fold CV (mean ± std over folds)" if self.protocol == "cv" else \
            "Spearman, the note's protocol (85/15 split, best epoch chosen on the test part: OPTIMISTIC)"
        lines = [self.title, head, ""] if self.title else [head, ""]
        lines.append(f"{'target':<11}" + "".join(f"| {self.label(name):<30}" for name, _ in self.columns))
        lines.append("-" * (11 + 32 * len(self.columns)))
        for target in self.targets():
            cells = [self.cell(name, target) for name, _ in self.columns]
            lines.append(f"{target + '-term':<11}" + "".join(f"| {c:<30}" for c in cells))
        lines.append("")
        lines.append(f"(+x%): change relative to the {dict(TABLE1_RECIPES)[BASELINE]}; (+x abs): the difference, "
                     f"shown when that baseline is below {RELATIVE_BASE_MIN} (a ratio to it would mean nothing)")
        used = [f"{t}-term {n} ({len(left)} left out: no features)" for t, (n, left) in self.videos().items()]
        lines.append("labelled videos used: " + ", ".join(used))
        if self.columns == TABLE1_RECIPES:
            lines.append(f"working note (900-video split): {note_table1_text()}")
        return "\n".join(lines)

    def targets(self) -> list[str]:
        """The targets that have results, in :data:`TARGETS` order."""
        return [t for t in TARGETS if any(key[1] == t for key in self.results)]

    def videos(self) -> dict:
        """``{target: (videos used, ids left out)}``, the left-out ids over the three models."""
        out = {}
        for target in TARGETS:
            found = [res for (_, t), res in self.results.items() if t == target]
            if found:
                left = np.unique(np.concatenate([np.asarray(r.left_out, dtype=object) for r in found]))
                out[target] = (max(r.n_videos for r in found), left)
        return out

    def cell(self, recipe: str, target: str) -> str:
        """``"mean ± std"`` of one model and target, with the change relative to the mean baseline."""
        res = self.results.get((recipe, target))
        if res is None:
            return "n/a"
        text = f"{res.mean:.4f} ± {res.std:.4f}"
        base = self.results.get((BASELINE, target)) or (self.baseline or {}).get((BASELINE, target))
        if recipe != BASELINE and base is not None:
            text += change_text(res.mean, base.mean)
        return text

    def label(self, recipe: str) -> str:
        """Column title with the frames per video that the model read, e.g. "LSTM on scores (4 frames)"."""
        label = dict(self.columns)[recipe]
        frames = {r.n_frames for (name, _), r in self.results.items() if name == recipe and r.n_frames}
        return f"{label} ({frames.pop()} frames)" if len(frames) == 1 else label

    def rows(self) -> list[dict]:
        return [
            {"recipe": r, "target": t, "mean": res.mean, "std": res.std, "folds": res.scores.tolist()}
            for (r, t), res in self.results.items()
        ]


def note_table1_text() -> str:
    """The working note's Table 1 in one line, models in :data:`TABLE1_RECIPES` order.

    Examples
    --------
    >>> note_table1_text()
    'short-term 0.4214 / 0.4230 / 0.4384, long-term 0.1867 / 0.1866 / 0.2015'
    """
    return ", ".join(
        f"{target}-term " + " / ".join(f"{NOTE_TABLE1[(name, target)]:.4f}" for name, _ in TABLE1_RECIPES)
        for target in TARGETS)


