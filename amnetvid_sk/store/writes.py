"""The writing methods of :class:`~amnetvid_sk.store.FeatureStore`: one per table, each a thin
layer over :mod:`.write` (which says how a part file is written and committed)."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import pyarrow as pa

from . import write

__all__ = ["StoreWrites"]


class StoreWrites:
    """Appending to the store's tables; mixed into ``FeatureStore``, which holds ``_con``."""

    def write_extractions(self, videos: Sequence[Mapping] | pa.Table, frames: pa.Table,
                          embeddings: pa.Table | None = None) -> int:
        """Add extractions, frames (and embeddings) first and the videos rows (the commit record)
        last (see :func:`.write.write_extractions`).
        """
        return write.write_extractions(self._con, self._shapes, videos, frames, embeddings)

    def write_embeddings(self, embeddings: pa.Table) -> int:
        """Add the frame embeddings of extractions already in the store (see :func:`.write.write_embeddings`)."""
        return write.write_embeddings(self._con, embeddings)

    def write_model(self, fingerprint: str, name: str, config: Mapping | None, map_shape: Sequence[int], *,
                    maps: str = "attention", embedding_dim: int = 0) -> bool:
        """Register a frame model; False when the fingerprint was known (see :func:`.write.write_model`)."""
        return write.write_model(self._con, fingerprint, name, config, map_shape, maps=maps,
                                 embedding_dim=embedding_dim)

    def write_failure(self, path: str | os.PathLike, reason: str, model: str, sampling: str,
                      video_id: str | None = None) -> None:
        """Record that a video could not be extracted, and why (see :func:`.write.write_failure`)."""
        write.write_failure(self._con, path, reason, model, sampling, video_id)

    def write_labels(self, table) -> int:
        """Import labels; a later import of a video wins (see :func:`.write.write_labels`)."""
        return write.write_labels(self._con, table)

    def write_results(self, table_or_rows) -> int:
        """Append evaluation results, one row per fold (see :func:`.write.write_results`)."""
        return write.write_results(self._con, table_or_rows)

    def write_predictions(self, table) -> int:
        """Append a run's out-of-fold predictions (see :func:`.write.write_predictions`)."""
        return write.write_predictions(self._con, table)

