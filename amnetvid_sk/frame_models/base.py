"""Frame models: still-image memorability models that score video frames.

Every frame model turns RGB frames into one memorability score and ``K=3``
attention maps of ``14 x 14`` per frame. This module holds what they share:
the :class:`FrameModel` base class (input checks, batching, ``inference_mode``,
bfloat16 autocast where the precision asks for it, map normalisation), device
choice, the fingerprint that keys the feature store, and :func:`make_frame_model`.
The precision rule (``auto``: bfloat16 only where the hardware computes it
natively) lives in :mod:`amnetvid_sk.precision`.

The models themselves live in :mod:`amnetvid_sk.frame_models.amnet` (AMNet, needs a weights
file) and :mod:`amnetvid_sk.frame_models.resmem_gradcam` (ResMem with Grad-CAM maps, the
default).
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..precision import EMULATED, PRECISIONS, native_bfloat16, resolve_precision

__all__ = [
    "FrameModel",
    "make_frame_model",
    "resolve_device",
    "make_fingerprint",
    "hash_state_dict",
    "hash_file",
    "FRAME_MODEL_NAMES",
]

#: names accepted by :func:`make_frame_model`
FRAME_MODEL_NAMES = ("resmem", "amnet")

#: ImageNet channel statistics (RGB, 0..1 scale), used by AMNet's preprocessing
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_FINGERPRINT_HASH_CHARS = 12


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


# --------------------------------------------------------------------------- fingerprints


def hash_state_dict(state_dict) -> str:
    """SHA-256 (hex) of a state dict's content: key names, dtypes, shapes and values.

    ``num_batches_tracked`` buffers are left out: the published AMNet files
    (PyTorch 0.3) have none, and they never change a prediction. The hash does
    not depend on the file format the weights came from (zip or legacy pickle).

    Parameters
    ----------
    state_dict : mapping of str to torch.Tensor

    Returns
    -------
    str
        64 hexadecimal characters.

    Examples
    --------
    >>> import torch
    >>> from amnetvid_sk.frame_models import hash_state_dict
    >>> len(hash_state_dict({"w": torch.zeros(2)}))
    64
    """
    h = hashlib.sha256()
    for key in sorted(state_dict):
        if key.endswith("num_batches_tracked"):
            continue
        tensor = state_dict[key].detach().to("cpu").contiguous()
        h.update(key.encode())
        h.update(f"|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        # A bytes view works for every dtype, bfloat16 included (numpy has no bfloat16).
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


_FILE_HASHES: dict[tuple, str] = {}


def hash_file(path) -> str:
    """SHA-256 (hex) of a file's bytes, cached per (path, size, mtime) for the process.

    Examples
    --------
    >>> import tempfile, os
    >>> from amnetvid_sk.frame_models import hash_file
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = os.path.join(d, "x.bin")
    ...     _ = open(p, "wb").write(b"abc")
    ...     hash_file(p)[:8]
    'ba7816bf'
    """
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    digest = _FILE_HASHES.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        digest = _FILE_HASHES[key] = h.hexdigest()
    return digest


def make_fingerprint(name: str, weights_sha256: str, preprocessing: str, map_shape, bfloat16: bool,
                     extra: str = "") -> str:
    """The fingerprint string of a frame model: the feature store's cache key.

    Format: ``{name}.w-{hash12}.pre-{preprocessing}[.{extra}].maps-{K}x{h}x{w}.{fp32|bf16}``,
    for example ``amnet.w-3f2a9c0d11be.pre-224sq-imagenet.maps-3x14x14.fp32``.
    It uses only ``[a-z0-9.-]``, so it is safe in file names and SQL literals.
    Any change of weights (first 12 hex digits of their SHA-256), preprocessing,
    map derivation (``extra``), map size or numeric mode gives another string.

    Parameters
    ----------
    name : str
        Frame model name, e.g. ``"amnet"``.
    weights_sha256 : str
        Hex digest of the weights (see :func:`hash_state_dict`, :func:`hash_file`).
    preprocessing : str
        Short tag describing the input preprocessing.
    map_shape : tuple of int
        ``(K, h, w)``.
    bfloat16 : bool
        Whether bfloat16 autocast is on (outputs differ slightly from float32).
    extra : str, default=""
        Anything else that changes the outputs (e.g. Grad-CAM layers).

    Returns
    -------
    str

    Examples
    --------
    >>> from amnetvid_sk.frame_models import make_fingerprint
    >>> make_fingerprint("amnet", "ab" * 32, "224sq-imagenet", (3, 14, 14), False)
    'amnet.w-abababababab.pre-224sq-imagenet.maps-3x14x14.fp32'
    """
    parts = [name, f"w-{weights_sha256[:_FINGERPRINT_HASH_CHARS]}", f"pre-{preprocessing}"]
    if extra:
        parts.append(extra)
    parts.append("maps-" + "x".join(str(int(s)) for s in map_shape))
    parts.append("bf16" if bfloat16 else "fp32")
    return ".".join(parts)


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

    @property
    def config(self) -> dict:
        """JSON-friendly description of the model (for the store's ``models`` table)."""
        parts = self._fingerprint_parts()
        return {
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


# --------------------------------------------------------------------------- factory


def make_frame_model(
    name: str = "resmem",
    weights=None,
    device=None,
    batch_size: int | None = None,
    precision: str = "auto",
    bfloat16: bool | None = None,
    allow_unsafe_weights: bool = False,
) -> FrameModel:
    """Build a frame model by name.

    Parameters
    ----------
    name : {"resmem", "amnet"}, default="resmem"
        ``"resmem"``: ResMem scores with Grad-CAM maps (weights ship with the
        ``resmem`` package; ``pip install "amnetvid-sk[resmem]"``).
        ``"amnet"``: AMNet, needs ``weights``.
    weights : str or Path, default=None
        AMNet weights file (e.g. ``weights_35.pkl`` of the AMNet release). Must be
        ``None`` for ``"resmem"``, whose weights come from its package.
    device : str, torch.device or None, default=None
        ``None``: CUDA when present, else CPU.
    batch_size : int or None, default=None
        ``None`` keeps the model's default (16 for AMNet, 8 for ResMem).
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        See :class:`FrameModel`: ``"auto"`` takes bfloat16 only where the device
        computes it natively.
    bfloat16 : bool or None, default=None
        Older spelling of ``precision`` (True: bfloat16, False: float32).
    allow_unsafe_weights : bool, default=False
        AMNet only: allow a weights file that needs arbitrary unpickling.

    Returns
    -------
    FrameModel

    Examples
    --------
    >>> from amnetvid_sk.frame_models import make_frame_model
    >>> make_frame_model("vgg")
    Traceback (most recent call last):
    ...
    ValueError: The 'name' parameter of make_frame_model must be a str among {'amnet', 'resmem'}. Got 'vgg' instead.
    """
    if name not in FRAME_MODEL_NAMES:
        allowed = "{" + ", ".join(repr(a) for a in sorted(FRAME_MODEL_NAMES)) + "}"
        raise ValueError(
            f"The 'name' parameter of make_frame_model must be a str among {allowed}. Got {name!r} instead."
        )
    kwargs = {"device": device, "precision": precision, "bfloat16": bfloat16}
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    if name == "amnet":
        from .amnet import AMNet

        return AMNet(weights=weights, allow_unsafe_weights=allow_unsafe_weights, **kwargs)
    if weights is not None:
        raise ValueError(
            f"The 'weights' parameter must be None for name='resmem' (ResMem's weights ship inside the "
            f"resmem package). Got {weights!r} instead; did you mean name='amnet'?"
        )
    from .resmem_gradcam import ResMemGradCAM

    return ResMemGradCAM(**kwargs)
