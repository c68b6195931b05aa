"""Label files fuzzed: spreadsheet exports, other encodings, damaged and random bytes, through
``import_labels`` into a real store; and two ``amnetvid labels import`` runs at once.

Each case either imports exactly the rows meant (or, for a damaged file, rows within what the
damage can change), or is refused with a LabelFormatError naming lines, the store's files left
byte for byte as they were. Every case comes from a fixed seed.
"""

import codecs
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import AMNETVID, ROOT
from amnetvid_sk.errors import LabelFormatError
from amnetvid_sk.labels import MEDIAEVAL_HEADER, import_labels, read_labels
from amnetvid_sk.store import FeatureStore

KINDS = ("mediaeval", "memento10k-csv", "memento10k-json", "csv")
COLUMNS = ("video_id", "short_term", "n_short", "long_term", "n_long")
# ids outside ASCII, so that the encodings matter; the scores read back exactly from their text
ROWS = [("video3", 0.924, 33, 0.846, 13), ("vidéo10", 0.95, 34, 0.9, 10), ("video4", 0.923, 26, 0.667, 12),
        ("clip_ü22", 0.641, 39, 0.333, 9), ("video7", 0.5, 20, 0.25, 4), ("video8", 0.75, 21, 0.5, 6)]
MEMENTO_HEADER = ("video_id", "annotations_short_term", "scores_raw_short_term", "scores_normalized_short_term",
                  "decay_alpha", "annotations_long_term", "scores_raw_long_term")
CSV_HEADER = ("video_id", "short_term", "long_term", "n_short", "n_long")
BOM_UTF8 = "\ufeff"
LINE_NUMBER = re.compile(r"\b(line|entry) \d+")


def _cell(value) -> str:
    return "" if value is None else str(value)


def _table(kind, rows):
    """The header and the fields of each row of a CSV kind."""
    if kind == "mediaeval":
        return MEDIAEVAL_HEADER, [(f"{r[0]}.webm", *map(_cell, r[1:])) for r in rows]
    if kind == "memento10k-csv":  # the raw score differs, so a file read from the wrong column shows
        return MEMENTO_HEADER, [(r[0], _cell(r[2]), _cell(round(r[1] - 0.01, 3)), _cell(r[1]), "-0.0011",
                                 _cell(r[4]), _cell(r[3])) for r in rows]
    return CSV_HEADER, [(r[0], _cell(r[1]), _cell(r[3]), _cell(r[2]), _cell(r[4])) for r in rows]


def _quoted(field: str) -> str:
    return '"' + field.replace('"', '""') + '"'


def label_text(kind, rows=ROWS, nl="\n", quote=False, pad="", end=None):
    """The text of a label file of ``kind`` holding ``rows``."""
    if kind == "memento10k-json":
        entries = [{"filename": f"{r[0]}.webm", "mem_score": r[1], "alpha": -0.012} for r in rows]
        return json.dumps(entries, ensure_ascii=False, indent=2 if quote else None).replace("\n", nl) + nl
    header, table = _table(kind, rows)
    shown = (lambda f: _quoted(pad + f + pad)) if quote else (lambda f: pad + f + pad)
    lines = [",".join(map(shown, fields)) for fields in [header, *table]]
    return nl.join(lines) + (nl if end is None else end)


def expected(kind, rows=ROWS):
    """The label rows a file of ``kind`` holding ``rows`` imports (the JSON list has short-term only)."""
    if kind == "memento10k-json":
        return [dict(zip(COLUMNS, (r[0], r[1], None, None, None))) for r in rows]
    return [dict(zip(COLUMNS, r)) for r in rows]


