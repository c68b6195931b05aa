"""ResMem scores with Grad-CAM attention maps: the default frame model.

ResMem (Needell & Bainbridge; PyPI ``resmem``, non-commercial licence) is a
ResNet-152 plus an AlexNet-like branch ending in a sigmoid memorability
score. Its weights (``model.pt``) ship inside the ``resmem`` package and are
read from there, offline. ResMem has no attention of its own, so this module
derives ``K=3`` maps per frame with Grad-CAM (Selvaraju et al., 2017) of the
score at three depths of the ResNet-152 (``layer2``, ``layer3``, ``layer4`` by
default), giving maps of the same shape and meaning as AMNet's alphas:

1. ResMem's own forward pass (:func:`resmem_forward`, with forward hooks)
   keeps the activations ``A`` of each chosen layer;
2. ``torch.autograd.grad`` of the sum of the batch's scores gives ``dS/dA``
   (each frame's score depends only on its own activations, so one backward
   pass serves the batch); no parameter gradients are computed;
3. channel weights ``w_c`` = spatial mean of ``dS/dA_c``;
   ``cam = relu(sum_c w_c A_c)``;
4. resampled to 14 x 14 (antialiased bilinear: ``layer2`` is 29 x 29,
   ``layer3`` 15 x 15, ``layer4`` 8 x 8 for ResMem's 227 x 227 input) and
   normalised to sum 1. A map with nothing positive (the score does not rise
   with any location's activations) becomes uniform, ``1/196`` per cell.

Scores are ResMem's own outputs with ResMem's own preprocessing: resize to
256 x 256 (aspect not kept), centre crop 227, values in 0..1 (no mean/std).
The same pass gives the embedding, the pooled ResNet-152 features (2048).
With ``maps="none"`` only the forward pass runs, batched, under ``inference_mode``.
"""

from __future__ import annotations

import copy
import functools
import threading
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..errors import MissingDependencyError, ParameterError, WeightsError, allowed_values
from .base import FrameModel, frames_to_tensor, resize_frames
from .fingerprint import hash_file

__all__ = ["ResMemGradCAM", "load_resmem", "resmem_forward", "RESMEM_LAYERS"]

#: ResNet-152 stages Grad-CAM can use
RESMEM_LAYERS = ("layer1", "layer2", "layer3", "layer4")
RESIZE = 256
CROP = 227

_INSTALL_HINT = 'pip install "amnetvid-sk[resmem]"'

# One loaded ResMem per device for the whole process: the network is ~0.5 GB.
_CACHE: dict[str, nn.Module] = {}
_CACHE_LOCK = threading.Lock()


def _resmem_package():
    try:
        import resmem
    except ImportError as exc:
        raise MissingDependencyError(
            f"The ResMem frame model needs the 'resmem' package, which is not installed: {_INSTALL_HINT} "
            "(ResMem's weights ship inside it; licence: non-commercial use). "
            "Or use the AMNet frame model with a weights file: frame model 'amnet'."
        ) from exc
    return resmem


def resmem_weights_path() -> Path:
    """Path of ``model.pt`` inside the installed ``resmem`` package."""
    resmem = _resmem_package()
    return (Path(resmem.__file__).parent / "model.pt").resolve()


