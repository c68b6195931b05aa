"""Extraction: video files -> frame scores and attention maps in the feature store.

Decoding runs on a thread pool ahead of the frame model (PyAV and torch both
release the GIL while they work), so the model is fed continuously; batches span
videos. Completed videos are written to the store every ``flush_every`` videos as
part files (frames first, then the ``videos`` rows that make them visible), so an
interrupted run loses at most the videos not yet flushed and a rerun continues.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

VIDEO_EXTENSIONS = (
    ".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv", ".gif", ".flv", ".wmv",
)
BACKENDS = ("local", "joblib", "dask")


@dataclass
class ExtractionSummary:
    """What an extraction run did.

    Attributes
    ----------
    extracted : list of str
        Paths whose features were computed and written.
    skipped : list of str
        Paths already in the store with the same file identity, model and sampling.
    failed : list of (str, str)
        Paths that could not be read, with the reason (also in the ``failures`` table).
    n_frames : int
        Frames that went through the frame model.
    seconds : float
        Wall-clock time of the run.
    """

    extracted: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    n_frames: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def merge(self, other: "ExtractionSummary") -> None:
        self.extracted += other.extracted
        self.skipped += other.skipped
        self.failed += other.failed
        self.n_frames += other.n_frames

    def report(self) -> str:
        lines = [
            f"extracted {len(self.extracted)}, skipped {len(self.skipped)} (already in the store), "
            f"failed {len(self.failed)}; {self.n_frames} frames in {self.seconds:.1f} s"
        ]
        for path, reason in self.failed:
            lines.append(f"  failed: {path}: {reason}")
        return "\n".join(lines)


def expand_paths(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files, folders (searched recursively for video files), glob patterns
    and ``.txt``/``.lst`` files that list one path per line into a sorted list of files.

    A path that does not exist and matches no glob is kept, so that it is reported
    as a failure naming the file rather than dropped silently.

    Examples
    --------
    >>> expand_paths(["clips/", "more/*.mp4", "list.txt"])  # doctest: +SKIP
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[Path] = []
    for item in paths:
        text = str(item)
        p = Path(text)
        if p.is_dir():
            out.extend(
                sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
            )
        elif p.is_file() and p.suffix.lower() in (".txt", ".lst"):
            base = p.parent
            for line in p.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    q = Path(line)
                    out.extend(expand_paths([q if q.is_absolute() else base / q]))
        elif p.exists():
            out.append(p)
        elif glob.has_magic(text):
            out.extend(sorted(Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file()))
        else:
            out.append(p)
    # keep the first occurrence of each file
    seen, unique = set(), []
    for p in out:
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def _file_key(path: Path):
    st = os.stat(path)
    return (os.path.abspath(path), int(st.st_size), float(st.st_mtime))


def _resolve_model(frame_model, weights, device, batch_size, bfloat16, allow_unsafe_weights):
    from .frame_models import FrameModel, make_frame_model

    if isinstance(frame_model, FrameModel):
        return frame_model
    return make_frame_model(
        frame_model, weights=weights, device=device, batch_size=batch_size,
        bfloat16=bfloat16, allow_unsafe_weights=allow_unsafe_weights,
    )


def _decode(path: Path, n_frames, fps):
    from .video import sample_frames

    return sample_frames(path, n_frames=n_frames, fps=fps)


class _PendingVideo:
    """A decoded video waiting for the frame model's outputs."""

    __slots__ = ("path", "key", "sampled", "scores", "maps", "done")

    def __init__(self, path, key, sampled, map_shape):
        n = len(sampled.indices)
        self.path, self.key, self.sampled = path, key, sampled
        self.scores = np.empty(n, dtype=np.float32)
        self.maps = np.empty((n, *map_shape), dtype=np.float32)
        self.done = 0


