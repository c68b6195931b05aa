"""Warnings on the command line: the package's own as ``warning: ...`` lines, the libraries'
folded into one line.

A user can act on this package's warnings (videos left out, too few videos), so each is one
line, said once however many models meet it. Warnings that scikit-learn, scipy, skorch or torch raise from inside a fit are about
their internals (a constant prediction at some epoch, a deprecation): printed raw they are
lines of site-packages paths. They are counted and told in one line at the end, by kind;
``AMNETVID_TRACEBACK=1`` shows them as Python would.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections import Counter

from ..errors import AmnetvidWarning
from .parser import TRACEBACK_ENV


def _first_sentence(message) -> str:
    text = " ".join(str(message).split())
    return text.split("; ")[0][:100]


@contextlib.contextmanager
def warning_lines():
    """Within it, warnings print as described in the module docstring.

    Examples
    --------
    >>> import warnings
    >>> from amnetvid_sk.errors import LeftOutWarning
    >>> with warning_lines():
    ...     warnings.warn("2 videos left out", LeftOutWarning)
    ...     warnings.warn("a library detail", RuntimeWarning)
    """
    if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
        yield
        return
    folded: Counter = Counter()
    said: set = set()  # a command that evaluates several models meets the same warning for each: said once

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, AmnetvidWarning):
            if str(message) not in said:
                said.add(str(message))
                print(f"warning: {message}", file=sys.stderr)
        else:
            folded[(category.__name__, _first_sentence(message))] += 1

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        try:
            yield
        finally:
            if folded:
                kinds = "; ".join(f"{name} x{n}: {text}" for (name, text), n in folded.most_common(3))
                more = f"; {len(folded) - 3} more kinds" if len(folded) > 3 else ""
                print(f"note: {sum(folded.values())} warning(s) from the libraries were folded into this line "
                      f"({kinds}{more}); {TRACEBACK_ENV}=1 shows them in full", file=sys.stderr)
