"""The text of a label file: the encodings read, line numbers, and errors that name the line.

:func:`decode_text` reads what spreadsheets export (see :mod:`amnetvid_sk.labels` for the list);
:mod:`amnetvid_sk.label_rows` parses the text it returns.

Examples
--------
>>> decode_text(Path("labels.csv"), "video_id,short_term\\r\\nv1,0.5\\r\\n".encode("utf-16"), "csv").splitlines()
['video_id,short_term', 'v1,0.5']
>>> line_of("a\\nb\\nc", 4)
3
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from .errors import LabelFormatError

__all__ = ["decode_text", "file_error", "line_of", "shown"]

SHOWN = 80  # characters of a file's text quoted in a message (a "header" of random bytes is long)

# UTF-32 before UTF-16: the UTF-32 LE mark starts with the UTF-16 LE one.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # what the csv module ends a line at
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


def shown(text: str) -> str:
    """``text`` as a message quotes it: cut after :data:`SHOWN` characters."""
    return text if len(text) <= SHOWN else text[:SHOWN] + "..."


def line_of(text: str, index: int | None = None) -> int:
    """The 1-based line of ``text[index]`` (of the end of ``text`` by default)."""
    return len(_LINE_BREAK.findall(text, 0, len(text) if index is None else index)) + 1


def file_error(path: Path, fmt: str, line: int, message: str) -> LabelFormatError:
    """The error for a problem of the whole file, found at ``line``."""
    err = LabelFormatError(f"label file '{path}' (format {fmt!r}), line {line}: {message}")
    err.path, err.problems = str(path), [(line, message)]
    return err


def decode_text(path: Path, data: bytes, fmt: str) -> str:
    """The text of a label file (see the module docstring for the encodings read)."""
    bom = next((enc for mark, enc in _BOMS if data.startswith(mark)), None)
    try:
        text = data.decode(bom or "utf-8")
    except UnicodeDecodeError as exc:
        line = line_of(data[:exc.start].decode(bom or "latin-1", errors="replace"))
        bad = data[exc.start:exc.end][:4].hex(" ")
        if bom:
            raise file_error(path, fmt, line, f"bytes {bad} are not {bom.upper().removesuffix('-SIG')} "
                             "although the file starts with its byte order mark: a damaged file?") from exc
        if _UTF8_SEQUENCE.search(data):
            raise file_error(path, fmt, line, f"bytes {bad} are not UTF-8, while other lines are UTF-8: a "
                             "damaged file? Save it again as UTF-8") from exc
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError as exc2:
            line = line_of(data[:exc2.start].decode("latin-1"))
            raise file_error(path, fmt, line, f"byte {data[exc2.start]:02x} is neither UTF-8 nor Windows-1252 "
                             "(Latin-1): not a text file? Save it as UTF-8") from exc2
    nul = text.find("\x00")
    if nul >= 0:
        raise file_error(path, fmt, line_of(text, nul), "a NUL character: binary data, or UTF-16 without its "
                         "byte order mark? Save it as UTF-8 (or UTF-16 with the mark)")
    return text
