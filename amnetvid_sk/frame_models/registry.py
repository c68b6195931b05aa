"""Frame model names: a registered name, a plug-in's entry point or ``"module:Class"`` -> the class.

Three ways to name a frame model, tried in this order:

1. a name shipped with amnetvid-sk: ``"resmem"`` (the default) or ``"amnet"``;
2. a name a plug-in package registers in the entry-point group
   ``amnetvid_sk.frame_models`` (in its ``pyproject.toml``:
   ``[project.entry-points."amnetvid_sk.frame_models"] mymodel = "mypackage.module:MyModel"``);
3. ``"module:Class"``, any importable subclass of
   :class:`~amnetvid_sk.frame_models.FrameModel`.

Nothing here imports torch until a class is asked for: the command line builds
its help text from :func:`frame_model_names`.
"""

from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points

from ..errors import FrameModelLookupError, ParameterError, allowed_values

__all__ = [
    "BUILTIN_FRAME_MODELS",
    "ENTRY_POINT_GROUP",
    "FRAME_MODEL_NAMES",
    "FrameModelLookupError",
    "frame_model_class",
    "frame_model_names",
    "make_frame_model",
]

#: the names shipped with amnetvid-sk, and their classes
BUILTIN_FRAME_MODELS = {
    "resmem": "amnetvid_sk.frame_models.resmem_gradcam:ResMemGradCAM",
    "amnet": "amnetvid_sk.frame_models.amnet:AMNet",
}
#: the names shipped with amnetvid-sk (plug-ins add theirs: see :func:`frame_model_names`)
FRAME_MODEL_NAMES = tuple(BUILTIN_FRAME_MODELS)
#: the entry-point group in which plug-in packages register frame models
ENTRY_POINT_GROUP = "amnetvid_sk.frame_models"


def _plugins() -> dict:
    """Entry points of the group, by name; a shipped name is never replaced by a plug-in."""
    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in BUILTIN_FRAME_MODELS:
            found.setdefault(ep.name, ep)
    return found


def frame_model_names() -> tuple[str, ...]:
    """The frame model names available here: the shipped ones, then those of installed plug-ins.

    Any ``"module:Class"`` is accepted too; it is not listed.

    Returns
    -------
    tuple of str

    Examples
    --------
    >>> from amnetvid_sk.frame_models import frame_model_names
    >>> frame_model_names()[:2]
    ('resmem', 'amnet')
    """
    return FRAME_MODEL_NAMES + tuple(sorted(_plugins()))


