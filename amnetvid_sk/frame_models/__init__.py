"""Frame models: still-image memorability models that score video frames, found by name.

``import amnetvid_sk.frame_models`` stays light (no torch): the registry
(:func:`make_frame_model`, :func:`frame_model_names`, :func:`frame_model_class`)
is imported here; the classes and helpers of :mod:`.base`, :mod:`.fingerprint`
and :mod:`.spec` are imported on first use (PEP 562), so that the command line
can list frame model names for its help text without loading torch.

Where things are: :mod:`.base` (the :class:`FrameModel` interface), :mod:`.outputs` (:class:`FrameOutputs`,
the ``maps`` modes), :mod:`.devices` (device choice), :mod:`.frames` (frame checks, image paths, resizing, map normalisation),
:mod:`.identity` (fingerprint, rebuild parameters and config of a model),
:mod:`.fingerprint` (the store's cache key), :mod:`.registry` (names -> classes,
plug-ins), :mod:`.spec` (rebuilding a model in another process), :mod:`.amnet`
with :mod:`.amnet_weights` and :mod:`.resmem_gradcam` (the two shipped models).

Examples
--------
>>> import amnetvid_sk.frame_models as fm
>>> fm.frame_model_names()[:2]
('resmem', 'amnet')
"""

from .._lazy import lazy_getattr

from .registry import (
    BUILTIN_FRAME_MODELS,
    ENTRY_POINT_GROUP,
    FRAME_MODEL_NAMES,
    FrameModelLookupError,
    frame_model_class,
    frame_model_names,
    make_frame_model,
)

# public name -> submodule that defines it, imported on first use
_LAZY = {
    "FrameModel": "base",
    "FrameOutputs": "outputs",
    "resolve_device": "devices",
    "available_devices": "devices",
    "check_frames": "frames",
    "frames_to_tensor": "frames",
    "normalise_maps": "frames",
    "resize_frames": "frames",
    "IMAGENET_MEAN": "base",
    "IMAGENET_STD": "base",
    "MAPS_MODES": "outputs",
    "make_fingerprint": "fingerprint",
    "hash_state_dict": "fingerprint",
    "hash_file": "fingerprint",
    "FrameModelSpec": "spec",
    "FrameModelRebuildError": "spec",
    "spec_of": "spec",
    "AMNet": "amnet",
    "ResMemGradCAM": "resmem_gradcam",
}

__all__ = sorted([
    "BUILTIN_FRAME_MODELS", "ENTRY_POINT_GROUP", "FRAME_MODEL_NAMES", "FrameModelLookupError",
    "frame_model_class", "frame_model_names", "make_frame_model", *_LAZY,
])


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


def __dir__():
    return __all__
