"""Videos with fewer stored frames than a model reads: which they are, and what is done with them.

A store of real clips holds videos of every length: sampled at ``--fps 4``, a 0.4 s clip has 2
frames and a 10 s clip 40. A model that reads T frames per video picks T spread over each
video's own stored frames; a video with fewer than T is *short*, and the reader step's
``short_videos`` parameter says what happens to it:

- ``"drop"`` (default): left out of training, evaluation and prediction, with a warning that
  names and counts the videos (:func:`split_short`); a pipeline asked to transform one raises;
- ``"stretch"``: its frames spread over the T steps, each repeated in turn (``[0, 0, 1, 1]`` for
  2 frames of 4), the same uniform pick as for longer videos;
- ``"repeat-last"``: its frames in order, then the last repeated (``[0, 1, 1, 1]``);
- ``"error"``: an error naming the videos and their counts.
"""

from __future__ import annotations

__all__ = ["SHORT_VIDEOS", "read_policy", "split_short", "short_message"]

#: the values of the reader steps' ``short_videos`` parameter (and of ``--short-videos``)
SHORT_VIDEOS = ("drop", "stretch", "repeat-last", "error")


def read_policy(short_videos: str) -> str:
    """The store's ``short=`` for a reader's ``short_videos``: a dropped video that still reaches
    a read is an error there (the read cannot leave a row out).

    Examples
    --------
    >>> read_policy("drop"), read_policy("stretch")
    ('error', 'stretch')
    """
    return "error" if short_videos in ("drop", "error") else short_videos


def _stored_counts(step, fs) -> dict:
    model = getattr(step, "model_", None) or fs.resolve_model(step.model)
    sampling = getattr(step, "sampling_", None) or fs.resolve_sampling(model, step.sampling)
    rows = fs.sql("SELECT video_id, n_frames FROM videos WHERE model = ? AND sampling = ?", [model, sampling])
    return dict(zip(rows["video_id"].to_pylist(), rows["n_frames"].to_pylist()))


def split_short(pipeline, ids) -> tuple:
    """``(kept ids, {id: (stored frames, frames read)})``: the videos each reader step with
    ``short_videos="drop"`` leaves out because they hold fewer stored frames than it reads.

    Ids the store does not hold for a reader are kept here (the read names them later).

    Examples
    --------
    >>> import tempfile
    >>> from sklearn.pipeline import Pipeline
    >>> from amnetvid_sk import FrameScores, MeanScoreRegressor
    >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store
    >>> store = tempfile.mkdtemp()
    >>> ids = write_synthetic_store(store, *make_moving_peak_dataset(3), stored=[4, 2, 3])
    >>> pipe = Pipeline([("frames", FrameScores(store, n_frames=3)), ("mean", MeanScoreRegressor())])
    >>> kept, short = split_short(pipe, ids)
    >>> kept.tolist(), short
    (['syn0000', 'syn0002'], {'syn0001': (2, 3)})
    """
    import numpy as np

    from .pipelines import store_steps
    from .store import FeatureStore

    ids = np.asarray(ids, dtype=object)
    short: dict = {}
    for _, step in store_steps(pipeline):
        params = step.get_params(deep=False)
        wanted = params.get("n_frames")
        if wanted is None or params.get("short_videos", "drop") != "drop":
            continue
        counts = _stored_counts(step, FeatureStore(getattr(step, "store_", None) or step.store))
        for vid in ids:
            stored = counts.get(vid)
            if stored is not None and stored < wanted and vid not in short:
                short[vid] = (int(stored), int(wanted))
    keep = np.array([vid not in short for vid in ids], dtype=bool)
    return ids[keep], short


def short_message(short: dict, n_total: int, what: str) -> str:
    """One line naming (the first few of) the short videos left out and counting them.

    Examples
    --------
    >>> short_message({"clip7": (2, 4)}, 40, "videos with a short-term label")
    "1 of 40 videos with a short-term label hold fewer stored frames than the model reads and were left out: 'clip7' (2 of 4); keep them with --short-videos stretch or repeat-last (short_videos= in Python)"
    """
    named = ", ".join(f"{vid!r} ({s} of {t})" for vid, (s, t) in list(short.items())[:5])
    more = ", ..." if len(short) > 5 else ""
    return (f"{len(short)} of {n_total} {what} hold fewer stored frames than the model reads and were left "
            f"out: {named}{more}; keep them with --short-videos stretch or repeat-last (short_videos= in Python)")
