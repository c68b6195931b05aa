"""The layout of results: the working note's Table 1, the second block beyond it, and the note's own figures.

A :class:`Table1` holds one :class:`~amnetvid_sk.evaluate.CVResult` per (recipe, target) and
lays them out with the change of each model relative to the mean-score baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


_CELL = 32  # characters of a cell; a longer column title widens every cell


def _interval_words() -> str:
    from .uncertainty import CONFIDENCE, N_RESAMPLES

    return f"{CONFIDENCE:.0%} interval: bootstrap over videos, {N_RESAMPLES} resamples, seed 0"


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
    _differences: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def format(self) -> str:
        """The table as text: each model's Spearman with its 95% interval, and under it the paired
        difference to the mean-score baseline with its own interval; then which differences the
        data support, and the videos used and left out."""
        head = (f"Spearman, honest K-fold CV (mean over folds) [{_interval_words()}]" if self.protocol == "cv" else
                "Spearman, the note's protocol (85/15 split, best epoch chosen on the test part: OPTIMISTIC; "
                f"mean over rounds) [{_interval_words()}]")
        lines = [self.title, head, ""] if self.title else [head, ""]
        rows = [(target, [self.cell(name, target) for name, _ in self.columns],
                 [self.difference_text(name, target) for name, _ in self.columns]) for target in self.targets()]
        texts = [self.label(name) for name, _ in self.columns] + [c for _, a, b in rows for c in a + b]
        width = max([_CELL] + [len(t) + 1 for t in texts])  # every cell fits its column
        lines.append(f"{'target':<11}" + "".join(f"| {self.label(name):<{width}}" for name, _ in self.columns))
        lines.append("-" * (11 + (width + 2) * len(self.columns)))
        for target, cells, diffs in rows:
            lines.append(f"{target + '-term':<11}" + "".join(f"| {c:<{width}}" for c in cells))
            if any(diffs):
                lines.append(f"{'  vs mean':<11}" + "".join(f"| {c:<{width}}" for c in diffs))
        lines.append("")
        lines.append(f"vs mean: the paired difference to the {dict(TABLE1_RECIPES)[BASELINE]} on the same videos "
                     "[its 95% interval] and the relative change (on the videos both models read, when they differ); "
                     "a difference is supported by the data when its interval excludes 0")
        lines += self.findings()
        lines += self._videos_lines()
        if self.columns == TABLE1_RECIPES:
            lines.append(f"working note (900-video split): {note_table1_text()}")
        return "\n".join(lines)

    def difference_text(self, recipe: str, target: str) -> str:
        """``+0.017 [-0.01, +0.04] (+4.0%)``: the paired difference to the baseline; "" where there is none."""
        diff = self.difference(recipe, target)
        if diff is None:
            return ""
        res, base = self.results[(recipe, target)], self._base(target)
        if diff.n_videos != res.n_videos or diff.n_videos != base.n_videos:
            return diff.text(signed=True) + f" (on {diff.n_videos} common)"
        relative = base.mean >= RELATIVE_BASE_MIN
        return diff.text(signed=True) + (change_text(res.mean, base.mean) if relative else "")

    def verdict(self) -> str:
        """In words: which differences to the baseline the data support (their interval excludes 0)."""
        supported, checked = [], 0
        for target in self.targets():
            for name, label in self.columns:
                diff = self.difference(name, target)
                if diff is None or not np.isfinite(diff.low):
                    continue
                checked += 1
                if diff.excludes_zero:
                    way = "above" if diff.estimate > 0 else "below"
                    supported.append(f"{label} {way} the baseline, {target}-term ({diff.text(signed=True)})")
        if not checked:
            return "no difference to the baseline could be tested (no paired predictions, or too few videos)"
        if not supported:
            return (f"the data support none of the {checked} differences to the baseline: every 95% interval "
                    "includes 0")
        return f"the data support {len(supported)} of {checked} differences: " + "; ".join(supported)

    def findings(self) -> list[str]:
        """What the table shows, in words: which differences the data support, and why a stacked
        ensemble below its members can be (the text table and the report both say it)."""
        return [self.verdict(), *self._stacked_note()]

    def _stacked_note(self) -> list[str]:
        """One sentence where the stacked ensemble falls below its best member: why it can, on this data."""
        out = []
        for target in self.targets():
            stacked = self.results.get(("stacked", target))
            members = [r.mean for (name, t), r in self.results.items() if t == target and name != "stacked"]
            base = self._base(target)
            members += [base.mean] if base is not None else []
            if stacked is None or not members or not stacked.mean < max(members):
                continue
            n_train = stacked.n_videos - stacked.n_videos // max(len(stacked.scores), 1)
            out.append(f"{target}-term: the stacked ensemble falls below its best member: it learns its weights "
                       f"from its members' inner out-of-fold predictions, each member trained on about "
                       f"{n_train * 4 // 5} of {n_train} training videos, and on so few its weights are mostly noise")
        return out

    def _videos_lines(self) -> list[str]:
        lines = []
        for target, (n, left) in self.videos().items():
            text = f"{target}-term: {n} labelled videos with features ({len(left)} left out: no features)"
            short = {name: res.short for (name, t), res in self.results.items() if t == target and res.short}
            for name, ids in short.items():
                text += f"; {dict(self.columns).get(name, name)}: {len(ids)} left out with fewer stored frames than it reads"
            lines.append(text)
        return lines

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
        """``0.4384 [0.39, 0.48]``: one model's fold-mean Spearman and its 95% interval (``mean ±
        std`` over folds for a run stored without predictions); undefined folds are counted."""
        res = self.results.get((recipe, target))
        if res is None:
            return "n/a"
        n, defined = len(res.scores), int(np.isfinite(res.scores).sum())
        if defined == 0:
            return f"undefined in all {n} folds"
        interval = res.interval
        text = interval.text() if interval is not None else f"{res.mean:.4f} ± {res.std:.4f}"
        base = self._base(target)
        if interval is None and recipe != BASELINE and base is not None:  # no paired difference: the change
            text += change_text(res.mean, base.mean)
        if defined < n:
            text += f" ({defined} of {n} folds)"
        return text

    def interval(self, recipe: str, target: str):
        """The :class:`~amnetvid_sk.uncertainty.Interval` of one model and target (None: no result,
        or a result without stored predictions)."""
        res = self.results.get((recipe, target))
        return None if res is None else res.interval

    def difference(self, recipe: str, target: str):
        """Paired difference of one model to the mean-score baseline on the same videos, an
        :class:`~amnetvid_sk.uncertainty.Interval` (None for the baseline itself, or without predictions)."""
        from .uncertainty import paired_difference

        res = self.results.get((recipe, target))
        base = self._base(target)
        if recipe == BASELINE or res is None or base is None or res.predictions is None or base.predictions is None:
            return None
        key = (recipe, target)
        if key not in self._differences:
            self._differences[key] = paired_difference(res.predictions, base.predictions)
        return self._differences[key]

    def _base(self, target: str):
        return self.results.get((BASELINE, target)) or (self.baseline or {}).get((BASELINE, target))

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


