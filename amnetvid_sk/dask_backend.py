"""The Dask backend's one dependency check: ``distributed`` comes with the ``dask`` extra."""

from __future__ import annotations

from .errors import MissingDependencyError

__all__ = ["dask_client_class"]


def dask_client_class(what: str = 'backend="dask"'):
    """``distributed.Client``; a :class:`~amnetvid_sk.errors.MissingDependencyError` that says what to
    install when the ``dask`` extra is not installed (``what`` names the option that asked for it).

    Examples
    --------
    Not run: it needs the ``dask`` extra.

    >>> dask_client_class().__name__  # doctest: +SKIP
    'Client'
    """
    try:
        from distributed import Client
    except ImportError as exc:
        raise MissingDependencyError(f'{what} needs Dask distributed ({exc}): pip install "amnetvid-sk[dask]"') from exc
    return Client
