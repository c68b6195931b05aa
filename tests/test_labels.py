"""Tests of amnetvid_sk.labels: reading, validating and importing label files."""

import json

import pyarrow as pa
import pytest

from amnetvid_sk.errors import LabelFormatError
from amnetvid_sk.labels import LABELS_SCHEMA, MEDIAEVAL_RUN_HEADER, import_labels, read_labels

from conftest import run_cli

MEDIAEVAL_HEADER = (
    "video,short-term_memorability,nb_short-term_annotations,long-term_memorability,nb_long-term_annotations"
)
RUN_HEADER = ",".join(MEDIAEVAL_RUN_HEADER)
GOOD_ROWS = [
    "video3.webm,0.924,33,0.846,13",
    "video4.webm,0.923,26,0.667,12",
    "video10.webm,0.950,34,0.900,10",
    "video22.webm,0.641,39,0.333,9",
]


def _write(path, lines, newline="\n"):
    path.write_text(newline.join(lines) + newline, encoding="utf-8")
    return path


def _mediaeval(tmp_path, rows, name="ground-truth_dev-set.csv"):
    return _write(tmp_path / name, [MEDIAEVAL_HEADER, *rows])


def _error(path, format="mediaeval"):
    with pytest.raises(LabelFormatError) as err:
        read_labels(path, format=format)
    return err.value


def test_mediaeval_file_parses(tmp_path):
    """A MediaEval ground-truth file: ids lose their extension, values and types are kept."""
    path = _mediaeval(tmp_path, GOOD_ROWS)
    table = read_labels(path, format="mediaeval")
    assert table.schema.equals(LABELS_SCHEMA)
    assert table.column("video_id").to_pylist() == ["video3", "video4", "video10", "video22"]
    assert table.column("short_term").to_pylist() == [0.924, 0.923, 0.950, 0.641]
    assert table.column("n_short").to_pylist() == [33, 26, 34, 39]
    assert table.column("long_term").to_pylist() == [0.846, 0.667, 0.900, 0.333]
    assert table.column("n_long").to_pylist() == [13, 12, 10, 9]
    assert set(table.column("source").to_pylist()) == {"mediaeval:ground-truth_dev-set.csv"}
    assert table.schema.field("short_term").type == pa.float64()
    assert table.schema.field("n_short").type == pa.int64()


def test_mediaeval_crlf_bom_and_trailing_blank_lines(tmp_path):
    """Windows line ends, a UTF-8 byte order mark and blank lines at the end are accepted."""
    path = tmp_path / "gt.csv"
    path.write_bytes(("\ufeff" + "\r\n".join([MEDIAEVAL_HEADER, *GOOD_ROWS[:2]]) + "\r\n\r\n").encode("utf-8"))
    table = read_labels(path, format="mediaeval")
    assert table.column("video_id").to_pylist() == ["video3", "video4"]


@pytest.mark.parametrize(
    "bad_row, expected",
    [
        ("video5.webm,abc,33,0.5,10", "short-term_memorability 'abc' is not a number"),
        ("video5.webm,0.9,33,1.5,10", "long-term_memorability '1.5' is outside [0, 1]"),
        ("video5.webm,-0.1,33,0.5,10", "short-term_memorability '-0.1' is outside [0, 1]"),
        ("video5.webm,nan,33,0.5,10", "short-term_memorability 'nan' is not a finite number"),
        ("video5.webm,,33,0.5,10", "short-term_memorability is empty"),
        ("video5.webm,0.9,many,0.5,10", "nb_short-term_annotations 'many' is not a number"),
        ("video5.webm,0.9,33,0.5,-2", "nb_long-term_annotations '-2' is negative"),
        ("video5.webm,0.9,3.5,0.5,10", "nb_short-term_annotations '3.5' is not a whole number"),
        ("video4.webm,0.9,33,0.5,10", "duplicate video id 'video4' (first on line 3)"),
        ("video5.webm,0.9,33,0.5", "expected 5 fields as in the header, got 4"),
        ("video5.webm,0.9,33,0.5,10,7", "expected 5 fields as in the header, got 6"),
        (",0.9,33,0.5,10", "video is empty"),
    ],
)
def test_each_bad_row_kind_names_its_line(tmp_path, bad_row, expected):
    """Each kind of bad row is rejected with its 1-based line number and the problem."""
    # header = line 1, GOOD_ROWS[:2] = lines 2-3, the bad row = line 4, one more good row after
    path = _mediaeval(tmp_path, [*GOOD_ROWS[:2], bad_row, GOOD_ROWS[2]])
    err = _error(path)
    assert f"line 4: {expected}" in str(err)
    assert str(path) in str(err)
    assert err.problems == [(4, expected)]


