"""What an extraction run did: :class:`ExtractionSummary`, and the error of a run that filled the disk."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import StoreFullError
from .inputs import LISTED

__all__ = ["ExtractionSummary", "store_full_error"]


@dataclass
class ExtractionSummary:
    """What an extraction run did.

    Attributes
    ----------
    extracted : list of str
        Paths whose features were computed and written.
    skipped : list of str
        Paths already in the store with the same file identity, model and sampling.
    failed : list of (str, str)
        Paths that could not be read, with the reason (also in the ``failures`` table).
    n_frames : int
        Frames that went through the frame model.
    seconds : float
        Wall-clock time of the run.
    """

    extracted: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    n_frames: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No input failed."""
        return not self.failed

    def merge(self, other: "ExtractionSummary") -> None:
        """Add another run's (a worker's) videos and frames to this summary."""
        self.extracted += other.extracted
        self.skipped += other.skipped
        self.failed += other.failed
        self.n_frames += other.n_frames

    def report(self) -> str:
        """A few lines for people: counts, frames and time, then each failure.

        Examples
        --------
        >>> from amnetvid_sk.extraction import ExtractionSummary
        >>> print(ExtractionSummary(extracted=["a.mp4"], n_frames=28, seconds=2.0).report())
        extracted 1, skipped 0 (already in the store), failed 0; 28 frames in 2.0 s
        """
        lines = [
            f"extracted {len(self.extracted)}, skipped {len(self.skipped)} (already in the store), "
            f"failed {len(self.failed)}; {self.n_frames} frames in {self.seconds:.1f} s"
        ]
        for path, reason in self.failed:
            lines.append(f"  failed: {path}: {reason}")
        return "\n".join(lines)


def store_full_error(path: Path, summary: ExtractionSummary, n_todo: int) -> StoreFullError:
    """The error of a run that filled the disk: what was written and kept, and that a rerun continues."""
    kept = summary.extracted
    named = ", ".join(os.path.basename(p) for p in kept[:LISTED]) + (", ..." if len(kept) > LISTED else "")
    return StoreFullError(
        f"no space left on the disk of the store {str(path)!r}: {len(kept)} of the {n_todo} videos to extract "
        f"were written and are kept{' (' + named + ')' if kept else ''}; free space and run the same command "
        "again to extract the rest")
