"""The demo's labels and the file that holds them (MediaEval's format).

Label rule (synthetic, not human data), applied to what the frame model gave each
clip, with one term for each family of models to see:

- ``m``, the mean frame score (the mean-score baseline sees it);
- ``r``, how the frame scores *rise* over the clip (their least-squares slope over
  time, a recency effect: the score LSTM sees the order of the scores);
- ``a``, how the attention *moves* (:func:`attention_drift`: the slope of the
  attention's horizontal centre plus that of its spread; AMNetVid and the Conv3D
  network see the maps in order);
- ``c``, what the photograph is (:func:`content_axis`: the main axis of the clips'
  mean embeddings; the embedding ridge sees it).

With ``z()`` standardising over the demo set, ``short_term = 0.75 + 0.03 z(m) +
0.03 z(r) + 0.04 z(a) + 0.03 z(c) + noise(sd 0.015)`` and ``long_term = 0.45 +
0.02 z(m) + 0.02 z(r) + 0.03 z(a) + 0.03 z(c) + noise(sd 0.03)``, clipped to
[0, 1]. Both clips of a pan or zoom pair have the same mean score and content but
opposite ``r`` and ``a``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

__all__ = ["REPORT_DESCRIPTION", "attention_drift", "content_axis", "demo_labels", "write_demo_labels"]

def _slope(values: np.ndarray) -> np.ndarray:
    """Least-squares slope over time (0..1) of each row of ``values`` ``[n, T]``."""
    t = np.linspace(0.0, 1.0, values.shape[1])
    t = t - t.mean()
    return ((values - values.mean(axis=1, keepdims=True)) * t).sum(axis=1) / max((t ** 2).sum(), 1e-12)


def _z(v: np.ndarray) -> np.ndarray:
    return (v - v.mean()) / (v.std() or 1.0)


def attention_drift(maps: np.ndarray) -> np.ndarray:
    """How the attention moves over a clip, one number per clip, from maps ``[n, T, K, h, w]``.

    The slope over time of the horizontal centre of the attention (the K maps averaged) plus
    the slope of its spread (mean distance from that centre), each standardised: a pan moves
    the centre, a zoom widens or narrows the spread. Only a model that sees the maps in
    order (AMNetVid, the Conv3D network) can tell it.

    Examples
    --------
    >>> maps = np.zeros((2, 3, 1, 4, 4)); maps[0, [0, 1, 2], 0, 1, [0, 1, 2]] = 1; maps[1, [0, 1, 2], 0, 1, [2, 1, 0]] = 1
    >>> drift = attention_drift(maps)
    >>> bool(drift[0] > drift[1])  # moving right beats moving left
    True
    """
    m = np.asarray(maps, dtype=np.float64).mean(axis=2)  # [n, T, h, w]
    m = m / np.maximum(m.sum(axis=(-2, -1), keepdims=True), 1e-12)
    h, w = m.shape[-2:]
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    cx = (m * xx).sum(axis=(-2, -1))
    cy = (m * yy).sum(axis=(-2, -1))
    spread = (m * np.hypot(xx[None, None] - cx[..., None, None], yy[None, None] - cy[..., None, None])).sum(axis=(-2, -1))
    return _z(_z(_slope(cx)) + _z(_slope(spread)))


def content_axis(embeddings: np.ndarray) -> np.ndarray:
    """The clips' position on the main axis of their frame model's internal state, one number per clip.

    The first principal component of the clips' mean embeddings ``[n, D]``: what the photographs
    are, beyond how memorable the frame model finds each frame. A ridge on the embeddings can learn it.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> axis = content_axis(rng.normal(size=(6, 5)))
    >>> axis.shape, bool(abs(axis.mean()) < 1e-9)
    ((6,), True)
    """
    e = np.asarray(embeddings, dtype=np.float64)
    e = (e - e.mean(axis=0)) / np.maximum(e.std(axis=0), 1e-12)
    _, _, vt = np.linalg.svd(e, full_matrices=False)
    pc = e @ vt[0]
    return _z(pc * np.sign(vt[0].sum() or 1.0))  # the sign fixed, so the same data give the same labels


def demo_labels(scores: np.ndarray, maps: np.ndarray, embeddings: np.ndarray, seed: int = 0):
    """The demo's label rule (see the module docstring and the README).

    Parameters
    ----------
    scores : ndarray of shape (n, T)
        Frame scores.
    maps : ndarray of shape (n, T, K, h, w)
        Attention maps of the same frames.
    embeddings : ndarray of shape (n, D)
        Each clip's mean frame embedding.
    seed : int, default=0
        Seed of the noise.

    Returns
    -------
    short_term, long_term : ndarray of shape (n,), in [0, 1]

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> short, long = demo_labels(rng.random((8, 4)), rng.random((8, 4, 3, 14, 14)), rng.normal(size=(8, 16)))
    >>> short.shape, bool(((0 <= long) & (long <= 1)).all())
    ((8,), True)
    """
    scores = np.asarray(scores, dtype=np.float64)
    m, r = _z(scores.mean(axis=1)), _z(_slope(scores))
    a, c = attention_drift(maps), content_axis(embeddings)
    rng = np.random.default_rng(seed)
    short = 0.75 + 0.03 * m + 0.03 * r + 0.04 * a + 0.03 * c + rng.normal(0, 0.015, len(m))
    long = 0.45 + 0.02 * m + 0.02 * r + 0.03 * a + 0.03 * c + rng.normal(0, 0.03, len(m))
    return np.clip(short, 0, 1), np.clip(long, 0, 1)


def write_demo_labels(path, ids, short, long) -> Path:
    """Write labels in the MediaEval 2018/2019 format (``video,short-term_memorability,...``)."""
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "short-term_memorability", "nb_short-term_annotations",
                    "long-term_memorability", "nb_long-term_annotations"])
        for vid, s_, l_ in zip(ids, short, long):
            w.writerow([f"{vid}.mp4", f"{s_:.3f}", 40, f"{l_:.3f}", 12])
    return path


REPORT_DESCRIPTION = """<p>Clips made from scikit-image photographs (pans and zooms, 4 per photograph);
frame model ResMem with Grad-CAM attention maps. <b>The labels come from a stated synthetic rule, not from
people</b>, with one term for each family of models to see. With <i>z()</i> standardising over the demo set:</p>
<ul>
<li><i>m</i>, the mean frame score ResMem gives the clip (the mean-score baseline sees it);</li>
<li><i>r</i>, how the frame scores <i>rise</i> over the clip (their least-squares slope over time, a recency
effect: the score LSTM sees the order of the scores);</li>
<li><i>a</i>, how the attention <i>moves</i>: the slope of the attention's horizontal centre plus that of its
spread (a pan moves it, a zoom widens or narrows it: AMNetVid and the Conv3D network see the maps in order);</li>
<li><i>c</i>, what the photograph is: the clip's position on the main axis (first principal component) of the
clips' mean ResMem embeddings (the embedding ridge sees it).</li>
</ul>
<p><code>short_term = 0.75 + 0.03 z(m) + 0.03 z(r) + 0.04 z(a) + 0.03 z(c) + noise (sd 0.015)</code> and
<code>long_term = 0.45 + 0.02 z(m) + 0.02 z(r) + 0.03 z(a) + 0.03 z(c) + noise (sd 0.03)</code>, clipped to
[0, 1]. The two clips of a pan or zoom pair hold the same frames in opposite order: same <i>m</i> and <i>c</i>,
opposite <i>r</i> and <i>a</i>.</p>"""