def test_several_bad_lines_are_all_listed(tmp_path):
    """All bad lines of a file are reported together, each with its number."""
    rows = [GOOD_ROWS[0], "video7.webm,x,1,0.5,1", GOOD_ROWS[1], "video8.webm,0.5,1,2,1", "video3.webm,0.5,1,0.5,1"]
    err = _error(_mediaeval(tmp_path, rows))
    message = str(err)
    assert "has 3 bad lines" in message
    assert "line 3: short-term_memorability 'x' is not a number" in message
    assert "line 5: long-term_memorability '2' is outside [0, 1]" in message
    assert "line 6: duplicate video id 'video3' (first on line 2)" in message
    assert [line for line, _ in err.problems] == [3, 5, 6]


def test_listing_is_capped_with_a_count(tmp_path):
    """Past 20 bad lines the message gives a count instead of the rest."""
    rows = [f"video{i}.webm,bad,1,0.5,1" for i in range(30)]
    err = _error(_mediaeval(tmp_path, rows))
    message = str(err)
    assert "has 30 bad lines" in message
    assert "line 21:" in message and "line 22:" not in message
    assert "... and 10 more" in message
    assert len(err.problems) == 30


@pytest.mark.parametrize(
    "header",
    [
        "video,short-term_memorability,nb_short-term_annotations,long-term_memorability",  # column missing
        "video,nb_short-term_annotations,short-term_memorability,long-term_memorability,nb_long-term_annotations",
        "video_id,short_term,n_short,long_term,n_long",  # right data, other format
        "Video,short-term_memorability,nb_short-term_annotations,long-term_memorability,nb_long-term_annotations",
    ],
)
def test_mediaeval_header_must_be_exact(tmp_path, header):
    """A MediaEval file whose header differs in any way is refused at line 1, naming the expected header."""
    path = _write(tmp_path / "gt.csv", [header, *GOOD_ROWS])
    err = _error(path)
    assert err.problems[0][0] == 1 and len(err.problems) == 1
    assert "line 1: header must be exactly" in str(err)
    assert MEDIAEVAL_HEADER in str(err)


def test_missing_empty_and_header_only_files(tmp_path):
    """A missing file, an empty file and a header without rows are refused, naming the file."""
    missing = tmp_path / "nope.csv"
    with pytest.raises(LabelFormatError, match=r"nope\.csv.*does not exist"):
        read_labels(missing)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(LabelFormatError, match=r"empty\.csv.*empty"):
        read_labels(empty)
    header_only = _mediaeval(tmp_path, [], name="header_only.csv")
    with pytest.raises(LabelFormatError, match=r"header_only\.csv.*no label rows"):
        read_labels(header_only)
    with pytest.raises(LabelFormatError, match="not a file"):
        read_labels(tmp_path)


def test_unknown_format_lists_allowed_values(tmp_path):
    """An unknown format is a ValueError (not a label error) listing the allowed formats."""
    path = _mediaeval(tmp_path, GOOD_ROWS)
    with pytest.raises(ValueError) as err:
        read_labels(path, format="videomem")
    assert not isinstance(err.value, LabelFormatError)
    # scikit-learn's wording; it lists a set's options in hash order
    message = str(err.value)
    assert message.startswith("The 'format' parameter of read_labels must be a str among {")
    assert message.endswith("}. Got 'videomem' instead.")
    listed = message[message.index("{") + 1:message.index("}")].split(", ")
    assert sorted(listed) == ["'csv'", "'mediaeval'", "'memento10k'"]


def test_path_that_is_not_a_path_is_a_type_error():
    """A path of another type is a TypeError naming the parameter (not a label error)."""
    for bad in (42, None, ["labels.csv"]):
        with pytest.raises(TypeError, match=r"^The 'path' parameter of read_labels must be a str or os.PathLike. Got "):
            read_labels(bad)


def test_generic_csv_any_order_optional_columns(tmp_path):
    """The 'csv' format takes video_id and short_term, the other columns optional, in any order."""
    path = _write(tmp_path / "mine.csv", ["short_term,video_id,n_long", "0.5,a.mp4,3", "0.75,b,", "1,c.d,0"])
    table = read_labels(path, format="csv")
    assert table.column("video_id").to_pylist() == ["a", "b", "c.d"]
    assert table.column("short_term").to_pylist() == [0.5, 0.75, 1.0]
    assert table.column("n_long").to_pylist() == [3, None, 0]
    assert table.column("long_term").null_count == 3 and table.column("n_short").null_count == 3
    assert table.column("source").to_pylist()[0] == "csv:mine.csv"


