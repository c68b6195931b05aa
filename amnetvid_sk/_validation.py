"""scikit-learn's parameter checks, reached in one place, raising this package's error type.

``validate_params`` and ``_fit_context`` come through ``sklearn-compat``, which keeps them working
across scikit-learn's releases. The constraint classes (``Interval``, ``StrOptions``), the
constraint check and scikit-learn's ``InvalidParameterError`` are not in ``sklearn-compat``: they
are imported here from scikit-learn's private module, the only such import in the package, so
that a change in a scikit-learn release is mended in this file alone.

Every check made through this module raises :class:`InvalidParameterError`, both this package's
:class:`~amnetvid_sk.errors.ParameterError` (which the command line reports as a user error) and
scikit-learn's ``InvalidParameterError`` (which scikit-learn's own checks and tests expect).
Allowed values are listed in sorted order (:class:`StrOptions`), the same in every run.
"""

from __future__ import annotations

import contextlib
import functools

# private module, imported here alone: Interval, StrOptions, validate_parameter_constraints and
# InvalidParameterError have no public spelling, and sklearn-compat 0.1.6 re-exports only validate_params
import sklearn.utils._param_validation as _sklearn_checks
from sklearn_compat.base import _fit_context as _sklearn_fit_context
from sklearn_compat.utils._param_validation import validate_params as _sklearn_validate_params

from .errors import ParameterError, allowed_values

__all__ = ["Interval", "InvalidParameterError", "StrOptions", "as_parameter_error", "fit_context",
           "validate_parameter_constraints", "validate_params"]

Interval = _sklearn_checks.Interval
#: scikit-learn's own error type, for code that catches it by that name
SklearnInvalidParameterError = _sklearn_checks.InvalidParameterError


class InvalidParameterError(ParameterError, SklearnInvalidParameterError):
    """A value refused by a scikit-learn constraint: this package's ParameterError and
    scikit-learn's InvalidParameterError (a ValueError and a TypeError) at once."""


class StrOptions(_sklearn_checks.StrOptions):
    """scikit-learn's ``StrOptions``, its allowed values listed in sorted order.

    Examples
    --------
    >>> str(StrOptions({"short", "long"}))
    "a str among {'long', 'short'}"
    """

    def __str__(self) -> str:
        return f"a str among {allowed_values(self.options)}"


def _ours(exc: SklearnInvalidParameterError) -> InvalidParameterError:
    """``exc`` as this package's type, with the same message; ``origin`` is the first check's message
    (scikit-learn's ``validate_params`` renames an estimator's error after the function that ran it)."""
    first = exc
    while isinstance(first.__cause__, SklearnInvalidParameterError):
        first = first.__cause__
    err = InvalidParameterError(str(exc))
    err.origin = (first.origin or str(first)) if isinstance(first, ParameterError) else str(first)
    return err


@contextlib.contextmanager
def as_parameter_error():
    """Raise scikit-learn's ``InvalidParameterError`` met inside the block as :class:`InvalidParameterError`:
    for a boundary that fits an estimator itself (an estimator's own ``fit`` checks its parameters).

    Examples
    --------
    >>> from sklearn.linear_model import Ridge
    >>> with as_parameter_error():
    ...     Ridge(alpha=-1).fit([[0.0], [1.0]], [0.0, 1.0])
    Traceback (most recent call last):
    amnetvid_sk._validation.InvalidParameterError: The 'alpha' parameter of Ridge must be ...
    """
    try:
        yield
    except InvalidParameterError:
        raise
    except SklearnInvalidParameterError as exc:
        raise _ours(exc) from exc


def validate_params(parameter_constraints: dict, *, prefer_skip_nested_validation: bool):
    """scikit-learn's ``validate_params`` decorator (through ``sklearn-compat``), raising
    :class:`InvalidParameterError`.

    Examples
    --------
    >>> @validate_params({"mode": [StrOptions({"jet", "raw"})]}, prefer_skip_nested_validation=True)
    ... def render(mode):
    ...     return mode
    >>> render(mode="rgb")
    Traceback (most recent call last):
    amnetvid_sk._validation.InvalidParameterError: The 'mode' parameter of render must be a str among {'jet', 'raw'}. Got 'rgb' instead.
    """
    def decorate(func):
        checked = _sklearn_validate_params(parameter_constraints,
                                           prefer_skip_nested_validation=prefer_skip_nested_validation)(func)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with as_parameter_error():
                return checked(*args, **kwargs)

        return wrapper

    return decorate


def fit_context(*, prefer_skip_nested_validation: bool):
    """scikit-learn's ``_fit_context`` decorator of ``fit`` (through ``sklearn-compat``): it checks the
    estimator's ``_parameter_constraints`` once per fit, here raising :class:`InvalidParameterError`."""
    def decorate(fit_method):
        checked = _sklearn_fit_context(prefer_skip_nested_validation=prefer_skip_nested_validation)(fit_method)

        @functools.wraps(fit_method)
        def wrapper(estimator, *args, **kwargs):
            with as_parameter_error():
                return checked(estimator, *args, **kwargs)

        return wrapper

    return decorate


def validate_parameter_constraints(parameter_constraints: dict, params: dict, caller_name: str) -> None:
    """scikit-learn's check of ``params`` against their constraints, raising :class:`InvalidParameterError`.

    Examples
    --------
    >>> from numbers import Integral
    >>> validate_parameter_constraints({"n": [Interval(Integral, 1, None, closed="left")]}, {"n": 0}, "Demo")
    Traceback (most recent call last):
    amnetvid_sk._validation.InvalidParameterError: The 'n' parameter of Demo must be an int in the range [1, inf). Got 0 instead.
    """
    with as_parameter_error():
        _sklearn_checks.validate_parameter_constraints(parameter_constraints, params, caller_name)