def load_resmem(device=None) -> nn.Module:
    """The ResMem network from the installed package's weights, cached per device.

    Eval mode, parameters frozen (``requires_grad_(False)``). Nothing is
    downloaded: ResMem's constructor with ``pretrained=True`` builds its
    ResNet-152 without torchvision weights and reads the package's ``model.pt``.

    Parameters
    ----------
    device : torch.device or str, default=None
        ``None``: CPU.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    MissingDependencyError
        ``resmem`` is not installed.
    WeightsError
        ``model.pt`` is missing or unreadable (e.g. a Git LFS pointer).

    Examples
    --------
    Not run: it loads the real ResMem weights (0.5 GB, the resmem extra).

    >>> from amnetvid_sk.frame_models.resmem_gradcam import load_resmem
    >>> net = load_resmem("cpu")  # doctest: +SKIP
    """
    resmem = _resmem_package()  # first, so a missing package is reported even with a warm cache
    device = torch.device(device or "cpu")
    key = str(device)
    with _CACHE_LOCK:
        net = _CACHE.get(key)
        if net is not None:
            return net
        path = resmem_weights_path()
        if not path.is_file():
            raise WeightsError(
                f"ResMem weights file {str(path)!r} is missing from the installed resmem package; "
                f"reinstall it ({_INSTALL_HINT})."
            )
        # Share the CPU copy between devices instead of reading 0.5 GB again.
        cpu_net = _CACHE.get("cpu")
        if cpu_net is None:
            try:
                with warnings.catch_warnings():
                    # torchvision's deprecated 'pretrained' argument, used inside resmem
                    warnings.simplefilter("ignore")
                    # Counter-intuitive but right: ResMem(pretrained=True) builds resnet152(pretrained=False)
                    # (no download) and then loads the package's model.pt on the CPU.
                    cpu_net = resmem.ResMem(pretrained=True)
            except Exception as exc:  # noqa: BLE001 - resmem turns an unreadable file into TypeError
                raise WeightsError(
                    f"cannot load ResMem weights file {str(path)!r}: {type(exc).__name__}: {exc}"
                ) from exc
            cpu_net.optimizer = None  # ResMem builds an SGD optimizer we never use
            cpu_net.eval()
            fold_batch_norms(cpu_net.features)
            # NHWC: oneDNN then runs the ResNet's convolutions without reordering the activations
            # at each layer. With the folded norms, scores only went from ~1.2x to 1.4-1.55x the
            # resmem package's per-image loop on an AVX2 CPU (bench/bench_scores_only.py; the
            # batch split over the threads, cpu_parts.py, adds 1.1-1.2x). The AlexNet-like
            # branch stays NCHW: ResMem's forward views its output flat.
            cpu_net.features.to(memory_format=torch.channels_last)
            cpu_net.features.register_forward_pre_hook(_channels_last_input)
            cpu_net.requires_grad_(False)
            _CACHE["cpu"] = cpu_net
        if device.type == "cpu":
            return cpu_net
        net = copy.deepcopy(cpu_net).to(device).eval().requires_grad_(False)
        _CACHE[key] = net
        return net


def _channels_last_input(module, args):
    """Forward pre-hook: the input in channels-last memory format (same values)."""
    return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])


def fold_batch_norms(module: nn.Module) -> int:
    """Fold each eval-mode ``BatchNorm2d`` that follows a ``Conv2d`` into that convolution, in place.

    In eval mode a batch norm is a fixed per-channel affine map, so the convolution before
    it can absorb it exactly (up to float rounding, ~1e-7 on ResMem's scores). ResNet-152
    has 155 of them, each a full pass over its activations that folding saves
    (``bench/bench_scores_only.py`` prints the gain on this machine). The
    module keeps its structure (each folded norm becomes ``nn.Identity``), so hooks on
    the ResNet stages (Grad-CAM) see the same outputs.

    Returns the number of norms folded.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> block = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    >>> x = torch.rand(1, 3, 8, 8)
    >>> before = block(x)
    >>> fold_batch_norms(block), type(block[1]).__name__
    (1, 'Identity')
    >>> bool(torch.allclose(block(x), before, atol=1e-5))
    True
    """
    folded = 0
    names = list(module._modules)
    for before, name in zip([None] + names, names):
        child = module._modules[name]
        previous = module._modules.get(before) if before is not None else None
        if isinstance(child, nn.BatchNorm2d) and isinstance(previous, nn.Conv2d) and not child.training:
            # torchvision's modules list each norm right after its convolution (conv1, bn1, ...)
            module._modules[before] = fuse_conv_bn_eval(previous, child)
            module._modules[name] = nn.Identity()
            folded += 1
        elif child is not None:
            folded += fold_batch_norms(child)
    return folded


# What the running resmem_forward of this thread keeps: the hooks below are installed once on
# the shared network and write here, so that several threads can run it at once (one batch
# split over the CPU's cores: see cpu_parts.py). None outside a resmem_forward call.
_KEPT = threading.local()
_HOOKS_LOCK = threading.Lock()


def _keep_stage(name, module, inputs, output):
    kept = getattr(_KEPT, "outputs", None)
    if kept is not None and name in _KEPT.stages:
        if not output.requires_grad and torch.is_grad_enabled():
            output.requires_grad_(True)  # the graph for Grad-CAM starts here (no parameter requires grad)
        kept[name] = output


def _keep_pooled(module, inputs, output):
    kept = getattr(_KEPT, "outputs", None)
    if kept is not None:
        kept["pooled"] = inputs[0]