@pytest.mark.parametrize(
    "header, problem",
    [
        ("video_id,long_term", "missing column(s) ['short_term']"),
        ("video_id,short_term,shortterm", "unknown column(s) ['shortterm']"),
        ("video_id,short_term,short_term", "repeats column(s) ['short_term']"),
    ],
)
def test_generic_csv_header_checks(tmp_path, header, problem):
    """The generic header is checked: required columns, unknown names, repeats."""
    path = _write(tmp_path / "mine.csv", [header, "a,0.5,0.5"])
    err = _error(path, format="csv")
    assert len(err.problems) == 1 and err.problems[0][0] == 1
    assert problem in err.problems[0][1] and "line 1:" in str(err)


def test_memento10k_csv(tmp_path):
    """A Memento10k score CSV (MediaEval 2021 columns): the normalised short-term score is
    the target, extra columns are ignored, long-term may be absent per row."""
    path = _write(
        tmp_path / "dev_scores.csv",
        [
            "video_id,annotations_short_term,scores_raw_short_term,scores_normalized_short_term,decay_alpha,"
            "annotations_long_term,scores_raw_long_term",
            "7,90,0.911,0.880,-0.0011,,",
            "1504,95,0.800,0.842,-0.0009,12,0.6",
        ],
    )
    table = read_labels(path, format="memento10k")
    assert table.column("video_id").to_pylist() == ["7", "1504"]
    assert table.column("short_term").to_pylist() == [0.880, 0.842]
    assert table.column("n_short").to_pylist() == [90, 95]
    assert table.column("long_term").to_pylist() == [None, 0.6]
    assert table.column("n_long").to_pylist() == [None, 12]
    assert table.column("source").to_pylist()[0] == "memento10k:dev_scores.csv"


def test_memento10k_csv_bad_rows_and_missing_score_column(tmp_path):
    """Memento10k CSV rows are validated like the others; a file without a score column is refused."""
    path = _write(tmp_path / "s.csv", ["video_id,scores_raw_short_term", "1,0.5", "2,1.7", "1,0.6"])
    err = _error(path, format="memento10k")
    assert err.problems == [(3, "scores_raw_short_term '1.7' is outside [0, 1]"),
                            (4, "duplicate video id '1' (first on line 2)")]
    path = _write(tmp_path / "t.csv", ["video_id,decay_alpha", "1,-0.001"])
    err = _error(path, format="memento10k")
    assert err.problems[0][0] == 1 and "short_term: one of" in err.problems[0][1]


def test_memento10k_json(tmp_path):
    """The original Memento10k release's JSON list (filename, mem_score) is read; errors name the entry."""
    entries = [
        {"filename": "video_00001.webm", "mem_score": 0.87, "alpha": -0.012},
        {"filename": "video_00002.webm", "mem_score": 0.91, "alpha": -0.010},
    ]
    path = tmp_path / "memento_train_data.json"
    path.write_text(json.dumps(entries))
    table = read_labels(path, format="memento10k")
    assert table.column("video_id").to_pylist() == ["video_00001", "video_00002"]
    assert table.column("short_term").to_pylist() == [0.87, 0.91]
    assert table.column("long_term").null_count == 2
    entries.append({"filename": "video_00003.webm", "mem_score": "high"})
    path.write_text(json.dumps(entries))
    err = _error(path, format="memento10k")
    assert "entry 3: mem_score 'high' is not a number" in str(err)


def test_import_labels_into_store(tmp_path):
    """import_labels writes the validated rows into a real store; a bad file writes nothing."""
    from amnetvid_sk.store import FeatureStore

    store = tmp_path / "store"
    bad = _mediaeval(tmp_path, [*GOOD_ROWS, "video9.webm,2,1,0.5,1"], name="bad.csv")
    with pytest.raises(LabelFormatError, match="line 6"):
        import_labels(bad, store, format="mediaeval")
    labels_dir = store / "labels"
    assert not labels_dir.exists() or not any(labels_dir.rglob("*.parquet"))

    good = _mediaeval(tmp_path, GOOD_ROWS)
    assert import_labels(good, store, format="mediaeval") == 4
    # a second import of the same videos replaces them (the store's rule), through an open store
    with FeatureStore(store) as fs:
        assert import_labels(_mediaeval(tmp_path, GOOD_ROWS[:1], name="again.csv"), fs) == 1
    rows = FeatureStore(store).sql(
        "SELECT video_id, short_term, n_short, long_term, n_long, source FROM labels ORDER BY video_id"
    ).to_pylist()
    assert [r["video_id"] for r in rows] == ["video10", "video22", "video3", "video4"]
    assert rows[0]["short_term"] == 0.95 and rows[0]["n_long"] == 10
    assert rows[0]["source"] == "mediaeval:ground-truth_dev-set.csv"
    assert rows[2]["video_id"] == "video3" and rows[2]["source"] == "mediaeval:again.csv"
    assert len(rows) == 4


