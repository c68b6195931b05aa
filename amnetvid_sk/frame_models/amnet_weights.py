"""AMNet weights files: reading the published checkpoints safely, checking them, writing them.

The published LaMem model of ok1zjf/AMNet is ``torch.save({'model': state_dict})``
from PyTorch 0.3 (legacy pickle format). :func:`load_amnet_state_dict` reads it (and
the zip format) with ``torch.load(weights_only=True)``, which cannot run code from
the file; a file that needs arbitrary unpickling is refused unless the caller opts in.
:func:`save_amnet_checkpoint` writes the same format. The network itself is in
:mod:`~amnetvid_sk.frame_models.amnet`.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import WeightsError

__all__ = ["WEIGHTS_HELP", "check_state_dict", "load_amnet_state_dict", "save_amnet_checkpoint"]

WEIGHTS_HELP = (
    "The published AMNet weights come from the AMNet GitHub release, https://github.com/ok1zjf/AMNet "
    "(its download.sh / data/lamem_weights_urls.txt: lamem_ResNet50FC_lstm3.zip); use the LaMem model "
    "'lamem_ResNet50FC_lstm3_train_5/weights_35.pkl' from that archive, e.g. AMNet(weights='.../weights_35.pkl')."
)

_LIST_LIMIT = 12


def _short_list(items) -> str:
    items = list(items)
    shown = ", ".join(items[:_LIST_LIMIT])
    if len(items) > _LIST_LIMIT:
        shown += f", ... ({len(items) - _LIST_LIMIT} more)"
    return shown


def _unpickler_reason(exc: BaseException) -> str:
    m = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n|$)", str(exc))
    return m.group(1).strip() if m else str(exc).splitlines()[0]


def _unsafe_refusal(path: Path, exc: BaseException) -> WeightsError:
    """The error for a file the safe loader refused (``exc``) when arbitrary unpickling was not allowed."""
    reason = _unpickler_reason(exc)
    opt_in = (
        "If you trust the file, opt in with allow_unsafe_weights=True (AMNet(..., allow_unsafe_weights=True) "
        "or make_frame_model('amnet', ..., allow_unsafe_weights=True)), or re-save it as plain tensors "
        "with save_amnet_checkpoint."
    )
    if "global" in reason.lower():
        return WeightsError(
            f"AMNet weights file {str(path)!r} cannot be read with torch.load(weights_only=True): it needs "
            f"arbitrary unpickling ({reason}). Unpickling can run any code stored in the file. {opt_in}"
        )
    return WeightsError(
        f"AMNet weights file {str(path)!r} is not a readable PyTorch checkpoint for the safe loader, "
        f"torch.load(weights_only=True) ({reason}). {opt_in}"
    )


def _load_unsafe(path: Path):
    """The object in ``path`` read by arbitrary unpickling (the caller opted in)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc2:  # noqa: BLE001 - any failure of a foreign pickle means "unreadable"
        raise WeightsError(
            f"AMNet weights file {str(path)!r} is not a readable PyTorch checkpoint: {type(exc2).__name__}: {exc2}"
        ) from exc2


