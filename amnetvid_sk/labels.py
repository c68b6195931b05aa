"""Memorability label files: read, validate, import into the feature store.

Three formats are read into one Arrow table (:data:`LABELS_SCHEMA`):

``mediaeval``
    MediaEval 2018/2019 Predicting Media Memorability (VideoMem),
    ``ground-truth_dev-set.csv``, whose header must be exactly::

        video,short-term_memorability,nb_short-term_annotations,long-term_memorability,nb_long-term_annotations

    with rows such as ``video10.webm,0.950,34,0.900,10``. A run file of predictions
    (``amnetvid predict --format mediaeval``) has the same names without the
    annotation counts, :data:`MEDIAEVAL_RUN_HEADER`::

        video,short-term_memorability,long-term_memorability

    and is read with the same format; one of its two scores may be empty (a run of
    one target), not both.
``memento10k``
    Memento10k ground truth. Either the CSV score files of the MediaEval 2021
    release (``train_scores.csv``, ``dev_scores.csv``: columns ``video_id``,
    ``scores_raw_short_term``, ``scores_normalized_short_term``,
    ``annotations_short_term``, ``decay_alpha``, and for some files
    ``scores_raw_long_term``, ``annotations_long_term``), or the JSON lists of the
    original release (``memento_train_data.json``: entries with ``filename`` and
    ``mem_score``). See :func:`read_labels` for which column gives which value.
``csv``
    A plain CSV: ``video_id,short_term`` and optionally ``long_term``, ``n_short``,
    ``n_long``, in any order.

A video id is the file name without its video extension (``video10.webm`` ->
``video10``), the same key the store gives a video file.

Encodings, as spreadsheets export them, are read as they are: UTF-8 with or without a byte
order mark (Excel's "CSV UTF-8"), UTF-16 or UTF-32 with one (Excel's "Unicode Text",
LibreOffice), and Windows-1252 (Excel's plain "CSV" on Western Windows; Latin-1 plus a few
signs) for a file that is not UTF-8 and holds no UTF-8 sequence. Refused, naming the line:
bytes none of these decodes, a UTF-8 file with damaged bytes (as Windows-1252 it would give
other ids without a word), a NUL (binary data, or UTF-16 without its mark), a control
character in a video id. LF or CRLF line ends, quoted fields and blank lines (rows of empty
fields, ``,,,,``, too) are accepted.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from .errors import LabelFormatError
from .label_text import decode_text, file_error, line_of, shown
from .video_ids import video_id_from_name

__all__ = ["FORMATS", "LABELS_SCHEMA", "MEDIAEVAL_HEADER", "MEDIAEVAL_RUN_HEADER", "LabelImport", "read_labels",
           "import_labels"]

FORMATS = ("mediaeval", "memento10k", "csv")

#: The table :func:`read_labels` returns and ``FeatureStore.write_labels`` takes.
#: ``video_id`` and ``source`` are never null; ``short_term`` only in a row of a MediaEval run
#: file of long-term predictions; the others may be.
LABELS_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string()),
        pa.field("short_term", pa.float64()),
        pa.field("n_short", pa.int64()),
        pa.field("long_term", pa.float64()),
        pa.field("n_long", pa.int64()),
        pa.field("source", pa.string()),
    ]
)

MEDIAEVAL_HEADER = (
    "video",
    "short-term_memorability",
    "nb_short-term_annotations",
    "long-term_memorability",
    "nb_long-term_annotations",
)

#: The header of a MediaEval run file (predictions): the ground truth's names without the counts,
#: which a prediction does not have.
MEDIAEVAL_RUN_HEADER = ("video", "short-term_memorability", "long-term_memorability")

# Memento10k: for each output column, the accepted header names, first present wins.
# The normalised short-term score comes first: it is Memento10k's own memorability
# target (the original release's ``mem_score``, corrected for the recall lag).
_MEMENTO_COLUMNS = {
    "video_id": ("video_id", "filename", "video"),
    "short_term": ("scores_normalized_short_term", "mem_score", "scores_raw_short_term", "short_term"),
    "n_short": ("annotations_short_term", "nb_short-term_annotations", "n_short"),
    "long_term": ("scores_raw_long_term", "long_term"),
    "n_long": ("annotations_long_term", "nb_long-term_annotations", "n_long"),
}
_CSV_COLUMNS = ("video_id", "short_term", "long_term", "n_short", "n_long")
_REQUIRED = ("video_id", "short_term")

_MAX_LISTED = 20
_INT64_MAX = 2**63 - 1

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class _Problems:
    """Bad lines found so far, reported together at the end."""

    def __init__(self, path: Path, fmt: str, unit: str = "line"):
        self.path, self.fmt, self.unit = path, fmt, unit
        self.items: list[tuple[int, str]] = []

    def add(self, where: int, message: str) -> None:
        self.items.append((where, message))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        n_lines = len({where for where, _ in self.items})
        plural = "s" if n_lines != 1 else ""
        lines = [f"label file '{self.path}' (format {self.fmt!r}) has {n_lines} bad {self.unit}{plural}:"]
        lines += [f"  {self.unit} {where}: {message}" for where, message in self.items[:_MAX_LISTED]]
        if len(self.items) > _MAX_LISTED:
            lines.append(f"  ... and {len(self.items) - _MAX_LISTED} more problems not listed")
        err = LabelFormatError("\n".join(lines))
        err.path = str(self.path)
        err.problems = list(self.items)
        raise err


def _parse_score(text: str, column: str, required: bool):
    """(value, problem): a float in [0, 1], None for an allowed empty field."""
    text = text.strip()
    if not text:
        return None, (f"{column} is empty" if required else None)
    try:
        value = float(text)
    except ValueError:
        return None, f"{column} {shown(text)!r} is not a number"
    if not math.isfinite(value):
        return None, f"{column} {shown(text)!r} is not a finite number"
    if not 0.0 <= value <= 1.0:
        return None, f"{column} {shown(text)!r} is outside [0, 1]"
    return value, None


def _parse_count(text: str, column: str):
    """(value, problem): a non-negative int (``34`` or ``34.0``), None when empty."""
    text = text.strip()
    if not text:
        return None, None
    try:
        value = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            return None, f"{column} {shown(text)!r} is not a number"
        if not (math.isfinite(number) and number.is_integer()):
            return None, f"{column} {shown(text)!r} is not a whole number"
        value = int(number)
    if value < 0:
        return None, f"{column} {shown(text)!r} is negative"
    if value > _INT64_MAX:
        return None, f"{column} {shown(text)!r} is too large"
    return value, None


def _resolve_columns(header: list[str], fmt: str, problems: _Problems, line: int = 1) -> dict[str, int] | None:
    """Map output column -> field index from the header, or record why not."""
    names = [h.strip() for h in header]
    if fmt == "mediaeval":
        if tuple(names) == MEDIAEVAL_RUN_HEADER:
            return {"video_id": 0, "short_term": 1, "long_term": 2}
        if tuple(names) != MEDIAEVAL_HEADER:
            problems.add(
                line, f"header must be exactly {','.join(MEDIAEVAL_HEADER)!r} (ground truth), or "
                f"{','.join(MEDIAEVAL_RUN_HEADER)!r} (a run file); got {shown(','.join(names))!r}"
            )
            return None
        return {"video_id": 0, "short_term": 1, "n_short": 2, "long_term": 3, "n_long": 4}
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.add(line, f"header repeats column(s) {[shown(d) for d in dupes]}")
        return None
    if fmt == "csv":
        unknown = [shown(n) for n in names if n not in _CSV_COLUMNS]
        missing = [c for c in _REQUIRED if c not in names]
        if unknown or missing:
            parts = []
            if missing:
                parts.append(f"missing column(s) {missing}")
            if unknown:
                parts.append(f"unknown column(s) {unknown}")
            problems.add(
                line, f"{' and '.join(parts)}; the header must hold video_id, short_term and optionally "
                f"{', '.join(_CSV_COLUMNS[2:])}; got {shown(','.join(names))!r}"
            )
            return None
        return {name: names.index(name) for name in names}
    # memento10k
    found: dict[str, int] = {}
    for column, candidates in _MEMENTO_COLUMNS.items():
        for candidate in candidates:
            if candidate in names:
                found[column] = names.index(candidate)
                break
    missing = [c for c in _REQUIRED if c not in found]
    if missing:
        wanted = "; ".join(f"{c}: one of {list(_MEMENTO_COLUMNS[c])}" for c in missing)
        problems.add(line, f"missing column(s) for {wanted}; got {shown(','.join(names))!r}")
        return None
    return found


def _rows_from_csv(path: Path, text: str, fmt: str, problems: _Problems):
    """Yield (line number, {column: text}, header names) for each data row."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header, first = None, 1
        for fields in reader:
            if any(f.strip() for f in fields):
                header = fields
                break
            first = reader.line_num + 1
        if header is None:
            raise file_error(path, fmt, 1, "no header: the file is empty or blank")
        columns = _resolve_columns(header, fmt, problems, line=first)
        if columns is None:
            return
        names = {column: header[i].strip() for column, i in columns.items()}
        n_fields, last = len(header), reader.line_num
        for fields in reader:
            line, last = last + 1, reader.line_num  # a quoted field may span lines: its record starts here
            if not any(f.strip() for f in fields):
                continue  # a blank line, or ",,,," (a spreadsheet's row once formatted, left empty)
            if len(fields) != n_fields:
                spans = (f" (this record runs from line {line} to line {last}: a quote left open?)"
                         if last > line else "")
                problems.add(line, f"expected {n_fields} fields as in the header, got {len(fields)}{spans}")
                continue
            yield line, {column: fields[i] for column, i in columns.items()}, names
    except csv.Error as exc:
        problems.add(reader.line_num, f"not valid CSV: {exc}")


