"""Predict memorability of video files with a fitted pipeline, extracting missing features first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _store_steps(pipeline):
    """The pipeline steps that read from the store (they have a ``store`` parameter)."""
    return [step for _, step in pipeline.steps if "store" in step.get_params(deep=False)]


def predict_videos(pipeline, paths, store=None, *, progress=True, workers=2, device=None):
    """Predict for video files: extract the features that are missing, then ``predict``.

    The frame model and sampling are those the pipeline was trained with (read from
    the store: the fitted first step's ``model_`` fingerprint and the sampling stored
    for it), so new videos get features comparable with the training data.

    Parameters
    ----------
    pipeline : fitted sklearn Pipeline, or a path to one saved with joblib
    paths : file, folder, glob or list of these
    store : str or Path, default=None
        Where features are read and written; None keeps the pipeline's own store.

    Returns
    -------
    ids : ndarray of str
    predictions : ndarray of float
    summary : ExtractionSummary
        What the extraction did (videos that failed to decode are left out of ``ids``).

    Examples
    --------
    >>> ids, pred, _ = predict_videos("model.joblib", ["new1.mp4", "new2.mp4"])  # doctest: +SKIP
    """
    import joblib

    from .extract import expand_paths, extract
    from .frame_models import make_frame_model
    from .store import FeatureStore

    if isinstance(pipeline, (str, Path)):
        pipeline = joblib.load(pipeline)
    steps = _store_steps(pipeline)
    if not steps:
        raise ValueError("this pipeline has no step that reads from a feature store")
    if store is not None:
        for step in steps:
            step.set_params(store=store)
    store = steps[0].store
    fingerprint = getattr(steps[0], "model_", None)
    fs = FeatureStore(store)
    if fingerprint is None:
        fingerprint = fs.resolve_model(None)
    record = fs.sql("SELECT name, config FROM models WHERE model = ?", [fingerprint]).to_pylist()
    if not record:
        raise ValueError(
            f"the store {str(store)!r} does not know the frame model {fingerprint!r} this pipeline was "
            "trained with; pass the store the pipeline was trained on"
        )
    config = json.loads(record[0]["config"] or "{}")
    samplings = fs.sql("SELECT DISTINCT sampling FROM videos WHERE model = ?", [fingerprint]).column(0).to_pylist()
    sampling = samplings[0] if samplings else "frames=28"
    kind, value = sampling.split("=")
    name = record[0]["name"]
    # ResMem's weights come from its package; only AMNet takes a weights file
    model = make_frame_model(name, weights=config.get("weights") if name == "amnet" else None, device=device,
                             bfloat16=bool(config.get("bfloat16", False)))
    if model.fingerprint != fingerprint:
        raise ValueError(
            f"the frame model rebuilt from the store ({model.fingerprint}) differs from the one the "
            f"pipeline was trained with ({fingerprint}); were its weights changed?"
        )
    files = expand_paths(paths)
    summary = extract(files, store=store, frame_model=model,
                      n_frames=int(value) if kind == "frames" else None,
                      fps=float(value) if kind == "fps" else None, workers=workers, progress=progress)
    failed = {Path(p).stem for p, _ in summary.failed}
    ids = np.array([p.stem for p in files if p.stem not in failed], dtype=object)
    predictions = pipeline.predict(ids) if len(ids) else np.zeros(0)
    return ids, np.asarray(predictions, dtype=float).ravel(), summary
