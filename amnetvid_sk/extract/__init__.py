"""Extraction: video files -> frame scores and attention maps in the feature store.

Decoding runs on a thread pool ahead of the frame model (PyAV and torch both
release the GIL while they work), so the model is fed continuously; batches span
videos. Completed videos are written to the store every ``flush_every`` videos as
part files (frames first, then the ``videos`` rows that make them visible), so an
interrupted run loses at most the videos not yet flushed and a rerun continues.

Video ids are checked before any work: two inputs with one id, or an input whose
id the store already holds from another file that still exists, stop the run
with both paths named (``ids="relpath"`` or ``replace=True`` decide otherwise).
"""

from __future__ import annotations

import dataclasses
import errno
import glob
import os
import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..video_ids import ID_MODES, VIDEO_EXTENSIONS, video_id_of_path

BACKENDS = ("local", "joblib", "dask")
_LISTED = 5  # conflicting ids named in one error message


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


def _expand(paths, base) -> list[tuple[Path, Path | None]]:
    """(file, the folder its relative id is taken from) for each input; see :func:`expand_inputs`."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[tuple[Path, Path | None]] = []
    for item in paths:
        text = str(item)
        p = Path(text)
        if p.is_dir():
            out.extend(
                (f, p) for f in sorted(p.rglob("*")) if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS
            )
        elif p.is_file() and p.suffix.lower() in (".txt", ".lst"):
            folder = p.parent
            for line in p.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    q = Path(line)
                    out.extend(_expand([q if q.is_absolute() else folder / q], folder))
        elif p.exists():
            out.append((p, base))
        elif glob.has_magic(text):
            out.extend((Path(m), base) for m in sorted(glob.glob(text, recursive=True)) if Path(m).is_file())
        else:
            out.append((p, base))
    return out


def expand_inputs(paths, ids: str = "stem") -> list[tuple[Path, str]]:
    """``(file, video id)`` for files, folders (searched recursively for video files),
    glob patterns and ``.txt``/``.lst`` files that list one path per line.

    With ``ids="relpath"`` a file found in a folder is named by its path relative
    to that folder (``videos/a/clip.mp4`` given as ``videos/`` -> ``a/clip``), a
    file listed in a ``.txt`` file relative to the list's folder, and a file or
    glob given directly relative to the current folder. A path that does not
    exist and matches no glob is kept, so that it is reported as a failure naming
    the file rather than dropped silently. Each file appears once.

    Examples
    --------
    >>> expand_inputs(["clips/", "more/*.mp4", "list.txt"])  # doctest: +SKIP
    [(PosixPath('clips/a.mp4'), 'a'), ...]
    """
    seen, unique = set(), []
    for path, base in _expand(paths, None):
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            unique.append((path, video_id_of_path(path, base, ids)))
    return unique


def expand_paths(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """The files of :func:`expand_inputs`, without their ids.

    Examples
    --------
    >>> expand_paths(["clips/", "more/*.mp4", "list.txt"])  # doctest: +SKIP
    """
    return [path for path, _ in expand_inputs(paths)]


def check_unique_ids(inputs: Sequence[tuple[Path, str]]) -> None:
    """Raise :class:`~amnetvid_sk.errors.VideoIdError` naming the files when two inputs share an id."""
    from ..errors import VideoIdError

    by_id: dict[str, list[str]] = {}
    for path, vid in inputs:
        by_id.setdefault(vid, []).append(os.path.abspath(path))
    clashes = {vid: paths for vid, paths in by_id.items() if len(paths) > 1}
    if clashes:
        named = "; ".join(f"{vid!r}: {' and '.join(paths)}" for vid, paths in list(clashes.items())[:_LISTED])
        more = f" (and {len(clashes) - _LISTED} more)" if len(clashes) > _LISTED else ""
        raise VideoIdError(
            f"{len(clashes)} video ids are given by more than one file: {named}{more}; nothing was extracted. "
            "Name videos by their path relative to the folder given (ids='relpath', --ids relpath), "
            "or extract the folders into separate stores")


def _file_key(path: Path):
    st = os.stat(path)
    return (os.path.abspath(path), int(st.st_size), float(st.st_mtime))


def _resolve_model(frame_model, weights, device, batch_size, precision, allow_unsafe_weights):
    from ..frame_models import FrameModel, make_frame_model

    if isinstance(frame_model, FrameModel):
        return frame_model
    return make_frame_model(
        frame_model, weights=weights, device=device, batch_size=batch_size,
        precision=precision, allow_unsafe_weights=allow_unsafe_weights,
    )


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


class _FileCheck:
    """Which inputs are already extracted, and which would replace another file's id in the store."""

    def __init__(self, store, fingerprint: str, sampling: str, inputs):
        done = store.extracted_files(fingerprint, sampling)
        self.done = set(zip(done["path"].to_pylist(), done["size"].to_pylist(), done["mtime"].to_pylist()))
        # a folder moved elsewhere: same id, size and mtime, and the stored path is gone
        self.moved = {(vid, size, mtime) for vid, path, size, mtime in zip(
            done["video_id"].to_pylist(), done["path"].to_pylist(), done["size"].to_pylist(),
            done["mtime"].to_pylist()) if not os.path.exists(path)}
        self.paths = store.video_paths([vid for _, vid in inputs])

    def already_done(self, key, vid) -> bool:
        return key in self.done or (vid, key[1], key[2]) in self.moved

    def other_files(self, path: str, vid: str) -> list[str]:
        """Files that still exist and gave this id to videos in the store."""
        return sorted(p for p in self.paths.get(vid, ()) if p != path and os.path.exists(p))



