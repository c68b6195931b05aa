"""Exception types. One per failure a caller may want to catch; each message names
the file, id or parameter at fault."""

import errno as _errno

#: The errno values of a write that found no room: a full disk, or a used-up quota.
DISK_FULL_ERRNOS = frozenset({_errno.ENOSPC, _errno.EDQUOT})


class AmnetvidError(Exception):
    """Base class of every error raised on purpose by amnetvid-sk."""


class ParameterError(AmnetvidError, ValueError, TypeError):
    """A parameter was given a value it does not take; the message names the parameter, what is
    allowed (:func:`allowed_values`) and what was given.

    Both a ValueError and a TypeError, as scikit-learn's ``InvalidParameterError`` is: the checks
    made with scikit-learn's constraints raise :class:`amnetvid_sk._validation.InvalidParameterError`,
    a subclass of both. ``origin`` is the message of the check that refused the value first, where
    that differs (scikit-learn renames an estimator's error after the function that fitted it).

    Examples
    --------
    >>> err = ParameterError("The 'maps' parameter must be a str among {'attention', 'none'}. Got 'rgb' instead.")
    >>> isinstance(err, ValueError), isinstance(err, TypeError), err.origin is None
    (True, True, True)
    """

    origin: str | None = None


class RecipeError(AmnetvidError, ValueError):
    """A recipe that cannot be loaded or used: not found, or missing what a recipe defines."""


class RecipeNotFoundError(RecipeError, FileNotFoundError):
    """A recipe name that names no shipped recipe and no file."""


class VideoDecodeError(AmnetvidError, ValueError):
    """A video file is missing, empty, truncated or not a video."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read video {self.path!r}: {reason}")


class WeightsError(AmnetvidError, ValueError):
    """A weights file is absent, untrusted, or does not fit the network."""


class MissingDependencyError(AmnetvidError, ImportError):
    """An optional dependency (an extra of amnetvid-sk) is not installed."""


class StoreError(AmnetvidError, ValueError):
    """The feature store cannot answer a request."""


class MissingVideosError(StoreError, LookupError):
    """Video ids asked for are not in the store (for the chosen frame model)."""


class TooFewVideosError(StoreError):
    """The store holds fewer labelled videos (with features) than the folds asked for need."""


class ReadOnlyQueryError(StoreError, PermissionError):
    """A query given to ``FeatureStore.sql`` tried to change something."""


class LabelFormatError(AmnetvidError, ValueError):
    """A label file has bad rows; nothing was written."""


class VideoIdError(AmnetvidError, ValueError):
    """Two files would get the same video id (in one run, or against the store); nothing was extracted."""


class DiskFullError(AmnetvidError, OSError):
    """A disk filled up (or a quota ran out) during a write; nothing of that write was kept.

    An OSError with ``errno`` set (ENOSPC unless given), so that code catching a full disk
    by its errno catches this too; ``str()`` is the message alone, without ``[Errno 28]``.

    Examples
    --------
    >>> import errno
    >>> err = DiskFullError("no space left on the disk writing 'model.safetensors'")
    >>> err.errno == errno.ENOSPC, str(err)
    (True, "no space left on the disk writing 'model.safetensors'")
    """

    def __init__(self, *args):
        if len(args) == 1:  # a message alone: the disk is full
            args = (_errno.ENOSPC, args[0])
        # OSError's own __init__ by name: in StoreFullError, ValueError's comes first and would
        # leave errno unset
        OSError.__init__(self, *args)

    def __str__(self) -> str:
        return self.strerror if self.strerror is not None else super().__str__()


class AmnetvidWarning(UserWarning):
    """Base class of the warnings amnetvid-sk gives on purpose (the command line prints them as
    ``warning: ...`` lines, and folds the libraries' own warnings into one line)."""


class LeftOutWarning(AmnetvidWarning):
    """Labelled videos were left out of training or evaluation (too few stored frames, no features)."""


class FewVideosWarning(AmnetvidWarning):
    """So few videos that a Spearman computed on them is mostly noise (see ``metrics.FEW_VIDEOS``)."""


class StoreFullError(StoreError, DiskFullError):
    """The disk holding the store filled up during a write; what was committed before is kept."""


class ModelFileError(AmnetvidError, ValueError):
    """A saved model file is missing, unreadable, or holds no fitted pipeline."""


class FrameModelLookupError(ParameterError):
    """A frame model name that names no frame model class (unknown, not importable, not a FrameModel)."""


class FrameModelRebuildError(AmnetvidError, ValueError):
    """A frame model cannot be rebuilt from its spec, or rebuilds to another fingerprint."""


class DeviceError(AmnetvidError, ValueError):
    """A device asked for (``device=``, ``--device``) that this machine does not have.

    ``asked`` is the device asked for, ``available`` the devices this machine has (``["cpu",
    "cuda:0", ...]``), so that a caller can word its own message.

    Examples
    --------
    >>> err = DeviceError("no such device", asked="cuda:1", available=["cpu", "cuda:0"])
    >>> err.asked, err.available, str(err)
    ('cuda:1', ['cpu', 'cuda:0'], 'no such device')
    """

    def __init__(self, message: str, asked: str = "", available=()):
        super().__init__(message)
        self.asked, self.available = asked, list(available)


def allowed_values(values) -> str:
    """The allowed values of a parameter, in the words of scikit-learn's messages and in sorted
    order (a set's order changes with the hash seed: the same mistake would get another message).

    Examples
    --------
    >>> allowed_values({"short", "long"})
    "{'long', 'short'}"
    """
    return "{" + ", ".join(repr(v) for v in sorted(values)) + "}"


def disk_full_message(code: int, where: str = "", kept: str = "",
                      then: str = "run the same command again") -> str:
    """The one line of a write that found no room, for ``code`` (ENOSPC: the disk is full, else the
    quota is used up): ``where`` it happened, what was ``kept`` (or lost), then what to do.

    Examples
    --------
    >>> import errno
    >>> disk_full_message(errno.ENOSPC, "writing 'out/scores.tsv'")
    "no space left on the disk writing 'out/scores.tsv'; free space and run the same command again"
    >>> disk_full_message(errno.EDQUOT, "writing the file 'a.bin'", "nothing was written", then="try again")
    "the disk quota is used up writing the file 'a.bin': nothing was written; free space and try again"
    """
    lack = "no space left on the disk" if code == _errno.ENOSPC else "the disk quota is used up"
    return f"{lack}{' ' + where if where else ''}{': ' + kept if kept else ''}; free space and {then}"


def disk_full_errno(exc: BaseException | None) -> int | None:
    """The errno of a full disk (ENOSPC or EDQUOT) in ``exc`` or the exceptions it came from, else None.

    A library may report a full disk by an error of its own raised while handling the OSError
    (or a file's close may raise again while the first error unwinds): its chain is searched.

    Examples
    --------
    >>> import errno
    >>> disk_full_errno(OSError(errno.ENOSPC, "No space left on device")) == errno.ENOSPC
    True
    >>> disk_full_errno(ValueError("bad value")) is None
    True
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return exc.errno
        exc = exc.__cause__ if exc.__cause__ is not None else exc.__context__
    return None