def _rows_from_json(path: Path, text: str, fmt: str, problems: _Problems):
    """Yield (entry number, {column: text}, names) from a Memento10k JSON list."""
    if not text.strip():
        raise file_error(path, fmt, 1, "no JSON list: the file is empty or blank")
    top = line_of(text, len(text) - len(text.lstrip()))  # where the JSON value starts
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise file_error(path, fmt, exc.lineno, f"not valid JSON: {exc.msg} (column {exc.colno})") from exc
    except (ValueError, RecursionError) as exc:  # an integer of over 4300 digits; lists nested too deeply
        raise file_error(path, fmt, top, f"not valid JSON: {shown(str(exc))}") from exc
    if not isinstance(data, list):
        raise file_error(path, fmt, top, f"expected a JSON list of entries, got {type(data).__name__}")
    for number, entry in enumerate(data, start=1):
        if not isinstance(entry, dict):
            problems.add(number, f"expected an object, got {type(entry).__name__}")
            continue
        row, names = {}, {}
        for column, candidates in _MEMENTO_COLUMNS.items():
            key = next((k for k in candidates if k in entry), None)
            if key is None:
                continue
            value = entry[key]
            row[column] = "" if value is None else str(value)
            names[column] = key
        missing = [c for c in _REQUIRED if c not in row]
        if missing:
            wanted = "; ".join(f"{c}: one of {list(_MEMENTO_COLUMNS[c])}" for c in missing)
            problems.add(number, f"missing key(s) for {wanted}")
            continue
        yield number, row, names


