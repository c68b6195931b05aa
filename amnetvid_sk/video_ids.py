"""Video ids: how a file name becomes the id that labels, the store and pipelines share.

One definition for the whole package: the extensions that count as video files,
the id of a file name, and the two ways extraction names videos
(``ids="stem"``, the default, and ``ids="relpath"`` for same-named clips in
several folders).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ParameterError, allowed_values

__all__ = ["VIDEO_EXTENSIONS", "ID_MODES", "video_id_from_name", "video_id_of_path"]

# Extensions stripped from ids, so that "video10.webm" and "video10" are one video
# while an id such as "clip.v2" keeps its dot. A folder given to extraction is
# searched for files with these extensions.
VIDEO_EXTENSIONS = frozenset(
    {".webm", ".mp4", ".m4v", ".mov", ".mkv", ".avi", ".mpg", ".mpeg", ".ogv", ".wmv", ".flv", ".gif", ".3gp", ".ts"}
)

#: values of extraction's ``ids`` parameter
ID_MODES = ("stem", "relpath")


def video_id_from_name(name: str) -> str:
    """The video id of a file name or path: its base name without a video extension.

    Examples
    --------
    >>> video_id_from_name("video10.webm")
    'video10'
    >>> video_id_from_name("clips/00042.mp4")
    '00042'
    >>> video_id_from_name("100493")
    '100493'
    """
    base = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    stem, ext = os.path.splitext(base)
    return stem if ext.lower() in VIDEO_EXTENSIONS and stem else base


def video_id_of_path(path, base=None, ids: str = "stem") -> str:
    """The id extraction gives a video file.

    Parameters
    ----------
    path : str or Path
        The video file.
    base : str or Path, default=None
        The folder the file was found in (the folder given on the command line),
        for ``ids="relpath"``; None means the current folder.
    ids : {"stem", "relpath"}, default="stem"
        ``"stem"``: the file name without its extension (``a/clip.mp4`` -> ``clip``).
        ``"relpath"``: the path relative to ``base`` without the extension, with
        ``/`` between folders (``a/clip.mp4`` under ``videos/`` -> ``a/clip``).

    Examples
    --------
    >>> video_id_of_path("videos/a/clip.mp4", base="videos", ids="relpath")
    'a/clip'
    >>> video_id_of_path("videos/a/clip.mp4")
    'clip'
    """
    if ids not in ID_MODES:
        raise ParameterError(f"The 'ids' parameter must be a str among {allowed_values(ID_MODES)}. Got {ids!r} instead.")
    if ids == "stem":
        return video_id_from_name(str(path))
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(base if base is not None else "."))
    rel = Path(rel).as_posix()
    head, _, name = rel.rpartition("/")
    name = video_id_from_name(name)
    return f"{head}/{name}" if head else name