def _score_in_float32(module, inputs, output):
    with torch.autocast(device_type=inputs[0].device.type, enabled=False):
        return F.linear(inputs[0].float(), module.weight.float(), module.bias.float())


def _install_hooks(net: nn.Module) -> None:
    """The forward hooks resmem_forward reads, once per network (a deep copy keeps them)."""
    with _HOOKS_LOCK:
        if getattr(net, "_amnetvid_hooks", False):
            return
        for name in RESMEM_LAYERS:
            getattr(net.features, name).register_forward_hook(functools.partial(_keep_stage, name))
        net.features.fc.register_forward_hook(_keep_pooled)
        net.fc12.register_forward_hook(_score_in_float32)
        net._amnetvid_hooks = True


def resmem_forward(net: nn.Module, x: torch.Tensor, keep=()) -> tuple:
    """ResMem's own forward pass (``net(x)``): scores ``[B]``, pooled ResNet-152 features
    ``[B, 2048]`` and the outputs of the ResNet stages named in ``keep`` (for Grad-CAM).

    Forward hooks take the pooled features (the input of the ResNet's ``fc``) and the stages
    from the one pass, so the network runs exactly as the resmem package runs it, with its own
    module calls rather than steps written out here again. The hooks stay on the network
    and keep what each thread's own call asks for, so threads may call this at once on
    one network. The last linear layer runs in float32 outside autocast, so that bfloat16
    does not round the scores to a few hundred levels. The first kept stage is made to
    require grad (no parameter does: the graph for Grad-CAM starts there).
    """
    _install_hooks(net)
    _KEPT.outputs, _KEPT.stages = {}, frozenset(keep)
    try:
        scores = net(x).reshape(-1)
        kept = _KEPT.outputs
    finally:
        _KEPT.outputs = None
    pooled = kept.pop("pooled")
    return scores, pooled, kept


def _validate_layers(layers) -> tuple:
    if isinstance(layers, str):
        layers = (layers,)
    try:
        layers = tuple(layers)
    except TypeError:
        layers = (layers,)
    bad = [x for x in layers if x not in RESMEM_LAYERS]
    if len(layers) != 3 or bad:
        raise ParameterError(
            f"The 'layers' parameter of ResMemGradCAM must be 3 names among {allowed_values(RESMEM_LAYERS)} "
            f"(one map per layer, K=3 like AMNet). Got {layers!r} instead."
        )
    return layers