def legit_cases(kind):
    """(name, bytes, rows meant): what spreadsheets and editors write; each must import exactly."""
    csv_kind = kind != "memento10k-json"
    text = label_text(kind)
    empty_row = "," * (len(_table(kind, ROWS)[0]) - 1) if csv_kind else "  "
    cases = [
        ("utf8-lf", text.encode(), ROWS),
        ("utf8-crlf", label_text(kind, nl="\r\n").encode(), ROWS),
        ("utf8-cr-only", label_text(kind, nl="\r").encode(), ROWS),
        ("excel-bom-crlf", (BOM_UTF8 + label_text(kind, nl="\r\n")).encode(), ROWS),
        ("excel-trailing-empty", (BOM_UTF8 + label_text(kind, nl="\r\n") + f"{empty_row}\r\n\r\n" * 3).encode(),
         ROWS),
        ("trailing-blank-lines", (text + "\n\n   \n").encode(), ROWS),
        ("leading-blank-lines", ("\n\r\n" + text).encode(), ROWS),
        ("no-final-newline", text.rstrip("\n").encode(), ROWS),
        ("quoted-fields", label_text(kind, quote=True, nl="\r\n").encode(), ROWS),
        ("padded-quoted-fields", label_text(kind, quote=True, pad=" ").encode(), ROWS),
        ("utf16le-bom", codecs.BOM_UTF16_LE + label_text(kind, nl="\r\n").encode("utf-16-le"), ROWS),
        ("utf16be-bom", codecs.BOM_UTF16_BE + text.encode("utf-16-be"), ROWS),
        ("utf32le-bom", codecs.BOM_UTF32_LE + text.encode("utf-32-le"), ROWS),
        ("latin1", text.encode("latin-1"), ROWS),
        ("cp1252-euro", label_text(kind, [("clip€5", *ROWS[0][1:]), *ROWS[1:]]).encode("cp1252"),
         [("clip€5", *ROWS[0][1:]), *ROWS[1:]]),
    ]
    # an id with a comma and a quote, quoted as Excel does
    odd = [("take \"2\", cut", *ROWS[0][1:]), *ROWS[1:]]
    if kind == "memento10k-csv":
        # an ignored column holding a comma, a quote and a line break: the rows keep their lines
        body = text.splitlines()
        note = [body[0] + ",note"] + [line + "," + _quoted(f'a, "b"\r\nrow {i}') for i, line in enumerate(body[1:])]
        cases.append(("quoted-multiline-extra-column", ("\r\n".join(note) + "\r\n").encode(), ROWS))
    cases.append(("quoted-comma-in-id", label_text(kind, odd, quote=True).encode(), odd))
    return [(name, data, expected(kind, rows)) for name, data, rows in cases]


def _line_at(data: bytes, offset: int) -> int:
    return data[:offset].count(b"\n") + 1


def refused_cases(kind):
    """(name, bytes, line or None): files that must be refused, at that line (entry for JSON) when given."""
    csv_kind = kind != "memento10k-json"
    text = label_text(kind)
    data = text.encode()
    row3 = data.index(b"video4")  # the third data row: line 4, entry 3
    damaged = data.replace("ü".encode(), b"\xfc")  # while "é" stays UTF-8
    cases = [
        ("utf16le-no-bom", text.encode("utf-16-le"), 1),
        ("utf16-bom-cut-mid-character", codecs.BOM_UTF16_LE + text.encode("utf-16-le")[:-1], text.count("\n")),
        ("byte-undefined-in-cp1252", data[:row3] + b"\x81" + data[row3:], _line_at(data, row3)),
        ("utf8-with-one-latin1-byte", damaged, _line_at(damaged, damaged.index(b"\xfc"))),
        ("nul-in-row", data[:row3] + b"\x00" + data[row3:], _line_at(data, row3)),
        ("empty", b"", 1),
        ("bom-only", BOM_UTF8.encode(), 1),
        ("blank-only", b"\r\n \r\n\r\n", 1),
        ("header-only", (text.splitlines()[0] + "\r\n").encode() if csv_kind else b"[]\r\n", 1),
        ("duplicate-row", (text + text.splitlines()[3] + "\n").encode() if csv_kind else
         label_text(kind, [*ROWS, ROWS[2]]).encode(), 8 if csv_kind else 7),
    ]
    if csv_kind:
        lines = text.splitlines()
        cases += [
            ("excel-unicode-text-tabs", codecs.BOM_UTF16_LE + text.replace(",", "\t").encode("utf-16-le"), 1),
            ("semicolons", text.replace(",", ";").encode("cp1252"), 1),
            ("quote-left-open", "\n".join([*lines[:3], '"' + lines[3], *lines[4:]]).encode() + b"\n", 4),
            ("control-character-in-id", text.replace("video4", '"vid\x07eo4"').encode(), 4),
            ("line-break-in-quoted-id", text.replace("video4", '"vid\neo4"').encode(), 4),
        ]
    else:
        cases += [
            ("not-a-list", b'{"filename": "video3.webm", "mem_score": 0.9}', 1),
            ("cut-mid-entry", data[:row3], 1),
            ("control-character-in-id", label_text(kind, [*ROWS[:2], ("vid\x07eo4", *ROWS[2][1:])]).encode(), 3),
            ("nested-too-deep", b"[" * 100_000, 1),
        ]
    return cases


