"""Sequences drawn from all stored frames: T-frame subsets of each video's frames, in time order.

The sequence networks take a fixed number of frames T (``module__n_frames``, 4 in the working
note) while the store may hold more per video (28 in the note). The reader step can hand over
all of them (``AttentionSequences(n_frames=28)``, ``FrameScores(n_frames=28)``) and the
estimator chooses, per video, which T frames the network sees (its ``train_subsets`` and
``test_subsets`` parameters):

* training, ``train_subsets="random"``: T distinct positions drawn anew for every video in
  every epoch (every subset of T equally likely), sorted so the frames stay in time order; the
  draw happens when the ``DataLoader`` asks for the item, from torch's generator, which ``fit``
  seeds from ``random_state`` (a ``DataLoader`` worker has its own seeded generator);
* training, ``train_subsets="uniform"``: always the T frames the store's uniform pick gives
  (:func:`amnetvid_sk.store.read.positions`), the same as reading T frames from the store;
* prediction and the validation part during ``fit``: the mean of the network's predictions
  over K = ``test_subsets`` evenly spread subsets (:func:`spread_positions`; K=1 is the store's
  uniform pick).

Items are indexed lazily (one video's chosen frames at a time); the input array is never
copied as a whole.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch.utils.data import Dataset

from .store.read import positions

__all__ = ["TRAIN_SUBSETS", "RandomSubsets", "SpreadSubsets", "SubsetBatch", "frame_count", "mark_batches",
           "random_positions", "spread_positions", "subset_dataset"]

#: the values of the estimators' ``train_subsets`` besides None
TRAIN_SUBSETS = ("random", "uniform")


def spread_positions(n_stored: int, n_frames: int, n_subsets: int = 1) -> np.ndarray:
    """``[n_subsets, n_frames]`` positions of K evenly spread, interleaved T-frame subsets.

    The store's uniform pick of ``n_frames * n_subsets`` positions over ``n_stored`` frames,
    dealt out in turn: subset j takes every K-th of them starting at the j-th. So each subset
    is in time order with distinct positions and spans the whole video, together they cover it
    evenly, and K=1 is exactly the store's uniform pick of T frames.

    Parameters
    ----------
    n_stored : int
        Frames stored per video (at least ``n_frames``).
    n_frames : int
        Frames per subset (T).
    n_subsets : int, default=1
        Number of subsets (K).

    Returns
    -------
    ndarray of int64, shape (n_subsets, n_frames)

    Examples
    --------
    >>> spread_positions(28, 4).tolist()
    [[0, 9, 18, 27]]
    >>> spread_positions(28, 4, 3).tolist()
    [[0, 7, 15, 22], [2, 10, 17, 25], [5, 12, 20, 27]]
    """
    for name, value, low in (("n_frames", n_frames, 1), ("n_subsets", n_subsets, 1), ("n_stored", n_stored, n_frames)):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an int >= {low}; got {value!r}.")
    grid = positions(np.array([n_stored]), int(n_frames) * int(n_subsets))[0]
    return grid.reshape(int(n_frames), int(n_subsets)).T.copy()


def random_positions(n_stored: int, n_frames: int, generator: torch.Generator | None = None) -> np.ndarray:
    """``n_frames`` distinct positions among ``n_stored`` frames, sorted; each subset equally likely.

    Drawn from ``generator``, or torch's default generator when None (the one ``fit`` seeds).

    Examples
    --------
    >>> import torch
    >>> pos = random_positions(28, 4, torch.Generator().manual_seed(0))
    >>> len(pos), bool((pos[1:] > pos[:-1]).all()), bool(0 <= pos.min() and pos.max() < 28)
    (4, True, True)
    """
    drawn = torch.randperm(int(n_stored), generator=generator)[: int(n_frames)]
    return drawn.sort().values.numpy()


def frame_count(x) -> int:
    """Frames of one video's input: the first axis of its array, or of every array of a dict.

    Examples
    --------
    >>> import numpy as np
    >>> frame_count({"maps": np.zeros((28, 3, 14, 14)), "scores": np.zeros(28)})
    28
    """
    if isinstance(x, Mapping):
        counts = {k: len(v) for k, v in x.items()}
        if len(set(counts.values())) != 1:
            raise ValueError(f"The arrays of one video's input hold different numbers of frames: {counts}.")
        return next(iter(counts.values()))
    return len(x)


def _take(x, pos: np.ndarray):
    if isinstance(x, Mapping):
        return {k: _take(v, pos) for k, v in x.items()}
    # a numpy item (skorch's Dataset hands out views of X's rows) copies only the frames taken
    return x[pos] if isinstance(x, np.ndarray) else x[torch.as_tensor(pos)]


class RandomSubsets(Dataset):
    """A dataset of videos whose items hold ``n_frames`` random frames, in time order, drawn per access.

    Each ``dataset[i]`` is an ``(X_i, y_i)`` pair with ``X_i`` an array (or a dict of arrays)
    whose first axis is time; ``self[i]`` takes the frames at :func:`random_positions`, drawn
    anew on every access, so every epoch of a ``DataLoader`` sees other subsets.

    Examples
    --------
    >>> import numpy as np, torch
    >>> data = [(np.arange(10.0), 0.5)]
    >>> items = RandomSubsets(data, 3, generator=torch.Generator().manual_seed(0))
    >>> a, b = items[0][0], items[0][0]
    >>> a.shape, bool((np.diff(a) > 0).all()), bool((a != b).any())
    ((3,), True, True)
    """

    def __init__(self, dataset, n_frames: int, generator: torch.Generator | None = None):
        self.dataset = dataset
        self.n_frames = n_frames
        self.generator = generator

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        x, *rest = self.dataset[i]
        pos = random_positions(frame_count(x), self.n_frames, self.generator)
        return (_take(x, pos), *rest)


class SpreadSubsets(Dataset):
    """A dataset of videos whose items hold the frames at fixed ``positions``.

    ``positions`` is ``[T]`` (one subset: items ``[T, ...]``) or ``[K, T]`` (K subsets: items
    ``[K, T, ...]``, which :class:`SubsetBatch` turns into K sequences per video).

    Examples
    --------
    >>> import numpy as np
    >>> data = [(np.arange(28.0), 0.5)]
    >>> SpreadSubsets(data, spread_positions(28, 4, 2))[0][0].tolist()
    [[0.0, 8.0, 15.0, 23.0], [4.0, 12.0, 19.0, 27.0]]
    """

    def __init__(self, dataset, positions: np.ndarray):
        self.dataset = dataset
        self.positions = positions

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        x, *rest = self.dataset[i]
        return (_take(x, self.positions), *rest)


class SubsetBatch:
    """A batch of B videos with K subsets each (``[B, K, T, ...]`` tensors, or a dict of them).

    :meth:`flat` gives the B*K sequences as one batch for the network; :meth:`mean` averages
    the network's outputs back to one per video. ``len()`` is B (skorch records it as the batch
    size).

    Examples
    --------
    >>> import torch
    >>> batch = SubsetBatch(torch.arange(12.0).reshape(2, 3, 2))  # 2 videos, 3 subsets of 2 frames
    >>> len(batch), tuple(batch.flat().shape)
    (2, (6, 2))
    >>> batch.mean(batch.flat().sum(1, keepdim=True)).tolist()
    [[5.0], [17.0]]
    """

    def __init__(self, x):
        self.x = x

    def _first(self) -> torch.Tensor:
        return next(iter(self.x.values())) if isinstance(self.x, Mapping) else self.x

    def __len__(self) -> int:
        return len(self._first())

    def flat(self):
        if isinstance(self.x, Mapping):
            return {k: v.flatten(0, 1) for k, v in self.x.items()}
        return self.x.flatten(0, 1)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        b, k = self._first().shape[:2]
        return out.reshape(b, k, *out.shape[1:]).mean(dim=1)


class _MarkedBatches:
    """The batches of a loader over :class:`SpreadSubsets` items, their X wrapped in :class:`SubsetBatch`."""

    def __init__(self, loader):
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, *rest in self.loader:
            yield (SubsetBatch(x), *rest)


def mark_batches(loader, n_subsets: int | None):
    """``loader`` itself, or its batches wrapped in :class:`SubsetBatch` when items hold K > 1 subsets.

    Examples
    --------
    >>> import torch
    >>> batches = list(mark_batches([(torch.zeros(2, 3, 4), torch.zeros(2, 1))], 3))
    >>> type(batches[0][0]).__name__, len(batches[0][0])
    ('SubsetBatch', 2)
    """
    return _MarkedBatches(loader) if n_subsets and n_subsets > 1 else loader


def subset_dataset(dataset, *, training: bool, train_subsets, test_subsets: int, n_frames, name: str):
    """The dataset an estimator's network sees, and K (the subsets per item at prediction, or None).

    ``train_subsets=None`` leaves ``dataset`` as it is: its videos must hold ``n_frames`` frames
    (a clear error otherwise). ``"random"`` and ``"uniform"`` take ``n_frames`` of the stored
    frames as the module docstring says, when the videos hold more.

    Parameters
    ----------
    dataset : torch Dataset of (X_i, y_i)
    training : bool
        Whether the items feed a training epoch (else validation or prediction).
    train_subsets : {None, "random", "uniform"}
    test_subsets : int
        K, the evenly spread subsets averaged at prediction.
    n_frames : int or None
        The network's frame count (``module__n_frames``); None when the module declares none.
    name : str
        The estimator's class name, for messages.

    Returns
    -------
    dataset : torch Dataset
    n_subsets : int or None
        K when the items hold K > 1 subsets each (see :func:`mark_batches`), else None.

    Examples
    --------
    >>> import numpy as np
    >>> data = [(np.arange(28.0), 0.5)]
    >>> view, k = subset_dataset(data, training=False, train_subsets="random", test_subsets=5,
    ...                          n_frames=4, name="ScoreLSTMRegressor")
    >>> view[0][0].shape, k
    ((5, 4), 5)
    """
    if n_frames is None or len(dataset) == 0:
        if train_subsets is not None and len(dataset):
            raise ValueError(
                f"train_subsets={train_subsets!r} takes module__n_frames frames per video, but the module "
                f"of {name} declares no n_frames; use a module with an n_frames attribute or train_subsets=None.")
        return dataset, None
    stored = frame_count(dataset[0][0])
    if stored == n_frames:
        return dataset, None
    if train_subsets is None or stored < n_frames:
        more = ("" if stored < n_frames else
                f", or pass train_subsets='random' (random {n_frames}-frame subsets, a new draw each epoch) "
                f"or 'uniform' (the store's uniform pick of {n_frames})")
        raise ValueError(
            f"X holds {stored} frames per video but {name}'s network takes module__n_frames={n_frames}; "
            f"set module__n_frames={stored} to match the input, or read {n_frames} frames per video{more}.")
    if training and train_subsets == "random":
        return RandomSubsets(dataset, n_frames), None
    k = 1 if training else test_subsets
    spread = spread_positions(stored, n_frames, k)
    return SpreadSubsets(dataset, spread[0] if k == 1 else spread), (k if k > 1 else None)
