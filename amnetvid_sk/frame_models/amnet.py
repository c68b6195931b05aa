"""AMNet (Fajtl et al., CVPR 2018): image memorability with a visual attention LSTM.

A re-implementation of the published LaMem model of ok1zjf/AMNet (MIT licence),
written so that its weights files load as they are: the submodule names are
those of the original ``AMemNetModel`` with a ``ResNet50FC`` front end.

- backbone: torchvision ResNet-50, run from ``conv1`` to ``layer3``
  (``[B, 1024, 14, 14]`` for a 224 x 224 input). The full ResNet-50 is kept
  under ``core_cnn.core_cnn`` because the published files hold all of it,
  ``layer4`` and ``fc`` included; those two never run.
- head: 1x1 conv + BatchNorm + ReLU gives 196 annotation vectors; an LSTM takes
  three attention steps over them; each step regresses a score.
- output: mean of the three step outputs ``/ 2 + 0.754`` (LaMem target scale
  and mean); the three softmax attention maps (``alpha``) viewed 14 x 14 are the maps.

No weights ship with any package: pass the file of the AMNet release
(``lamem_ResNet50FC_lstm3_train_5/weights_35.pkl``).
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
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError
from .base import IMAGENET_MEAN, IMAGENET_STD, FrameModel, frames_to_tensor, resize_frames
from .fingerprint import hash_state_dict

__all__ = ["AMNet", "AMNetNetwork", "build_amnet_network", "load_amnet_state_dict", "save_amnet_checkpoint"]

#: LaMem target statistics the published model was trained against (config.py of ok1zjf/AMNet)
TARGET_SCALE = 2.0
TARGET_MEAN = 0.754
INPUT_SIZE = 224
STEPS = 3

WEIGHTS_HELP = (
    "The published AMNet weights come from the AMNet GitHub release, https://github.com/ok1zjf/AMNet "
    "(its download.sh / data/lamem_weights_urls.txt: lamem_ResNet50FC_lstm3.zip); use the LaMem model "
    "'lamem_ResNet50FC_lstm3_train_5/weights_35.pkl' from that archive, e.g. AMNet(weights='.../weights_35.pkl')."
)

_LIST_LIMIT = 12


# --------------------------------------------------------------------------- network


class _ResNet50Trunk(nn.Module):
    """The original ``ResNet50FC``: a whole torchvision ResNet-50 under ``core_cnn``, run to ``layer3``."""

    D = 1024

    def __init__(self):
        super().__init__()
        from torchvision.models import resnet50

        # weights=None: the architecture only; the weights come from the AMNet file.
        self.core_cnn = resnet50(weights=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.core_cnn
        x = c.maxpool(c.relu(c.bn1(c.conv1(x))))
        return c.layer3(c.layer2(c.layer1(x)))


class AMNetNetwork(nn.Module):
    """AMNet's network (``AMemNetModel`` of ok1zjf/AMNet with the ResNet50FC front end).

    ``forward(x)`` takes ImageNet-normalised ``[B, 3, 224, 224]`` images and
    returns ``(outputs [B, 3], alphas [B, 3, 196])``: the raw output of each
    attention step (on the training target scale) and its attention weights.
    Use :func:`build_amnet_network` to create one.
    """

    def __init__(self, a_res: int = 14, steps: int = STEPS):
        super().__init__()
        self.core_cnn = _ResNet50Trunk()
        d = self.a_vec_size = _ResNet50Trunk.D
        hidden = 1024
        self.a_vec_num = a_res * a_res
        self.steps = steps

        # Attribute names (and creation order) follow the original so that state dict keys match.
        self.inconv = nn.Conv2d(d, d, kernel_size=1, stride=1, padding=0, bias=True)
        self.bn1 = nn.BatchNorm2d(d)
        self.hs1 = nn.Linear(d, hidden)
        self.hc1 = nn.Linear(d, hidden)
        self.e1 = nn.Linear(d, d, bias=False)
        self.eh1 = nn.Linear(hidden, self.a_vec_num)
        self.eh3 = nn.Linear(d, 1, bias=False)
        # The original passes dropout=0.5, which a 1-layer LSTM ignores (torch now warns about it).
        self.rnn = nn.LSTM(input_size=d, hidden_size=hidden, num_layers=1)
        self.regnet1 = nn.Linear(hidden, 512)
        self.regnet4 = nn.Linear(512, 1)
        self.drop50 = nn.Dropout(0.5)
        self.drop80 = nn.Dropout(0.8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, d, n_loc = x.shape[0], self.a_vec_size, self.a_vec_num
        x = self.core_cnn(x)
        x = self.drop80(F.relu(self.bn1(self.inconv(x))))
        a = x.reshape(b, d, n_loc)  # annotation vectors [B, D, L]

        af = a.mean(2)
        h = torch.tanh(self.hs1(af))
        c = torch.tanh(self.hc1(af))
        e = self.drop50(F.relu(self.e1(a.transpose(1, 2))))  # [B, L, D]
        e = e.transpose(1, 2)  # [B, D, L]

        state = (h.unsqueeze(0).float(), c.unsqueeze(0).float())
        outputs, alphas = [], []
        for _ in range(self.steps):
            eh = F.relu(e + self.eh1(h).view(b, 1, n_loc))  # [B, D, L]
            eh = self.eh3(self.drop50(eh).transpose(1, 2)).view(b, n_loc)  # [B, L]
            alpha = torch.softmax(eh.float(), dim=1)
            z = torch.bmm(a, alpha.to(a.dtype).unsqueeze(2)).view(1, b, d)  # attention-weighted sum over L
            # The LSTM runs in float32 outside autocast: CPU autocast does not cast its inputs, and
            # one step over B vectors costs little next to the backbone.
            with torch.autocast(device_type=x.device.type, enabled=False):
                h, state = self.rnn(z.float(), state)
            h = self.drop50(h.squeeze(0))
            out = self.drop50(F.relu(self.regnet1(h)))
            # The last layer in float32: a bfloat16 output would round scores to a few hundred levels.
            with torch.autocast(device_type=x.device.type, enabled=False):
                out = F.linear(out.float(), self.regnet4.weight.float(), self.regnet4.bias.float())
            outputs.append(out)
            alphas.append(alpha)
        return torch.cat(outputs, 1), torch.stack(alphas, 1)


def build_amnet_network(seed: int | None = None) -> AMNetNetwork:
    """A new AMNet network in eval mode, with random weights (for tests and benchmarks).

    Parameters
    ----------
    seed : int or None, default=None
        Seed for the random initialisation; the global torch RNG is left as it was.

    Returns
    -------
    AMNetNetwork

    Examples
    --------
    >>> from amnetvid_sk.frame_models.amnet import build_amnet_network
    >>> net = build_amnet_network(seed=0)
    >>> sorted({k.split(".")[0] for k in net.state_dict()})[:4]
    ['bn1', 'core_cnn', 'e1', 'eh1']
    """
    if seed is None:
        return AMNetNetwork().eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return AMNetNetwork().eval()


# --------------------------------------------------------------------------- weights files


def _short_list(items) -> str:
    items = list(items)
    shown = ", ".join(items[:_LIST_LIMIT])
    if len(items) > _LIST_LIMIT:
        shown += f", ... ({len(items) - _LIST_LIMIT} more)"
    return shown


def _unpickler_reason(exc: BaseException) -> str:
    m = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n|$)", str(exc))
    return m.group(1).strip() if m else str(exc).splitlines()[0]


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
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise WeightsError(f"AMNet weights file {str(path)!r} is not a readable PyTorch checkpoint: {exc}") from exc
        if not allow_unsafe_weights:
            reason = _unpickler_reason(exc)
            opt_in = (
                "If you trust the file, opt in with allow_unsafe_weights=True (AMNet(..., allow_unsafe_weights=True) "
                "or make_frame_model('amnet', ..., allow_unsafe_weights=True)), or re-save it as plain tensors "
                "with save_amnet_checkpoint."
            )
            if "global" in reason.lower():
                raise WeightsError(
                    f"AMNet weights file {str(path)!r} cannot be read with torch.load(weights_only=True): it needs "
                    f"arbitrary unpickling ({reason}). Unpickling can run any code stored in the file. {opt_in}"
                ) from None
            raise WeightsError(
                f"AMNet weights file {str(path)!r} is not a readable PyTorch checkpoint for the safe loader, "
                f"torch.load(weights_only=True) ({reason}). {opt_in}"
            ) from None
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc2:  # noqa: BLE001 - any failure of a foreign pickle means "unreadable"
            raise WeightsError(
                f"AMNet weights file {str(path)!r} is not a readable PyTorch checkpoint: {type(exc2).__name__}: {exc2}"
            ) from exc2
    except Exception as exc:  # noqa: BLE001 - torch raises KeyError/EOFError/RuntimeError on junk
        raise WeightsError(
            f"AMNet weights file {str(path)!r} is not a readable PyTorch checkpoint: {type(exc).__name__}: {exc}"
        ) from exc

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


def _check_state_dict(state: Mapping, network: nn.Module, source: str) -> OrderedDict:
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
    if isinstance(obj, AMNet):
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


# --------------------------------------------------------------------------- frame model


class AMNet(FrameModel):
    """AMNet frame model: LaMem memorability scores and its three attention maps.

    Parameters
    ----------
    weights : str or Path
        Weights file in the published format (``{'model': state_dict}``), e.g.
        ``lamem_ResNet50FC_lstm3_train_5/weights_35.pkl`` of the AMNet release
        (https://github.com/ok1zjf/AMNet). Required: ``None`` raises
        :class:`~amnetvid_sk.errors.WeightsError` (there are no silent random weights;
        see :meth:`from_random`). A state dict (mapping) is accepted too.
    device : str, torch.device or None, default=None
        ``None``: CUDA when present, else CPU.
    batch_size : int, default=16
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        ``"bfloat16"``: autocast for the network; the last linear layer and the
        softmax stay in float32. ``"auto"``: bfloat16 only where the device
        computes it natively (see :class:`~amnetvid_sk.frame_models.FrameModel`).
    bfloat16 : bool or None, default=None
        Older spelling of ``precision``.
    allow_unsafe_weights : bool, default=False
        Read a file that ``torch.load(weights_only=True)`` refuses (arbitrary
        unpickling: only for files you trust).

    Attributes
    ----------
    network : AMNetNetwork
        The torch module, in eval mode, parameters frozen.
    weights : str or None
        The weights file (``None`` when built from a state dict).
    weights_sha256 : str
        SHA-256 of the loaded state dict (see :func:`~amnetvid_sk.frame_models.hash_state_dict`).
    fingerprint : str
        e.g. ``amnet.w-3f2a9c0d11be.pre-224sq-imagenet.maps-3x14x14.fp32``.

    Raises
    ------
    WeightsError
        No weights, a missing/unreadable file, an unsafe file without the
        opt-in, or keys missing, mis-shaped or unexpected.

    Examples
    --------
    >>> import numpy as np
    >>> from amnetvid_sk.frame_models.amnet import AMNet
    >>> model = AMNet.from_random(seed=0, device="cpu")   # or AMNet(weights="weights_35.pkl")
    >>> scores, maps = model.predict(np.full((1, 90, 120, 3), 128, np.uint8))
    >>> maps.shape, round(float(maps[0, 0].sum()), 4)
    ((1, 3, 14, 14), 1.0)
    """

    name = "amnet"
    map_shape = (STEPS, 14, 14)
    #: resize to 224x224 without crop (aspect not kept), ImageNet mean/std
    preprocessing = "224sq-imagenet"

    def __init__(self, weights=None, device=None, batch_size: int = 16, precision: str = "auto",
                 bfloat16: bool | None = None, allow_unsafe_weights: bool = False):
        super().__init__(device=device, batch_size=batch_size, precision=precision, bfloat16=bfloat16)
        self.allow_unsafe_weights = bool(allow_unsafe_weights)
        if weights is None:
            raise WeightsError(
                "AMNet needs a weights file and none was given (weights=None); no AMNet weights ship with "
                f"amnetvid-sk or any package it depends on. {WEIGHTS_HELP} "
                "(Tests may build explicitly random weights with AMNet.from_random(seed=0).)"
            )
        if isinstance(weights, Mapping):
            if not all(isinstance(v, torch.Tensor) for v in weights.values()):
                raise WeightsError(
                    "The 'weights' parameter of AMNet got a mapping that is not a state dict of tensors."
                )
            state, source, self.weights = weights, "(given state dict)", None
            self._not_rebuildable = (
                "AMNet was built from an in-memory state dict; save it with save_amnet_checkpoint and "
                "pass the file (weights=...)"
            )
        else:
            # absolute: the store's models table and a fitted pipeline must find it from any folder
            self.weights = os.path.abspath(weights)
            state = load_amnet_state_dict(weights, allow_unsafe_weights=self.allow_unsafe_weights)
            source = f"file {self.weights!r}"
        network = AMNetNetwork()
        network.load_state_dict(_check_state_dict(state, network, source), strict=True)
        self._init_network(network)

    def _init_network(self, network: AMNetNetwork) -> None:
        self.network = network.to(self.device).eval().requires_grad_(False)
        self.weights_sha256 = hash_state_dict(self.network.state_dict())
        mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1) * 255.0
        self._mean, self._std = mean, std

    @classmethod
    def from_random(cls, seed: int = 0, device=None, batch_size: int = 16, precision: str = "auto",
                    bfloat16: bool | None = None) -> "AMNet":
        """AMNet with explicitly random weights (seeded): for tests and benchmarks only.

        Its scores mean nothing; its fingerprint names the random weights' hash
        like any other weights. The same ``seed`` gives the same weights in any
        process, so such a model is rebuilt exactly by the joblib and Dask
        backends (its :attr:`seed` is kept).

        Examples
        --------
        >>> from amnetvid_sk.frame_models.amnet import AMNet
        >>> AMNet.from_random(seed=0, device="cpu").fingerprint == AMNet.from_random(seed=0, device="cpu").fingerprint
        True
        """
        self = cls.__new__(cls)
        FrameModel.__init__(self, device=device, batch_size=batch_size, precision=precision, bfloat16=bfloat16)
        self.allow_unsafe_weights = False
        self.weights = None
        self.seed = seed
        self._factory = "from_random"
        if seed is None:
            self._not_rebuildable = "AMNet.from_random(seed=None) drew unseeded weights; give a seed"
        self._init_network(build_amnet_network(seed=seed))
        return self

    def _fingerprint_parts(self) -> dict:
        return {"weights_sha256": self.weights_sha256, "preprocessing": self.preprocessing}

    def preprocess(self, frames) -> torch.Tensor:
        """uint8 frames ``[B,H,W,3]`` -> the network's input ``[B,3,224,224]`` on the device.

        Resized to 224 x 224 without crop (aspect not kept) with PIL's bilinear
        filter, then ImageNet mean/std: the evaluation transform of the AMNet release.
        """
        x = frames_to_tensor(resize_frames(frames, (INPUT_SIZE, INPUT_SIZE)), self.device)
        return (x - self._mean) / self._std

    def _predict_batch(self, frames) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.preprocess(frames)
        with self._autocast():
            outputs, alphas = self.network(x)
        scores = outputs.float().mean(1) / TARGET_SCALE + TARGET_MEAN
        maps = alphas.float().view(x.shape[0], *self.map_shape)
        return scores, maps
