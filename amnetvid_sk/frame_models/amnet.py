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
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError
from .amnet_weights import WEIGHTS_HELP, check_state_dict, load_amnet_state_dict, save_amnet_checkpoint
from .base import IMAGENET_MEAN, IMAGENET_STD, FrameModel, frames_to_tensor, resize_frames
from .fingerprint import hash_state_dict

__all__ = ["AMNet", "AMNetNetwork", "build_amnet_network", "load_amnet_state_dict", "save_amnet_checkpoint"]

#: LaMem target statistics the published model was trained against (config.py of ok1zjf/AMNet)
TARGET_SCALE = 2.0
TARGET_MEAN = 0.754
INPUT_SIZE = 224
STEPS = 3


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
    attention step (on the training target scale) and its attention weights;
    ``forward(x, pooled=True)`` also returns ``af [B, 1024]``, the mean over the
    196 locations of the annotation vectors the attention reads (layer-3 features
    after ``inconv``, BatchNorm and ReLU), from which the LSTM's first state is made.
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

    def forward(self, x: torch.Tensor, pooled: bool = False) -> tuple:
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
        if pooled:
            return torch.cat(outputs, 1), torch.stack(alphas, 1), af
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


# --------------------------------------------------------------------------- frame model


class AMNet(FrameModel):
    """AMNet frame model: LaMem memorability scores, its three attention maps and a 1024-d embedding.

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
    allow_unsafe_weights : bool, default=False
        Read a file that ``torch.load(weights_only=True)`` refuses (arbitrary
        unpickling: only for files you trust).
    maps : {"attention", "none"}, default="attention"
        ``"none"``: scores only (the attention steps still run, they make the
        score; the maps are not kept), under its own fingerprint.

    Attributes
    ----------
    network : AMNetNetwork
        The torch module, in eval mode, parameters frozen.
    weights : str or None
        The weights file (``None`` when built from a state dict).
    weights_sha256 : str
        SHA-256 of the loaded state dict (see :func:`~amnetvid_sk.frame_models.hash_state_dict`).
    embedding_dim : int
        1024: ``predict_outputs(..., embeddings=True)`` gives ``af``, the mean over the
        196 locations of the annotation vectors the attention reads (layer-3 features
        after AMNet's own ``inconv``, BatchNorm and ReLU). Chosen over the pooled
        backbone output because these are the features AMNet trained for memorability
        and from which its LSTM's first state is made, the state the note's outlook
        would fit a model on; the backbone's are ImageNet features with no
        memorability training on top.
    fingerprint : str
        e.g. ``amnet.w-3f2a9c0d11be.pre-224sq-imagenet.maps-3x14x14.emb-1024.fp32``.

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
    embedding_dim = _ResNet50Trunk.D
    input_size = (INPUT_SIZE, INPUT_SIZE)
    #: no state is kept between forward passes: batches split over the CPU's threads
    thread_safe_forward = True
    #: resize to 224x224 without crop (aspect not kept), ImageNet mean/std
    preprocessing = "224sq-imagenet"
    #: what each of the three maps is (the report's Figure 1 titles its panels with these)
    map_titles = tuple(f"attention step {k + 1}" for k in range(STEPS))

    def __init__(self, weights=None, device=None, batch_size: int = 16, precision: str = "auto",
                 allow_unsafe_weights: bool = False, maps: str = "attention"):
        super().__init__(device=device, batch_size=batch_size, precision=precision, maps=maps)
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
        network.load_state_dict(check_state_dict(state, network, source), strict=True)
        self._init_network(network)

    def _init_network(self, network: AMNetNetwork) -> None:
        self.network = network.to(self.device).eval().requires_grad_(False)
        self.weights_sha256 = hash_state_dict(self.network.state_dict())
        mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1) * 255.0
        self._mean, self._std = mean, std

    @classmethod
    def from_random(cls, seed: int = 0, device=None, batch_size: int = 16, precision: str = "auto",
                    maps: str = "attention") -> "AMNet":
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
        FrameModel.__init__(self, device=device, batch_size=batch_size, precision=precision, maps=maps)
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

    def _forward_batch(self, frames, *, maps: bool, embeddings: bool) -> tuple:
        x = self.preprocess(frames)
        with self._autocast():
            outputs, alphas, af = self.network(x, pooled=True)
        scores = outputs.float().mean(1) / TARGET_SCALE + TARGET_MEAN
        frame_maps = alphas.float().view(x.shape[0], *self.map_shape) if maps else None
        return scores, frame_maps, af.float() if embeddings else None