def _decode(path: Path, n_frames, fps):
    from ..video import sample_frames

    return sample_frames(path, n_frames=n_frames, fps=fps)


class _PendingVideo:
    """A decoded video waiting for the frame model's outputs."""

    __slots__ = ("path", "video_id", "key", "sampled", "scores", "maps", "done")

    def __init__(self, path, video_id, key, sampled, map_shape):
        n = len(sampled.indices)
        self.path, self.video_id, self.key, self.sampled = path, video_id, key, sampled
        self.scores = np.empty(n, dtype=np.float32)
        self.maps = np.empty((n, *map_shape), dtype=np.float32)
        self.done = 0


def _extract_local(
    inputs: Sequence[tuple[Path, str]], store_path, model, n_frames, fps, sampling, *, workers, flush_every,
    progress, summary: ExtractionSummary,
):
    """Extract the given (not yet extracted) ``(path, video id)`` inputs in this process."""
    import pyarrow as pa

    from ..errors import VideoDecodeError
    from ..store import FeatureStore, frames_table, new_extraction_id

    store = FeatureStore(store_path)
    fingerprint = model.fingerprint
    map_shape = tuple(model.map_shape)
    batch_size = int(model.batch_size)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(inputs), unit="video", desc="extract", dynamic_ncols=True)

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
            n = len(sampled.indices)
            video_rows.append({
                "extraction_id": extraction_id, "video_id": pv.video_id, "path": pv.key[0],
                "size": pv.key[1], "mtime": pv.key[2], "duration": float(info.duration),
                "fps": float(info.fps), "frame_count": int(info.frame_count),
                "width": int(info.width), "height": int(info.height), "model": fingerprint,
                "sampling": sampling, "n_frames": n, "short": bool(sampled.short),
            })  # the store stamps extracted_at to the microsecond
            # video_id, model and sampling are filled in from the videos row by the store
            frame_tables.append(frames_table(extraction_id, sampled.indices, sampled.timestamps,
                                             pv.scores, pv.maps))
        try:
            store.write_extractions(video_rows, pa.concat_tables(frame_tables))
        except OSError:
            # a full disk: the final flush must not try the same write again
            completed.clear()
            raise
        summary.extracted += [str(pv.path) for pv in completed]
        completed.clear()

    def fail(path, vid, reason):
        store.write_failure(str(path), reason, fingerprint, sampling, video_id=vid)
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
            todo = deque(inputs)
            running = {}
            # decode ahead: enough videos in flight to keep the model fed
            ahead = max(2 * workers, 2)
            while todo or running:
                while todo and len(running) < ahead:
                    path, vid = todo.popleft()
                    running[pool.submit(_decode, path, n_frames, fps)] = (path, vid)
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED, timeout=None)
                for fut in finished:
                    path, vid = running.pop(fut)
                    try:
                        sampled = fut.result()
                        key = _file_key(path)
                    except VideoDecodeError as exc:
                        fail(path, vid, exc.reason)
                        continue
                    except OSError as exc:
                        fail(path, vid, f"{type(exc).__name__}: {exc}")
                        continue
                    if len(sampled.indices) == 0:
                        fail(path, vid, "no frames could be decoded")
                        continue
                    pv = _PendingVideo(path, vid, key, sampled, map_shape)
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


