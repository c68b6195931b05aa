"""The frame model interface: frames in, one score and ``K=3`` attention maps per frame out.

Every frame model turns RGB frames into one memorability score and ``K=3``
attention maps of ``14 x 14`` per frame. This module holds what they share:
the :class:`FrameModel` base class (input checks, batching, ``inference_mode``,
bfloat16 autocast where the precision asks for it, map normalisation, the
parameters that rebuild a model elsewhere), device choice and the frame
helpers. The fingerprint that keys the feature store is made in
:mod:`~amnetvid_sk.frame_models.fingerprint`, the precision rule (``auto``:
bfloat16 only where the hardware computes it natively) in
:mod:`amnetvid_sk.precision`, and names are resolved to classes in
:mod:`~amnetvid_sk.frame_models.registry`.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Iterator

import numpy as np
import torch

from ..precision import EMULATED, PRECISIONS, native_bfloat16, resolve_precision
from .fingerprint import make_fingerprint

__all__ = [
    "FrameModel",
    "resolve_device",
    "check_frames",
    "frames_to_tensor",
    "normalise_maps",
    "resize_frames",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RUNTIME_PARAMS",
]

#: constructor parameters that a rebuild sets itself rather than reading them from the model:
#: the device (the rebuilding process picks its own), the precision (recorded resolved) and its
#: older spelling
RUNTIME_PARAMS = ("device", "precision", "bfloat16")

#: ImageNet channel statistics (RGB, 0..1 scale), used by AMNet's preprocessing
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- device


def resolve_device(device=None) -> torch.device:
    """Device to run a frame model on: CUDA when present, else the CPU.

    Parameters
    ----------
    device : str, torch.device or None, default=None
        ``None`` picks ``"cuda"`` when ``torch.cuda.is_available()`` and
        ``"cpu"`` otherwise. A CUDA device asked for on a machine without one
        is refused here rather than failing later inside torch.

    Returns
    -------
    torch.device

    Examples
    --------
    >>> from amnetvid_sk.frame_models import resolve_device
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"The 'device' parameter must be None, 'cpu', 'cuda' or 'cuda:N' (or a torch.device). "
            f"Got {device!r} instead."
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"The 'device' parameter asks for {str(dev)!r} but torch sees no CUDA device on this machine; "
            "use device=None (automatic) or 'cpu'."
        )
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(
            f"The 'device' parameter must be None, 'cpu', 'cuda' or 'cuda:N'. Got {device!r} instead."
        )
    return dev


# --------------------------------------------------------------------------- shared preprocessing


