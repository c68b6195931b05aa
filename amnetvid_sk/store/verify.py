"""The store checking itself: every part file read whole, damaged ones moved into quarantine.

:func:`verify` reads the footer and decodes every column of every row group of every part
file (pyarrow), and names each file that fails with the videos it held: read from the file
when its ``video_id`` column still decodes, else recovered from the other tables (a
``frames`` part's videos are the ``videos`` rows whose frames are missing; a ``videos``
part's are the frames that no ``videos`` row commits), else said to be unreadable.

``repair=True`` moves each damaged part to ``<store>/quarantine/<table>/<name>``, a folder
the views never read (they list ``<store>/<table>/part-*.parquet`` only), so its rows are
gone from every table. A ``videos`` row whose frames were lost with a damaged ``frames``
part would still say "extracted": each ``videos`` part holding such rows is written again
without them (a new part file, atomically) and the old one quarantined too. The videos of
all these rows count as not extracted, and the next ``extract`` of their files redoes them.
The order of the steps (new ``videos`` parts, old ones moved, damaged parts moved last)
leaves a store that a second ``verify --repair`` finishes if the first is interrupted.

A write killed before its rename leaves a hidden temporary part file (``.part-*.parquet.tmp``)
that no reader lists: it is reported, and ``repair=True`` deletes it (``compact`` deletes those
untouched for an hour, as it may run beside writers). Rows stored twice in the ``frames`` or
``results`` tables (a ``compact`` killed between writing its parts and deleting the old ones) are
reported too: the views show each once, and the next ``compact`` stores each once. Neither is
damage: ``ok`` stays True.

The array cache (``.cache/``) is not checked: it is not part of the store of record, and a
cache file that cannot be read is deleted and built again by the next read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import StoreError
from . import location
from .compact import temp_files
from .connection import Connection, list_parts, part_damage
from .schema import SCHEMAS, fmt_ids
from .write import write_part

__all__ = ["DamagedPart", "QUARANTINE_DIR", "VerifyReport", "verify"]

QUARANTINE_DIR = "quarantine"


@dataclass(frozen=True)
class DamagedPart:
    """A part file that cannot be read whole.

    Attributes
    ----------
    table : str
        The table (folder) of the part file.
    file : str
        Its absolute path (where it was found, before any repair).
    reason : str
        What pyarrow said when reading it.
    video_ids : tuple of str or None
        The videos it held; ``()`` for a table without videos (``models``, ``results``);
        None when neither the file nor the other tables tell.
    ids_from : str
        Where ``video_ids`` come from: ``"file"``, ``"videos table"``, ``"frames table"``,
        or ``""``.
    """

    table: str
    file: str
    reason: str
    video_ids: tuple[str, ...] | None
    ids_from: str


@dataclass
class VerifyReport:
    """What :func:`verify` found and did.

    Attributes
    ----------
    store : str
        The store folder.
    checked : int
        Part files read whole.
    damaged : list of DamagedPart
        The part files that could not be read, in table order.
    quarantined : list of str
        Where the files moved into quarantine now lie (with ``repair=True``): the damaged
        parts and the ``videos`` parts written again without the rows of lost extractions.
    rewritten : list of str
        The new ``videos`` parts written instead of those.
    lost_videos : tuple of str
        Videos whose ``videos`` row was kept from view because their frames were lost.
    temp_files : list of str
        Temporary part files of interrupted writes found (never read by the views).
    temp_removed : bool
        Whether ``temp_files`` were deleted (``repair=True``).
    twice : dict
        ``{table: rows}`` stored twice in ``frames_all`` or ``results_all`` (an
        interrupted ``compact``; the views show each once); checked only when no part is damaged.
    ok : bool
        No damaged part was found (False after a repair too: that run found damage).
    """

    store: str
    checked: int = 0
    damaged: list[DamagedPart] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)
    lost_videos: tuple[str, ...] = ()
    temp_files: list[str] = field(default_factory=list)
    temp_removed: bool = False
    twice: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.damaged

    def lines(self) -> list[str]:
        """The report as text lines (what ``amnetvid verify`` prints)."""
        root = self.store
        rel = lambda p: os.path.relpath(p, root)  # noqa: E731  (paths inside the store, shorter)
        out = [f"store: {self.store}", f"checked {self.checked} part files: {len(self.damaged)} damaged"]
        for part in self.damaged:
            out.append(f"damaged: {rel(part.file)}: {part.reason}")
            if part.video_ids is None:
                out.append("  its videos cannot be read from it (nor from the other tables)")
            elif not part.video_ids and part.ids_from == "":
                out.append(f"  it holds no videos ({part.table} rows)")
            elif part.ids_from == "file":
                out.append(f"  {len(part.video_ids)} videos: {fmt_ids(part.video_ids, 20)}")
            else:
                out.append(f"  its videos cannot be read from it; by the {part.ids_from}, it held "
                           f"{len(part.video_ids)}: {fmt_ids(part.video_ids, 20)}")
        names = {os.path.basename(part.file) for part in self.damaged}
        for path in self.quarantined:
            why = "" if os.path.basename(path) in names else " (it held the videos rows of lost frames)"
            out.append(f"quarantined: {rel(path)}{why}")
        for path in self.rewritten:
            out.append(f"rewrote: {rel(path)} (the videos rows of the lost frames left out)")
        if self.temp_files and self.temp_removed:
            out.append(f"deleted {len(self.temp_files)} temporary part files of interrupted writes")
        elif self.temp_files:
            out.append(f"{len(self.temp_files)} temporary part files of interrupted writes (never read): "
                       "--repair deletes them, `amnetvid compact` those untouched for an hour")
        if self.twice:
            counts = ", ".join(f"{table} {n}" for table, n in self.twice.items())
            out.append(f"rows stored twice (a compact was interrupted; queries see each once): {counts}; "
                       f"`amnetvid compact --store {self.store}` stores each once")
        if self.damaged and self.quarantined:
            again = " (and `amnetvid labels import` imports their labels again)" if any(
                part.table == "labels" for part in self.damaged) else ""
            out.append("the rows of the quarantined files are gone from the tables; the next `amnetvid extract` "
                       f"of those videos extracts them again{again}")
        elif self.damaged:
            out.append(f"run `amnetvid verify --store {self.store} --repair` to move the damaged files into "
                       f"{QUARANTINE_DIR}/ (the next `amnetvid extract` then redoes their videos)")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def _column(files, columns: list[str]) -> pa.Table:
    """``columns`` of the part files ``files`` together (each file read alone: schemas may differ)."""
    tables = [pq.read_table(location.source(f), columns=columns) for f in files]
    if not tables:
        return pa.table({c: pa.array([], pa.int64() if c == "n_frames" else pa.string()) for c in columns})
    return pa.concat_tables(tables, promote_options="permissive")


def _lost_extractions(good: dict[str, list[str]]) -> pa.Table:
    """extraction_id and video_id of the ``videos`` rows (readable parts) with fewer frames in the
    readable ``frames`` parts than they stored."""
    videos = _column(good["videos"], ["extraction_id", "video_id", "n_frames"])
    frames = _column(good["frames"], ["extraction_id"])
    counts = frames.group_by("extraction_id").aggregate([("extraction_id", "count")])
    have = dict(zip(counts["extraction_id"].to_pylist(), counts["extraction_id_count"].to_pylist()))
    keep = [have.get(e, 0) < (n or 0) for e, n in zip(videos["extraction_id"].to_pylist(),
                                                       videos["n_frames"].to_pylist())]
    return videos.filter(pa.array(keep, pa.bool_())).select(["extraction_id", "video_id"])


def _readable(file: str, column: str) -> pa.ChunkedArray | None:
    """``column`` of a damaged part file when that column alone still decodes, else None."""
    try:
        return pq.read_table(location.source(file), columns=[column])[column]
    except (OSError, pa.ArrowException, KeyError, ValueError):
        return None  # no footer, or that column is damaged too


def _held_ids(table: str, file: str, good: dict[str, list[str]], lost: pa.Table, bad: list[str]):
    """(video ids, where they come from) of the damaged part ``file`` of ``table``; ``bad`` are all
    the damaged parts."""
    if "video_id" not in SCHEMAS[table].names:
        return (), ""
    ids = _readable(file, "video_id")
    if ids is not None:
        return tuple(sorted(set(ids.drop_null().to_pylist()))), "file"
    if table == "frames":
        return tuple(sorted(set(lost["video_id"].to_pylist()))), "videos table"
    if table == "videos":
        # committed by a readable videos part, or by a damaged one whose extraction ids still decode
        others = [_readable(f, "extraction_id") for f in bad if f != file and os.path.basename(
            os.path.dirname(f)) == "videos"]
        committed = pa.chunked_array([c for c in others if c is not None]
                                     + _column(good["videos"], ["extraction_id"])["extraction_id"].chunks,
                                     pa.string())
        frames = _column(good["frames"], ["extraction_id", "video_id"])
        orphan = frames.filter(pc.invert(pc.is_in(frames["extraction_id"], value_set=committed.combine_chunks())))
        return tuple(sorted(set(orphan["video_id"].to_pylist()))), "frames table"
    return None, ""


def _twice(con: Connection) -> dict:
    """Rows of visible extractions (and results) stored more than once in the raw tables; the views
    show each once."""
    row = con.query("SELECT (SELECT count(*) - count(DISTINCT (extraction_id, frame_index)) FROM frames_all "
                    "WHERE extraction_id IN (SELECT extraction_id FROM videos)) AS frames, "
                    "(SELECT count(*) FROM results_all) - (SELECT count(*) FROM results) AS results, "
                    "(SELECT count(*) FROM predictions_all) - (SELECT count(*) FROM predictions) AS predictions"
                    ).to_pylist()[0]
    return {table: n for table, n in row.items() if n}


def _quarantine(store: Path | str, file: str) -> str:
    """Move ``file`` (``<store>/<table>/<name>``) to ``<store>/quarantine/<table>/<name>``."""
    table, name = os.path.basename(os.path.dirname(file)), os.path.basename(file)
    target, n = location.join(store, QUARANTINE_DIR, table, name), 0
    while location.exists(target):  # a file of that name quarantined before: keep both
        n += 1
        target = location.join(store, QUARANTINE_DIR, table, f"{name}.{n}")
    location.move(file, target)
    return str(target)


def _check_store_folder(path) -> None:
    """Raise a StoreError when the store folder ``path`` does not exist or is a file."""
    found_kind = location.kind(path)
    if found_kind == "file":
        raise StoreError(f"the store {str(path)!r} is a file, not a folder; give a store folder")
    if found_kind is None:
        raise StoreError(f"the store {str(path)!r} does not exist; give the folder of a store")


def _find_temp_files(path, report: VerifyReport, repair: bool) -> None:
    """Note the temporary part files of interrupted writes in ``report``; with ``repair``, delete them."""
    report.temp_files = temp_files(path)
    if repair:  # nothing else writes the store (see verify): every temporary file is a dead write's
        for tmp in report.temp_files:
            location.delete(tmp)
        report.temp_removed = True


def _scan_parts(listing: dict[str, list[str]], report: VerifyReport) -> list[tuple[str, str, str]]:
    """``(table, file, reason)`` of each part file of ``listing`` that cannot be read whole;
    counts the files read in ``report.checked``."""
    found = []
    for table, files in listing.items():
        for f in files:
            try:
                why = part_damage(f)
            except FileNotFoundError:
                continue  # removed by compact() since the listing
            report.checked += 1
            if why is not None:
                found.append((table, f, why))
    return found


def _damaged_parts(found: list, bad: set, good: dict[str, list[str]], lost: pa.Table) -> list[DamagedPart]:
    """The damaged parts ``found`` (their files: ``bad``), each with the videos it held (from the file
    or the readable ``good`` parts)."""
    return [DamagedPart(table, f, why, *_held_ids(table, f, good, lost, sorted(bad)))
            for table, f, why in found]


def _drop_lost_videos_rows(path, videos_parts: list[str], lost: pa.Table, report: VerifyReport) -> None:
    """Write each readable ``videos`` part holding rows of the ``lost`` extractions again without them,
    and quarantine the old part."""
    lost_ids = lost["extraction_id"].combine_chunks()
    for f in videos_parts:
        rows = pq.read_table(location.source(f))
        gone = pc.is_in(rows["extraction_id"], value_set=lost_ids)
        if not pc.any(gone).as_py():
            continue
        new = write_part(path, "videos", rows.filter(pc.invert(gone)), rows.schema)
        if new is not None:
            report.rewritten.append(str(new))
        report.quarantined.append(_quarantine(path, f))


def _repair(con: Connection, found: list, good: dict[str, list[str]], lost: pa.Table,
            report: VerifyReport) -> None:
    """Rewrite the ``videos`` parts without the rows of lost extractions, then quarantine the damaged
    parts (in that order: an interrupted repair is finished by the next one)."""
    path = con.path
    _drop_lost_videos_rows(path, good["videos"], lost, report)
    report.quarantined += [_quarantine(path, f) for _, f, _ in found]
    con.forget_listing()


def verify(con: Connection, repair: bool = False) -> VerifyReport:
    """Read every part file of the store whole; with ``repair=True``, quarantine the damaged ones.

    Run the repair when nothing else writes the store (as ``compact``): a part written
    during it is not checked.

    Parameters
    ----------
    con : Connection
        The store's connections.
    repair : bool, default=False
        Move the damaged part files into ``<store>/quarantine/<table>/`` (and write the
        ``videos`` rows of extractions whose frames were lost out of their part files), so
        that their videos count as not extracted.

    Returns
    -------
    VerifyReport
        The damaged parts with their videos, what was quarantined; ``ok`` when none was found.

    Raises
    ------
    StoreError
        The store folder does not exist, or is a file.

    Examples
    --------
    A store of two videos whose ``videos`` part file is cut in half:

    >>> import glob, os
    >>> from amnetvid_sk.store import FeatureStore
    >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store
    >>> ids = write_synthetic_store("store_verify", *make_moving_peak_dataset(2))  # 2 videos, 4 frames
    >>> fs = FeatureStore("store_verify")
    >>> fs.verify().ok
    True
    >>> part = glob.glob("store_verify/videos/part-*.parquet")[0]
    >>> os.truncate(part, os.path.getsize(part) // 2)
    >>> report = fs.verify()
    >>> report.ok, [(p.table, p.video_ids, p.ids_from) for p in report.damaged]
    (False, [('videos', ('syn0000', 'syn0001'), 'frames table')])
    >>> report = fs.verify(repair=True)
    >>> [os.path.relpath(p, "store_verify").split(os.sep)[:2] for p in report.quarantined]
    [['quarantine', 'videos']]
    >>> fs.verify().ok, fs.video_ids()
    (True, array([], dtype=object))
    """
    path = con.path
    _check_store_folder(path)
    if not isinstance(repair, bool):
        raise ValueError(f"The 'repair' parameter of FeatureStore.verify must be a bool. Got {repair!r} instead.")
    report = VerifyReport(store=str(path))
    _find_temp_files(path, report, repair)
    listing = list_parts(path)
    found = _scan_parts(listing, report)
    bad = {f for _, f, _ in found}
    good = {table: [f for f in files if f not in bad] for table, files in listing.items()}
    lost = _lost_extractions(good)
    report.damaged = _damaged_parts(found, bad, good, lost)
    if not found:
        report.twice = _twice(con)
        return report
    report.lost_videos = tuple(sorted(set(lost["video_id"].to_pylist()))) if lost.num_rows else ()
    if repair:
        _repair(con, found, good, lost, report)
    return report
