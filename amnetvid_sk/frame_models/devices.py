"""Device choice of frame models: CUDA when present, else the CPU; a device this machine lacks is refused."""

from __future__ import annotations

import torch

from ..errors import DeviceError, ParameterError

__all__ = ["available_devices", "resolve_device"]


def resolve_device(device=None) -> torch.device:
    """Device to run a frame model on: CUDA when present, else the CPU.

    Parameters
    ----------
    device : str, torch.device or None, default=None
        ``None`` picks ``"cuda"`` when ``torch.cuda.is_available()`` and
        ``"cpu"`` otherwise. A CUDA device this machine does not have (none, or
        ``"cuda:N"`` beyond its GPUs) is refused here rather than failing later inside torch.

    Returns
    -------
    torch.device

    Raises
    ------
    DeviceError
        A CUDA device this machine does not have; its ``available`` lists those it has.

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
        raise ParameterError(
            f"The 'device' parameter must be None, 'cpu', 'cuda' or 'cuda:N' (or a torch.device). "
            f"Got {device!r} instead."
        ) from exc
    if dev.type not in ("cpu", "cuda"):
        raise ParameterError(
            f"The 'device' parameter must be None, 'cpu', 'cuda' or 'cuda:N'. Got {device!r} instead."
        )
    have = available_devices()
    if dev.type == "cuda" and (len(have) == 1 or (dev.index is not None and f"cuda:{dev.index}" not in have)):
        raise DeviceError(
            f"The 'device' parameter asks for {str(dev)!r}, which this machine does not have (torch sees "
            f"{', '.join(have)}); use device=None (CUDA when present, else the CPU) or one of those.",
            asked=str(device), available=have)
    return dev


def available_devices() -> list[str]:
    """The devices a frame model can run on here: ``"cpu"``, then ``"cuda:0"``, ``"cuda:1"``, ...
    (those torch sees).

    Examples
    --------
    >>> from amnetvid_sk.frame_models.base import available_devices
    >>> available_devices()[0]
    'cpu'
    """
    n_cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["cpu", *(f"cuda:{i}" for i in range(n_cuda))]
