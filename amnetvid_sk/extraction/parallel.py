"""Extraction fanned out in chunks of videos: joblib's current backend, or a Dask cluster.

A built frame model is not shipped to workers: each rebuilds it from its
:class:`~amnetvid_sk.frame_models.FrameModelSpec` (class, parameters, resolved
precision) and checks that the rebuilt model has the same fingerprint, so that a
worker never writes features under another model's name. Each worker writes its
own part files into the store, which must be a folder all workers can reach.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import joblib

from ..dask_backend import dask_client_class
from ..frame_models.spec import FrameModelSpec
from ..store.location import store_root
from .local import ExtractionJob, Extractor
from .summary import ExtractionSummary

__all__ = ["extract_chunk", "extract_parallel"]


def extract_chunk(inputs: Sequence[tuple[str, str]], spec: FrameModelSpec, job: ExtractionJob) -> ExtractionSummary:
    """The worker's entry point: rebuild the frame model from ``spec`` and extract one chunk.

    Parameters
    ----------
    inputs : list of (str, str)
        ``(path, video id)`` pairs.
    spec : FrameModelSpec
        The frame model; its fingerprint is checked after the rebuild.
    job : ExtractionJob
        Store, sampling, decoding threads, flush size.

    Returns
    -------
    ExtractionSummary

    Examples
    --------
    Not run: it needs a frame model, a job and video files.

    >>> extract_chunk([("clips/a.mp4", "a")], spec_of(model), job)  # doctest: +SKIP
    """
    model = spec.build()
    return Extractor(model, job).run([(Path(p), vid) for p, vid in inputs])


def _chunks(todo, n_jobs: int) -> list[list[tuple[str, str]]]:
    # 4 chunks per job: a slow chunk does not hold up the others for long
    n_chunks = max(1, min(len(todo), 4 * max(1, n_jobs)))
    chunks = [[(str(p), vid) for p, vid in todo[i::n_chunks]] for i in range(n_chunks)]
    return [c for c in chunks if c]


def extract_parallel(todo: Sequence[tuple[Path, str]], spec: FrameModelSpec, job: ExtractionJob, *,
                     backend: str, scheduler: str | None = None, n_jobs: int = 2) -> ExtractionSummary:
    """Extract ``todo`` in chunks on joblib's current backend (``"joblib"``) or a Dask cluster (``"dask"``).

    Parameters
    ----------
    todo : list of (Path, str)
    spec : FrameModelSpec
        The frame model, rebuilt in each worker. Its ``device`` None lets each worker choose.
    job : ExtractionJob
        ``job.store`` must be a folder every worker can reach, or an ``s3://`` store (each
        worker then needs the AWS environment variables).
    backend : {"joblib", "dask"}
    scheduler : str, default=None
        Dask scheduler address, for ``backend="dask"``.
    n_jobs : int, default=2
        Parallel chunks for the joblib backend (Dask uses one per worker).

    Returns
    -------
    ExtractionSummary
        The workers' summaries merged.

    Examples
    --------
    Not run: it needs video files and worker processes.

    >>> extract_parallel(todo, spec, job, backend="joblib", n_jobs=4)  # doctest: +SKIP
    """
    job = dataclasses.replace(job, store=str(store_root(job.store)))  # an s3:// URL stays one
    call = joblib.delayed(extract_chunk)
    tasks = (call(chunk, spec, job) for chunk in _chunks(todo, n_jobs))
    if backend == "dask":
        with dask_client_class()(scheduler) as client, joblib.parallel_config(backend="dask"):
            n_workers = max(1, len(client.scheduler_info().get("workers", {})))
            results = joblib.Parallel(n_jobs=n_workers)(tasks)
    else:
        results = joblib.Parallel(n_jobs=n_jobs)(tasks)
    summary = ExtractionSummary()
    for part in results:
        summary.merge(part)
    return summary
