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

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from .errors import LabelFormatError, ParameterError, allowed_values
from .label_rows import (FORMATS, MEDIAEVAL_HEADER, MEDIAEVAL_RUN_HEADER, Problems, checked_columns, is_json_list,
                         label_rows)
from .label_text import decode_text, file_error, line_of

__all__ = ["FORMATS", "LABELS_SCHEMA", "MEDIAEVAL_HEADER", "MEDIAEVAL_RUN_HEADER", "LabelImport", "read_labels",
           "import_labels"]

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
        raise ParameterError(f"The 'format' parameter of read_labels must be a str among {allowed_values(FORMATS)}. "
                             f"Got {format!r} instead.")
    if not isinstance(path, (str, os.PathLike)):
        raise ParameterError(f"The 'path' parameter of read_labels must be a str or os.PathLike. Got {path!r} instead.")
    path = Path(path)
    if not path.exists():
        raise LabelFormatError(f"label file '{path}' does not exist")
    if not path.is_file():
        raise LabelFormatError(f"label file '{path}' is not a file")

    text = _read_text(path, format)
    problems = Problems(path, format, unit="entry" if is_json_list(path, format) else "line")
    out = checked_columns(label_rows(path, text, format, problems), format, problems)
    problems.raise_if_any()
    if not out["video_id"]:
        raise file_error(path, format, line_of(text.rstrip()), "no label rows (the file ends here)")
    out["source"] = [f"{format}:{path.name}"] * len(out["video_id"])
    return pa.Table.from_pydict(out, schema=LABELS_SCHEMA)


def _read_text(path: Path, format: str) -> str:
    """The text of the label file ``path``, decoded (see the module docstring for the encodings)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LabelFormatError(f"cannot open label file '{path}': {exc.strerror or exc}") from exc
    return decode_text(path, data, format)


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