def _extract_local(
    paths: Sequence[Path], store_path, model, n_frames, fps, sampling, *, workers, flush_every,
    progress, summary: ExtractionSummary,
):
    """Extract the given (not yet extracted) paths in this process."""
    import pyarrow as pa

    from .errors import VideoDecodeError
    from .store import FeatureStore, frames_table, new_extraction_id

    store = FeatureStore(store_path)
    fingerprint = model.fingerprint
    map_shape = tuple(model.map_shape)
    batch_size = int(model.batch_size)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(paths), unit="video", desc="extract", dynamic_ncols=True)

    completed: list[_PendingVideo] = []
    started = time.perf_counter()

    def flush():
        if not completed:
            return
        video_rows, frame_tables = [], []
        for pv in completed:
            sampled = pv.sampled
            info = sampled.info
            extraction_id = new_extraction_id()
            video_id = Path(pv.path).stem
            n = len(sampled.indices)
            video_rows.append({
                "extraction_id": extraction_id, "video_id": video_id, "path": pv.key[0],
                "size": pv.key[1], "mtime": pv.key[2], "duration": float(info.duration),
                "fps": float(info.fps), "frame_count": int(info.frame_count),
                "width": int(info.width), "height": int(info.height), "model": fingerprint,
                "sampling": sampling, "n_frames": n, "short": bool(sampled.short),
            })  # the store stamps extracted_at to the microsecond
            # video_id, model and sampling are filled in from the videos row by the store
            frame_tables.append(frames_table(extraction_id, sampled.indices, sampled.timestamps,
                                             pv.scores, pv.maps))
        store.write_extractions(video_rows, pa.concat_tables(frame_tables))
        summary.extracted += [str(pv.path) for pv in completed]
        completed.clear()

    def fail(path, reason):
        store.write_failure(str(path), reason, fingerprint, sampling)
        summary.failed.append((str(path), reason))
        if bar is not None:
            bar.update(1)

    # frames waiting for the model: (video, position in the video, frame)
    queue: deque = deque()
    n_model_frames = 0

    def run_batch(force: bool):
        nonlocal n_model_frames
        while queue and (force or len(queue) >= batch_size):
            # one batch of equal-sized frames; a size change cuts the batch short
            first_shape = queue[0][2].shape
            batch = []
            while queue and len(batch) < batch_size and queue[0][2].shape == first_shape:
                batch.append(queue.popleft())
            scores, maps = model.predict(np.stack([b[2] for b in batch]))
            n_model_frames += len(batch)
            for (pv, pos, _), s, m in zip(batch, scores, maps):
                pv.scores[pos] = s
                pv.maps[pos] = m
                pv.done += 1
                if pv.done == len(pv.scores):
                    completed.append(pv)
                    if bar is not None:
                        bar.update(1)
                        elapsed = time.perf_counter() - started
                        bar.set_postfix_str(f"{n_model_frames / max(elapsed, 1e-9):.1f} frames/s")
                    if len(completed) >= flush_every:
                        flush()

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="decode") as pool:
            todo = deque(paths)
            running = {}
            # decode ahead: enough videos in flight to keep the model fed
            ahead = max(2 * workers, 2)
            while todo or running:
                while todo and len(running) < ahead:
                    path = todo.popleft()
                    running[pool.submit(_decode, path, n_frames, fps)] = path
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED, timeout=None)
                for fut in finished:
                    path = running.pop(fut)
                    try:
                        sampled = fut.result()
                        key = _file_key(path)
                    except VideoDecodeError as exc:
                        fail(path, exc.reason)
                        continue
                    except OSError as exc:
                        fail(path, f"{type(exc).__name__}: {exc}")
                        continue
                    if len(sampled.indices) == 0:
                        fail(path, "no frames could be decoded")
                        continue
                    pv = _PendingVideo(path, key, sampled, map_shape)
                    for pos, frame in enumerate(sampled.frames):
                        queue.append((pv, pos, frame))
                    # the queue holds the frames now; don't keep a second reference until flush
                    pv.sampled = dataclasses.replace(sampled, frames=None)
                run_batch(force=not todo and not running)
        run_batch(force=True)
    finally:
        # Ctrl-C or an error: what is complete is kept, so a rerun continues from it
        flush()
        if bar is not None:
            bar.close()
    summary.n_frames += n_model_frames


