"""Exception types. One per failure a caller may want to catch; each message names
the file, id or parameter at fault."""


class AmnetvidError(Exception):
    """Base class of every error raised on purpose by amnetvid-sk."""


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


class ReadOnlyQueryError(StoreError, PermissionError):
    """A query given to ``FeatureStore.sql`` tried to change something."""


class LabelFormatError(AmnetvidError, ValueError):
    """A label file has bad rows; nothing was written."""


class VideoIdError(AmnetvidError, ValueError):
    """Two files would get the same video id (in one run, or against the store); nothing was extracted."""


class StoreFullError(StoreError, OSError):
    """The disk holding the store filled up during a write; what was committed before is kept."""


class ModelFileError(AmnetvidError, ValueError):
    """A saved model file is missing, unreadable, or holds no fitted pipeline."""


class FrameModelLookupError(AmnetvidError, ValueError):
    """A frame model name that names no frame model class (unknown, not importable, not a FrameModel)."""


class FrameModelRebuildError(AmnetvidError, ValueError):
    """A frame model cannot be rebuilt from its spec, or rebuilds to another fingerprint."""