def mutated_cases(kind, n=50, seed=0):
    """(name, bytes, check): seeded damage to good files; ``check(rows)`` tells the rows it may import."""
    rng = random.Random(f"{seed}-{kind}")
    meant = expected(kind)
    csv_kind = kind != "memento10k-json"

    def within(bound, n_rows=(len(meant), len(meant))):
        def check(rows):
            changed = [r for r in rows if r not in meant]
            return n_rows[0] <= len(rows) <= n_rows[1] and len(changed) <= bound
        return check

    def same_ids(rows):  # a damaged header may pick another score column, never other ids
        return [r["video_id"] for r in rows] == [r["video_id"] for r in meant]

    def prefix(rows):  # a cut file: the rows before the cut, the last one maybe cut short
        return len(rows) <= len(meant) and rows[:-1] == meant[:len(rows) - 1]

    def refused(rows):
        return False

    bases = [("lf", "", "\n", "utf-8"), ("excel", BOM_UTF8, "\r\n", "utf-8"), ("utf16", "\ufeff", "\r\n", "utf-16-le")]
    ops = ["flip", "flip", "flip3", "header", "cut", "insert", "delete", "swap", "duplicate", "nul", "random"]
    cases = []
    for i in range(n):
        op = ops[i % len(ops)]
        base, bom, nl, encoding = bases[rng.randrange(len(bases))]
        text = bom + label_text(kind, nl=nl)
        data = text.encode(encoding)
        start = len(bom.encode(encoding))  # the data begin after the header line (and the mark)
        head = len((text.split(nl)[0] + nl).encode(encoding)) if csv_kind else start
        pos = rng.randrange(head, len(data))
        if op in ("flip", "flip3"):
            data = bytearray(data)
            k = 3 if op == "flip3" else 1
            for p in rng.sample(range(head, len(data)), k):
                data[p] = rng.randrange(256)
            check = within(k)
        elif op == "header":
            data = bytearray(data)
            data[rng.randrange(start, max(head, start + 1))] = rng.randrange(256)
            check = same_ids if csv_kind else within(1)
        elif op == "cut":
            data, check = data[:pos], prefix
        elif op == "insert":
            data = data[:pos] + rng.randbytes(rng.randint(1, 6)) + data[pos:]
            check = within(2, (len(meant) - 1, len(meant) + 1))
        elif op == "delete":
            data, check = data[:pos] + data[pos + rng.randint(1, 8):], within(2, (len(meant) - 1, len(meant)))
        elif op == "swap":
            a, b = sorted(rng.sample(range(head, len(data) - 12), 2))
            size = min(rng.randint(1, 12), b - a)
            data = data[:a] + data[b:b + size] + data[a + size:b] + data[a:a + size] + data[b + size:]
            check = within(4, (len(meant) - 2, len(meant) + 2))
        elif op == "duplicate":  # a row copied further down: always a duplicate id
            lines = text.split(nl) if csv_kind else None
            if csv_kind:
                at = rng.randrange(2, len(lines) - 1)
                lines.insert(at, lines[rng.randrange(1, at)])
                data = nl.join(lines).encode(encoding)
            else:
                data = (bom + label_text(kind, [*ROWS, ROWS[rng.randrange(len(ROWS))]], nl=nl)).encode(encoding)
            check = refused
        elif op == "nul":
            at = rng.randrange(len(bom) + 1, len(text))
            data, check = (text[:at] + "\x00" + text[at:]).encode(encoding), refused
        else:
            data, check = rng.randbytes(rng.choice([1, 7, 64, 700, 3000])), refused
        cases.append((f"{i:02d}-{op}-{base}", bytes(data), check))
    return cases


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def store_files(store: Path) -> dict:
    """Every file under the store and its bytes."""
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


def _fmt_and_suffix(kind):
    return kind.split("-")[0], (".json" if kind.endswith("json") else ".csv")


