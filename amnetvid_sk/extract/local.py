"""Extraction in this process: :class:`Extractor`, decode threads feeding one frame model.

Decoding runs on a thread pool ahead of the frame model (PyAV and torch both
release the GIL while they work), so the model is fed continuously; batches span
videos. Completed videos are written to the store every ``flush_every`` videos as
part files (frames first, then the ``videos`` rows that make them visible), so an
interrupted run loses at most the videos not yet flushed and a rerun continues.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from ..errors import VideoDecodeError
from ..store import FeatureStore, frames_table, new_extraction_id
from ..video import sample_frames
from .inputs import file_key
from .summary import ExtractionSummary

__all__ = ["ExtractionJob", "Extractor"]


@dataclass(frozen=True)
class ExtractionJob:
    """Where and how to extract, the same for every process of a run (picklable).

    Parameters
    ----------
    store : str
        Feature store folder (absolute for workers).
    sampling : str
        The sampling key (``"frames=28"``, ``"fps=4"``), as the store records it.
    n_frames, fps : int or float or None
        The sampling itself: one of them is set.
    workers : int, default=2
        Decoding threads.
    flush_every : int, default=16
        Completed videos per written part file.
    """

    store: str
    sampling: str
    n_frames: int | None = None
    fps: float | None = None
    workers: int = 2
    flush_every: int = 16


class _PendingVideo:
    """A decoded video waiting for the frame model's outputs."""

    __slots__ = ("path", "video_id", "key", "sampled", "scores", "maps", "done")

    def __init__(self, path, video_id, key, sampled, map_shape):
        n = len(sampled.indices)
        self.path, self.video_id, self.key, self.sampled = path, video_id, key, sampled
        self.scores = np.empty(n, dtype=np.float32)
        self.maps = np.empty((n, *map_shape), dtype=np.float32)
        self.done = 0