def test_labels_import_says_what_it_replaced_and_which_ids_have_no_video(tmp_path):
    """``amnetvid labels import`` counts new and replaced labels, and warns (exit 0) naming the first ids the
    store holds no video for (a video that failed to decode is held); ``return_report=True`` gives the same."""
    from amnetvid_sk.labels import LabelImport
    from amnetvid_sk.store import FeatureStore
    from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store

    from conftest import run_cli

    store = tmp_path / "store"
    write_synthetic_store(store, *make_moving_peak_dataset(3, seed=0))  # syn0000..syn0002, labelled
    FeatureStore(store).write_failure(tmp_path / "broken.mp4", "truncated file", "m", "frames=4")
    rows = ["syn0000,0.5", "syn0001,0.6", "broken,0.7", *[f"ghost{i},0.4" for i in range(7)]]
    path = _write(tmp_path / "labels.csv", ["video_id,short_term", *rows])
    proc = run_cli("labels", "import", path, "--store", store, "--format", "csv", check=0)
    assert f"imported 10 labels from {path} into {store}: 8 new, 2 replaced" in proc.stdout
    warning = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(warning) == 1 and warning[0].startswith(
        "warning: 7 of the 10 labelled videos are not in the store (yet): 'ghost0', 'ghost1', 'ghost2', "
        "'ghost3', 'ghost4' and 2 more; extract them"), proc.stderr
    assert FeatureStore(store).labels(["syn0000", "ghost6"]).tolist() == [0.5, 0.4]  # imported all the same

    again = import_labels(path, store, format="csv", return_report=True)
    assert again == LabelImport(n_rows=10, replaced=10, not_in_store=[f"ghost{i}" for i in range(7)])


def test_labels_import_good_and_bad(tmp_path):
    """A MediaEval file imports; a file with bad rows is rejected with line numbers, nothing written."""
    store = tmp_path / "store"
    good = tmp_path / "gt.csv"
    good.write_text("video,short-term_memorability,nb_short-term_annotations,long-term_memorability,"
                    "nb_long-term_annotations\nvideo10.webm,0.950,34,0.900,10\nvideo11.webm,0.800,30,0.700,9\n")
    proc = run_cli("labels", "import", good, "--store", store, check=0)
    assert "imported 2" in proc.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text(good.read_text() + "video12.webm,1.5,30,0.7,9\nvideo10.webm,0.5,30,0.7,9\n")
    proc = run_cli("labels", "import", bad, "--store", store)
    assert proc.returncode == 2 and "line 4" in proc.stderr and "line 5" in proc.stderr
    rows = run_cli("sql", "SELECT video_id FROM labels ORDER BY 1", "--store", store, "--format", "csv",
                   check=0).stdout.split()
    assert rows == ["video_id", "video10", "video11"]


def test_labels_read_a_mediaeval_run_file(tmp_path):
    """The run-file header (no annotation counts) reads with format mediaeval; either score may be
    empty, not both; ground truth still needs its exact header and its short-term score."""
    run = tmp_path / "run.csv"
    run.write_text(f"{RUN_HEADER}\nvideo10.webm,0.91,0.52\nvideo11.mp4,,0.48\nvideo12.mp4,0.7,\n")
    table = read_labels(run, format="mediaeval")
    assert table.select(["video_id", "short_term", "n_short", "long_term", "n_long"]).to_pylist() == [
        {"video_id": "video10", "short_term": 0.91, "n_short": None, "long_term": 0.52, "n_long": None},
        {"video_id": "video11", "short_term": None, "n_short": None, "long_term": 0.48, "n_long": None},
        {"video_id": "video12", "short_term": 0.7, "n_short": None, "long_term": None, "n_long": None}]

    run.write_text(f"{RUN_HEADER}\nvideo10.webm,,\nvideo11.webm,1.2,0.5\n")
    with pytest.raises(LabelFormatError) as err:
        read_labels(run)
    assert [line for line, _ in err.value.problems] == [2, 3]
    assert "both empty" in err.value.problems[0][1] and "outside [0, 1]" in err.value.problems[1][1]

    truth = tmp_path / "gt.csv"
    truth.write_text(MEDIAEVAL_HEADER + "\nvideo10.webm,,34,0.9,10\n")
    with pytest.raises(LabelFormatError, match="line 2: short-term_memorability is empty"):
        read_labels(truth)
    truth.write_text("video,short-term_memorability,nb_short-term_annotations,long-term_memorability\n"
                     "video10.webm,0.9,34,0.9\n")
    with pytest.raises(LabelFormatError) as err:
        read_labels(truth)
    assert MEDIAEVAL_HEADER in str(err.value) and RUN_HEADER in str(err.value)