def run_case(store: Path, path: Path, fmt: str):
    """Import one file; the rows the store gained, or the LabelFormatError (and the store unchanged)."""
    before = store_files(store)
    try:
        n = import_labels(path, store, format=fmt)
    except LabelFormatError as err:
        assert store_files(store) == before, f"{path.name}: refused, but the store changed"
        return None, err
    after = store_files(store)
    new = sorted(set(after) - set(before))
    assert {k: after[k] for k in before} == before, f"{path.name}: files already in the store changed"
    assert len(new) == 1 and re.fullmatch(r"labels/part-.*\.parquet", new[0]), (path.name, new)
    part = pq.read_table(store / new[0]).select(list(COLUMNS)).to_pylist()
    assert part == read_labels(path, format=fmt).select(list(COLUMNS)).to_pylist() and len(part) == n
    with FeatureStore(store) as fs:  # the labels view shows the new rows (a later import wins)
        shown = fs.sql(f"SELECT {', '.join(COLUMNS)} FROM labels WHERE source = ? ORDER BY video_id",
                       [f"{fmt}:{path.name}"]).to_pylist()
    assert shown == sorted(part, key=lambda r: r["video_id"]), path.name
    return part, None


def _check_refusal(err: LabelFormatError, data: bytes, name: str, line=None):
    assert LINE_NUMBER.search(str(err)), (name, str(err))
    assert err.problems and all(isinstance(w, int) and isinstance(m, str) for w, m in err.problems), name
    # a line of the file, or an entry of a JSON list (entries are separated by commas)
    most = data.count(b"\n") + data.count(b"\r") + data.count(b",") + 2
    assert all(1 <= w <= most for w, _ in err.problems), (name, err.problems)
    if line is not None:
        assert line in [w for w, _ in err.problems], (name, line, str(err))


@pytest.mark.parametrize("kind", KINDS)
def test_label_files_fuzzed(tmp_path, kind):
    """Good exports import exactly; bad and damaged files import only what the damage allows or are
    refused with line numbers, the store unchanged; never another exception."""
    fmt, suffix = _fmt_and_suffix(kind)
    store = tmp_path / "store"
    seed_file = tmp_path / f"seed{suffix}"
    seed_file.write_bytes(label_text(kind).encode())
    import_labels(seed_file, store, format=fmt)  # so that "unchanged" has files to compare
    counts = {"tried": 0, "imported": 0, "refused": 0}

    def case(name, data):
        path = tmp_path / f"{counts['tried']:03d}-{name}{suffix}"
        path.write_bytes(data)
        counts["tried"] += 1
        rows, err = run_case(store, path, fmt)
        counts["imported" if err is None else "refused"] += 1
        return rows, err

    for name, data, rows in legit_cases(kind):
        got, err = case(name, data)
        assert err is None, (name, str(err))
        assert got == rows, name
    for name, data, line in refused_cases(kind):
        got, err = case(name, data)
        assert err is not None, (name, got)
        _check_refusal(err, data, name, line)
    mutated = {"imported": 0, "refused": 0}
    for name, data, check in mutated_cases(kind):
        got, err = case(name, data)
        if err is None:
            assert check(got), (name, got)
            mutated["imported"] += 1
        else:
            _check_refusal(err, data, name)
            mutated["refused"] += 1
    # the seeds damage some files harmlessly (a score digit) and break others
    assert mutated["imported"] >= 3 and mutated["refused"] >= 25, mutated
    print(f"\nlabel fuzz {kind}: {counts} (of them mutated: {mutated})")


