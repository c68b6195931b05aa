"""The ``amnetvid`` command line: ``main(argv)`` run in process (a subprocess where the process is the
point: the imports a light command must not pay)."""

import json
import shutil
import subprocess

import pytest
from PIL import Image

from conftest import AMNETVID, ROOT, run_cli, run_cli_process


@pytest.fixture(scope="module")
def cli_store(clip_dir, amnet_weights, tmp_path_factory):
    """A store filled by ``amnetvid extract`` with AMNet (random weights) on the six clips."""
    store = tmp_path_factory.mktemp("cli") / "store"
    proc = run_cli("extract", clip_dir, "--store", store, "--frame-model", "amnet", "--weights", amnet_weights,
                   "--frames", "4", "--no-progress", "--device", "cpu", check=0)
    assert "extracted 6" in proc.stdout
    return store


@pytest.mark.parametrize("argv", [
    ["--version"],
    ["sql", "SELECT 42 AS answer", "--store", "{store}", "--format", "csv"],
    ["sql", "SELEC 1", "--store", "{store}"],  # a user error: one line, exit 2
    ["frobnicate"],  # argparse's own error: usage and a line, exit 2 by SystemExit
    ["labels", "import", "{store}/missing.csv", "--store", "{store}"],
], ids=["version", "sql", "sql-error", "parser-error", "missing-file"])
def test_in_process_runner_gives_what_the_process_gives(argv, tmp_path):
    """``run_cli`` (``main`` in this process) returns the exit status, stdout and stderr of the real
    command line in a subprocess: the in-process tests see what a user sees."""
    (tmp_path / "store").mkdir()
    args = [a.format(store=tmp_path / "store") for a in argv]
    in_process, process = run_cli(*args), run_cli_process(*args)
    # the subprocess is read in text mode, which turns the CSV writer's \r\n into \n
    got = (in_process.returncode, in_process.stdout.replace("\r\n", "\n"), in_process.stderr)
    assert got == (process.returncode, process.stdout, process.stderr)


