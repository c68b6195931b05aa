"""The frame model interface: frames in, one score, ``K=3`` attention maps and an embedding per frame out.

Every frame model turns RGB frames (or still images) into one memorability score
and ``K=3`` attention maps of ``14 x 14`` per frame (or scores only, ``maps="none"``),
and, where it declares an :attr:`~FrameModel.embedding_dim`, an embedding of its
internal state from the same forward pass. This module holds what they share:
the :class:`FrameModel` base class (batching, ``inference_mode``, bfloat16
autocast where the precision asks for it, the parameters that rebuild a model
elsewhere). What it gives is in :mod:`~amnetvid_sk.frame_models.outputs`
(:class:`FrameOutputs`, the ``maps`` modes), device choice in
:mod:`~amnetvid_sk.frame_models.devices`, the frame helpers (input
checks, image paths, resizing, map normalisation) in
:mod:`~amnetvid_sk.frame_models.frames`. The fingerprint that keys the feature store is made in
:mod:`~amnetvid_sk.frame_models.fingerprint`, the precision rule (``auto``:
bfloat16 only where the hardware computes it natively) in
:mod:`amnetvid_sk.precision`, and names are resolved to classes in
:mod:`~amnetvid_sk.frame_models.registry`.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch

from ..errors import ParameterError, allowed_values
from ..precision import EMULATED, PRECISIONS, native_bfloat16, resolve_precision
from .cpu_parts import run_parts
from .devices import available_devices, resolve_device
from .frames import check_frames, frame_groups, frames_to_tensor, normalise_maps, resize_frames
from .identity import RUNTIME_PARAMS, FrameModelIdentity
from .outputs import MAPS_MODES, FrameOutputs

__all__ = [
    "FrameModel",
    "FrameOutputs",
    "MAPS_MODES",
    "resolve_device",
    "available_devices",
    "check_frames",
    "frames_to_tensor",
    "normalise_maps",
    "resize_frames",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RUNTIME_PARAMS",
]

#: ImageNet channel statistics (RGB, 0..1 scale), used by AMNet's preprocessing
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FrameModel(FrameModelIdentity):
    """Base class of frame models: frames in, scores, attention maps and embeddings out.

    Subclasses set :attr:`name`, :attr:`map_shape` and implement
    :meth:`_fingerprint_parts` and :meth:`_forward_batch` (one batch of uint8 frames ->
    scores, maps unless not wanted, embeddings where :attr:`embedding_dim` declares them). This class
    does the input checks (image paths too), the batching, ``torch.inference_mode``
    (a subclass whose maps need gradients, such as Grad-CAM, sets ``_needs_grad = True``),
    the precision (bfloat16 autocast or float32) and the final map normalisation.
    On the CPU, a subclass whose :meth:`_forward_batch` may run in several threads at
    once (no state shared between calls) sets ``thread_safe_forward = True``: each
    batch is then split over torch's threads, one part per thread, run side by side
    (see :mod:`~amnetvid_sk.frame_models.cpu_parts`; AMNet and ResMem do this).

    **Writing your own frame model.** Subclass this class in a module that can be
    imported (``mypackage.module``); ``make_frame_model("mypackage.module:MyModel")``,
    ``amnetvid extract --frame-model mypackage.module:MyModel`` and the joblib and
    Dask backends then find it (a plug-in package can also give it a short name
    through the entry-point group ``amnetvid_sk.frame_models``). Workers and
    ``predict`` rebuild a model from its :class:`~amnetvid_sk.frame_models.FrameModelSpec`,
    which holds its parameters taken the scikit-learn way:

    - every parameter of ``__init__`` (other than ``device`` and ``precision``,
      which the rebuild sets) is stored under an attribute of the
      same name, holding a value that ``__init__`` accepts again, preferably
      plain JSON (str, number, bool, None, lists, dicts): the store's ``models``
      table records them;
    - the same parameters rebuild the same weights: the rebuilt model's
      :attr:`fingerprint` must equal the original's, or the rebuild stops with
      :class:`~amnetvid_sk.frame_models.FrameModelRebuildError` (weights drawn
      at random without a seed parameter cannot be rebuilt);
    - a model made by an alternative constructor (a classmethod such as
      :meth:`AMNet.from_random <amnetvid_sk.frame_models.amnet.AMNet.from_random>`)
      sets ``self._factory`` to that classmethod's name; then the classmethod's
      parameters are the ones read from attributes;
    - a model that cannot be rebuilt at all sets ``self._not_rebuildable`` to
      the reason (AMNet built from an in-memory state dict does).

    Parameters
    ----------
    device : str, torch.device or None, default=None
        ``None``: CUDA when present, else CPU.
    batch_size : int, default=16
        Frames per forward pass.
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        ``"bfloat16"`` runs the network under ``torch.autocast(dtype=torch.bfloat16)``;
        scores and maps are still returned as float32. ``"auto"`` picks bfloat16
        only where the device computes it natively (CUDA with bfloat16, a CPU
        with AVX512-BF16 or AMX) and float32 elsewhere, where bfloat16 is
        emulated and many times slower (see :mod:`amnetvid_sk.precision`).
    maps : {"attention", "none"}, default="attention"
        ``"attention"``: scores and ``K`` maps per frame. ``"none"``: scores only
        (a subclass that overrides :meth:`_forward_batch` skips the work the maps
        need, for ResMem the Grad-CAM backward pass); its own fingerprint.

    Attributes
    ----------
    name : str
        ``"amnet"`` or ``"resmem"``.
    device : torch.device
    batch_size : int
    maps : str
    precision : str
        The precision that runs: ``"float32"`` or ``"bfloat16"`` (never ``"auto"``).
    precision_note : str
        Why, in words (for example ``"this CPU has no native bfloat16"``).
    bfloat16 : bool
        ``precision == "bfloat16"``.
    map_shape : tuple of int
        ``(3, 14, 14)``.
    embedding_dim : int
        Size of the per-frame embedding of the internal state (class attribute; 0: none).
    thread_safe_forward : bool
        Class attribute: on the CPU, split each batch over torch's threads (see above).
    input_size : tuple of int or None
        ``(height, width)`` the model's preprocessing first resizes every frame to
        with :func:`resize_frames` (class attribute); lets images of different sizes
        share a batch. None: unknown, each image size runs in its own batches.
    fingerprint : str
        Cache key of this model's outputs (see :func:`make_fingerprint`).

    Examples
    --------
    >>> import numpy as np
    >>> from amnetvid_sk.frame_models.amnet import AMNet
    >>> model = AMNet.from_random(seed=0, device="cpu")   # random weights, for tests
    >>> scores, maps = model.predict(np.zeros((2, 64, 64, 3), np.uint8))
    >>> scores.shape, maps.shape
    ((2,), (2, 3, 14, 14))
    """

    name: str = "frame-model"
    map_shape: tuple = (3, 14, 14)
    embedding_dim: int = 0
    input_size: tuple | None = None
    thread_safe_forward: bool = False
    _needs_grad: bool = False

    def __init__(self, device=None, batch_size: int = 16, precision: str = "auto", maps: str = "attention"):
        owner = type(self).__name__
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ParameterError(
                f"The 'batch_size' parameter of {owner} must be an int >= 1. Got {batch_size!r} instead."
            )
        if precision not in PRECISIONS:
            raise ParameterError(
                f"The 'precision' parameter of {owner} must be a str among {allowed_values(PRECISIONS)}. "
                f"Got {precision!r} instead."
            )
        if not isinstance(maps, str) or maps not in MAPS_MODES:
            raise ParameterError(
                f"The 'maps' parameter of {owner} must be a str among {allowed_values(MAPS_MODES)}. "
                f"Got {maps!r} instead."
            )
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        self.maps = maps
        self.set_precision(precision)

    def set_precision(self, precision: str, note: str | None = None) -> None:
        """Change the precision (``"auto"``, ``"float32"`` or ``"bfloat16"``); the fingerprint follows.

        ``note`` replaces the reason :meth:`describe` gives (for example "kept from
        the store"); the slowness of an emulated bfloat16 is always said.
        """
        self.precision, why = resolve_precision(precision, self.device)
        if note is not None:
            why = note
            if self.precision == "bfloat16" and not native_bfloat16(self.device)[0]:
                why += f"; no native bfloat16 here, {EMULATED}"
        self.precision_note = why

    @property
    def bfloat16(self) -> bool:
        """Whether the network runs under bfloat16 autocast."""
        return self.precision == "bfloat16"

    def describe(self) -> str:
        """One line saying which model runs, in which precision and why.

        Examples
        --------
        >>> from amnetvid_sk.frame_models.amnet import AMNet
        >>> AMNet.from_random(seed=0, device="cpu", precision="float32").describe()
        'frame model: amnet, float32 (as asked)'
        >>> AMNet.from_random(seed=0, device="cpu", precision="float32", maps="none").describe()
        'frame model: amnet, scores only, float32 (as asked)'
        """
        only = ", scores only" if self.maps == "none" else ""
        return f"frame model: {self.name}{only}, {self.precision} ({self.precision_note})"

    def __repr__(self) -> str:
        maps = ", maps='none'" if self.maps == "none" else ""
        return (
            f"{type(self).__name__}(device={str(self.device)!r}, batch_size={self.batch_size}, "
            f"precision={self.precision!r}{maps})"
        )

    # -- inference --------------------------------------------------------------------

    def _forward_batch(self, frames: np.ndarray, *, maps: bool, embeddings: bool) -> tuple:  # pragma: no cover
        """Scores ``[B]``, maps ``[B,K,h,w]`` or None, embeddings ``[B,D]`` or None (tensors) of uint8
        frames ``[B,H,W,3]`` (numpy).

        ``maps``/``embeddings``: whether they are wanted (a model may skip what they
        cost; embeddings are asked only of a model whose :attr:`embedding_dim` is not 0).
        """
        raise NotImplementedError

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        """bfloat16 autocast when asked for, a no-op otherwise."""
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bfloat16):
            yield

    def _grad_mode(self) -> contextlib.AbstractContextManager:
        # Grad-CAM maps need autograd; everything else (scores only too) runs without it (faster, less memory).
        if not self._needs_grad or self.maps == "none":
            return torch.inference_mode()
        stack = contextlib.ExitStack()
        # Leave a caller's inference_mode/no_grad: its tensors could not take part in autograd.
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(torch.enable_grad())
        return stack

    def predict_outputs(self, frames, *, embeddings: bool = False) -> FrameOutputs:
        """Scores, attention maps (unless ``maps="none"``) and, when asked, embeddings of frames.

        Parameters
        ----------
        frames : ndarray of uint8, shape (N, H, W, 3), or str, Path, or list of them
            RGB frames of any size (each model resizes them itself; ``N=0`` is
            allowed), or image paths: still images, one frame each, of any sizes
            (read with :func:`~amnetvid_sk.video.images.read_image`).
        embeddings : bool, default=False
            Also return the per-frame embedding of the model's internal state,
            from the same forward pass.

        Returns
        -------
        FrameOutputs
            ``scores`` float32 ``[N]``; ``maps`` float32 ``[N, K, h, w]`` (each map
            sums to 1) or None when ``maps="none"``; ``embeddings`` float32
            ``[N, embedding_dim]`` or None when not asked for.

        Raises
        ------
        ValueError
            Frames that are not uint8 ``[N, H, W, 3]``; an image that cannot be read
            (:class:`~amnetvid_sk.video.images.ImageReadError`, naming it);
            embeddings asked of a model that has none (``embedding_dim == 0``).

        Examples
        --------
        >>> import numpy as np
        >>> from amnetvid_sk.frame_models.amnet import AMNet
        >>> model = AMNet.from_random(seed=0, device="cpu", maps="none")
        >>> out = model.predict_outputs(np.zeros((2, 32, 32, 3), np.uint8), embeddings=True)
        >>> out.scores.shape, out.maps, out.embeddings.shape
        ((2,), None, (2, 1024))
        """
        want_embeddings = bool(embeddings)
        if want_embeddings and not self.embedding_dim:
            raise ParameterError(
                f"The frame model {self.name!r} ({type(self).__name__}) gives no embeddings (embedding_dim=0); "
                "call predict_outputs with embeddings=False, or use a model that declares an embedding_dim "
                "(resmem: 2048, amnet: 1024)."
            )
        want_maps = self.maps != "none"
        n, groups = frame_groups(frames, self.input_size)
        scores = np.empty(n, dtype=np.float32)
        maps = np.empty((n, *self.map_shape), dtype=np.float32) if want_maps else None
        embs = np.empty((n, self.embedding_dim), dtype=np.float32) if want_embeddings else None
        split = self.thread_safe_forward and self.device.type == "cpu"
        for indices, group in groups:
            for start in range(0, len(indices), self.batch_size):
                where = indices[start:start + self.batch_size]
                batch = group[start:start + self.batch_size]

                def run(lo: int, hi: int) -> None:
                    # grad/inference mode and autocast are per thread: entered in the thread that runs
                    with self._grad_mode():
                        s, m, e = self._forward_batch(batch[lo:hi], maps=want_maps, embeddings=want_embeddings)
                        rows = where[lo:hi]
                        scores[rows] = s.detach().float().cpu().numpy()
                        if want_maps:
                            maps[rows] = normalise_maps(m.detach()).cpu().numpy()
                        if want_embeddings:
                            embs[rows] = e.detach().float().cpu().numpy()

                if split:
                    run_parts(run, len(where))
                else:
                    run(0, len(where))
        return FrameOutputs(scores, maps, embs)

    def predict(self, frames) -> tuple[np.ndarray, np.ndarray | None]:
        """Memorability scores and attention maps of RGB frames (or image paths).

        Parameters
        ----------
        frames : ndarray of uint8, shape (N, H, W, 3), or str, Path, or list of them
            See :meth:`predict_outputs`. ``N=0`` is allowed.

        Returns
        -------
        scores : ndarray of float32, shape (N,)
        maps : ndarray of float32, shape (N, 3, 14, 14), or None
            Non-negative, each map sums to 1; None when the model has ``maps="none"``.

        Examples
        --------
        >>> import numpy as np
        >>> from amnetvid_sk.frame_models.amnet import AMNet
        >>> model = AMNet.from_random(seed=0, device="cpu")
        >>> scores, maps = model.predict(np.zeros((0, 32, 32, 3), np.uint8))
        >>> scores.shape, maps.shape
        ((0,), (0, 3, 14, 14))
        """
        out = self.predict_outputs(frames)
        return out.scores, out.maps