def _extract_chunk(paths, store_path, model_spec, n_frames, fps, sampling, workers, flush_every):
    """Run in a joblib/Dask worker: build the model there and extract one chunk."""
    model = _resolve_model(*model_spec)
    summary = ExtractionSummary()
    _extract_local(
        [Path(p) for p in paths], store_path, model, n_frames, fps, sampling,
        workers=workers, flush_every=flush_every, progress=False, summary=summary,
    )
    return summary


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
    device=None,
    bfloat16: bool = False,
    allow_unsafe_weights: bool = False,
    backend: str = "local",
    scheduler: str | None = None,
    n_jobs: int = 2,
    flush_every: int = 16,
    progress: bool = True,
) -> ExtractionSummary:
    """Extract frame scores and attention maps of videos into the feature store.

    Parameters
    ----------
    paths : path, glob, folder, text file listing paths, or a list of these
        The videos. Video ids are file names without extension.
    store : str or Path, default="store"
        Feature store folder.
    frame_model : {"resmem", "amnet"} or FrameModel, default="resmem"
        The still-image memorability model.
    weights : str or Path, default=None
        Weights file, needed for ``frame_model="amnet"``.
    n_frames, fps : int or float, default=None
        Sampling: ``n_frames`` spread over each clip, or ``fps`` frames per second.
        Neither given: 28 frames, as in the working note.
    batch_size : int, default=None
        Frames per forward pass (the frame model's default when None).
    workers : int, default=2
        Decoding threads per process.
    device : str, default=None
        ``"cpu"``, ``"cuda"``; None picks CUDA when present.
    bfloat16 : bool, default=False
        Run the frame model under bfloat16 autocast.
    allow_unsafe_weights : bool, default=False
        Allow a weights file that needs arbitrary unpickling (trusted files only).
    backend : {"local", "joblib", "dask"}, default="local"
        ``"joblib"`` fans chunks of videos out through joblib's current backend
        (``joblib.parallel_config`` decides where they run); ``"dask"`` does the
        same on the Dask cluster at ``scheduler``. Each worker writes its own
        part files into ``store``, which must be a folder all workers can reach.
    scheduler : str, default=None
        Dask scheduler address, for ``backend="dask"``.
    n_jobs : int, default=2
        Parallel chunks for the joblib backend.
    flush_every : int, default=16
        Completed videos per written part file.
    progress : bool, default=True
        Show a progress bar (videos done, frames/s, ETA).

    Returns
    -------
    ExtractionSummary

    Examples
    --------
    >>> from amnetvid_sk import extract
    >>> summary = extract("clips/", store="store", n_frames=28)  # doctest: +SKIP
    >>> print(summary.report())  # doctest: +SKIP
    """
    from .errors import VideoDecodeError
    from .store import FeatureStore
    from .video import sampling_key

    if backend not in BACKENDS:
        raise ValueError(
            f"The 'backend' parameter of extract must be a str among {set(BACKENDS)}. Got {backend!r} instead."
        )
    if backend == "dask" and not scheduler:
        raise ValueError("backend='dask' needs a scheduler address, e.g. scheduler='tcp://127.0.0.1:8786'")
    if n_frames is None and fps is None:
        n_frames = 28
    sampling = sampling_key(n_frames=n_frames, fps=fps)
    if not isinstance(flush_every, int) or flush_every < 1:
        raise ValueError(f"The 'flush_every' parameter of extract must be an int >= 1. Got {flush_every!r} instead.")

    started = time.perf_counter()
    summary = ExtractionSummary()
    store_obj = FeatureStore(store)
    model_spec = (frame_model, weights, device, batch_size, bfloat16, allow_unsafe_weights)
    model = _resolve_model(*model_spec)
    fingerprint = model.fingerprint
    store_obj.write_model(fingerprint, model.name, model.config, tuple(model.map_shape))

    done = store_obj.extracted_keys(fingerprint, sampling)
    todo: list[Path] = []
    for path in expand_paths(paths):
        try:
            key = _file_key(path)
        except OSError:
            reason = VideoDecodeError(path, "file not found").reason
            store_obj.write_failure(str(path), reason, fingerprint, sampling)
            summary.failed.append((str(path), reason))
            continue
        if key in done:
            summary.skipped.append(str(path))
        else:
            todo.append(path)

    if backend == "local" or not todo:
        _extract_local(
            todo, store, model, n_frames, fps, sampling, workers=workers, flush_every=flush_every,
            progress=progress, summary=summary,
        )
    else:
        _extract_parallel(todo, store, model, model_spec, n_frames, fps, sampling, workers, flush_every,
                          backend, scheduler, n_jobs, progress, summary)
    summary.seconds = time.perf_counter() - started
    return summary


def _extract_parallel(todo, store, model, model_spec, n_frames, fps, sampling, workers, flush_every,
                      backend, scheduler, n_jobs, progress, summary):
    import joblib

    # a built model is not shipped to workers: each builds its own from the spec
    if not isinstance(model_spec[0], str):
        model_spec = (model.name, getattr(model, "weights", None), *model_spec[2:])
    store = os.path.abspath(store)
    n_chunks = max(1, min(len(todo), 4 * max(1, n_jobs)))
    chunks = [[str(p) for p in todo[i::n_chunks]] for i in range(n_chunks)]
    chunks = [c for c in chunks if c]
    call = joblib.delayed(_extract_chunk)
    tasks = (call(c, store, model_spec, n_frames, fps, sampling, workers, flush_every) for c in chunks)
    if backend == "dask":
        try:
            from distributed import Client
        except ImportError as exc:  # pragma: no cover - depends on the environment
            from .errors import MissingDependencyError

            raise MissingDependencyError(
                'backend="dask" needs Dask distributed: pip install "amnetvid-sk[dask]"'
            ) from exc
        with Client(scheduler) as client, joblib.parallel_config(backend="dask"):
            n_workers = max(1, len(client.scheduler_info().get("workers", {})))
            results = joblib.Parallel(n_jobs=n_workers)(tasks)
    else:
        results = joblib.Parallel(n_jobs=n_jobs)(tasks)
    for part in results:
        summary.merge(part)