def _read_checkpoint(path: Path, allow_unsafe_weights: bool):
    """The object stored in the weights file ``path``, read with ``torch.load(weights_only=True)``, or
    by arbitrary unpickling where that fails and ``allow_unsafe_weights`` is set."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise WeightsError(f"AMNet weights file {str(path)!r} is not a readable PyTorch checkpoint: {exc}") from exc
        if not allow_unsafe_weights:
            raise _unsafe_refusal(path, exc) from None
        return _load_unsafe(path)
    except Exception as exc:  # noqa: BLE001 - torch raises KeyError/EOFError/RuntimeError on junk
        raise WeightsError(
            f"AMNet weights file {str(path)!r} is not a readable PyTorch checkpoint: {type(exc).__name__}: {exc}"
        ) from exc


def _state_dict_of(ckpt, path: Path) -> "OrderedDict[str, torch.Tensor]":
    """The state dict in the checkpoint ``ckpt`` (``{'model': state_dict}``, a bare state dict or a
    whole module), checked to hold tensors only, with parameters detached."""
    state = ckpt.get("model") if isinstance(ckpt, Mapping) and "model" in ckpt else ckpt
    if isinstance(state, nn.Module):  # a pickled whole module (only reachable with the opt-in)
        state = state.state_dict()
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        kind = type(ckpt).__name__
        keys = _short_list(map(repr, ckpt.keys())) if isinstance(ckpt, Mapping) else ""
        raise WeightsError(
            f"AMNet weights file {str(path)!r} holds no state dict: expected {{'model': state_dict}} as written by "
            f"torch.save({{'model': model.state_dict()}}); found a {kind}" + (f" with keys {keys}." if keys else ".")
        )
    return OrderedDict((str(k), v.detach() if isinstance(v, nn.Parameter) else v) for k, v in state.items())


def load_amnet_state_dict(path, allow_unsafe_weights: bool = False) -> "OrderedDict[str, torch.Tensor]":
    """Read the state dict of an AMNet weights file, safely.

    Reads the published format ``{'model': state_dict}`` (a bare state dict
    is accepted too), in the zip format or the legacy pickle format of
    PyTorch <= 1.5 (the published files were written by PyTorch 0.3), with
    ``torch.load(weights_only=True)``, which cannot run code from the file.

    Parameters
    ----------
    path : str or Path
    allow_unsafe_weights : bool, default=False
        Allow a file that needs arbitrary unpickling (it can run any code: only for
        files you trust). Without it such a file raises :class:`WeightsError`.

    Returns
    -------
    OrderedDict of str to torch.Tensor (on the CPU)

    Raises
    ------
    WeightsError
        Missing or unreadable file, unsafe file without opt-in, no state dict inside.

    Examples
    --------
    >>> import tempfile, os
    >>> from amnetvid_sk.frame_models.amnet import build_amnet_network, load_amnet_state_dict, save_amnet_checkpoint
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = save_amnet_checkpoint(os.path.join(d, "w.pkl"), build_amnet_network(seed=0))
    ...     state = load_amnet_state_dict(p)
    >>> "core_cnn.core_cnn.layer4.0.conv1.weight" in state, "rnn.weight_ih_l0" in state
    (True, True)
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"AMNet weights file {str(path)!r} does not exist or is not a file. {WEIGHTS_HELP}")
    ckpt = _read_checkpoint(path, allow_unsafe_weights)
    return _state_dict_of(ckpt, path)


def check_state_dict(state: Mapping, network: nn.Module, source: str) -> OrderedDict:
    """Keys and shapes must match exactly, except ``num_batches_tracked`` (absent from PyTorch 0.3 files)."""
    own = network.state_dict()
    skip = lambda k: k.endswith("num_batches_tracked")  # noqa: E731
    wanted = [k for k in own if not skip(k)]
    missing = [k for k in wanted if k not in state]
    unexpected = [k for k in state if k not in own and not skip(k)]
    misshaped = [
        f"{k} (file {list(state[k].shape)}, network {list(own[k].shape)})"
        for k in wanted
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_short_list(missing)}")
    if misshaped:
        problems.append(f"mis-shaped keys: {_short_list(misshaped)}")
    if unexpected:
        problems.append(f"unexpected keys: {_short_list(unexpected)}")
    if problems:
        raise WeightsError(
            f"AMNet weights {source} do not fit the AMNet network (ResNet50FC front end, 3 LSTM steps): "
            + "; ".join(problems)
            + ". Expected a LaMem model of the AMNet release, e.g. lamem_ResNet50FC_lstm3_train_5/weights_35.pkl."
        )
    full = OrderedDict((k, state[k]) for k in wanted)
    for k in own:
        if skip(k):
            full[k] = state[k] if k in state else own[k]
    return full


def save_amnet_checkpoint(path, state_dict_or_module, *, legacy_format: bool = False) -> Path:
    """Write AMNet weights in the published format: ``{'model': state_dict}``.

    ``num_batches_tracked`` buffers are dropped, as in the PyTorch 0.3 files of
    the AMNet release; tensors are saved on the CPU. The file is written to a
    temporary name and then renamed.

    Parameters
    ----------
    path : str or Path
    state_dict_or_module : mapping, AMNetNetwork or AMNet
    legacy_format : bool, default=False
        Write the legacy (non-zip) serialization, ``_use_new_zipfile_serialization=False``.

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, os
    >>> from amnetvid_sk.frame_models.amnet import AMNet, build_amnet_network, save_amnet_checkpoint
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = save_amnet_checkpoint(os.path.join(d, "weights.pkl"), build_amnet_network(seed=1))
    ...     AMNet(weights=p, device="cpu").fingerprint.startswith("amnet.w-")
    True
    """
    obj = state_dict_or_module
    if isinstance(getattr(obj, "network", None), nn.Module):  # an AMNet frame model
        obj = obj.network
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise TypeError(
            "save_amnet_checkpoint needs a state dict, an AMNetNetwork or an AMNet; "
            f"got {type(state_dict_or_module).__name__}."
        )
    state = OrderedDict(
        (k, v.detach().to("cpu").clone()) for k, v in obj.items() if not k.endswith("num_batches_tracked")
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save({"model": state}, tmp, _use_new_zipfile_serialization=not legacy_format)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
