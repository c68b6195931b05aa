"""Lazy exports (PEP 562): a package's public names imported from their modules on first use.

So that ``import amnetvid_sk`` and light commands (``amnetvid sql``, ``--help``) do not pay
for importing torch or scikit-learn.
"""

from __future__ import annotations

from importlib import import_module


def lazy_getattr(package: str, table: dict[str, str], namespace: dict):
    """A module ``__getattr__`` that imports ``table[name]`` (a module of ``package``) on first use.

    Examples
    --------
    >>> ns = {}
    >>> getattr_ = lazy_getattr("amnetvid_sk", {"VideoIdError": "errors"}, ns)
    >>> getattr_("VideoIdError").__name__, "VideoIdError" in ns
    ('VideoIdError', True)
    """

    def __getattr__(name):
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{module}"), name)
        namespace[name] = value  # found directly from now on
        return value

    return __getattr__