def read_labels(path, format: str = "mediaeval") -> pa.Table:
    """Read and validate a memorability label file.

    Every row is checked before anything is returned; all bad lines are reported
    together, so one run shows every problem of a file.

    Parameters
    ----------
    path : str or os.PathLike
        The label file.
    format : {'mediaeval', 'memento10k', 'csv'}, default='mediaeval'
        ``'mediaeval'``: MediaEval 2018/2019 ``ground-truth_dev-set.csv`` (exact
        header, see the module docstring), or a run file of predictions with the
        header :data:`MEDIAEVAL_RUN_HEADER`, where either score may be empty (not
        both; an empty ``short_term`` is null). ``'memento10k'``: a Memento10k score
        CSV or JSON list; ``short_term`` is taken from the first column present among
        ``scores_normalized_short_term``, ``mem_score``, ``scores_raw_short_term``,
        ``short_term``; ``n_short`` from ``annotations_short_term``; ``long_term`` /
        ``n_long`` from ``scores_raw_long_term`` / ``annotations_long_term`` when
        present (most Memento10k videos have none: null); the id from ``video_id``,
        ``filename`` or ``video``; other columns are ignored. ``'csv'``: header
        ``video_id,short_term`` plus any of ``long_term``, ``n_short``, ``n_long``.

    Returns
    -------
    labels : pyarrow.Table
        :data:`LABELS_SCHEMA`: ``video_id`` (string), ``short_term`` (float64),
        ``n_short`` (int64, nullable), ``long_term`` (float64, nullable),
        ``n_long`` (int64, nullable), ``source`` (``"<format>:<file name>"``), one
        row per video in file order.

    Raises
    ------
    LabelFormatError
        If the file is missing, unreadable or empty, its text is in no encoding read (see
        the module docstring), its header is wrong, or any row is bad (a field that is not
        a number, a score outside [0, 1], a negative or fractional count, a duplicate or
        empty video id, one with a control character, a wrong number of fields). The
        message lists each bad line (1-based, the header is line 1; for a JSON list,
        the 1-based entry) with its problem, up to 20, then how many more;
        ``err.problems`` holds all of them as ``(line, message)``.
    ValueError
        If ``format`` is not one of the allowed values.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "ground-truth_dev-set.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("video,short-term_memorability,nb_short-term_annotations,"
    ...                 "long-term_memorability,nb_long-term_annotations\\n"
    ...                 "video10.webm,0.950,34,0.900,10\\n")
    >>> table = read_labels(path, format="mediaeval")
    >>> table.column("video_id").to_pylist(), table.column("short_term").to_pylist()
    (['video10'], [0.95])

    A run file of long-term predictions (``amnetvid predict --long-model ... --format mediaeval``):

    >>> with open(path, "w") as f:
    ...     _ = f.write("video,short-term_memorability,long-term_memorability\\n"
    ...                 "video10.webm,,0.81\\n")
    >>> read_labels(path).select(["video_id", "short_term", "long_term"]).to_pylist()
    [{'video_id': 'video10', 'short_term': None, 'long_term': 0.81}]
    """
    if format not in FORMATS:  # scikit-learn's wording, without importing it (the CLI starts quickly)
        raise ValueError(f"The 'format' parameter of read_labels must be a str among {set(FORMATS)}. Got {format!r} instead.")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"The 'path' parameter of read_labels must be a str or os.PathLike. Got {path!r} instead.")
    path = Path(path)
    if not path.exists():
        raise LabelFormatError(f"label file '{path}' does not exist")
    if not path.is_file():
        raise LabelFormatError(f"label file '{path}' is not a file")

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LabelFormatError(f"cannot open label file '{path}': {exc.strerror or exc}") from exc
    text = decode_text(path, data, format)
    is_json = format == "memento10k" and path.suffix.lower() == ".json"
    problems = _Problems(path, format, unit="entry" if is_json else "line")
    reader = _rows_from_json if is_json else _rows_from_csv
    rows = reader(path, text, format, problems)

    out = {name: [] for name in LABELS_SCHEMA.names if name != "source"}
    first_seen: dict[str, int] = {}
    for where, row, names in rows:
        bad = []
        raw_id = row["video_id"].strip()
        video_id = video_id_from_name(raw_id) if raw_id else ""
        if not video_id:
            bad.append(f"{names['video_id']} is empty")
        elif _CONTROL.search(raw_id):
            bad.append(f"{names['video_id']} {shown(raw_id)!r} holds a control character")
        elif video_id in first_seen:
            bad.append(f"duplicate video id {shown(video_id)!r} (first on {problems.unit} {first_seen[video_id]})")
        else:
            first_seen[video_id] = where
        # a run file of one target leaves the other empty; a ground-truth row always has short-term
        run_file = format == "mediaeval" and "n_short" not in names
        short, p1 = _parse_score(row["short_term"], names["short_term"], required=not run_file)
        long, p2 = _parse_score(row.get("long_term", ""), names.get("long_term", "long_term"), required=False)
        if run_file and short is None and long is None and not (p1 or p2):
            p1 = f"{names['short_term']} and {names['long_term']} are both empty"
        n_short, p3 = _parse_count(row.get("n_short", ""), names.get("n_short", "n_short"))
        n_long, p4 = _parse_count(row.get("n_long", ""), names.get("n_long", "n_long"))
        bad += [p for p in (p1, p2, p3, p4) if p]
        if bad:
            problems.add(where, "; ".join(bad))
            continue
        out["video_id"].append(video_id)
        out["short_term"].append(short)
        out["n_short"].append(n_short)
        out["long_term"].append(long)
        out["n_long"].append(n_long)
    problems.raise_if_any()
    if not out["video_id"]:
        raise file_error(path, format, line_of(text.rstrip()), "no label rows (the file ends here)")
    n = len(out["video_id"])
    out["source"] = [f"{format}:{path.name}"] * n
    return pa.Table.from_pydict(out, schema=LABELS_SCHEMA)


