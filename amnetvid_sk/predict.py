"""Predict memorability of video files with fitted pipelines, extracting missing features first.

Where things are: :func:`load_pipeline` (the one place a saved pipeline is read),
:func:`predict_videos` (one pipeline: ids and predictions), :func:`predict_files` (one or
more pipelines, say one per target: a table with a row per video file), :func:`mediaeval_run`
(that table as a MediaEval run file's columns).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from .errors import ModelFileError, ParameterError, StoreError

__all__ = ["load_pipeline", "predict_videos", "predict_files", "mediaeval_run"]


def load_pipeline(path, *, allow_pickle: bool = False):
    """The fitted pipeline saved in ``path`` (by ``amnetvid fit`` or :func:`~amnetvid_sk.model_files.save_model`).

    The one place a saved pipeline is read: a model file holds data only and loading it runs no
    code (see :mod:`amnetvid_sk.model_files`). A pickle or joblib file is refused, since
    unpickling can run any code its author put in it, unless ``allow_pickle=True`` (files you trust).

    Parameters
    ----------
    path : str or Path
    allow_pickle : bool, default=False

    Returns
    -------
    sklearn.pipeline.Pipeline

    Raises
    ------
    ModelFileError
        The file is missing, a folder, damaged, from an incompatible version, a pickle (without
        ``allow_pickle``), or holds something that is not a fitted pipeline; the message names the file.

    Examples
    --------
    >>> load_pipeline("missing.safetensors")
    Traceback (most recent call last):
    ...
    amnetvid_sk.errors.ModelFileError: model file 'missing.safetensors' does not exist; give a file saved by `amnetvid fit` or save_model
    """
    from .model_sources import read_model_file

    return read_model_file(path, allow_pickle=allow_pickle)


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
    pipeline : fitted sklearn Pipeline, or a path to one (read by :func:`load_pipeline`)
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
        How the new videos are named (see :func:`~amnetvid_sk.extraction.extract`).

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
    kept, predictions, summary = _predict(pipeline, paths, store, progress=progress, workers=workers,
                                          device=device, ids=ids)
    return np.array([vid for _, vid in kept], dtype=object), predictions, summary


def _predict(pipeline, paths, store, *, progress, workers, device, ids):
    """``predict_videos`` with the ``(path, id)`` of each video predicted in place of the ids."""
    from .extraction import expand_inputs, extract
    from .errors import LeftOutWarning
    from .pipelines import reader_step, store_steps
    from .short_videos import short_message, split_short
    from .frame_models.spec import FrameModelSpec
    from .store import FeatureStore
    from .transformers import FrameEmbeddings
    from .video import parse_sampling_key

    if isinstance(pipeline, (str, os.PathLike)):
        pipeline = load_pipeline(pipeline)
    _, first = reader_step(pipeline)
    if store is not None:
        for _, step in store_steps(pipeline):
            step.set_params(store=store)
    fs = first._source() if hasattr(first, "_source") else FeatureStore(first.store)
    fingerprint = getattr(first, "model_", None) or fs.resolve_model(None)
    sampling = getattr(first, "sampling_", None) or fs.resolve_sampling(fingerprint)
    record = fs.sql("SELECT name, config FROM models WHERE model = ?", [fingerprint]).to_pylist()
    if not record:
        raise StoreError(
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
    # a pipeline that reads embeddings (the embedding ridge, the stacked ensemble) needs them
    # for the new files too; they come from the same forward pass
    embeddings = any(isinstance(step, FrameEmbeddings) for _, step in store_steps(pipeline))
    summary = extract(paths, store=fs.path, frame_model=model, n_frames=n_frames, fps=fps,
                      workers=workers, ids=ids, progress=progress, embeddings=embeddings)
    failed = {str(p) for p, _ in summary.failed}
    kept = [(path, vid) for path, vid in inputs if str(path) not in failed]
    ids_kept, short = split_short(pipeline, np.array([vid for _, vid in kept], dtype=object))
    if short:  # fewer stored frames than the model reads (its reader's short_videos="drop")
        warnings.warn(short_message(short, len(kept), "videos to predict"), LeftOutWarning, stacklevel=3)
        kept = [(path, vid) for path, vid in kept if vid not in short]
    predictions = pipeline.predict(ids_kept) if kept else np.zeros(0)
    return kept, np.asarray(predictions, dtype=float).ravel(), summary


def predict_files(models, paths, store=None, *, progress=True, workers=2, device=None, ids="stem"):
    """Predictions of one or more fitted pipelines for video files: one row per video file.

    Each pipeline is run as :func:`predict_videos` runs it (the features it needs are
    extracted first; a second pipeline on the same frame model and sampling extracts nothing).
    A video that failed for any of them is left out of every column.

    Parameters
    ----------
    models : dict of str to pipeline, path or None
        Column name -> fitted pipeline (or the path of a saved one), in column order, for
        example ``{"short_term": "short.joblib", "long_term": "long.joblib"}``. None gives a
        column of nulls (a target no model predicts).
    paths, store, progress, workers, device, ids
        As in :func:`predict_videos`.

    Returns
    -------
    table : pyarrow.Table
        ``video_id`` (string), ``file`` (string: the file name with its extension, as in a
        MediaEval ground-truth file), then one float64 column per entry of ``models``; rows
        in the order of the inputs.
    failed : list of (path, reason)
        Videos that could not be decoded (the store's ``failures`` table has them too).

    Raises
    ------
    ValueError
        ``models`` is empty or holds only None.

    Examples
    --------
    Not run: it needs trained pipelines and video files.

    >>> table, failed = predict_files({"short_term": "short.joblib", "long_term": "long.joblib"},
    ...                               ["new_videos/"])  # doctest: +SKIP
    >>> table.column_names  # doctest: +SKIP
    ['video_id', 'file', 'short_term', 'long_term']
    """
    import pyarrow as pa

    if not any(m is not None for m in dict(models).values()):
        raise ParameterError(f"The 'models' parameter of predict_files must name at least one fitted pipeline. "
                         f"Got {models!r} instead.")
    order: list[tuple] = []          # (path, id) of the first pipeline's videos, in input order
    columns: dict[str, dict] = {}    # column -> {path: prediction}
    failed: dict[str, str] = {}
    for column, pipeline in models.items():
        if pipeline is None:
            continue
        kept, predictions, summary = _predict(pipeline, paths, store, progress=progress, workers=workers,
                                              device=device, ids=ids)
        order = order or kept
        columns[column] = {str(path): float(p) for (path, _), p in zip(kept, predictions)}
        failed.update((str(path), reason) for path, reason in summary.failed)
    rows = [(path, vid) for path, vid in order if all(str(path) in c for c in columns.values())]
    table = {"video_id": pa.array([vid for _, vid in rows], pa.string()),
             "file": pa.array([Path(path).name for path, _ in rows], pa.string())}
    for column in models:
        got = columns.get(column)
        table[column] = pa.array([None if got is None else got[str(path)] for path, _ in rows], pa.float64())
    return pa.table(table), list(failed.items())


def mediaeval_run(table):
    """A MediaEval run file's table from the ``short_term`` / ``long_term`` table of :func:`predict_files`.

    The columns are those of the MediaEval dev-set ground truth without the annotation counts
    (:data:`~amnetvid_sk.labels.MEDIAEVAL_RUN_HEADER`): the video file name with its extension, then
    the short-term and long-term scores (null where no model predicts that target), so that
    ``amnetvid labels import RUN --format mediaeval`` reads the file back.

    Parameters
    ----------
    table : pyarrow.Table
        With columns ``file``, ``short_term`` and ``long_term``.

    Returns
    -------
    pyarrow.Table

    Raises
    ------
    LabelFormatError
        A prediction is outside [0, 1], which a MediaEval score cannot be; the message names
        the videos (csv or json output keeps such predictions).

    Examples
    --------
    >>> import pyarrow as pa
    >>> predicted = pa.table({"video_id": ["video10"], "file": ["video10.webm"], "short_term": [0.91],
    ...                       "long_term": pa.array([None], pa.float64())})
    >>> mediaeval_run(predicted).to_pylist()
    [{'video': 'video10.webm', 'short-term_memorability': 0.91, 'long-term_memorability': None}]
    """
    import pyarrow as pa

    from .errors import LabelFormatError
    from .labels import MEDIAEVAL_RUN_HEADER

    bad = [f"{file} {target}-term {value!r}"
           for target in ("short", "long")
           for file, value in zip(table.column("file").to_pylist(), table.column(f"{target}_term").to_pylist())
           if value is not None and not 0.0 <= value <= 1.0]
    if bad:
        listed = ", ".join(bad[:5]) + (f", ... ({len(bad)} in all)" if len(bad) > 5 else "")
        raise LabelFormatError(f"a MediaEval run file holds scores in [0, 1]; predictions outside it: {listed} "
                               "(csv or json output keeps them as they are)")
    video, short, long = MEDIAEVAL_RUN_HEADER
    return pa.table({video: table.column("file"), short: table.column("short_term"),
                     long: table.column("long_term")})