def test_closed_pipe_stops_quietly(tmp_path):
    """``amnetvid sql ... | head -1``: when the reader closes the pipe the command stops without a
    traceback, exit 141 (a real process and pipe: what a shell pipeline does)."""
    store = tmp_path / "store"
    labels = tmp_path / "labels.csv"
    labels.write_text("video_id,short_term\nv1,0.5\n")
    run_cli("labels", "import", labels, "--store", store, "--format", "csv", check=0)
    # far more than a pipe's buffer, so the command is still writing when the pipe closes
    proc = subprocess.Popen([*AMNETVID, "sql", "SELECT * FROM range(200000)", "--store", str(store), "--format",
                             "csv"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141, err
    assert first.strip() == b"range" and err == b""


def test_missing_paths_stop_before_any_work(clip_dir, tmp_path):
    """A named video or folder that does not exist is a bad command (exit 2, one line naming it) found
    before the frame model loads: no store, no failures row, no output file; a store that does not
    exist is refused by the commands that read one and made by those that write."""
    store = tmp_path / "store"
    for argv in (["extract", tmp_path / "no_such_dir", clip_dir / "clip0.mp4", "--store", store],
                 ["score", clip_dir / "clip0.mp4", tmp_path / "nosuch.mp4", "--out", tmp_path / "scores.tsv"]):
        proc = run_cli(*argv)
        assert proc.returncode == 2 and proc.stdout == "", proc
        assert proc.stderr.count("\n") == 1 and ("no_such_dir" in proc.stderr or "nosuch.mp4" in proc.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    for command in (["info"], ["sql", "SELECT 1"], ["compact"], ["verify"]):
        proc = run_cli(*command, "--store", store)
        assert proc.returncode == 2 and "'" + str(store) + "' does not exist" in proc.stderr, proc
    labels = tmp_path.parent / f"{tmp_path.name}_labels.csv"
    labels.write_text("video_id,short_term\nv1,0.5\n")
    run_cli("labels", "import", labels, "--store", store, "--format", "csv", check=0)
    assert "labels" in run_cli("info", "--store", store, check=0).stdout


def test_sql_help_lists_every_table():
    """``amnetvid sql --help`` names every table of the store, in the store's order."""
    import re

    from amnetvid_sk.store.schema import TABLES

    text = " ".join(run_cli("sql", "--help", check=0).stdout.split())
    listed = re.search(r"Tables: ([a-z_, ]+) \(", text)
    assert listed and listed[1].split(", ") == list(TABLES), text


def test_help_documents_exit_status():
    """``amnetvid extract --help`` says what the exit codes mean."""
    proc = run_cli("extract", "--help", check=0)
    assert "exit status" in proc.stdout and "1  some videos failed" in proc.stdout


def _parsers(parser, name="amnetvid"):
    """(command name, parser) of the top-level parser and every subcommand, nested ones too."""
    import argparse

    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_every_command_and_option_is_documented():
    """Every command has a description, and every option, argument and command list (all but -h)
    a help text that states its default and its allowed values."""
    import argparse

    from amnetvid_sk.cli import build_parser

    seen, missing = [], []
    for name, parser in _parsers(build_parser()):
        seen.append(name)
        if not parser.description:
            missing.append(f"{name}: no description")
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            what = f"{name} {'/'.join(action.option_strings) or action.dest}"
            if not action.help:
                missing.append(f"{what}: no help")
                continue
            text = formatter._expand_help(action)
            if isinstance(action, argparse._SubParsersAction):
                continue  # its choices are the commands, each listed with its own help
            if action.choices:
                missing += [f"{what}: allowed value {c!r} not in its help" for c in action.choices
                            if str(c) not in text]
            stated = action.default in (None, False, argparse.SUPPRESS) or isinstance(action.default, bool)
            if not stated and str(action.default) not in text:
                missing.append(f"{what}: default {action.default!r} not in its help")
            if action.default in (None, False) and not action.required and action.option_strings \
                    and "default" not in text and not isinstance(action, argparse._StoreConstAction):
                missing.append(f"{what}: its help does not say what happens without it")
    assert not missing, missing
    assert {"amnetvid score", "amnetvid extract", "amnetvid labels import", "amnetvid demo", "amnetvid info",
            "amnetvid table1", "amnetvid grid", "amnetvid fit"} <= set(seen)


def test_light_commands_do_not_import_torch(tmp_path):
    """``sql``, ``info``, ``labels import``, ``--help``, ``--version`` and commands' help import neither torch
    nor scikit-learn."""
    import sys

    from amnetvid_sk.labels import MEDIAEVAL_HEADER

    store = str(tmp_path / "store")
    labels = tmp_path / "ground-truth_dev-set.csv"
    labels.write_text(",".join(MEDIAEVAL_HEADER) + "\nvideo10.webm,0.9,34,0.8,12\n")
    # labels import first: it makes the store that sql and info read
    for argv in (["labels", "import", str(labels), "--store", store],
                 ["sql", "SELECT 1", "--store", store], ["info", "--store", store], ["--help"], ["--version"],
                 ["evaluate", "--help"], ["extract", "--help"], ["score", "--help"]):
        code = ("import sys\nfrom amnetvid_sk.cli import main\ntry:\n    status = main(sys.argv[1:])\n"
                "except SystemExit as exc:\n    status = exc.code\n"
                "print('heavy loaded:', sorted({'torch', 'sklearn'} & set(sys.modules)), status)")
        proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300)
        assert proc.stdout.splitlines()[-1] in ("heavy loaded: [] 0", "heavy loaded: [] None"), \
            (argv, proc.stdout, proc.stderr)


def test_frame_model_is_not_limited_to_fixed_choices():
    """``--frame-model`` takes any name: make_frame_model decides (plug-ins and module:Class included)."""
    from amnetvid_sk.cli import build_parser

    for name in ("resmem", "amnet", "mypackage.models:MyModel", "some_plugin"):
        assert build_parser().parse_args(["extract", "v.mp4", "--frame-model", name]).frame_model == name


def test_version():
    """``amnetvid --version`` prints the package version."""
    from amnetvid_sk import __version__

    assert run_cli("--version", check=0).stdout.strip() == f"amnetvid-sk {__version__}"


def test_cli_precisions_are_the_library_ones():
    """The CLI's --precision choices (kept without importing torch) are precision.PRECISIONS."""
    from amnetvid_sk.cli import PRECISIONS
    from amnetvid_sk.precision import PRECISIONS as LIBRARY

    assert tuple(PRECISIONS) == tuple(LIBRARY)


def test_sql_params_bind_text_unless_typed(tmp_path):
    """``--param 00042`` binds the text '00042'; ``int:``, ``float:`` and ``text:`` prefixes choose the type."""
    q = "SELECT ? AS a, typeof(?) AS ta, ? AS b, typeof(?) AS tb, ? AS c, ? AS d"
    (tmp_path / "store").mkdir()
    proc = run_cli("sql", q, "--store", tmp_path / "store", "--format", "json",
                   "--param", "00042", "--param", "00042", "--param", "int:42", "--param", "int:42",
                   "--param", "float:0.5", "--param", "text:int:7", check=0)
    row = json.loads(proc.stdout)
    assert row == {"a": "00042", "ta": "VARCHAR", "b": 42, "tb": "INTEGER", "c": 0.5, "d": "int:7"}
    assert "--param 00042 binds" in run_cli("sql", "--help", check=0).stdout


def test_score_prints_rows_and_writes_figures(clip_dir, amnet_weights, tmp_path):
    """``amnetvid score`` prints one row per video and writes one Figure-1 PNG per sampled frame."""
    out = tmp_path / "maps"
    proc = run_cli("score", clip_dir / "clip0.mp4", clip_dir / "clip2.webm", "--frame-model", "amnet",
                   "--weights", amnet_weights, "--frames", "3", "--maps-out", out, "--device", "cpu",
                   "--precision", "float32", check=0)
    rows = [line.split("\t") for line in proc.stdout.strip().splitlines()[1:]]
    assert [r[0] for r in rows] == ["clip0", "clip2"]
    assert all(r[1] == "3" and 0.0 < float(r[2]) < 2.0 for r in rows)
    assert "frame model: amnet, float32" in proc.stderr  # said once, before the rows
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 6
    with Image.open(pngs[0]) as im:
        assert im.width > 2 * im.height  # frame + three maps side by side


def test_score_without_amnet_weights_explains_where_they_come_from(clip_dir):
    """AMNet without weights fails with exit 2 and names the published weights."""
    proc = run_cli("score", clip_dir / "clip0.mp4", "--frame-model", "amnet")
    assert proc.returncode == 2
    assert "weights" in proc.stderr and "AMNet" in proc.stderr


def test_extract_exit_status_is_1_when_a_video_fails(clip_dir, amnet_weights, tmp_path):
    """A broken file makes ``amnetvid extract`` exit 1 and name the file in its summary."""
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    proc = run_cli("extract", clip_dir / "clip1.mp4", bad, "--store", tmp_path / "s", "--frame-model", "amnet",
                   "--weights", amnet_weights, "--frames", "2", "--no-progress", "--device", "cpu")
    assert proc.returncode == 1
    assert "failed 1" in proc.stdout and "bad.mp4" in proc.stdout


def test_sql_and_info(cli_store):
    """``amnetvid sql`` answers in table, csv and json; ``info`` lists tables, models and size."""
    q = "SELECT video_id, count(*) AS n FROM frames GROUP BY 1 ORDER BY 1"
    csv_out = run_cli("sql", q, "--store", cli_store, "--format", "csv", check=0).stdout.splitlines()
    assert csv_out[0] == "video_id,n" and csv_out[1:] == [f"clip{i},4" for i in range(6)]
    rows = [json.loads(x) for x in run_cli("sql", q, "--store", cli_store, "--format", "json", check=0)
            .stdout.splitlines()]
    assert rows[0] == {"video_id": "clip0", "n": 4}
    table = run_cli("sql", "SELECT count(*) AS n FROM videos WHERE video_id = ?", "--param", "clip3",
                    "--store", cli_store, check=0).stdout
    assert "(1 rows)" in table and table.splitlines()[2].strip() == "1"
    info = run_cli("info", "--store", cli_store, check=0).stdout
    assert "frames" in info and "24 rows" in info and "amnet" in info and "MB" in info


def test_compact_keeps_rows(clip_dir, amnet_weights, tmp_path):
    """``amnetvid compact`` rewrites many part files into one per table with the same visible rows."""
    store = tmp_path / "store"
    run_cli("extract", clip_dir, "--store", store, "--frame-model", "amnet", "--weights", amnet_weights,
            "--frames", "2", "--flush-every", "2", "--no-progress", "--device", "cpu", check=0)
    q = "SELECT video_id, frame_index, score FROM frames ORDER BY 1, 2"
    before = run_cli("sql", q, "--store", store, "--format", "csv", check=0).stdout
    assert len(list((store / "frames").glob("part-*.parquet"))) == 3
    out = run_cli("compact", "--store", store, check=0).stdout
    assert "frames" in out and "3 part files -> 1" in out
    assert len(list((store / "frames").glob("part-*.parquet"))) == 1
    assert run_cli("sql", q, "--store", store, "--format", "csv", check=0).stdout == before


@pytest.mark.slow
def test_fit_then_predict_new_video_files(cli_store, clip_dir, amnet_weights, tmp_path):
    """``amnetvid fit`` saves a pipeline; ``amnetvid predict`` extracts a new clip and predicts it."""
    from amnetvid_sk.testing.clips import write_clip
    from amnetvid_sk.store import FeatureStore

    from conftest import moving_frames

    # its own copy: labels and predict write into the store, which the module's other tests read
    store = tmp_path / "store"
    shutil.copytree(cli_store, store)
    labels = tmp_path / "labels.csv"
    labels.write_text("video_id,short_term,long_term\n" + "".join(
        f"clip{i},{0.5 + 0.05 * i:.2f},{0.3 + 0.02 * i:.2f}\n" for i in range(6)))
    run_cli("labels", "import", labels, "--store", store, "--format", "csv", check=0)
    model = tmp_path / "model.joblib"
    run_cli("fit", "mean_score", "--store", store, "--target", "short", "--out", model, check=0)
    assert model.exists()

    new = tmp_path / "new_clip.mp4"
    write_clip(new, moving_frames(12, seed=42), fps=12)
    proc = run_cli("predict", model, new, clip_dir / "clip0.mp4", "--no-progress", check=0)
    rows = dict(line.split("\t") for line in proc.stdout.strip().splitlines()[1:])
    assert set(rows) == {"new_clip", "clip0"}
    # the mean-score pipeline predicts the mean of the stored frame scores
    scores, _ = FeatureStore(store).read_arrays(["new_clip", "clip0"], maps=False)  # every stored frame
    assert float(rows["new_clip"]) == pytest.approx(scores[0].mean(), abs=1e-4)
    assert float(rows["clip0"]) == pytest.approx(scores[1].mean(), abs=1e-4)

    # --store: the same predictions from a copy of the store in another place
    moved = tmp_path / "elsewhere" / "store"
    shutil.copytree(store, moved)
    proc = run_cli("predict", model, new, "--store", moved, "--no-progress", check=0)
    again = dict(line.split("\t") for line in proc.stdout.strip().splitlines()[1:])
    assert again == {"new_clip": rows["new_clip"]}


def test_extract_precision_and_its_older_spelling(clip_dir, amnet_weights, tmp_path):
    """``--precision float32`` and ``--bfloat16`` (= ``--precision bfloat16``) reach the frame model's fingerprint."""
    q = "SELECT json_extract_string(config, '$.precision') AS p FROM models ORDER BY 1"
    common = ["--frame-model", "amnet", "--weights", amnet_weights, "--frames", "1", "--no-progress",
              "--device", "cpu"]
    run_cli("extract", clip_dir / "clip1.mp4", "--store", tmp_path / "a", "--precision", "float32", *common,
            check=0)
    run_cli("extract", clip_dir / "clip1.mp4", "--store", tmp_path / "b", "--bfloat16", *common, check=0)
    got = [run_cli("sql", q, "--store", tmp_path / s, "--format", "csv", check=0).stdout.split()[1:]
           for s in ("a", "b")]
    assert got == [["float32"], ["bfloat16"]]


def test_extract_ids_relpath_and_replace(amnet_weights, tmp_path):
    """Same-named files in two folders: refused naming both, or ids by relative path with ``--ids relpath``;
    a file whose id the store holds from another path needs ``--replace``."""
    from amnetvid_sk.testing.clips import write_clip

    from conftest import moving_frames

    videos = tmp_path / "videos"
    for i, sub in enumerate(("a", "b")):
        (videos / sub).mkdir(parents=True)
        write_clip(videos / sub / "clip.mp4", moving_frames(6, seed=i), fps=6)
    common = ["--frame-model", "amnet", "--weights", amnet_weights, "--frames", "2", "--no-progress",
              "--device", "cpu", "--precision", "float32"]
    proc = run_cli("extract", videos, "--store", tmp_path / "s1", *common)
    assert proc.returncode == 2
    assert str(videos / "a" / "clip.mp4") in proc.stderr and str(videos / "b" / "clip.mp4") in proc.stderr
    run_cli("extract", videos, "--store", tmp_path / "s1", "--ids", "relpath", *common, check=0)
    ids = run_cli("sql", "SELECT video_id FROM videos ORDER BY 1", "--store", tmp_path / "s1", "--format", "csv",
                  check=0).stdout.split()[1:]
    assert ids == ["a/clip", "b/clip"]

    store = tmp_path / "s2"
    run_cli("extract", videos / "a" / "clip.mp4", "--store", store, *common, check=0)
    proc = run_cli("extract", videos / "b" / "clip.mp4", "--store", store, *common)
    assert proc.returncode == 2 and "--replace" in proc.stderr
    run_cli("extract", videos / "b" / "clip.mp4", "--store", store, "--replace", *common, check=0)
    paths = run_cli("sql", "SELECT path FROM videos", "--store", store, "--format", "csv", check=0).stdout.split()[1:]
    assert paths == [str(videos / "b" / "clip.mp4")]