class Extractor:
    """Extracts ``(path, video id)`` inputs with one frame model into one store, in this process.

    Parameters
    ----------
    model : FrameModel
        A built frame model; its fingerprint names the rows.
    job : ExtractionJob
        Store, sampling, decoding threads and flush size.
    progress : bool, default=False
        Show a progress bar (videos done, frames/s).
    summary : ExtractionSummary or None, default=None
        Where the run's results are added (a new one when None); filled as
        videos are written, so it is right even when the run stops with an error.

    Attributes
    ----------
    summary : ExtractionSummary

    Examples
    --------
    Not run: it needs a built frame model and a video file.

    >>> from amnetvid_sk.extract.local import ExtractionJob, Extractor
    >>> job = ExtractionJob(store="store", sampling="frames=4", n_frames=4)
    >>> Extractor(model, job).run([(Path("clip.mp4"), "clip")]).report()  # doctest: +SKIP
    """

    def __init__(self, model, job: ExtractionJob, *, progress: bool = False,
                 summary: ExtractionSummary | None = None):
        self.model = model
        self.job = job
        self.progress = progress
        self.summary = ExtractionSummary() if summary is None else summary
        self.store = FeatureStore(job.store)
        self.fingerprint = model.fingerprint
        self._queue: deque = deque()  # frames waiting for the model: (video, position in the video, frame)
        self._completed: list[_PendingVideo] = []  # videos with all outputs, not written yet
        self._n_model_frames = 0
        self._bar = None
        self._started = time.perf_counter()

    # -- the run ------------------------------------------------------------------------

    def run(self, inputs: Sequence[tuple[Path, str]]) -> ExtractionSummary:
        """Extract the given (not yet extracted) inputs; returns :attr:`summary`.

        What is complete is written even when the run stops (Ctrl-C, an error),
        so a rerun continues from it.
        """
        self._started = time.perf_counter()
        if self.progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=len(inputs), unit="video", desc="extract", dynamic_ncols=True)
        try:
            self._decode_and_predict(inputs)
            self._run_batches(force=True)
        finally:
            self.flush()
            if self._bar is not None:
                self._bar.close()
            self.summary.n_frames += self._n_model_frames
            self._n_model_frames = 0
        return self.summary

    def _decode_and_predict(self, inputs) -> None:
        workers = self.job.workers
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="decode") as pool:
            todo = deque(inputs)
            running = {}
            ahead = max(2 * workers, 2)  # videos in flight: enough to keep the model fed
            while todo or running:
                while todo and len(running) < ahead:
                    path, vid = todo.popleft()
                    future = pool.submit(sample_frames, path, n_frames=self.job.n_frames, fps=self.job.fps)
                    running[future] = (path, vid)
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED, timeout=None)
                for future in finished:
                    self._accept(future, *running.pop(future))
                self._run_batches(force=not todo and not running)

    def _accept(self, future, path: Path, vid: str) -> None:
        """Queue a decoded video's frames for the model, or record why it failed."""
        try:
            sampled = future.result()
            key = file_key(path)
        except VideoDecodeError as exc:
            return self._fail(path, vid, exc.reason)
        except OSError as exc:
            return self._fail(path, vid, f"{type(exc).__name__}: {exc}")
        if len(sampled.indices) == 0:
            return self._fail(path, vid, "no frames could be decoded")
        pending = _PendingVideo(path, vid, key, sampled, tuple(self.model.map_shape))
        self._queue.extend((pending, pos, frame) for pos, frame in enumerate(sampled.frames))
        # the queue holds the frames now; don't keep a second reference until flush
        pending.sampled = dataclasses.replace(sampled, frames=None)

    def _run_batches(self, force: bool) -> None:
        """Run the model on full batches (and on what is left when ``force``)."""
        batch_size = int(self.model.batch_size)
        queue = self._queue
        while queue and (force or len(queue) >= batch_size):
            # one batch of equal-sized frames; a size change cuts the batch short
            first_shape = queue[0][2].shape
            batch = []
            while queue and len(batch) < batch_size and queue[0][2].shape == first_shape:
                batch.append(queue.popleft())
            scores, maps = self.model.predict(np.stack([b[2] for b in batch]))
            self._n_model_frames += len(batch)
            for (pending, pos, _), s, m in zip(batch, scores, maps):
                pending.scores[pos] = s
                pending.maps[pos] = m
                pending.done += 1
                if pending.done == len(pending.scores):
                    self._complete(pending)

    def _complete(self, pending: _PendingVideo) -> None:
        self._completed.append(pending)
        if self._bar is not None:
            self._bar.update(1)
            elapsed = time.perf_counter() - self._started
            self._bar.set_postfix_str(f"{self._n_model_frames / max(elapsed, 1e-9):.1f} frames/s")
        if len(self._completed) >= self.job.flush_every:
            self.flush()

    # -- writes -------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the completed videos: their frames, then the ``videos`` rows that make them visible."""
        if not self._completed:
            return
        video_rows, frame_tables = [], []
        for pending in self._completed:
            sampled, info = pending.sampled, pending.sampled.info
            extraction_id = new_extraction_id()
            video_rows.append({
                "extraction_id": extraction_id, "video_id": pending.video_id, "path": pending.key[0],
                "size": pending.key[1], "mtime": pending.key[2], "duration": float(info.duration),
                "fps": float(info.fps), "frame_count": int(info.frame_count),
                "width": int(info.width), "height": int(info.height), "model": self.fingerprint,
                "sampling": self.job.sampling, "n_frames": len(sampled.indices), "short": bool(sampled.short),
            })  # the store stamps extracted_at to the microsecond
            # video_id, model and sampling are filled in from the videos row by the store
            frame_tables.append(frames_table(extraction_id, sampled.indices, sampled.timestamps,
                                             pending.scores, pending.maps))
        try:
            self.store.write_extractions(video_rows, pa.concat_tables(frame_tables))
        except OSError:
            # a full disk: the final flush must not try the same write again
            self._completed.clear()
            raise
        self.summary.extracted += [str(pending.path) for pending in self._completed]
        self._completed.clear()

    def _fail(self, path, vid: str, reason: str) -> None:
        self.store.write_failure(str(path), reason, self.fingerprint, self.job.sampling, video_id=vid)
        self.summary.failed.append((str(path), reason))
        if self._bar is not None:
            self._bar.update(1)
