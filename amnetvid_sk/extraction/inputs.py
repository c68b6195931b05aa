"""Extraction inputs: paths, folders, globs and list files -> (file, video id), checked against the store.

Video ids are checked before any work: two inputs with one id, or an input whose
id the store already holds from another file that still exists, stop the run
with both paths named (``ids="relpath"`` or ``replace=True`` decide otherwise).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import VideoIdError
from ..video_ids import VIDEO_EXTENSIONS, video_id_of_path

__all__ = ["expand_inputs", "expand_paths", "check_unique_ids", "file_key", "InputPlan", "plan_inputs"]

LISTED = 5  # conflicting ids named in one error message


def _expand(paths, base) -> list[tuple[Path, Path | None]]:
    """(file, the folder its relative id is taken from) for each input; see :func:`expand_inputs`."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[tuple[Path, Path | None]] = []
    for item in paths:
        text = str(item)
        p = Path(text)
        if p.is_dir():
            out.extend(
                (f, p) for f in sorted(p.rglob("*")) if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS
            )
        elif p.is_file() and p.suffix.lower() in (".txt", ".lst"):
            folder = p.parent
            for line in p.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    q = Path(line)
                    out.extend(_expand([q if q.is_absolute() else folder / q], folder))
        elif p.exists():
            out.append((p, base))
        elif glob.has_magic(text):
            out.extend((Path(m), base) for m in sorted(glob.glob(text, recursive=True)) if Path(m).is_file())
        else:
            out.append((p, base))
    return out


def expand_inputs(paths, ids: str = "stem") -> list[tuple[Path, str]]:
    """``(file, video id)`` for files, folders (searched recursively for video files),
    glob patterns and ``.txt``/``.lst`` files that list one path per line.

    With ``ids="relpath"`` a file found in a folder is named by its path relative
    to that folder (``videos/a/clip.mp4`` given as ``videos/`` -> ``a/clip``), a
    file listed in a ``.txt`` file relative to the list's folder, and a file or
    glob given directly relative to the current folder. A path that does not
    exist and matches no glob is kept, so that it is reported as a failure naming
    the file rather than dropped silently. Each file appears once.

    Examples
    --------
    Not run: it needs these files and folders.

    >>> expand_inputs(["clips/", "more/*.mp4", "list.txt"])  # doctest: +SKIP
    [(PosixPath('clips/a.mp4'), 'a'), ...]
    """
    seen, unique = set(), []
    for path, base in _expand(paths, None):
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            unique.append((path, video_id_of_path(path, base, ids)))
    return unique


def expand_paths(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """The files of :func:`expand_inputs`, without their ids.

    Examples
    --------
    Not run: it needs these files and folders.

    >>> expand_paths(["clips/", "more/*.mp4", "list.txt"])  # doctest: +SKIP
    """
    return [path for path, _ in expand_inputs(paths)]


def check_unique_ids(inputs: Sequence[tuple[Path, str]]) -> None:
    """Raise :class:`~amnetvid_sk.errors.VideoIdError` naming the files when two inputs share an id."""
    by_id: dict[str, list[str]] = {}
    for path, vid in inputs:
        by_id.setdefault(vid, []).append(os.path.abspath(path))
    clashes = {vid: paths for vid, paths in by_id.items() if len(paths) > 1}
    if clashes:
        named = "; ".join(f"{vid!r}: {' and '.join(paths)}" for vid, paths in list(clashes.items())[:LISTED])
        more = f" (and {len(clashes) - LISTED} more)" if len(clashes) > LISTED else ""
        raise VideoIdError(
            f"{len(clashes)} video ids are given by more than one file: {named}{more}; nothing was extracted. "
            "Name videos by their path relative to the folder given (ids='relpath', --ids relpath), "
            "or extract the folders into separate stores")


def file_key(path: Path) -> tuple[str, int, float]:
    """The identity of a file in the store: absolute path, size and mtime."""
    st = os.stat(path)
    return (os.path.abspath(path), int(st.st_size), float(st.st_mtime))


class _FileCheck:
    """Which inputs are already extracted, and which would replace another file's id in the store."""

    def __init__(self, store, fingerprint: str, sampling: str, inputs, embeddings: bool = False):
        done = store.extracted_files(fingerprint, sampling)
        if embeddings:  # done only with what was asked: an extraction without them gets them added
            done = done.filter(done["embedded"])
        self.done = set(zip(done["path"].to_pylist(), done["size"].to_pylist(), done["mtime"].to_pylist()))
        # a folder moved elsewhere: same id, size and mtime, and the stored path is gone
        self.moved = {(vid, size, mtime) for vid, path, size, mtime in zip(
            done["video_id"].to_pylist(), done["path"].to_pylist(), done["size"].to_pylist(),
            done["mtime"].to_pylist()) if not os.path.exists(path)}
        self.paths = store.video_paths([vid for _, vid in inputs])

    def already_done(self, key, vid) -> bool:
        return key in self.done or (vid, key[1], key[2]) in self.moved

    def other_files(self, path: str, vid: str) -> list[str]:
        """Files that still exist and gave this id to videos in the store."""
        return sorted(p for p in self.paths.get(vid, ()) if p != path and os.path.exists(p))


@dataclass
class InputPlan:
    """What an extraction run has to do with its inputs.

    Attributes
    ----------
    todo : list of (Path, str)
        Inputs to extract.
    missing : list of (Path, str)
        Inputs whose file does not exist (recorded as failures).
    skipped : list of str
        Paths already in the store with the same file identity, model and sampling
        (and, when embeddings are asked for, with embeddings).
    """

    todo: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    skipped: list = field(default_factory=list)


def plan_inputs(store, fingerprint: str, sampling: str, inputs: Sequence[tuple[Path, str]],
                replace: bool = False, embeddings: bool = False) -> InputPlan:
    """Sort inputs into to-do, missing and already extracted; refuse ids the store has from other files.

    With ``embeddings=True`` a video counts as extracted only when its extraction has an
    embedding for every stored frame; one extracted without them is to do (the
    :class:`~.local.Extractor` then adds its embeddings to the same extraction).

    Raises
    ------
    VideoIdError
        An id is in the store from another file that still exists, and ``replace`` is False;
        every such id is named (the first few) and nothing was extracted.

    Examples
    --------
    Not run: it needs a store, a frame model and video files.

    >>> plan = plan_inputs(FeatureStore("store"), model.fingerprint, "frames=28", inputs)  # doctest: +SKIP
    """
    files = _FileCheck(store, fingerprint, sampling, inputs, embeddings)
    plan = InputPlan()
    clashes: list[str] = []
    for path, vid in inputs:
        try:
            key = file_key(path)
        except OSError:
            plan.missing.append((path, vid))
            continue
        if files.already_done(key, vid):
            plan.skipped.append(str(path))
            continue
        others = files.other_files(key[0], vid)
        if others and not replace:
            clashes.append(f"{vid!r} from {' and '.join(others)}, now given by {key[0]}")
        plan.todo.append((path, vid))
    if clashes:
        more = f" (and {len(clashes) - LISTED} more)" if len(clashes) > LISTED else ""
        raise VideoIdError(
            f"{len(clashes)} video ids are already in the store {str(store.path)!r} from other files: "
            f"{'; '.join(clashes[:LISTED])}{more}; nothing was extracted. Pass replace=True (--replace) to "
            "replace them, or name videos by relative path (ids='relpath', --ids relpath)")
    return plan
