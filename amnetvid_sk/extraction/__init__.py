"""Extraction: video files -> frame scores, attention maps and embeddings in the feature store.

:func:`extract` is the one entry point (the CLI, the demo and ``predict`` call
it); it checks its parameters and the inputs' ids, builds the frame model, then
hands the work to an :class:`~amnetvid_sk.extraction.local.Extractor` in this
process or to joblib/Dask workers. Where things are: :mod:`.inputs` (paths ->
ids, what is already in the store), :mod:`.local` (the Extractor: decode
threads, batches across videos, flushes), :mod:`.parallel` (chunks on joblib or
Dask, the worker entry point), :mod:`.summary` (what a run did).
"""

from __future__ import annotations

import dataclasses
import errno
import sys
import time

from ..errors import ParameterError, VideoDecodeError, allowed_values
from ..frame_models import make_frame_model
from ..frame_models.outputs import MAPS_MODES
from ..frame_models.spec import spec_of
from ..store import FeatureStore
from ..video import DEFAULT_N_FRAMES, sampling_key
from ..video.reader import check_time_limit
from ..video_ids import ID_MODES
from .inputs import check_unique_ids, expand_inputs, expand_paths, plan_inputs
from .local import ExtractionJob, Extractor
from .parallel import extract_parallel
from .summary import ExtractionSummary, store_full_error

__all__ = [
    "BACKENDS", "ExtractionJob", "ExtractionSummary", "Extractor", "check_unique_ids", "expand_inputs",
    "expand_paths", "extract", "keep_store_precision",
]

BACKENDS = ("local", "joblib", "dask")


def keep_store_precision(store, model) -> None:
    """Under ``precision="auto"``: extend a store in the precision its videos of this model have.

    A store extracted elsewhere in bfloat16 (or float32) keeps that precision
    for this frame model, so that ``auto`` on another machine does not split its
    videos between two fingerprints. The model's note says so (and that it is
    slow, where bfloat16 is emulated).
    """
    other = "float32" if model.precision == "bfloat16" else "bfloat16"
    counts = {m["model"]: m["n_videos"] for m in store.models()}
    if counts.get(model.fingerprint, 0) == 0 and counts.get(model.fingerprint_as(other), 0) > 0:
        n = counts[model.fingerprint_as(other)]
        model.set_precision(other, note=f"kept from the store, which holds {n} video(s) of this model in {other}")


def _checked_params(backend, scheduler, ids, n_frames, fps, flush_every, maps, embeddings, video_time_limit):
    """Check :func:`extract`'s plain parameters (before anything is read or built); return
    ``(n_frames, sampling key, video_time_limit)`` with their defaults filled in."""
    if backend not in BACKENDS:
        raise ParameterError(f"The 'backend' parameter of extract must be a str among {allowed_values(BACKENDS)}. "
                             f"Got {backend!r} instead.")
    if backend == "dask" and not scheduler:
        raise ParameterError("backend='dask' needs a scheduler address, e.g. scheduler='tcp://127.0.0.1:8786'")
    if ids not in ID_MODES:
        raise ParameterError(f"The 'ids' parameter of extract must be a str among {allowed_values(ID_MODES)}. "
                             f"Got {ids!r} instead.")
    if n_frames is None and fps is None:
        n_frames = DEFAULT_N_FRAMES
    sampling = sampling_key(n_frames=n_frames, fps=fps)
    if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
        raise ParameterError(
            f"The 'flush_every' parameter of extract must be an int >= 1. Got {flush_every!r} instead.")
    if maps is not None and maps not in MAPS_MODES:
        raise ParameterError(f"The 'maps' parameter of extract must be a str among {allowed_values(MAPS_MODES)} "
                             f"or None. Got {maps!r} instead.")
    if not isinstance(embeddings, bool):
        raise ParameterError(f"The 'embeddings' parameter of extract must be a bool. Got {embeddings!r} instead.")
    video_time_limit = check_time_limit(video_time_limit, "video_time_limit", "extract")
    return n_frames, sampling, video_time_limit


