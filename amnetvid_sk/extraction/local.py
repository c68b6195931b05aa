"""Extraction in this process: :class:`Extractor`, decode threads feeding one frame model.

With ``embeddings`` the model's embeddings come from the same forward pass as its
scores (``FrameModel.predict_outputs``). A video whose visible extraction (same
file, same frames) lacks them gets only its embeddings written, keyed by that
extraction, so its frame rows are never written twice.

Decoding runs on a thread pool ahead of the frame model (PyAV and torch both
release the GIL while they work), so the model is fed continuously; batches span
videos. Completed videos are written to the store every ``flush_every`` videos as
part files (frames first, then the ``videos`` rows that make them visible), so an
interrupted run loses at most the videos not yet flushed and a rerun continues.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from ..errors import VideoDecodeError
from ..store import FeatureStore, embeddings_table, frames_table, new_extraction_id
from ..video import sample_frames
from .inputs import file_key
from .summary import ExtractionSummary

__all__ = ["ExtractionJob", "Extractor"]

logger = logging.getLogger("amnetvid_sk.extraction")


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
    embeddings : bool, default=False
        Also store each frame's embedding.
    video_time_limit : float or None, default=None
        Seconds one video's opening, indexing and decoding may take (the frame
        model's work on it is not counted); None: no limit.
    """

    store: str
    sampling: str
    n_frames: int | None = None
    fps: float | None = None
    workers: int = 2
    flush_every: int = 16
    embeddings: bool = False
    video_time_limit: float | None = None


class _PendingVideo:
    """A decoded video waiting for the frame model's outputs."""

    __slots__ = ("path", "video_id", "key", "sampled", "scores", "maps", "embeddings", "done")

    def __init__(self, path, video_id, key, sampled, map_shape, embedding_dim: int):
        n = len(sampled.indices)
        self.path, self.video_id, self.key, self.sampled = path, video_id, key, sampled
        self.scores = np.empty(n, dtype=np.float32)
        self.maps = np.empty((n, *map_shape), dtype=np.float32) if map_shape is not None else None
        self.embeddings = np.empty((n, embedding_dim), dtype=np.float32) if embedding_dim else None
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

    >>> from amnetvid_sk.extraction.local import ExtractionJob, Extractor
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
        self._unembedded: set[str] | None = None  # see _stored_extractions
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
        self._unembedded = None
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
                    # the time limit starts when a thread takes the video, not while it waits in the
                    # pool's queue, and ends with its decoding: the model's work is not counted
                    future = pool.submit(sample_frames, path, n_frames=self.job.n_frames, fps=self.job.fps,
                                         time_limit=self.job.video_time_limit)
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
        except VideoDecodeError as exc:  # the time limit too (VideoTimeLimitError)
            return self._fail(path, vid, exc.reason)
        except OSError as exc:
            return self._fail(path, vid, f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            # A file no check foresaw, hitting a bug: one video of a long run must not end the run
            # (or kill a worker); the traceback goes to the log and the reason says to report it.
            logger.error("%s: unexpected error while decoding", path, exc_info=exc)
            return self._fail(path, vid, f"unexpected error while decoding ({type(exc).__name__}: {exc}); "
                                         "please report it with the file")
        if len(sampled.indices) == 0:
            return self._fail(path, vid, "no frames could be decoded")
        map_shape = None if self.model.maps == "none" else tuple(self.model.map_shape)
        pending = _PendingVideo(path, vid, key, sampled, map_shape,
                                int(self.model.embedding_dim) if self.job.embeddings else 0)
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
            out = self.model.predict_outputs(np.stack([b[2] for b in batch]), embeddings=self.job.embeddings)
            self._n_model_frames += len(batch)
            for i, (pending, pos, _) in enumerate(batch):
                pending.scores[pos] = out.scores[i]
                if pending.maps is not None:
                    pending.maps[pos] = out.maps[i]
                if pending.embeddings is not None:
                    pending.embeddings[pos] = out.embeddings[i]
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

    def _stored_extractions(self) -> dict[str, str]:
        """video id -> the extraction id of the completed videos whose visible extraction (same
        file, same frames) lacks embeddings: those get only their embeddings written.

        The store is asked once per run which videos have an extraction without embeddings, and
        again only at a flush that holds one of them: a flush of videos new to the store (most
        of a first run) then costs no query, which would read every ``videos`` and ``embeddings``
        part of the store each time (a cost per flush that grows with the store). A video that
        another writer extracts without embeddings during this run gets a new extraction here,
        with embeddings, which hides that one.
        """
        if not self.job.embeddings:
            return {}
        done = None
        if self._unembedded is None:
            done = self.store.extracted_files(self.fingerprint, self.job.sampling).to_pylist()
            self._unembedded = {r["video_id"] for r in done if not r["embedded"]}
        if not any(p.video_id in self._unembedded for p in self._completed):
            return {}
        if done is None:
            done = self.store.extracted_files(self.fingerprint, self.job.sampling).to_pylist()
        by_id = {r["video_id"]: r for r in done if not r["embedded"]}
        found = {}
        for pending in self._completed:
            r = by_id.get(pending.video_id)
            if r is not None and (r["size"], r["mtime"]) == pending.key[1:]:
                found[pending.video_id] = r["extraction_id"]
        indices = self.store.frame_indices(found.values()) if found else {}
        # frames sampled now that differ from the stored ones (another decoder): a new extraction
        return {p.video_id: found[p.video_id] for p in self._completed if p.video_id in found
                and indices.get(found[p.video_id]) == [int(i) for i in p.sampled.indices]}

    def flush(self) -> None:
        """Write the completed videos: their frames (and embeddings), then the ``videos`` rows that
        make them visible; only the embeddings of videos already extracted without them."""
        if not self._completed:
            return
        stored = self._stored_extractions()
        video_rows, frame_tables, embedding_tables, added = [], [], [], []
        for pending in self._completed:
            sampled, info = pending.sampled, pending.sampled.info
            if pending.video_id in stored:
                added.append(embeddings_table(stored[pending.video_id], sampled.indices, pending.embeddings))
                continue
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
            if pending.embeddings is not None:
                embedding_tables.append(embeddings_table(extraction_id, sampled.indices, pending.embeddings))
        try:
            if added:
                self.store.write_embeddings(pa.concat_tables(added))
            if video_rows:
                self.store.write_extractions(video_rows, pa.concat_tables(frame_tables),
                                             pa.concat_tables(embedding_tables) if embedding_tables else None)
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
