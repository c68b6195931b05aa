"""Predict memorability of video files with a fitted pipeline, extracting missing features first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def predict_videos(pipeline, paths, store=None, *, progress=True, workers=2, device=None, ids="stem"):
    """Predict for video files: extract the features that are missing, then ``predict``.

    New videos are extracted with exactly the frame model (fingerprint, precision
    included) and the sampling the pipeline was fitted on, as its first step
    recorded them (``model_``, ``sampling_``), so that their features are
    comparable with the training data. The frame model is rebuilt from the class
    and parameters the store's ``models`` table records for that fingerprint
    (see :class:`~amnetvid_sk.frame_models.FrameModelSpec`), so a model of your
    own (``"module:Class"``) rebuilds too, where its module can be imported. When that precision is bfloat16 and this
    machine only emulates it, the run says so (it is slow, but a float32 run
    would give features the pipeline never saw).

    Parameters
    ----------
    pipeline : fitted sklearn Pipeline, or a path to one saved with joblib
    paths : file, folder, glob or list of these
    store : str or Path, default=None
        Where features are read and written; None keeps the pipeline's own store
        (its absolute path at fit time). Pass it when the store was moved.
    progress : bool, default=True
        Progress bar and the frame model's precision on stderr.
    workers : int, default=2
        Decoding threads.
    device : str, default=None
        Device of the frame model; None: CUDA when present.
    ids : {"stem", "relpath"}, default="stem"
        How the new videos are named (see :func:`~amnetvid_sk.extract.extract`).

    Returns
    -------
    ids : ndarray of str
    predictions : ndarray of float
    summary : ExtractionSummary
        What the extraction did (videos that failed to decode are left out of ``ids``).

    Raises
    ------
    FrameModelRebuildError
        The frame model recorded in the store cannot be rebuilt here with the
        training fingerprint (its weights file changed, say).
    VideoIdError
        A new file has the id of a video already in the store from another file
        (a training clip, say); nothing was extracted.

    Examples
    --------
    Not run: it needs a trained pipeline and video files.

    >>> ids, pred, _ = predict_videos("model.joblib", ["new1.mp4", "new2.mp4"])  # doctest: +SKIP
    """
    import joblib

    from .extract import expand_inputs, extract
    from .pipelines import reader_step, store_steps
    from .frame_models.spec import FrameModelSpec
    from .store import FeatureStore
    from .video import parse_sampling_key

    if isinstance(pipeline, (str, Path)):
        pipeline = joblib.load(pipeline)
    _, first = reader_step(pipeline)
    if store is not None:
        for _, step in store_steps(pipeline):
            step.set_params(store=store)
    fs = first._source() if hasattr(first, "_source") else FeatureStore(first.store)
    fingerprint = getattr(first, "model_", None) or fs.resolve_model(None)
    sampling = getattr(first, "sampling_", None) or fs.resolve_sampling(fingerprint)
    record = fs.sql("SELECT name, config FROM models WHERE model = ?", [fingerprint]).to_pylist()
    if not record:
        raise ValueError(
            f"the store {str(fs.path)!r} does not know the frame model {fingerprint!r} this pipeline was "
            "trained with; pass the store the pipeline was trained on (--store)"
        )
    config = json.loads(record[0]["config"] or "{}")
    # the recorded class and parameters: a model of the user's own ("module:Class") rebuilds too;
    # build() checks that the rebuilt model has the training fingerprint
    spec = FrameModelSpec.from_config(config, fingerprint, device=None if device is None else str(device))
    model = spec.build()
    model.set_precision(spec.precision, note="the precision the pipeline was trained with")
    inputs = expand_inputs(paths, ids)
    n_frames, fps = parse_sampling_key(sampling)
    summary = extract(paths, store=fs.path, frame_model=model, n_frames=n_frames, fps=fps,
                      workers=workers, ids=ids, progress=progress)
    failed = {str(p) for p, _ in summary.failed}
    kept = np.array([vid for path, vid in inputs if str(path) not in failed], dtype=object)
    predictions = pipeline.predict(kept) if len(kept) else np.zeros(0)
    return kept, np.asarray(predictions, dtype=float).ravel(), summary
