"""What names a frame model and rebuilds it: its fingerprint, its constructor parameters, its config.

:class:`FrameModelIdentity` is the part of :class:`~amnetvid_sk.frame_models.FrameModel`
that says *which* model this is, apart from running it: the fingerprint that keys
the feature store (format in :func:`~amnetvid_sk.frame_models.make_fingerprint`),
the parameters read back the scikit-learn way so that
:class:`~amnetvid_sk.frame_models.FrameModelSpec` rebuilds the model in another
process, and the ``config`` the store's ``models`` table records. No torch here.
"""

from __future__ import annotations

import inspect

from .fingerprint import make_fingerprint

__all__ = ["FrameModelIdentity", "RUNTIME_PARAMS"]

#: constructor parameters that a rebuild sets itself rather than reading them from the model:
#: the device (the rebuilding process picks its own) and the precision (recorded resolved)
RUNTIME_PARAMS = ("device", "precision")
#: parameters left out of the rebuild parameters while they hold this default: a rebuild without
#: them gets the default, and ``config`` records the output mode on its own (``maps``), so the
#: parameters name only what a model's maker chose beyond the usual scores-and-maps model
_OMITTED_AT_DEFAULT = {"maps": "attention"}


class FrameModelIdentity:
    """Fingerprint, rebuild parameters and config of a frame model (a mixin of ``FrameModel``).

    Reads ``name``, ``map_shape``, ``maps``, ``embedding_dim``, ``precision``,
    ``batch_size`` and ``_factory`` from the model, and the subclass's
    :meth:`_fingerprint_parts`.

    Examples
    --------
    >>> from amnetvid_sk.frame_models.amnet import AMNet
    >>> model = AMNet.from_random(seed=0, device="cpu", precision="float32", maps="none")
    >>> model.fingerprint.split(".")[-3:]
    ['maps-none', 'emb-1024', 'fp32']
    """

    #: name of the classmethod that built this model, when not ``__init__`` (see FrameModel)
    _factory: str | None = None
    #: why this model cannot be rebuilt from its parameters, when it cannot
    _not_rebuildable: str | None = None

    def _fingerprint_parts(self) -> dict:  # pragma: no cover - abstract
        """``dict(weights_sha256=..., preprocessing=..., extra=...)``."""
        raise NotImplementedError

    @property
    def fingerprint(self) -> str:
        """Cache key: name, weights hash, preprocessing, maps (size or none), embedding size, numeric mode."""
        return self.fingerprint_as(self.precision)

    def fingerprint_as(self, precision: str) -> str:
        """The fingerprint this model would have in another precision (``"float32"`` or ``"bfloat16"``)."""
        parts = self._fingerprint_parts()
        return make_fingerprint(
            self.name, parts["weights_sha256"], parts["preprocessing"], self.map_shape, precision == "bfloat16",
            parts.get("extra", ""), maps=self.maps, embedding_dim=self.embedding_dim,
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
        without ``device`` and ``precision``, each read from the
        attribute of the same name; ``maps`` only when it is not the default
        ``"attention"`` (``config`` records it on its own).

        Returns
        -------
        dict

        Raises
        ------
        AttributeError
            A parameter has no attribute of its name (the contract in FrameModel's
            docstring is not met).

        Examples
        --------
        >>> from amnetvid_sk.frame_models.amnet import AMNet
        >>> AMNet.from_random(seed=3, device="cpu", batch_size=4).constructor_params()
        {'seed': 3, 'batch_size': 4}
        >>> AMNet.from_random(seed=3, device="cpu", maps="none").constructor_params()
        {'seed': 3, 'batch_size': 16, 'maps': 'none'}
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
            value = getattr(self, p.name)
            if p.name in _OMITTED_AT_DEFAULT and value == _OMITTED_AT_DEFAULT[p.name]:
                continue
            params[p.name] = value
        return params

    @property
    def config(self) -> dict:
        """JSON-friendly description of the model (for the store's ``models`` table).

        ``class``, ``factory`` and ``params`` (see :meth:`constructor_params`) are
        what :class:`~amnetvid_sk.frame_models.FrameModelSpec` rebuilds the model from;
        ``maps`` (``"attention"`` or ``"none"``) and ``embedding_dim`` (0: none) say
        what its outputs hold.
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
            "maps": self.maps,
            "embedding_dim": int(self.embedding_dim),
            "precision": self.precision,
            "bfloat16": self.bfloat16,
            "batch_size": self.batch_size,
        }
