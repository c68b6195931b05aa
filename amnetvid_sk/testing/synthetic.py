"""Synthetic data sets whose labels only a sequence model can see.

Used by the tests ("the networks learn") and by ``bench/bench_training.py``. Each set
plants the label in the *order* of the frames, so the note's baseline (the mean of the
frame scores) has nothing to go on, while a network over the sequence does.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..store import FeatureStore, frames_table, new_extraction_id
from ..video import sampling_key

__all__ = ["make_moving_peak_dataset", "make_score_order_dataset", "moving_peak_inputs", "write_synthetic_store"]


def _check_peak_fits(n_frames: int, size: int, max_speed: float, sigmas: tuple, margin: float) -> None:
    """Raise a ValueError unless there are 3 ``sigmas`` and the fastest path fits in the map."""
    if len(sigmas) != 3:
        raise ValueError(f"sigmas must hold 3 widths (one per map); got {sigmas!r}.")
    span = max_speed * (n_frames - 1)
    if span > size - 1 - 2 * margin:
        raise ValueError(
            f"max_speed={max_speed} over n_frames={n_frames} moves the peak {span} pixels, "
            f"more than fits in size={size}; lower max_speed or raise size."
        )


def _peak_paths(rng, n: int, n_frames: int, seed: int, size: int, max_speed: float, margin: float,
                jitter: float):
    """Each video's signed speed and its peak's column and row per frame: ``(speed [n], x [n, T],
    rows [n, T])``."""
    speed = rng.uniform(-max_speed, max_speed, size=n)
    t = np.arange(n_frames)
    # start anywhere that keeps the whole path inside the map
    low = margin - np.minimum(0.0, speed * (n_frames - 1))
    high = size - 1 - margin - np.maximum(0.0, speed * (n_frames - 1))
    x0 = rng.uniform(low, high)
    row = rng.uniform(margin, size - 1 - margin, size=n)
    x = x0[:, None] + speed[:, None] * t[None, :]  # [n, T]
    rows = np.repeat(row[:, None], n_frames, axis=1)  # [n, T]
    if jitter:
        # its own generator, so that jitter=0 leaves every other draw (and array) as it was
        shake = np.random.default_rng([seed, 1]).normal(0.0, jitter, size=(2, n, n_frames))
        x, rows = x + shake[0], rows + shake[1]
    return speed, x, rows


def _gaussian_maps(x, rows, n: int, n_frames: int, size: int, sigmas: tuple):
    """The three maps per frame: Gaussians of widths ``sigmas`` centred on the peak at ``(rows, x)``,
    each normalised to sum 1."""
    grid = np.arange(size, dtype=np.float64)
    dx2 = (grid[None, None, :] - x[:, :, None]) ** 2  # [n, T, W]
    dy2 = (grid[None, None, :] - rows[:, :, None]) ** 2  # [n, T, H]
    maps = np.empty((n, n_frames, 3, size, size), dtype=np.float32)
    for k, sigma in enumerate(sigmas):
        g = np.exp(-dy2[:, :, :, None] / (2 * sigma**2)) * np.exp(-dx2[:, :, None, :] / (2 * sigma**2))
        maps[:, :, k] = g / g.sum(axis=(-2, -1), keepdims=True)
    return maps


def _frame_scores(rng, n: int, n_frames: int):
    """Frame scores uniform in [0, 1], independent of the speed."""
    return rng.uniform(0.0, 1.0, size=(n, n_frames)).astype(np.float32)


def _speed_labels(rng, n: int, speed, max_speed: float, noise: float):
    """Labels: a monotone function of the speed plus Gaussian noise, clipped to [0, 1]."""
    y = 0.5 + 0.35 * speed / max_speed + rng.normal(0.0, noise, size=n)
    return np.clip(y, 0.0, 1.0).astype(np.float32)


def make_moving_peak_dataset(
    n: int,
    n_frames: int = 4,
    seed: int = 0,
    *,
    size: int = 14,
    max_speed: float = 2.5,
    sigmas: tuple = (1.0, 1.5, 2.5),
    noise: float = 0.02,
    jitter: float = 0.0,
):
    """Attention maps with a Gaussian peak moving across the frames; label = its speed.

    Each video has one peak that moves horizontally at a constant signed speed ``v``
    (pixels per frame, uniform in ``[-max_speed, max_speed]``; negative = right to
    left) from a random start, at a random constant height. Its three maps per frame
    are Gaussians of widths ``sigmas`` centred on the peak, each normalised to sum 1
    (the shape and meaning of the frame models' attention maps). The label is a
    monotone function of ``v``: ``0.5 + 0.35 * v / max_speed`` plus Gaussian noise of
    standard deviation ``noise``, clipped to [0, 1]. Frame scores are drawn uniformly
    in [0, 1] independently of ``v``, so the mean of the frame scores cannot predict
    the label, and a single frame (a peak at some position) cannot either.

    With ``jitter`` the peak also shakes: each frame's position moves by Gaussian noise of that
    standard deviation (pixels, both axes), so a few frames estimate the speed less well than
    many, as with a long stored sequence (28 frames, as the note stores) seen 4 at a time.

    Parameters
    ----------
    n : int
        Number of videos.
    n_frames : int, default=4
        Frames per video.
    seed : int, default=0
        Seed of the generator; the same seed gives the same arrays.
    size : int, default=14
        Side of the square maps (14 like AMNet's attention).
    max_speed : float, default=2.5
        Largest speed in pixels per frame. The whole path must fit in the map:
        ``max_speed * (n_frames - 1) <= size - 4`` (about 0.35 for 28 frames of 14x14).
    sigmas : tuple of 3 float, default=(1.0, 1.5, 2.5)
        Widths of the Gaussians of the three maps, in pixels.
    noise : float, default=0.02
        Standard deviation of the label noise.
    jitter : float, default=0.0
        Standard deviation of the peak's per-frame shake, in pixels (0: a straight path; the
        arrays are then the same as without this parameter).

    Returns
    -------
    maps : ndarray of float32, shape (n, n_frames, 3, size, size)
        Each map is non-negative and sums to 1.
    scores : ndarray of float32, shape (n, n_frames)
        Frame scores in [0, 1], independent of the label.
    y : ndarray of float32, shape (n,)
        Labels in [0, 1].

    Examples
    --------
    >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset
    >>> maps, scores, y = make_moving_peak_dataset(8)
    >>> maps.shape, scores.shape, y.shape
    ((8, 4, 3, 14, 14), (8, 4), (8,))
    >>> make_moving_peak_dataset(8, n_frames=28, max_speed=0.35, jitter=0.5)[0].shape
    (8, 28, 3, 14, 14)
    """
    margin = 1.5
    _check_peak_fits(n_frames, size, max_speed, sigmas, margin)
    rng = np.random.default_rng(seed)
    speed, x, rows = _peak_paths(rng, n, n_frames, seed, size, max_speed, margin, jitter)
    maps = _gaussian_maps(x, rows, n, n_frames, size, sigmas)
    scores = _frame_scores(rng, n, n_frames)
    return maps, scores, _speed_labels(rng, n, speed, max_speed, noise)


def moving_peak_inputs(n: int, seed: int = 0, **kwargs):
    """The moving-peak set (:func:`make_moving_peak_dataset`) as the sequence regressors take it:
    ``({"maps": maps, "scores": scores}, y)``.

    Examples
    --------
    >>> X, y = moving_peak_inputs(5, seed=1)
    >>> X["maps"].shape, X["scores"].shape, y.shape
    ((5, 4, 3, 14, 14), (5, 4), (5,))
    """
    maps, scores, y = make_moving_peak_dataset(n, seed=seed, **kwargs)
    return {"maps": maps, "scores": scores}, y


def make_score_order_dataset(n: int, n_frames: int = 4, seed: int = 0, *, noise: float = 0.02):
    """Frame scores whose *order* sets the label; their multiset is the same in every order.

    Each row draws ``n_frames`` distinct scores uniformly in [0, 1] and shuffles them.
    The label grows with how much the scores rise over time:
    ``0.5 + 0.4 * rho_t`` plus noise, where ``rho_t`` is the Spearman correlation
    between frame index and score (1 = increasing, -1 = decreasing). A permutation
    does not change the mean, so the mean of the frame scores cannot predict it.

    Parameters
    ----------
    n : int
        Number of videos.
    n_frames : int, default=4
        Frames per video.
    seed : int, default=0
        Seed of the generator.
    noise : float, default=0.02
        Standard deviation of the label noise.

    Returns
    -------
    scores : ndarray of float32, shape (n, n_frames)
    y : ndarray of float32, shape (n,)
        Labels in [0, 1].

    Examples
    --------
    >>> from amnetvid_sk.testing.synthetic import make_score_order_dataset
    >>> scores, y = make_score_order_dataset(5)
    >>> scores.shape, y.shape
    ((5, 4), (5,))
    """
    if n_frames < 2:
        raise ValueError(f"n_frames must be at least 2 to have an order; got {n_frames}.")
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.0, 1.0, size=(n, n_frames))
    scores = rng.permuted(scores, axis=1)
    # Spearman of (t, scores) per row: Pearson of the ranks (scores are distinct a.s.)
    ranks = scores.argsort(axis=1).argsort(axis=1).astype(np.float64)
    t = np.arange(n_frames, dtype=np.float64)
    rc, tc = ranks - ranks.mean(axis=1, keepdims=True), t - t.mean()
    rho = (rc * tc).sum(axis=1) / np.sqrt((rc**2).sum(axis=1) * (tc**2).sum())
    y = 0.5 + 0.4 * rho + rng.normal(0.0, noise, size=n)
    return scores.astype(np.float32), np.clip(y, 0.0, 1.0).astype(np.float32)


def write_synthetic_store(path, maps, scores, short, long=None, prefix="syn", stored=None, sampling=None):
    """Write synthetic features and labels into a feature store, as extraction would.

    For trying pipelines, tests and benchmarks without videos. Video ids are
    ``f"{prefix}{i:04d}"``; the frame model is registered as ``"synthetic"``.

    ``stored`` (one count per video, at most the T of ``scores``) keeps only the first
    ``stored[i]`` frames of video i, as a sampling by frame rate gives clips of different
    lengths; ``sampling`` is the sampling key written (default ``"frames=T"``, or ``"fps=4"``
    with ``stored``).

    Returns
    -------
    ids : ndarray of str

    Examples
    --------
    >>> import tempfile
    >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store
    >>> maps, scores, y = make_moving_peak_dataset(5)
    >>> write_synthetic_store(tempfile.mkdtemp(), maps, scores, y).tolist()
    ['syn0000', 'syn0001', 'syn0002', 'syn0003', 'syn0004']
    >>> ids = write_synthetic_store(tempfile.mkdtemp(), maps, scores, y, stored=[4, 3, 2, 4, 1])
    """
    fs = FeatureStore(path, create=True)
    model = "synthetic.w-000000000000.pre-none.maps-3x14x14.fp32"
    fs.write_model(model, "synthetic", {"name": "synthetic"}, (3, 14, 14))
    n, t = scores.shape
    counts = np.full(n, t) if stored is None else np.asarray(stored, dtype=np.int64)
    if len(counts) != n or counts.min(initial=1) < 1 or counts.max(initial=t) > t:
        raise ValueError(f"stored must hold {n} counts between 1 and {t}; got {counts.tolist()}")
    key = sampling or (sampling_key(n_frames=t) if stored is None else sampling_key(fps=4.0))
    videos, frames, ids = [], [], []
    for i in range(n):
        eid = new_extraction_id()
        vid = f"{prefix}{i:04d}"
        ids.append(vid)
        c = int(counts[i])
        videos.append({"extraction_id": eid, "video_id": vid, "path": f"/synthetic/{vid}.mp4", "size": 1,
                       "mtime": 0.0, "duration": 1.0 if stored is None else c / 4.0, "fps": float(t), "frame_count": c, "width": 14,
                       "height": 14, "model": model, "sampling": key, "n_frames": c, "short": False})
        frames.append(frames_table(eid, np.arange(c), np.arange(c) / t, scores[i, :c], maps[i, :c]))
    fs.write_extractions(videos, pa.concat_tables(frames))
    long = short if long is None else long
    fs.write_labels({"video_id": ids, "short_term": [float(v) for v in short], "n_short": [30] * n,
                     "long_term": [float(v) for v in long], "n_long": [10] * n, "source": ["synthetic"] * n})
    return np.array(ids, dtype=object)
