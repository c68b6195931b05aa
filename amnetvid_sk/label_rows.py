"""The rows of a label file, format by format: its header mapped to columns, each row's fields checked.

:mod:`amnetvid_sk.labels` describes the formats and reads a file through :func:`label_rows` and
:func:`checked_columns`; every bad line goes to :class:`Problems`, reported together at the end.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

from .errors import LabelFormatError
from .label_text import file_error, line_of, shown
from .video_ids import video_id_from_name

__all__ = ["COLUMNS", "FORMATS", "MEDIAEVAL_HEADER", "MEDIAEVAL_RUN_HEADER", "Problems", "checked_columns",
           "is_json_list", "label_rows"]

FORMATS = ("mediaeval", "memento10k", "csv")

#: the columns read from a label file, in the order of ``LABELS_SCHEMA`` (without ``source``)
COLUMNS = ("video_id", "short_term", "n_short", "long_term", "n_long")

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


class Problems:
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


def _resolve_columns(header: list[str], fmt: str, problems: Problems, line: int = 1) -> dict[str, int] | None:
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


def _rows_from_csv(path: Path, text: str, fmt: str, problems: Problems):
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


def _rows_from_json(path: Path, text: str, fmt: str, problems: Problems):
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


def is_json_list(path: Path, fmt: str) -> bool:
    """Whether ``path`` is read as a JSON list (Memento10k's original release) rather than as CSV."""
    return fmt == "memento10k" and path.suffix.lower() == ".json"


def label_rows(path: Path, text: str, fmt: str, problems: Problems):
    """Yield (line or entry number, {column: text}, {column: its name in the file}) of each data row of
    ``text``: a Memento10k JSON list for a ``.json`` file of that format, else CSV."""
    if is_json_list(path, fmt):
        return _rows_from_json(path, text, fmt, problems)
    return _rows_from_csv(path, text, fmt, problems)


def checked_columns(rows, fmt: str, problems: Problems) -> dict[str, list]:
    """The values of :data:`COLUMNS` of the good ``rows`` (ids made from file names, scores and
    counts parsed); each bad row is recorded in ``problems`` with all its faults."""
    out: dict[str, list] = {name: [] for name in COLUMNS}
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
        run_file = fmt == "mediaeval" and "n_short" not in names
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
    return out
