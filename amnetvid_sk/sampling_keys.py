"""Sampling keys: how a sampling configuration (a frame count or a rate) is named in the store.

Kept apart from :mod:`amnetvid_sk.video` (which imports PyAV and scikit-learn) so that light
commands (``amnetvid sql``, ``--help``) can quote the default frame count without paying for them.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

from .errors import ParameterError

__all__ = ["DEFAULT_N_FRAMES", "check_sampling", "parse_sampling_key", "sampling_key"]


def check_sampling(n_frames, fps):
    """Validate the sampling parameters; return (n_frames, fps as Fraction).

    Written out rather than with sklearn's ``validate_params``: "exactly one of" is a rule
    between two parameters, and sklearn's ``Interval(Integral, ...)`` takes ``True`` as 1,
    which is refused here. The messages keep sklearn's wording.
    """
    if (n_frames is None) == (fps is None):
        raise ParameterError(
            "Exactly one of the 'n_frames' and 'fps' parameters must be given. "
            f"Got n_frames={n_frames!r} and fps={fps!r} instead."
        )
    if n_frames is not None:
        if isinstance(n_frames, bool) or not isinstance(n_frames, numbers.Integral) or n_frames < 1:
            raise ParameterError(
                f"The 'n_frames' parameter must be a positive int. Got {n_frames!r} instead."
            )
        return int(n_frames), None
    if (
        isinstance(fps, bool)
        or not isinstance(fps, numbers.Real)
        or not math.isfinite(float(fps))
        or fps <= 0
    ):
        raise ParameterError(f"The 'fps' parameter must be a positive number. Got {fps!r} instead.")
    # exact rational sample times: k / fps must land exactly on frame timestamps
    # when they coincide (fps=5 on a 25 fps clip), which floats do not guarantee
    rate = Fraction(fps) if isinstance(fps, numbers.Rational) else Fraction(float(fps))
    return None, rate.limit_denominator(1_000_000)


#: frames stored per clip when neither a frame count nor a rate is given: the working note's 28
DEFAULT_N_FRAMES = 28


def parse_sampling_key(key: str) -> tuple[int | None, float | None]:
    """``(n_frames, fps)`` of a sampling key made by :func:`sampling_key` (one of them is None).

    Examples
    --------
    >>> from amnetvid_sk.video import parse_sampling_key
    >>> parse_sampling_key("frames=28"), parse_sampling_key("fps=2.5")
    ((28, None), (None, 2.5))
    """
    kind, _, value = str(key).partition("=")
    try:
        if kind == "frames":
            return int(value), None
        if kind == "fps":
            return None, float(value)
    except ValueError:
        pass
    raise ValueError(f"not a sampling key: {key!r}; expected 'frames=N' or 'fps=R'")


def sampling_key(n_frames: int | None = None, fps: float | None = None) -> str:
    """The string that names a sampling configuration in the feature store.

    Parameters
    ----------
    n_frames : int, optional
        Number of frames spread uniformly over the clip.
    fps : float, optional
        Sampling rate in frames per second. Exactly one of ``n_frames`` and
        ``fps`` must be given.

    Returns
    -------
    key : str
        ``"frames=<n>"`` or ``"fps=<r>"`` (``r`` without a trailing ``.0``).

    Examples
    --------
    >>> from amnetvid_sk.video import sampling_key
    >>> sampling_key(n_frames=28), sampling_key(fps=4), sampling_key(fps=2.5)
    ('frames=28', 'fps=4', 'fps=2.5')
    """
    n_frames, _ = check_sampling(n_frames, fps)
    if n_frames is not None:
        return f"frames={n_frames}"
    value = float(fps)
    return f"fps={int(value)}" if value.is_integer() else f"fps={value!r}"