def _import_class(path: str, what: str):
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr or ":" in attr:
        raise FrameModelLookupError(
            f"{what} must be written 'module:Class', for example 'mypackage.models:MyModel'. Got {path!r} instead."
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise  # the module exists but imports something missing: that error is the one to see
        raise FrameModelLookupError(
            f"{what}: no module named {exc.name!r} can be imported here. Install the package that holds "
            "it, or add its folder to PYTHONPATH (in every worker too, for backend joblib or dask)."
        ) from None
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise FrameModelLookupError(f"{what}: module {module_name!r} has no attribute {attr!r}.") from None
    return obj


def _check_class(obj, what: str):
    from .base import FrameModel  # here: importing the base class imports torch

    if not (inspect.isclass(obj) and issubclass(obj, FrameModel)):
        kind = f"the class {obj.__name__}" if inspect.isclass(obj) else f"a {type(obj).__name__}"
        raise FrameModelLookupError(
            f"{what} is {kind}, not a subclass of amnetvid_sk.frame_models.FrameModel: "
            "a frame model subclasses FrameModel (see its docstring)."
        )
    return obj


def frame_model_class(name: str) -> type:
    """The frame model class of a shipped name, a plug-in's name or ``"module:Class"``.

    Parameters
    ----------
    name : str

    Returns
    -------
    type
        A subclass of :class:`~amnetvid_sk.frame_models.FrameModel`.

    Raises
    ------
    FrameModelLookupError
        (also a ``ValueError``) an unknown name, listing the known ones; a module
        that cannot be imported; a ``"module:Class"`` that is not a FrameModel subclass.

    Examples
    --------
    >>> from amnetvid_sk.frame_models import frame_model_class
    >>> frame_model_class("amnet").__name__
    'AMNet'
    >>> frame_model_class("amnetvid_sk.frame_models.amnet:AMNet").__name__
    'AMNet'
    """
    if not isinstance(name, str):
        raise FrameModelLookupError(
            f"The 'name' parameter of make_frame_model must be a str (a frame model name or 'module:Class'). "
            f"Got {name!r} instead."
        )
    if name in BUILTIN_FRAME_MODELS:
        return _check_class(_import_class(BUILTIN_FRAME_MODELS[name], f"frame model {name!r}"), repr(name))
    plugins = _plugins()
    if name in plugins:
        ep = plugins[name]
        what = f"the frame model {name!r} of the entry point {ep.value!r} (group {ENTRY_POINT_GROUP!r})"
        return _check_class(_import_class(ep.value, what), what)
    if ":" in name:
        return _check_class(_import_class(name, f"frame model {name!r}"), repr(name))
    raise FrameModelLookupError(
        f"The 'name' parameter of make_frame_model must be a str among {allowed_values(frame_model_names())}. "
        f"Got {name!r} instead. "
        "A frame model of your own is named 'module:Class' (an importable FrameModel subclass)."
    )


def _accepted(cls) -> tuple[set, bool]:
    params = inspect.signature(cls).parameters.values()
    return {p.name for p in params}, any(p.kind is p.VAR_KEYWORD for p in params)


def make_frame_model(
    name: str = "resmem",
    weights=None,
    device=None,
    batch_size: int | None = None,
    precision: str = "auto",
    allow_unsafe_weights: bool = False,
    maps: str = "attention",
    **params,
):
    """Build a frame model by name (shipped, plug-in) or ``"module:Class"``.

    Parameters
    ----------
    name : str, default="resmem"
        ``"resmem"``: ResMem scores with Grad-CAM maps (weights ship with the
        ``resmem`` package; ``pip install "amnetvid-sk[resmem]"``).
        ``"amnet"``: AMNet, needs ``weights``. A plug-in's name (see
        :func:`frame_model_names`), or ``"module:Class"`` for any importable
        :class:`~amnetvid_sk.frame_models.FrameModel` subclass.
    weights : str or Path, default=None
        Weights file, for models that take one (AMNet: ``weights_35.pkl`` of the
        AMNet release). Must be ``None`` for ``"resmem"``, whose weights come from its package.
    device : str, torch.device or None, default=None
        ``None``: CUDA when present, else CPU.
    batch_size : int or None, default=None
        ``None`` keeps the model's default (16 for AMNet, 8 for ResMem).
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        See :class:`~amnetvid_sk.frame_models.FrameModel`: ``"auto"`` takes
        bfloat16 only where the device computes it natively.
    allow_unsafe_weights : bool, default=False
        AMNet only: allow a weights file that needs arbitrary unpickling.
    maps : {"attention", "none"}, default="attention"
        ``"none"``: scores only (no attention maps; for ResMem no Grad-CAM backward
        pass). A class without a ``maps`` parameter gives maps and refuses ``"none"``.
    **params
        Other parameters of the model's class (for example ``layers`` of ResMemGradCAM).

    Returns
    -------
    FrameModel

    Examples
    --------
    >>> from amnetvid_sk.frame_models import make_frame_model
    >>> make_frame_model("vgg")
    Traceback (most recent call last):
    ...
    amnetvid_sk.errors.FrameModelLookupError: The 'name' parameter of make_frame_model must be a str among {'amnet', 'resmem'}. Got 'vgg' instead. A frame model of your own is named 'module:Class' (an importable FrameModel subclass).
    """
    cls = frame_model_class(name)
    accepted, any_keyword = _accepted(cls)
    takes = lambda key: key in accepted or any_keyword  # noqa: E731
    kwargs = dict(params)
    # (value, the value that asks for nothing): a class may leave out a parameter it has no use for
    for key, value, unset in (("device", device, None), ("precision", precision, "auto"),
                              ("batch_size", batch_size, None),
                              ("maps", maps, "attention")):
        if takes(key) and value is not None:
            kwargs[key] = value
        elif value != unset:
            kwargs[key] = value  # refused below, naming it
    if takes("weights"):
        kwargs["weights"] = weights  # a class that needs weights says so when there are none
    elif weights is not None:
        why = getattr(cls, "no_weights_reason", f"{cls.__name__} takes no weights file")
        raise ParameterError(
            f"The 'weights' parameter must be None for name={name!r} ({why}). Got {weights!r} instead; "
            "did you mean name='amnet'?"
        )
    if takes("allow_unsafe_weights"):  # ignored by a model without weights files, as the option says
        kwargs["allow_unsafe_weights"] = bool(allow_unsafe_weights)
    unknown = sorted(k for k in kwargs if not takes(k))
    if unknown:
        known = ", ".join(sorted(accepted))
        raise ParameterError(
            f"{cls.__name__} (frame model {name!r}) takes no parameter {', '.join(map(repr, unknown))}; "
            f"its parameters are: {known}."
        )
    return cls(**kwargs)