def _frame_model_for(frame_model, store_obj, *, weights, device, batch_size, precision, allow_unsafe_weights,
                     maps, embeddings):
    """The frame model to run: built from its name (in the store's precision under ``"auto"``), or the
    built model given, checked against ``maps`` and ``embeddings``."""
    if isinstance(frame_model, str):
        model = make_frame_model(frame_model, weights=weights, device=device, batch_size=batch_size,
                                 precision=precision, allow_unsafe_weights=allow_unsafe_weights,
                                 maps=maps or "attention")
        if precision == "auto":
            keep_store_precision(store_obj, model)
    else:
        model = frame_model
        if maps is not None and maps != model.maps:
            raise ParameterError(f"The 'maps' parameter of extract is {maps!r} but the frame model given was built "
                                 f"with maps={model.maps!r}; build it with maps={maps!r}, or leave maps=None")
    if embeddings and not model.embedding_dim:
        raise ParameterError(f"embeddings=True (--embeddings) needs a frame model that gives frame embeddings; "
                             f"{model.name!r} ({type(model).__name__}) has embedding_dim=0. Use resmem or amnet")
    return model


def _record_missing(store_obj, plan, fingerprint, sampling, summary) -> None:
    """Write a ``failures`` row (and a summary failure) for each input file that does not exist."""
    for path, vid in plan.missing:
        reason = VideoDecodeError(path, "file not found").reason
        store_obj.write_failure(str(path), reason, fingerprint, sampling, video_id=vid)
        summary.failed.append((str(path), reason))


def _run_backend(model, plan, job, summary, *, backend, scheduler, n_jobs, device, progress) -> None:
    """Extract the videos to do in this process (``backend="local"``, or nothing to do) or on
    joblib/Dask workers, adding what they did to ``summary``."""
    if backend == "local" or not plan.todo:
        Extractor(model, job, progress=progress, summary=summary).run(plan.todo)
    else:
        # the workers' own device choice unless one was given, as for a model named by a string
        spec = dataclasses.replace(spec_of(model), device=None if device is None else str(device))
        summary.merge(extract_parallel(plan.todo, spec, job, backend=backend, scheduler=scheduler,
                                       n_jobs=n_jobs))


