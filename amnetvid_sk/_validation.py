"""Parameter checks in scikit-learn's words, run when ``fit`` runs (never in ``__init__``)."""

from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np


def check_param(owner: str, name: str, value, *, among=None, kind=None, low=None, allow_none=False):
    """Raise a ValueError/TypeError naming the parameter, what is allowed and what was given.

    ``among`` is a set of allowed values; ``kind`` one of "int", "real", "path", "str";
    ``low`` an inclusive lower bound for numbers.
    """
    if value is None and allow_none:
        return
    if among is not None:
        if value not in among:
            allowed = "{" + ", ".join(repr(a) for a in sorted(among, key=str)) + "}"
            extra = " or None" if allow_none else ""
            raise ValueError(
                f"The {name!r} parameter of {owner} must be a str among {allowed}{extra}. Got {value!r} instead."
            )
        return
    if kind == "int":
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        what = "an int"
    elif kind == "real":
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        what = "a float"
    elif kind == "path":
        ok = isinstance(value, (str, Path))
        what = "a str or Path (a feature store folder)"
    elif kind == "str":
        ok = isinstance(value, str)
        what = "a str"
    else:  # pragma: no cover - programming error
        raise AssertionError(kind)
    if ok and low is not None and value < low:
        ok = False
        what += f" >= {low}"
    if not ok:
        extra = " or None" if allow_none else ""
        raise ValueError(f"The {name!r} parameter of {owner} must be {what}{extra}. Got {value!r} instead.")


def check_ids(X) -> np.ndarray:
    """Video ids as a 1-D array of str: X may be a list, a 1-D array or one column."""
    arr = np.asarray(X, dtype=object)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            f"X must be a 1-D array of video ids (file names without extension); got shape {arr.shape}."
        )
    return np.array([str(x) for x in arr], dtype=object)