def _extract_chunk(inputs, store_path, model_spec, n_frames, fps, sampling, workers, flush_every):
    """Run in a joblib/Dask worker: build the model there and extract one chunk."""
    model = _resolve_model(*model_spec)
    summary = ExtractionSummary()
    _extract_local(
        [(Path(p), vid) for p, vid in inputs], store_path, model, n_frames, fps, sampling,
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
    precision: str = "auto",
    bfloat16: bool | None = None,
    allow_unsafe_weights: bool = False,
    ids: str = "stem",
    replace: bool = False,
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
        The videos.
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
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        The frame model's precision. ``"auto"`` takes bfloat16 only where the
        device computes it natively, and keeps the precision a store already
        has for this frame model (a store extracted elsewhere in bfloat16 stays
        in bfloat16), so that one store never holds a model under two
        fingerprints by accident. Ignored when ``frame_model`` is a built model.
    bfloat16 : bool or None, default=None
        Older spelling of ``precision`` (True: bfloat16, False: float32).
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
    scheduler : str, default=None
        Dask scheduler address, for ``backend="dask"``.
    n_jobs : int, default=2
        Parallel chunks for the joblib backend.
    flush_every : int, default=16
        Completed videos per written part file.
    progress : bool, default=True
        Show a progress bar (videos done, frames/s, ETA), and say on stderr which
        frame model runs in which precision.

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
    >>> from amnetvid_sk import extract
    >>> summary = extract("clips/", store="store", n_frames=28)  # doctest: +SKIP
    >>> print(summary.report())  # doctest: +SKIP
    """
    from ..errors import VideoDecodeError, VideoIdError
    from ..store import FeatureStore
    from ..video import DEFAULT_N_FRAMES, sampling_key

    if backend not in BACKENDS:
        raise ValueError(
            f"The 'backend' parameter of extract must be a str among {set(BACKENDS)}. Got {backend!r} instead."
        )
    if backend == "dask" and not scheduler:
        raise ValueError("backend='dask' needs a scheduler address, e.g. scheduler='tcp://127.0.0.1:8786'")
    if ids not in ID_MODES:
        raise ValueError(f"The 'ids' parameter of extract must be a str among {{'relpath', 'stem'}}. "
                         f"Got {ids!r} instead.")
    if n_frames is None and fps is None:
        n_frames = DEFAULT_N_FRAMES
    sampling = sampling_key(n_frames=n_frames, fps=fps)
    if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
        raise ValueError(f"The 'flush_every' parameter of extract must be an int >= 1. Got {flush_every!r} instead.")

    started = time.perf_counter()
    summary = ExtractionSummary()
    store_obj = FeatureStore(store)
    inputs = expand_inputs(paths, ids)
    check_unique_ids(inputs)  # before the model loads: a naming problem costs nothing
    model = _resolve_model(frame_model, weights, device, batch_size,
                           precision if bfloat16 is None else ("bfloat16" if bfloat16 else "float32"),
                           allow_unsafe_weights)
    if isinstance(frame_model, str) and precision == "auto" and bfloat16 is None:
        keep_store_precision(store_obj, model)
    if progress:
        print(model.describe(), file=sys.stderr, flush=True)
    fingerprint = model.fingerprint

    files = _FileCheck(store_obj, fingerprint, sampling, inputs)
    todo: list[tuple[Path, str]] = []
    missing: list[tuple[Path, str]] = []
    clashes: list[str] = []
    for path, vid in inputs:
        try:
            key = _file_key(path)
        except OSError:
            missing.append((path, vid))
            continue
        if files.already_done(key, vid):
            summary.skipped.append(str(path))
            continue
        others = files.other_files(key[0], vid)
        if others and not replace:
            clashes.append(f"{vid!r} from {' and '.join(others)}, now given by {key[0]}")
        todo.append((path, vid))
    if clashes:
        more = f" (and {len(clashes) - _LISTED} more)" if len(clashes) > _LISTED else ""
        raise VideoIdError(
            f"{len(clashes)} video ids are already in the store {str(store_obj.path)!r} from other files: "
            f"{'; '.join(clashes[:_LISTED])}{more}; nothing was extracted. Pass replace=True (--replace) to "
            "replace them, or name videos by relative path (ids='relpath', --ids relpath)")

    try:
        store_obj.write_model(fingerprint, model.name, model.config, tuple(model.map_shape))
        for path, vid in missing:
            reason = VideoDecodeError(path, "file not found").reason
            store_obj.write_failure(str(path), reason, fingerprint, sampling, video_id=vid)
            summary.failed.append((str(path), reason))
        if backend == "local" or not todo:
            _extract_local(
                todo, store, model, n_frames, fps, sampling, workers=workers, flush_every=flush_every,
                progress=progress, summary=summary,
            )
        else:
            spec = (model.name, getattr(model, "weights", None), device, batch_size, model.precision,
                    allow_unsafe_weights)
            _extract_parallel(todo, store, spec, n_frames, fps, sampling, workers, flush_every,
                              backend, scheduler, n_jobs, summary)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise _store_full(store_obj.path, summary, len(todo)) from None
    summary.seconds = time.perf_counter() - started
    return summary


def _store_full(path: Path, summary: ExtractionSummary, n_todo: int):
    from ..errors import StoreFullError

    kept = summary.extracted
    named = ", ".join(os.path.basename(p) for p in kept[:_LISTED]) + (", ..." if len(kept) > _LISTED else "")
    return StoreFullError(
        f"no space left on the disk of the store {str(path)!r}: {len(kept)} of the {n_todo} videos to extract "
        f"were written and are kept{' (' + named + ')' if kept else ''}; free space and run the same command "
        "again to extract the rest")


def _extract_parallel(todo, store, model_spec, n_frames, fps, sampling, workers, flush_every,
                      backend, scheduler, n_jobs, summary):
    import joblib

    # A built model is not shipped to workers: each builds its own from the spec, with the
    # precision resolved here, so that a worker's "auto" cannot pick another fingerprint.
    store = os.path.abspath(store)
    n_chunks = max(1, min(len(todo), 4 * max(1, n_jobs)))
    chunks = [[(str(p), vid) for p, vid in todo[i::n_chunks]] for i in range(n_chunks)]
    chunks = [c for c in chunks if c]
    call = joblib.delayed(_extract_chunk)
    tasks = (call(c, store, model_spec, n_frames, fps, sampling, workers, flush_every) for c in chunks)
    if backend == "dask":
        try:
            from distributed import Client
        except ImportError as exc:  # pragma: no cover - depends on the environment
            from ..errors import MissingDependencyError

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