def test_refused_label_files_through_the_cli(tmp_path):
    """`amnetvid labels import` of each refused and damaged file: exit 2, one error line with a line
    number, no traceback, store unchanged; a UTF-16 Excel file imports."""
    store = tmp_path / "store"
    import_labels(_write(tmp_path / "first.csv", label_text("csv").encode()), store, format="csv")
    bad = _write(tmp_path / "random.csv", random.Random(7).randbytes(500))
    before = store_files(store)
    proc = subprocess.run([*AMNETVID, "labels", "import", str(bad), "--store", str(store), "--format", "csv"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "random.csv" in lines[0], proc.stderr
    assert LINE_NUMBER.search(lines[0]) and store_files(store) == before

    # every refused and damaged file of each kind through the CLI's main() in one fresh process,
    # then a UTF-16 file as Excel writes it
    files = []
    for kind in KINDS:
        fmt, suffix = _fmt_and_suffix(kind)
        for name, data, _ in [*refused_cases(kind), *mutated_cases(kind, n=22, seed=1)]:
            path = tmp_path / "cli" / f"{kind}-{name}{suffix}"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
            files.append((str(path), fmt))
    good = _write(tmp_path / "excel_utf16.csv",
                  codecs.BOM_UTF16_LE + label_text("csv", ROWS[:4], nl="\r\n").encode("utf-16-le"))
    files.append((str(good), "csv"))
    code = """
import contextlib, io, json, sys, traceback
from amnetvid_sk.cli import main
out = []
for path, fmt in json.loads(sys.argv[1]):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = main(["labels", "import", path, "--store", sys.argv[2], "--format", fmt])
    except BaseException:
        status, err = "raised", io.StringIO(traceback.format_exc())
    out.append([path, status, err.getvalue()])
print(json.dumps(out))
"""
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(files), str(store)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.splitlines()[-1])
    assert len(results) == len(files) and results[-1][1] == 0, results[-1]
    with FeatureStore(store) as fs:
        assert fs.sql(f"SELECT {', '.join(COLUMNS)} FROM labels WHERE source = ? ORDER BY video_id",
                      ["csv:excel_utf16.csv"]).to_pylist() == sorted(expected("csv", ROWS[:4]),
                                                                      key=lambda r: r["video_id"])
    for path, status, stderr in results:
        assert status in (0, 2), (path, status, stderr)
        if status == 2:
            lines = stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), (path, stderr)
            assert LINE_NUMBER.search(lines[0]) and Path(path).name in lines[0], (path, stderr)
    n_refused = sum(status == 2 for _, status, _ in results)
    assert n_refused >= len(files) // 2
    print(f"\nlabel fuzz through the CLI: {len(files)} files, {n_refused} refused, "
          f"{len(files) - n_refused} imported")


_AT_ONCE = """
import os, sys, time
from amnetvid_sk.cli import main
import amnetvid_sk.labels, amnetvid_sk.store  # loaded before the start, so that the writes meet
open(sys.argv[2], "w").close()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.001)
sys.exit(main(sys.argv[3:]))
"""


def test_two_label_imports_at_once(tmp_path):
    """Two `amnetvid labels import` processes of different files at once, several rounds: the
    labels view and the part files hold both sets, each row once, nothing left half-written."""
    store = tmp_path / "store"
    meant = {}
    for rnd in range(3):
        procs, go = [], tmp_path / f"go{rnd}"
        for who in range(2):
            rows = [(f"r{rnd}p{who}v{i:03d}", round(0.001 * (i + 1), 3), i, None, None) for i in range(150)]
            path = tmp_path / f"labels_r{rnd}_p{who}.csv"
            path.write_text("video_id,short_term,n_short\n" + "".join(f"{r[0]},{r[1]},{r[2]}\n" for r in rows))
            meant.update({r[0]: dict(zip(COLUMNS, r), source=f"csv:{path.name}") for r in rows})
            argv = ["labels", "import", str(path), "--store", str(store), "--format", "csv"]
            # round 0: the command as a user runs it; then both held at a start line until loaded,
            # so that their writes meet
            ready = tmp_path / f"ready{rnd}_{who}"
            cmd = [*AMNETVID, *argv] if rnd == 0 else [sys.executable, "-c", _AT_ONCE, str(go), str(ready), *argv]
            procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
        deadline = time.monotonic() + 120
        while rnd > 0 and len(list(tmp_path.glob(f"ready{rnd}_*"))) < 2:
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a run did not start"
            time.sleep(0.01)
        go.touch()
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0 and "imported 150 labels" in out, err
        parts = sorted((store / "labels").iterdir())
        assert all(re.fullmatch(r"part-.*\.parquet", p.name) for p in parts), parts  # no temporary file
        raw = pq.ParquetDataset(parts).read().column("video_id").to_pylist()
        assert len(parts) == 2 * (rnd + 1) and sorted(raw) == sorted(meant), "a row lost or written twice"
        with FeatureStore(store) as fs:
            shown = fs.sql(f"SELECT {', '.join(COLUMNS)}, source FROM labels ORDER BY video_id").to_pylist()
        assert shown == [meant[k] for k in sorted(meant)]