@dataclass(frozen=True)
class LabelImport:
    """What :func:`import_labels` did (with ``return_report=True``).

    Attributes
    ----------
    n_rows : int
        Label rows written.
    replaced : int
        Of those, videos that had a label in the store already: the new one replaces it.
    not_in_store : list of str
        Ids, in file order, of videos the store does not hold (neither extracted nor failed):
        fine for videos extracted later; otherwise the ids differ from the video file names.
    """

    n_rows: int
    replaced: int
    not_in_store: list


def import_labels(path, store, format: str = "mediaeval", *, return_report: bool = False):
    """Read, validate and write a label file into a feature store.

    The whole file is validated first; if any line is bad nothing is written. A video
    labelled before gets the new label (the store keeps the latest import of each video).

    Parameters
    ----------
    path : str or os.PathLike
        The label file.
    store : str, os.PathLike or FeatureStore
        The feature store folder (or an open store).
    format : {'mediaeval', 'memento10k', 'csv'}, default='mediaeval'
        See :func:`read_labels`.
    return_report : bool, default=False
        Return a :class:`LabelImport`: also the labels replaced and the ids the store has no video for.

    Returns
    -------
    n_rows : int or LabelImport
        Number of label rows written; a :class:`LabelImport` with ``return_report=True``.

    Raises
    ------
    LabelFormatError
        As :func:`read_labels`; the store is left unchanged.
    StoreFullError
        The store's disk filled up: none of this file's rows was written; free space and import it again.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "labels.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("video_id,short_term\\nvideo10,0.95\\nvideo11,0.80\\n")
    >>> store = os.path.join(tempfile.mkdtemp(), "store")
    >>> import_labels(path, store, format="csv")
    2
    >>> import_labels(path, store, format="csv", return_report=True)  # again: both replaced, no videos yet
    LabelImport(n_rows=2, replaced=2, not_in_store=['video10', 'video11'])
    """
    table = read_labels(path, format=format)
    # Imported here: the store pulls in DuckDB, which reading labels does not need.
    from .store import FeatureStore

    if isinstance(store, FeatureStore):
        report = _write_labels(store, table)
    else:
        with FeatureStore(store, create=True) as opened:  # opened (or started) here, so closed here
            report = _write_labels(opened, table)
    return report if return_report else report.n_rows


def _write_labels(fs, table: pa.Table) -> LabelImport:
    """Write ``table`` into the open store ``fs``, having counted the labels it replaces and the ids
    the store holds no video for."""
    ids = {"ids": table.column("video_id").to_pylist()}
    replaced = fs.sql("SELECT count(*) AS n FROM labels "
                      "SEMI JOIN (SELECT unnest($ids::VARCHAR[]) AS video_id) AS mine USING (video_id)", ids)
    known = fs.sql("SELECT video_id FROM (SELECT video_id FROM videos UNION SELECT video_id FROM failures) "
                   "SEMI JOIN (SELECT unnest($ids::VARCHAR[]) AS video_id) AS mine USING (video_id)", ids)
    fs.write_labels(table)
    known = set(known.column("video_id").to_pylist())
    return LabelImport(table.num_rows, replaced.column("n")[0].as_py(), [i for i in ids["ids"] if i not in known])
