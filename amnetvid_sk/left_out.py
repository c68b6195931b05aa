"""Why labelled videos have no features: a reason per video id, read from the store's tables.

Examples
--------
>>> from amnetvid_sk import FeatureStore
>>> FeatureStore("store_left_out", create=True).write_failure("clips/broken.mp4", "truncated file", "resmem-ab12", "frames=28")
>>> left_out_reasons("store_left_out", ["broken", "ghost"])
{'broken': 'failed to decode: truncated file', 'ghost': 'not extracted'}
"""

from __future__ import annotations

import os

__all__ = ["left_out_reasons"]


def left_out_reasons(store, ids, model: str | None = None, sampling: str | None = None) -> dict[str, str]:
    """For each of ``ids``, what the store says of its features for ``model`` and ``sampling``.

    Parameters
    ----------
    store : str, os.PathLike or FeatureStore
    ids : sequence of str
        Video ids, such as the labelled videos an evaluation left out.
    model : str, default=None
        Frame model (fingerprint, unique prefix or name); None: any.
    sampling : str, default=None
        Sampling key (``"frames=28"``, ``"fps=4"``); None: any.

    Returns
    -------
    dict of str to str
        ``id -> reason``, in the order of ``ids``: ``"failed to decode: <reason>"`` (the store's
        ``failures`` table), ``"not extracted"`` (no ``videos`` row and no failure), or
        ``"extracted, N frames stored"`` where a ``videos`` row exists (left out for another reason,
        such as fewer frames than the pipeline reads).

    Examples
    --------
    >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store
    >>> ids = write_synthetic_store("store_reasons", *make_moving_peak_dataset(1))  # syn0000, 4 frames
    >>> left_out_reasons("store_reasons", ["syn0000", "ghost"], sampling="frames=4")
    {'syn0000': 'extracted, 4 frames stored', 'ghost': 'not extracted'}
    """
    from .store import FeatureStore

    fs = store if isinstance(store, FeatureStore) else FeatureStore(os.fspath(store))
    ids = [str(i) for i in ids]
    params = {"ids": ids, "model": None if model is None else fs.resolve_model(model), "sampling": sampling}
    stored = fs.sql("""
        SELECT video_id, max(n_frames) AS n FROM videos
        SEMI JOIN (SELECT unnest($ids::VARCHAR[]) AS video_id) AS mine USING (video_id)
        WHERE ($model IS NULL OR model = $model) AND ($sampling IS NULL OR sampling = $sampling)
        GROUP BY video_id""", params)
    failed = fs.sql("""
        SELECT video_id, arg_max(reason, failed_at) AS reason FROM failures
        SEMI JOIN (SELECT unnest($ids::VARCHAR[]) AS video_id) AS mine USING (video_id)
        WHERE ($model IS NULL OR model = $model) AND ($sampling IS NULL OR sampling = $sampling)
        GROUP BY video_id""", params)
    frames = dict(zip(stored.column("video_id").to_pylist(), stored.column("n").to_pylist()))
    reasons = dict(zip(failed.column("video_id").to_pylist(), failed.column("reason").to_pylist()))
    return {vid: f"extracted, {frames[vid]} frames stored" if vid in frames
            else f"failed to decode: {reasons[vid]}" if vid in reasons else "not extracted" for vid in ids}
