"""Rows that commands print or write: a tab-separated table, CSV or a JSON list, to stdout or to
a file that appears only when it is complete.

One writer for ``score`` and ``predict`` (and for any command that prints rows of results), so
that every command writes the same formats in the same way:

``table``
    tab-separated, a header line first; floats with 4 decimals, an empty cell for no value. What
    ``score`` and ``predict`` always printed.
``csv``
    comma-separated with a header line; floats at full precision (they read back exactly), an
    empty field for no value.
``json``
    one JSON document: a list of objects, one per row, keyed by the column names; ``null`` for no
    value.

A note for people about a row (``short clip: ...``) goes to stderr in every format, so that each
cell of the output holds its column's value and nothing else.

With ``--out FILE`` the rows go to a temporary file next to FILE (``.FILE.<pid>.tmp``), which
is renamed to FILE once the last row is written: a reader never sees half a file, and a run
stopped half-way (Ctrl-C, an error) leaves an older FILE as it was. Nothing here imports torch
or scikit-learn.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from pathlib import Path

from ..errors import ParameterError, allowed_values

__all__ = ["ROW_FORMATS", "RowWriter", "check_out_file"]

#: the formats every row-printing command offers
ROW_FORMATS = ("table", "csv", "json")


def check_out_file(parser, path) -> None:
    """Refuse an ``--out`` FILE whose folder does not exist or that is a folder, with one line
    (exit 2); checked before any work, so that a long run does not end without a place to write.

    Examples
    --------
    >>> check_out_file(None, None)       # no --out: stdout
    >>> check_out_file(None, "run.csv")  # a file in an existing folder (here: the current one)
    """
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        parser.error(f"argument --out: {str(path)!r} is a folder; give a file name")
    folder = target.resolve().parent
    if not folder.is_dir():
        parser.error(f"argument --out: the folder {str(folder)!r} does not exist")


def _plain(value):
    """A cell as a Python value: numpy scalars unwrapped, NaN as no value."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


class RowWriter:
    """Write rows as ``table``, ``csv`` or ``json`` to stdout, or atomically to a file.

    Use it as a context manager: the header is written on entry; on a clean exit the JSON list
    is closed and a file is renamed into place; on an exception the temporary file is removed.

    Parameters
    ----------
    columns : sequence of str
        Column names, in order; each row is a dict with these keys (a missing key is no value).
    fmt : {"table", "csv", "json"}, default="table"
    out : str or Path, default=None
        None: stdout. A file: written under a temporary name in its folder, renamed at the end.
    digits : int, default=4
        Decimals of floats in the ``table`` format.

    Examples
    --------
    >>> with RowWriter(["video_id", "score"], "csv") as rows:
    ...     rows.write({"video_id": "clip0", "score": 0.25})
    ...     rows.write({"video_id": "photo"})
    video_id,score
    clip0,0.25
    photo,
    >>> with RowWriter(["video_id", "score"], "json") as rows:
    ...     rows.write({"video_id": "clip0", "score": 0.25})
    [
      {"video_id": "clip0", "score": 0.25}
    ]
    >>> with RowWriter(["video_id", "score"], "table", out="scores.tsv") as rows:
    ...     rows.write({"video_id": "clip0", "score": 0.25}, note="short clip")  # the note: on stderr
    >>> open("scores.tsv").read().splitlines()
    ['video_id\\tscore', 'clip0\\t0.2500']
    """

    def __init__(self, columns, fmt: str = "table", out=None, digits: int = 4):
        if fmt not in ROW_FORMATS:
            raise ParameterError(f"The 'fmt' parameter of RowWriter must be a str among "
                                 f"{allowed_values(ROW_FORMATS)}. Got {fmt!r} instead.")
        self.columns = list(columns)
        self.fmt = fmt
        self.out = None if out is None else Path(out)
        self.digits = digits
        self._file = None
        self._temp = None
        self._csv = None
        self._rows = 0

    # ------------------------------------------------------------ context
    def __enter__(self) -> RowWriter:
        if self.out is None:
            self._file = sys.stdout
        else:
            self._temp = self.out.with_name(f".{self.out.name}.{os.getpid()}.tmp")
            # "x": never write over a file another run is writing; newline="": csv writes its own
            self._file = open(self._temp, "x", encoding="utf-8", newline="")
        if self.fmt == "csv":
            self._csv = csv.writer(self._file, lineterminator="\n")
            self._csv.writerow(self.columns)
        elif self.fmt == "table":
            self._file.write("\t".join(self.columns) + "\n")
        else:
            self._file.write("[")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.out is None:
            if exc_type is None:
                self._close_json()
            self._file.flush()
            return
        try:
            if exc_type is None:
                self._close_json()
                self._file.flush()
                os.fsync(self._file.fileno())  # the data is on disk before the name points at it
            self._file.close()
            if exc_type is None:
                os.replace(self._temp, self.out)
        finally:
            if self._temp.exists():
                self._temp.unlink()

    def _close_json(self) -> None:
        if self.fmt == "json":
            self._file.write("\n]\n" if self._rows else "]\n")

    # ------------------------------------------------------------ rows
    def write(self, row: dict, note: str = "") -> None:
        """Write one row; a ``note`` about it goes to stderr (``note: <first cell>: <note>``), in every format."""
        values = [_plain(row.get(c)) for c in self.columns]
        if self.fmt == "table":
            self._file.write("\t".join(self._cell(v) for v in values) + "\n")
        elif self.fmt == "csv":
            self._csv.writerow(["" if v is None else v for v in values])
        else:
            self._file.write(("," if self._rows else "") + "\n  " + json.dumps(dict(zip(self.columns, values))))
        if note:
            print(f"note: {values[0]}: {note}", file=sys.stderr)
        self._rows += 1

    def _cell(self, value) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.{self.digits}f}"
        return str(value)
