"""Which stored frames a read returns: T spread over each video's own frames, and what fills
the row of a video that holds fewer than the row needs.

Pure functions of frame counts; nothing is read here.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..errors import StoreError
from .schema import fmt_ids, unique_in_order

__all__ = ["SHORT_POLICIES", "frames_wanted", "pick_rows", "positions"]

#: What a read does with a video holding fewer frames than a row holds (``short=`` of read_arrays)
SHORT_POLICIES = ("error", "stretch", "repeat-last", "nan")


def positions(counts: np.ndarray, t: int) -> np.ndarray:
    """[n, t] positions among the stored frames of each video: round(k * (cnt - 1) / (t - 1))
    rounding halves up (t=1: the middle one, ``cnt // 2``).

    Examples
    --------
    >>> positions(np.array([28, 3]), 3).tolist()
    [[0, 14, 27], [0, 1, 2]]
    """
    cnt = counts.astype(np.int64)[:, None]
    if t == 1:
        return cnt // 2
    k = np.arange(t, dtype=np.int64)[None, :]
    return (2 * k * (cnt - 1) + (t - 1)) // (2 * (t - 1))


def pick_rows(held: np.ndarray, stored: np.ndarray, t: int, short: str):
    """``[n, t]`` rows to take among each video's rows in a :class:`Frames`, and where they are
    valid (None: everywhere).

    A video's rows are its ``stored`` frames (layout "all", ``held == stored``), or the T picked by
    :func:`positions` (an int layout, ``held == t``: for a video with fewer stored frames than T,
    its stored frames stretched, each repeated in turn). A video with ``stored >= t`` gets its first
    ``t`` rows in the int layout, and all of them otherwise (then ``t == stored``).

    Examples
    --------
    >>> pick_rows(np.array([4, 2]), np.array([4, 2]), 4, "repeat-last")[0].tolist()  # layout "all"
    [[0, 1, 2, 3], [0, 1, 1, 1]]
    >>> pick_rows(np.array([4, 4]), np.array([4, 2]), 4, "repeat-last")[0].tolist()  # layout 4: [0, 0, 1, 1]
    [[0, 1, 2, 3], [0, 2, 2, 2]]
    >>> pick, valid = pick_rows(np.array([3, 2]), np.array([3, 2]), 3, "nan")
    >>> pick.tolist(), valid.tolist()
    ([[0, 1, 2], [0, 1, 1]], [[True, True, True], [True, True, False]])
    """
    k = np.arange(t, dtype=np.int64)
    pick = np.broadcast_to(k, (len(held), t)).copy()
    few = np.flatnonzero(stored < t)
    if len(few) == 0:
        return pick, None
    cnt = stored[few].astype(np.int64)
    if short == "stretch":
        want = positions(cnt, t)
    else:  # repeat-last, nan: the stored frames in order, then the last again (nan: marked invalid)
        want = np.minimum(k[None, :], cnt[:, None] - 1)
    stretched = held[few] == t  # an int layout holds the stretched frames: find each stored frame there
    if stretched.any():
        pos = positions(cnt[stretched], t)
        want[stretched] = (pos[:, None, :] < want[stretched][:, :, None]).sum(-1)
    pick[few] = want
    if short != "nan":
        return pick, None
    valid = np.ones(pick.shape, dtype=bool)
    valid[few] = k[None, :] < cnt[:, None]
    return pick, valid


def frames_wanted(stored: np.ndarray, n_frames: int | None, ids_arr: pa.Array, short: str = "error") -> int:
    """T, the frames per video to return, given the stored frame counts of the videos asked for.

    With ``short="error"``, more frames than a video has stored is an error (repeating frames
    would feed a sequence model a clip it never saw unless asked), and so are videos of
    different lengths with ``n_frames=None``; any other policy fills the short rows.
    """
    n = len(stored)
    if short != "error":
        return int(n_frames) if n_frames is not None else (int(stored.max()) if n else 0)
    if n_frames is not None:
        if n and int(stored.min()) < n_frames:
            short = np.flatnonzero(stored < n_frames)
            fewest = int(stored.min())
            named = fmt_ids(unique_in_order(ids_arr.take(pa.array(short[:50])).to_pylist()))
            raise StoreError(
                f"n_frames={int(n_frames)} asks for more frames than {len(short)} of the {n} requested videos "
                f"have stored (fewest: {fewest}): {named}; pass n_frames <= {fewest}, or extract again with "
                f"--frames {int(n_frames)} or more, or let short videos be filled (short_videos='stretch' or "
                f"'repeat-last' in Python, --short-videos on the command line)")
        return int(n_frames)
    counts = np.unique(stored)
    if len(counts) > 1:
        raise StoreError(
            f"the requested videos have different numbers of stored frames ({len(counts)} distinct: "
            f"{', '.join(map(str, counts[:5]))}{'...' if len(counts) > 5 else ''}); pass n_frames=T to "
            "pick T frames per video (--n-frames T on the command line), or short='nan' to pad the shorter "
            "rows with NaN")
    return int(counts[0]) if n else 0