class ResMemGradCAM(FrameModel):
    """ResMem memorability scores with three Grad-CAM maps per frame (the default frame model).

    Parameters
    ----------
    device : str, torch.device or None, default=None
        ``None``: CUDA when present, else CPU.
    batch_size : int, default=8
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        ``"bfloat16"``: autocast for the forward and backward passes; ResMem's
        last linear layer and sigmoid stay in float32 so that scores are not
        rounded to bfloat16's few hundred levels. ``"auto"``: bfloat16 only where
        the device computes it natively (see :class:`~amnetvid_sk.frame_models.FrameModel`).
    layers : tuple of 3 str, default=("layer2", "layer3", "layer4")
        ResNet-152 stages whose Grad-CAM gives the three maps, shallow to deep.
    maps : {"attention", "none"}, default="attention"
        ``"none"``: scores only, from one batched forward pass under
        ``inference_mode`` (no Grad-CAM backward pass, 1.5 to 1.8 times as fast: see
        ``bench/bench_scores_only.py``), under its own fingerprint (which then
        names no Grad-CAM layers: they change nothing).

    Attributes
    ----------
    name : str
        ``"resmem"``.
    weights : str
        The ``model.pt`` file of the installed resmem package.
    map_shape : tuple
        ``(3, 14, 14)``.
    embedding_dim : int
        2048: ``predict_outputs(..., embeddings=True)`` gives the pooled ResNet-152
        features (the input of its ``fc``), from the same forward pass.
    fingerprint : str
        e.g. ``resmem.w-<hash12>.pre-256sq-crop227.gradcam-layer2-layer3-layer4.maps-3x14x14.emb-2048.fp32``
        (``resmem.w-<hash12>.pre-256sq-crop227.maps-none.emb-2048.fp32`` for scores only);
        the weights hash is the SHA-256 of ``model.pt`` (computed on first use, ~1 s).

    Notes
    -----
    On the CPU the outputs are identical from run to run (with the same number of torch
    threads). The network is shared by every instance on the same device in the process; on
    the CPU each batch is split over torch's threads, the parts run side by side
    (:mod:`~amnetvid_sk.frame_models.cpu_parts`), so call ``predict`` from one thread of
    yours at a time. Grad-CAM needs a backward pass, which scores only (``maps="none"``) skip;
    ``bench/bench_frame_models.py`` prints the frames/s of both on a machine. The cached network
    has its batch norms folded into the convolutions and runs its ResNet in channels-last memory format.

    Examples
    --------
    Not run: it needs the real ResMem weights (the resmem extra) and takes seconds.

    >>> import numpy as np
    >>> from amnetvid_sk.frame_models.resmem_gradcam import ResMemGradCAM
    >>> model = ResMemGradCAM(device="cpu")                       # doctest: +SKIP
    >>> scores, maps = model.predict(np.zeros((2, 120, 160, 3), np.uint8))   # doctest: +SKIP
    >>> scores.shape, maps.shape                                  # doctest: +SKIP
    ((2,), (2, 3, 14, 14))
    """

    name = "resmem"
    map_shape = (3, 14, 14)
    embedding_dim = 2048
    input_size = (RESIZE, RESIZE)
    #: resize 256 x 256, centre crop 227, 0..1 values (the resmem package's transformer)
    preprocessing = f"{RESIZE}sq-crop{CROP}"
    _needs_grad = True
    #: resmem_forward's hooks keep each thread's outputs apart: batches split over the CPU's threads
    thread_safe_forward = True
    #: why make_frame_model refuses a weights file for this model
    no_weights_reason = "ResMem's weights ship inside the resmem package"
    #: what each of the three maps is (the report's Figure 1 titles its panels with these): fields in
    #: braces are filled from the model's constructor parameters (as the store's models table records them)
    map_titles = ("Grad-CAM of {layers[0]}", "Grad-CAM of {layers[1]}", "Grad-CAM of {layers[2]}")

    def __init__(self, device=None, batch_size: int = 8, precision: str = "auto",
                 layers=("layer2", "layer3", "layer4"), maps: str = "attention"):
        super().__init__(device=device, batch_size=batch_size, precision=precision, maps=maps)
        self.layers = _validate_layers(layers)
        self.network = load_resmem(self.device)
        self.weights = str(resmem_weights_path())

    def _fingerprint_parts(self) -> dict:
        return {
            "weights_sha256": hash_file(self.weights),
            "preprocessing": self.preprocessing,
            "extra": "gradcam-" + "-".join(self.layers) if self.maps != "none" else "",
        }

    def preprocess(self, frames) -> torch.Tensor:
        """uint8 frames ``[B,H,W,3]`` -> ResMem's input ``[B,3,227,227]`` in 0..1 on the device.

        The same steps as ``resmem.transformer``: PIL bilinear resize to 256 x 256,
        centre crop 227 (torchvision's offsets), ``ToTensor`` scaling.
        """
        x = resize_frames(frames, (RESIZE, RESIZE))
        top = int(round((RESIZE - CROP) / 2.0))  # torchvision CenterCrop's offset
        x = x[:, top:top + CROP, top:top + CROP]
        return frames_to_tensor(x, self.device) / 255.0

    def _forward_batch(self, frames, *, maps: bool, embeddings: bool) -> tuple:
        x = self.preprocess(frames)
        with self._autocast():
            if not maps:  # scores only: one forward pass, under inference_mode (see _grad_mode)
                scores, pooled, _ = resmem_forward(self.network, x)
                return scores, None, pooled.float() if embeddings else None
            scores, pooled, acts = resmem_forward(self.network, x, keep=self.layers)
            grads = torch.autograd.grad(scores.sum(), [acts[name] for name in self.layers])
        cams = []
        for name, grad in zip(self.layers, grads):
            a = acts[name].detach().float()
            w = grad.float().mean(dim=(2, 3), keepdim=True)  # [B, C, 1, 1]
            cam = F.relu((w * a).sum(dim=1, keepdim=True))  # [B, 1, h, w]
            cam = F.interpolate(cam, size=self.map_shape[1:], mode="bilinear", align_corners=False, antialias=True)
            cams.append(cam[:, 0])
        return scores.detach().float(), torch.stack(cams, dim=1), pooled.detach().float() if embeddings else None
