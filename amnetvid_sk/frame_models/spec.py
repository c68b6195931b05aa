"""A frame model as data: what rebuilds it exactly in another process (a joblib or Dask worker, ``predict``).

A :class:`FrameModelSpec` holds the class (``"module:Class"``), the parameters read
from the model (see :meth:`FrameModel.constructor_params
<amnetvid_sk.frame_models.FrameModel.constructor_params>`), the precision it
runs in (resolved, never ``"auto"``, so that a worker's own ``auto`` cannot pick
another fingerprint) and the fingerprint the rebuilt model must have.
:meth:`FrameModelSpec.build` checks that fingerprint, so a model that does not
rebuild to the same outputs is refused instead of writing features under a
name they do not have.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field

from ..errors import FrameModelRebuildError
from .registry import frame_model_class

__all__ = ["FrameModelSpec", "FrameModelRebuildError", "spec_of"]


def _plain(value):
    """Tuples as lists, paths and other scalars as str: a value JSON keeps as it is."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item") and not hasattr(value, "__len__"):  # a numpy scalar
        return value.item()
    return str(value)


@dataclass(frozen=True)
class FrameModelSpec:
    """Everything that rebuilds a frame model exactly: class, parameters, precision, fingerprint.

    Parameters
    ----------
    model_class : str
        ``"module:Class"`` or a name :func:`~amnetvid_sk.frame_models.make_frame_model` knows.
    params : dict
        Constructor parameters (JSON values), without device and precision.
    precision : {"float32", "bfloat16"}
        The precision the model ran in, resolved.
    fingerprint : str
        The fingerprint the rebuilt model must have.
    factory : str or None, default=None
        The classmethod that builds the model (e.g. ``"from_random"``); None: the class itself.
    device : str or None, default=None
        Where the rebuilt model runs; None: CUDA when present, else CPU.

    Examples
    --------
    >>> from amnetvid_sk.frame_models import spec_of
    >>> from amnetvid_sk.frame_models.amnet import AMNet
    >>> model = AMNet.from_random(seed=3, device="cpu", precision="float32")
    >>> spec = spec_of(model)
    >>> spec.model_class, spec.factory, spec.params
    ('amnetvid_sk.frame_models.amnet:AMNet', 'from_random', {'seed': 3, 'batch_size': 16})
    >>> spec.build().fingerprint == model.fingerprint
    True
    """

    model_class: str
    params: dict = field(default_factory=dict)
    precision: str = "float32"
    fingerprint: str = ""
    factory: str | None = None
    device: str | None = None

    def build(self):
        """The frame model, rebuilt; its fingerprint checked against :attr:`fingerprint`.

        Returns
        -------
        FrameModel

        Raises
        ------
        FrameModelRebuildError
            The class refuses the parameters, or the rebuilt model has another fingerprint.
        FrameModelLookupError
            The class cannot be found (not importable where this runs).
        """
        cls = frame_model_class(self.model_class)
        constructor = getattr(cls, self.factory) if self.factory else cls
        how = f"{self.model_class}" + (f".{self.factory}" if self.factory else "")
        accepted = inspect.signature(constructor).parameters
        runtime = {k: v for k, v in (("device", self.device), ("precision", self.precision)) if k in accepted}
        try:
            model = constructor(**self.params, **runtime)
        except TypeError as exc:
            raise FrameModelRebuildError(
                f"the frame model {how} cannot be rebuilt from its parameters {self.params}: {exc}. Its "
                "constructor must take each parameter it keeps as an attribute (see FrameModel)."
            ) from exc
        if model.precision != self.precision:
            model.set_precision(self.precision)
        if self.fingerprint and model.fingerprint != self.fingerprint:
            raise FrameModelRebuildError(
                f"the frame model {how} rebuilt from its parameters {self.params} has the fingerprint "
                f"{model.fingerprint!r}, not {self.fingerprint!r} as the original: its outputs would not be "
                "the original's. Were its weights changed since, or are they not reproducible from its "
                "parameters (random weights without a seed parameter)?"
            )
        return model

    def to_dict(self) -> dict:
        """The spec as JSON values (see :meth:`from_dict`)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "FrameModelSpec":
        """The spec of :meth:`to_dict`.

        Examples
        --------
        >>> from amnetvid_sk.frame_models import FrameModelSpec
        >>> spec = FrameModelSpec("amnet", {"weights": "w.pkl"}, "float32", "amnet.w-ab")
        >>> FrameModelSpec.from_dict(spec.to_dict()) == spec
        True
        """
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_config(cls, config: dict, fingerprint: str, device=None) -> "FrameModelSpec":
        """The spec of a model from its ``config`` in the store's ``models`` table.

        Examples
        --------
        >>> from amnetvid_sk.frame_models import FrameModelSpec
        >>> FrameModelSpec.from_config({"class": "amnetvid_sk.frame_models.amnet:AMNet", "factory": None,
        ...                             "params": {"weights": "/w.pkl"}, "precision": "float32"}, "amnet.w-ab").params
        {'weights': '/w.pkl'}
        """
        if "class" not in config:
            raise FrameModelRebuildError(
                f"the store's config of the frame model {fingerprint!r} names no class (name {config.get('name')!r}): "
                "it cannot be rebuilt here"
            )
        if config.get("params") is None:
            raise FrameModelRebuildError(
                f"the store's config of the frame model {fingerprint!r} ({config['class']}) records no "
                "parameters: its class keeps no attribute for each constructor parameter (see FrameModel)"
            )
        return cls(config["class"], dict(config["params"]), config["precision"], fingerprint, config.get("factory"),
                   device)


def spec_of(model) -> FrameModelSpec:
    """The :class:`FrameModelSpec` that rebuilds ``model`` exactly (same class, parameters, precision).

    Parameters
    ----------
    model : FrameModel

    Returns
    -------
    FrameModelSpec
        Its ``device`` is the model's; replace it (``dataclasses.replace``) to let
        the rebuilding process choose.

    Raises
    ------
    FrameModelRebuildError
        The model says it cannot be rebuilt (e.g. AMNet from an in-memory state
        dict), or it keeps no attribute for a constructor parameter.

    Examples
    --------
    >>> from amnetvid_sk.frame_models import spec_of
    >>> from amnetvid_sk.frame_models.amnet import AMNet
    >>> spec_of(AMNet.from_random(seed=1, device="cpu", precision="bfloat16")).precision
    'bfloat16'
    """
    reason = getattr(model, "_not_rebuildable", None)
    if reason:
        raise FrameModelRebuildError(f"this {type(model).__name__} cannot be rebuilt in another process: {reason}")
    try:
        params = model.constructor_params()
    except AttributeError as exc:
        raise FrameModelRebuildError(str(exc)) from None
    return FrameModelSpec(
        model_class=model.class_path(), params=_plain(params), precision=model.precision,
        fingerprint=model.fingerprint, factory=model._factory, device=str(model.device),
    )