def resize_frames(frames: np.ndarray, size) -> np.ndarray:
    """Resize uint8 RGB frames ``[B,H,W,3]`` to ``size = (height, width)`` with PIL's bilinear filter.

    PIL rather than torch: the published models were evaluated on images resized
    by PIL (torchvision's ``Resize`` on PIL images), 8-bit in and 8-bit out; torch's
    antialiased resize differs by up to one grey level per pixel. It costs a few
    milliseconds per frame, little next to the networks.
    """
    from PIL import Image

    height, width = int(size[0]), int(size[1])
    if frames.shape[1:3] == (height, width):
        return frames
    out = np.empty((frames.shape[0], height, width, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[i] = np.asarray(Image.fromarray(frame).resize((width, height), Image.BILINEAR))
    return out


def frames_to_tensor(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 ``[B,H,W,3]`` numpy frames -> contiguous float32 ``[B,3,H,W]`` tensor in 0..255 on ``device``.

    The uint8 array is moved first (4x less to copy to a GPU), then converted.
    Contiguous NCHW: ResMem's forward calls ``.view()`` on a conv output, which
    fails on the channels-last strides a permuted ``[B,H,W,3]`` array would carry.
    """
    t = torch.from_numpy(np.ascontiguousarray(frames)).to(device)
    return t.permute(0, 3, 1, 2).float().contiguous()


def check_frames(frames) -> np.ndarray:
    """Validate a batch of RGB frames: a uint8 array of shape ``[N, H, W, 3]``."""
    if not isinstance(frames, np.ndarray):
        frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(
            f"frames must be a uint8 RGB array of shape [N, H, W, 3]; got dtype {frames.dtype}. "
            "Convert with (x * 255).round().clip(0, 255).astype(np.uint8) if the values are 0..1 floats."
        )
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"frames must be a uint8 RGB array of shape [N, H, W, 3]; got shape {frames.shape}. "
            "Stack single frames with frames[None]."
        )
    if frames.shape[0] > 0 and (frames.shape[1] < 1 or frames.shape[2] < 1):
        raise ValueError(f"frames must have a height and width of at least 1 pixel; got shape {frames.shape}.")
    return np.ascontiguousarray(frames)


def normalise_maps(maps: torch.Tensor) -> torch.Tensor:
    """Make maps ``[B,K,h,w]`` float32, non-negative and each sum to 1.

    A map with nothing positive (all zero after clipping, or non-finite)
    carries no location information: it becomes uniform, ``1 / (h*w)`` per cell.
    """
    maps = maps.float()
    maps = torch.nan_to_num(maps, nan=0.0, posinf=0.0, neginf=0.0).clamp_(min=0.0)
    total = maps.sum(dim=(-2, -1), keepdim=True)
    uniform = torch.full_like(maps, 1.0 / (maps.shape[-2] * maps.shape[-1]))
    ok = total > 0
    return torch.where(ok, maps / torch.where(ok, total, torch.ones_like(total)), uniform)


# --------------------------------------------------------------------------- base class


class FrameModel:
    """Base class of frame models: frames in, scores and attention maps out.

    Subclasses set :attr:`name`, :attr:`map_shape` and implement
    :meth:`_predict_batch` (one batch of uint8 frames) and
    :meth:`_fingerprint_parts`. This class does the input checks, the
    batching, ``torch.inference_mode`` (a subclass that needs gradients, such
    as Grad-CAM, sets ``_needs_grad = True``), the precision (bfloat16
    autocast or float32) and the final map normalisation.

    **Writing your own frame model.** Subclass this class in a module that can be
    imported (``mypackage.module``); ``make_frame_model("mypackage.module:MyModel")``,
    ``amnetvid extract --frame-model mypackage.module:MyModel`` and the joblib and
    Dask backends then find it (a plug-in package can also give it a short name
    through the entry-point group ``amnetvid_sk.frame_models``). Workers and
    ``predict`` rebuild a model from its :class:`~amnetvid_sk.frame_models.FrameModelSpec`,
    which holds its parameters taken the scikit-learn way:

    - every parameter of ``__init__`` (other than ``device``, ``precision`` and
      ``bfloat16``, which the rebuild sets) is stored under an attribute of the
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
    bfloat16 : bool or None, default=None
        The older spelling: ``True`` means ``precision="bfloat16"``, ``False``
        means ``precision="float32"``; None leaves ``precision`` in charge.

    Attributes
    ----------
    name : str
        ``"amnet"`` or ``"resmem"``.
    device : torch.device
    batch_size : int
    precision : str
        The precision that runs: ``"float32"`` or ``"bfloat16"`` (never ``"auto"``).
    precision_note : str
        Why, in words (for example ``"this CPU has no native bfloat16"``).
    bfloat16 : bool
        ``precision == "bfloat16"``.
    map_shape : tuple of int
        ``(3, 14, 14)``.
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
    _needs_grad: bool = False
    #: name of the classmethod that built this model, when not ``__init__`` (see above)
    _factory: str | None = None
    #: why this model cannot be rebuilt from its parameters, when it cannot
    _not_rebuildable: str | None = None

    def __init__(self, device=None, batch_size: int = 16, precision: str = "auto", bfloat16=None):
        owner = type(self).__name__
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(
                f"The 'batch_size' parameter of {owner} must be an int >= 1. Got {batch_size!r} instead."
            )
        if bfloat16 is not None:
            if not isinstance(bfloat16, (bool, np.bool_)):
                raise ValueError(
                    f"The 'bfloat16' parameter of {owner} must be a bool or None. Got {bfloat16!r} instead."
                )
            precision = "bfloat16" if bfloat16 else "float32"
        if precision not in PRECISIONS:
            raise ValueError(
                f"The 'precision' parameter of {owner} must be a str among {{'auto', 'bfloat16', 'float32'}}. "
                f"Got {precision!r} instead."
            )
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
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
        """
        return f"frame model: {self.name}, {self.precision} ({self.precision_note})"

    # -- identity ---------------------------------------------------------------------

    def _fingerprint_parts(self) -> dict:  # pragma: no cover - abstract
        """``dict(weights_sha256=..., preprocessing=..., extra=...)``."""
        raise NotImplementedError

    @property
    def fingerprint(self) -> str:
        """Cache key: name, weights hash, preprocessing, map size and numeric mode."""
        return self.fingerprint_as(self.precision)

    def fingerprint_as(self, precision: str) -> str:
        """The fingerprint this model would have in another precision (``"float32"`` or ``"bfloat16"``)."""
        parts = self._fingerprint_parts()
        return make_fingerprint(
            self.name, parts["weights_sha256"], parts["preprocessing"], self.map_shape, precision == "bfloat16",
            parts.get("extra", ""),
        )

    @classmethod
    def class_path(cls) -> str:
        """``"module:Class"``: how :func:`~amnetvid_sk.frame_models.make_frame_model` finds this class.

        Examples
        --------
        >>> from amnetvid_sk.frame_models.amnet import AMNet
        >>> AMNet.class_path()
        'amnetvid_sk.frame_models.amnet:AMNet'
        """
        return f"{cls.__module__}:{cls.__qualname__}"

    def constructor_params(self) -> dict:
        """The parameters that rebuild this model, read from its attributes (the scikit-learn way).

        The parameters of ``__init__`` (or of the classmethod named by ``_factory``),
        without ``device``, ``precision`` and ``bfloat16``, each read from the
        attribute of the same name.

        Returns
        -------
        dict

        Raises
        ------
        AttributeError
            A parameter has no attribute of its name (the contract in the class
            docstring is not met).

        Examples
        --------
        >>> from amnetvid_sk.frame_models.amnet import AMNet
        >>> AMNet.from_random(seed=3, device="cpu", batch_size=4).constructor_params()
        {'seed': 3, 'batch_size': 4}
        """
        constructor = getattr(type(self), self._factory) if self._factory else type(self)
        params = {}
        for p in inspect.signature(constructor).parameters.values():
            if p.name in RUNTIME_PARAMS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if not hasattr(self, p.name):
                raise AttributeError(
                    f"{type(self).__name__} takes the parameter {p.name!r} but keeps no attribute "
                    f"{p.name!r}: a frame model stores each constructor parameter under its own name, so "
                    "that it can be rebuilt in another process (see FrameModel)."
                )
            params[p.name] = getattr(self, p.name)
        return params

    @property
    def config(self) -> dict:
        """JSON-friendly description of the model (for the store's ``models`` table).

        ``class``, ``factory`` and ``params`` (see :meth:`constructor_params`) are
        what :class:`~amnetvid_sk.frame_models.FrameModelSpec` rebuilds the model from.
        """
        parts = self._fingerprint_parts()
        try:
            params = self.constructor_params()
        except AttributeError:
            params = None  # recorded as unknown: only a rebuild needs them, and it says why it fails
        return {
            "class": self.class_path(),
            "factory": self._factory,
            "params": params,
            "name": self.name,
            "fingerprint": self.fingerprint,
            "weights": None if getattr(self, "weights", None) is None else str(self.weights),
            "weights_sha256": parts["weights_sha256"],
            "preprocessing": parts["preprocessing"],
            "extra": parts.get("extra", ""),
            "map_shape": list(self.map_shape),
            "precision": self.precision,
            "bfloat16": self.bfloat16,
            "batch_size": self.batch_size,
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(device={str(self.device)!r}, batch_size={self.batch_size}, "
            f"precision={self.precision!r})"
        )

    # -- inference --------------------------------------------------------------------

    def _predict_batch(self, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        """Scores ``[B]`` and maps ``[B,K,h,w]`` (tensors) for uint8 frames ``[B,H,W,3]`` (numpy)."""
        raise NotImplementedError

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        """bfloat16 autocast when asked for, a no-op otherwise."""
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bfloat16):
            yield

    def _grad_mode(self) -> contextlib.AbstractContextManager:
        # Grad-CAM needs autograd; everything else runs without it (faster, less memory).
        if not self._needs_grad:
            return torch.inference_mode()
        stack = contextlib.ExitStack()
        # Leave a caller's inference_mode/no_grad: its tensors could not take part in autograd.
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(torch.enable_grad())
        return stack

    def predict(self, frames) -> tuple[np.ndarray, np.ndarray]:
        """Memorability scores and attention maps of RGB frames.

        Parameters
        ----------
        frames : ndarray of uint8, shape (N, H, W, 3)
            RGB frames of any size (each model resizes them itself). ``N=0`` is allowed.

        Returns
        -------
        scores : ndarray of float32, shape (N,)
        maps : ndarray of float32, shape (N, 3, 14, 14)
            Non-negative, each map sums to 1.

        Examples
        --------
        >>> import numpy as np
        >>> from amnetvid_sk.frame_models.amnet import AMNet
        >>> model = AMNet.from_random(seed=0, device="cpu")
        >>> scores, maps = model.predict(np.zeros((0, 32, 32, 3), np.uint8))
        >>> scores.shape, maps.shape
        ((0,), (0, 3, 14, 14))
        """
        frames = check_frames(frames)
        n = frames.shape[0]
        scores = np.empty(n, dtype=np.float32)
        maps = np.empty((n, *self.map_shape), dtype=np.float32)
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            with self._grad_mode():
                s, m = self._predict_batch(frames[start:stop])
                m = normalise_maps(m.detach())
                scores[start:stop] = s.detach().float().cpu().numpy()
                maps[start:stop] = m.cpu().numpy()
        return scores, maps