def extract(
    paths,
    store="store",
    frame_model="resmem",
    *,
    weights=None,
    n_frames: int | None = None,
    fps: float | None = None,
    batch_size: int | None = None,
    workers: int = 2,
    video_time_limit: float | None = None,
    device=None,
    precision: str = "auto",
    allow_unsafe_weights: bool = False,
    ids: str = "stem",
    replace: bool = False,
    backend: str = "local",
    scheduler: str | None = None,
    n_jobs: int = 2,
    flush_every: int = 16,
    progress: bool = True,
    embeddings: bool = False,
    maps: str | None = None,
) -> ExtractionSummary:
    """Extract frame scores and attention maps (and embeddings) of videos into the feature store.

    Parameters
    ----------
    paths : path, glob, folder, text file listing paths, or a list of these
        The videos.
    store : str or Path, default="store"
        Feature store folder.
    frame_model : str or FrameModel, default="resmem"
        The still-image memorability model: a name ``make_frame_model`` knows
        (``"resmem"``, ``"amnet"``, a plug-in's name or ``"module:Class"``, see
        :func:`~amnetvid_sk.frame_models.frame_model_names`) or a built model.
    weights : str or Path, default=None
        Weights file, needed for ``frame_model="amnet"``.
    n_frames, fps : int or float, default=None
        Sampling: ``n_frames`` spread over each clip, or ``fps`` frames per second.
        Neither given: 28 frames, as in the working note.
    batch_size : int, default=None
        Frames per forward pass (the frame model's default when None).
    workers : int, default=2
        Decoding threads per process.
    video_time_limit : float, default=None
        Seconds one video's opening, packet indexing and decoding may take,
        wall-clock from when a decoding thread takes it up; the frame model's
        work on it is not counted. A video past it goes to the ``failures`` table
        with the reason "time limit of ... s reached while ..." and the run goes
        on. Decoding threads cannot be killed, so the limit is checked between
        packets and between frames (a single FFmpeg call that blocks is not cut
        short). None (the default): no limit, because no fixed figure is generous
        enough for every healthy video (an hour of 4K sampled at ``fps=4`` can
        take longer to decode on a slow CPU than a corrupt clip should ever be
        given); set one for files you do not trust, e.g. 60 for short clips.
    device : str, default=None
        ``"cpu"``, ``"cuda"``; None picks CUDA when present.
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        The frame model's precision. ``"auto"`` takes bfloat16 only where the
        device computes it natively, and keeps the precision a store already
        has for this frame model (a store extracted elsewhere in bfloat16 stays
        in bfloat16), so that one store never holds a model under two
        fingerprints by accident. Ignored when ``frame_model`` is a built model.
    allow_unsafe_weights : bool, default=False
        Allow a weights file that needs arbitrary unpickling (trusted files only).
    ids : {"stem", "relpath"}, default="stem"
        How videos are named. ``"stem"``: the file name without its extension,
        as the MediaEval and Memento10k labels name them. ``"relpath"``: the path
        relative to the folder given, without the extension (``a/clip``,
        ``b/clip``), for same-named clips in several folders. Two inputs with one
        id stop the run before any work, naming both files.
    replace : bool, default=False
        Let a file replace the features of another file that gave the store the
        same id (and still exists). Without it that is an error naming both;
        a store whose folder was moved is recognised by the id, size and
        mtime of the files and needs nothing.
    backend : {"local", "joblib", "dask"}, default="local"
        ``"joblib"`` fans chunks of videos out through joblib's current backend
        (``joblib.parallel_config`` decides where they run); ``"dask"`` does the
        same on the Dask cluster at ``scheduler``. Each worker writes its own
        part files into ``store``, which must be a folder all workers can reach.
        Workers rebuild the frame model from its
        :class:`~amnetvid_sk.frame_models.FrameModelSpec` (a built model keeps its
        class, parameters and precision there) and check its fingerprint;
        ``device`` is each worker's choice when None.
    scheduler : str, default=None
        Dask scheduler address, for ``backend="dask"``.
    n_jobs : int, default=2
        Parallel chunks for the joblib backend.
    flush_every : int, default=16
        Completed videos per written part file.
    progress : bool, default=True
        Show a progress bar (videos done, frames/s, ETA), and say on stderr which
        frame model runs in which precision.
    embeddings : bool, default=False
        Also store one embedding per frame (the frame model's internal state:
        2048 values for ResMem, 1024 for AMNet), from the same forward pass, in
        the store's ``embeddings`` table (float16). Videos already extracted
        without them get their embeddings added to the same extraction (their
        frame rows are not written again); videos extracted with them are skipped.
    maps : {"attention", "none"}, default=None
        ``"none"``: scores only, a forward pass without attention maps (no
        Grad-CAM backward), stored under the model's own scores-only fingerprint
        so it never mixes with an extraction that has maps. None: ``"attention"``
        for a model given by name, the built model's own mode otherwise.

    Returns
    -------
    ExtractionSummary

    Raises
    ------
    VideoIdError
        Two inputs share an id, or an id is in the store from another file
        (without ``replace``); nothing was extracted.
    StoreFullError
        The disk filled up; the videos written before are kept and a rerun
        after freeing space extracts the rest.

    Examples
    --------
    Not run: it needs a folder of videos and the ResMem weights.

    >>> from amnetvid_sk import extract
    >>> summary = extract("clips/", store="store", n_frames=28)  # doctest: +SKIP
    >>> print(summary.report())  # doctest: +SKIP
    """
    n_frames, sampling, video_time_limit = _checked_params(backend, scheduler, ids, n_frames, fps, flush_every,
                                                           maps, embeddings, video_time_limit)
    started = time.perf_counter()
    summary = ExtractionSummary()
    store_obj = FeatureStore(store, create=True)  # extraction starts a store
    inputs = expand_inputs(paths, ids)
    check_unique_ids(inputs)  # before the model loads: a naming problem costs nothing
    model = _frame_model_for(frame_model, store_obj, weights=weights, device=device, batch_size=batch_size,
                             precision=precision, allow_unsafe_weights=allow_unsafe_weights, maps=maps,
                             embeddings=embeddings)
    if progress:
        print(model.describe(), file=sys.stderr, flush=True)
    fingerprint = model.fingerprint
    plan = plan_inputs(store_obj, fingerprint, sampling, inputs, replace=replace, embeddings=embeddings)
    summary.skipped += plan.skipped
    job = ExtractionJob(store=str(store), sampling=sampling, n_frames=n_frames, fps=fps, workers=workers,
                        flush_every=flush_every, embeddings=embeddings, video_time_limit=video_time_limit)
    try:
        store_obj.write_model(fingerprint, model.name, model.config, tuple(model.map_shape), maps=model.maps,
                              embedding_dim=int(model.embedding_dim))
        _record_missing(store_obj, plan, fingerprint, sampling, summary)
        _run_backend(model, plan, job, summary, backend=backend, scheduler=scheduler, n_jobs=n_jobs,
                     device=device, progress=progress)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise store_full_error(store_obj.path, summary, len(plan.todo)) from None
    summary.seconds = time.perf_counter() - started
    return summary
