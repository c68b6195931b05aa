"""The README's Python and shell blocks run as written, in folders laid out as the README assumes.

Each fenced block of README.md is run, line by line for shell, in a folder made for its section:
MediaEval's layout (``data/videos/*.webm`` with one file that cannot be decoded, as MediaEval has,
and ``data/ground-truth_dev-set.csv``) for the MediaEval, Python API and SQL sections, and
``clip.mp4``, ``my_videos/``, ``my_labels.csv``, ``new_videos/`` for "Your own videos". The clips
are real, small and few, so the numbers mean nothing; what is tested is that every command works
as written. Lines that cannot run here are skipped with the reason in ``SKIPPED``.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, moving_frames

pytestmark = pytest.mark.slow

README = ROOT / "README.md"
BIN = Path(sys.executable).parent  # the `amnetvid` console script of this environment

# line pattern -> why it is not run here
SKIPPED = {
    r"^make (demo|test)\b": "sets up .venv and runs the demo or the whole suite: tests/test_demo.py and "
                            "this suite itself cover them",
    r"^pip install\b": "installs packages (network, minutes): tests/test_install.py installs the wheel",
    r"^amnetvid demo\b": "the demo: tests/test_demo.py runs it",
}
# Lines that train networks run with these options added: every line still runs as written, on one
# epoch instead of each recipe's 20 (what is tested is that the commands work; the numbers mean
# nothing on a few tiny clips). line pattern -> options added
ADDED_OPTIONS = {
    r"^amnetvid (table1|evaluate|fit|grid)\b": "--max-epochs 1",
}
# The same for the Python blocks: text replaced -> its replacement
PYTHON_REPLACED = {
    "ConvLSTMRegressor(random_state=0)": "ConvLSTMRegressor(random_state=0, max_epochs=1)",
}
# README section -> the folder its blocks run in (see the fixtures)
FOLDERS = {
    "MediaEval 2018/2019 (VideoMem) dev-set": "mediaeval",
    "Python API": "mediaeval",
    "SQL on the store": "mediaeval",
    "Your own videos": "own",
}
# a command's expected exit status when it is not 0, and why
EXIT_STATUS = {
    "amnetvid extract data/videos/ --fps 4": (1, "data/videos holds an undecodable file: exit 1 by the README"),
}
# fenced blocks in these languages show a file's contents, not commands to run
CONFIG_LANGUAGES = {"toml", "ini", "yaml", "json", "text"}
N_MEDIAEVAL = 8  # decodable clips: 5-fold CV needs test folds of at least one video
# their lengths in seconds, as real data sets vary (VideoMem, Memento10k): at --fps 4 the shortest
# holds fewer stored frames than the sequence models read (4), the longest 40
MEDIAEVAL_SECONDS = (0.4, 0.75, 1, 1.5, 2, 3, 5, 10)
MEDIAEVAL_BROKEN = ("video97.webm", "video98.webm", "video99.webm")


def readme_blocks():
    """(section, language, text) of each fenced block of the README, in order."""
    section, out = "", []
    for match in re.finditer(r"^## ([^\n]+)$|^```(\w*)\n(.*?)^```$", README.read_text(), re.M | re.S):
        if match.group(1):
            section = match.group(1).strip()
        else:
            out.append((section, match.group(2) or "sh", match.group(3)))
    return out


def shell_lines(text):
    """The commands of a shell block, without comments."""
    lines = []
    for line in text.splitlines():
        line = re.sub(r"(^|\s+)#.*$", "", line).strip()
        if line:
            lines.append(line)
    return lines


def skip_reason(line):
    return next((why for pattern, why in SKIPPED.items() if re.search(pattern, line)), None)


def _env():
    # One intra-op thread: on 2 shared cores the tiny trainings run several times faster (see
    # conftest.one_torch_thread); the environment, not the README's commands, is made small.
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONUNBUFFERED="1",
                OMP_NUM_THREADS="1")


def as_run(line):
    """The README line with the options of ``ADDED_OPTIONS`` that apply to it."""
    added = [options for pattern, options in ADDED_OPTIONS.items() if re.search(pattern, line)]
    return " ".join([line, *added])


def as_run_python(text):
    """The README Python block with the replacements of ``PYTHON_REPLACED``."""
    for old, new in PYTHON_REPLACED.items():
        text = text.replace(old, new)
    return text


def run_line(line, cwd):
    """Run one README shell line with bash, as a user would type it (with ``ADDED_OPTIONS``)."""
    return subprocess.run(["bash", "-c", as_run(line)], cwd=cwd, capture_output=True, text=True, timeout=1800,
                          env=_env())


def run_section(section, cwd):
    """Run every block of a README section in ``cwd``; returns {command: completed process}."""
    done = {}
    blocks = [(lang, text) for s, lang, text in readme_blocks() if s == section]
    assert blocks, f"the README has no block under '## {section}'"
    for lang, text in blocks:
        if lang == "python":
            script = cwd / f"readme_{len(done)}.py"
            script.write_text(as_run_python(text))
            proc = subprocess.run([sys.executable, script.name], cwd=cwd, capture_output=True, text=True,
                                  timeout=1800, env=_env())
            assert proc.returncode == 0, f"README Python block failed:\n{text}\n{proc.stdout}\n{proc.stderr}"
            done[text] = proc
            continue
        for line in shell_lines(text):
            if skip_reason(line):
                continue
            proc = run_line(line, cwd)
            expected = EXIT_STATUS.get(line, (0, ""))[0]
            assert proc.returncode == expected, \
                f"{line!r} exited {proc.returncode}, expected {expected}\n{proc.stdout}\n{proc.stderr}"
            assert "Traceback" not in proc.stderr, f"{line!r}:\n{proc.stderr}"
            done[line] = proc
    return done


def _clip(path, n, seed, fps, codec="h264"):
    from amnetvid_sk.testing.clips import write_clip

    path.parent.mkdir(parents=True, exist_ok=True)
    write_clip(path, moving_frames(n, seed=seed), fps=fps, codec=codec)


@pytest.fixture(scope="module")
def mediaeval(tmp_path_factory):
    """MediaEval's layout, after the README's MediaEval block ran in it: {command: process}, folder."""
    folder = tmp_path_factory.mktemp("mediaeval")
    videos = folder / "data" / "videos"
    for i, seconds in enumerate(MEDIAEVAL_SECONDS):  # 8 frames a second encoded; --fps 4 samples 4 a second
        _clip(videos / f"video{10 + i}.webm", max(2, round(8 * seconds)), seed=i, fps=8, codec="vp9")
    (videos / "video97.webm").write_bytes(b"")  # an empty file
    _clip(folder / "whole.webm", 16, seed=97, fps=8, codec="vp9")  # a clip cut off after its first quarter
    whole = (folder / "whole.webm").read_bytes()
    (videos / "video98.webm").write_bytes(whole[: len(whole) // 4])
    (videos / "video99.webm").write_bytes(b"\x1aE\xdf\xa3" + b"\x00" * 200)  # a WebM header, then nothing
    rng = np.random.default_rng(0)
    rows = [f"video{n}.webm,{rng.uniform(0.6, 1):.3f},{rng.integers(20, 40)},{rng.uniform(0.3, 1):.3f},"
            f"{rng.integers(5, 15)}" for n in [*range(10, 10 + N_MEDIAEVAL), 97, 98, 99]]
    (folder / "data" / "ground-truth_dev-set.csv").write_text(
        "video,short-term_memorability,nb_short-term_annotations,long-term_memorability,"
        "nb_long-term_annotations\n" + "\n".join(rows) + "\n")
    return run_section("MediaEval 2018/2019 (VideoMem) dev-set", folder), folder


def test_every_block_is_run_or_skipped_with_a_reason():
    """Each README block belongs to a section this test runs, or each of its lines is skipped with a reason."""
    for section, lang, text in readme_blocks():
        if section in FOLDERS:
            continue
        assert lang != "python", f"a Python block under '## {section}' is not run: add the section to FOLDERS"
        if lang in CONFIG_LANGUAGES:
            continue  # a file excerpt to copy (pyproject.toml), not commands
        for line in shell_lines(text):
            assert skip_reason(line), f"{line!r} under '## {section}' is neither run nor skipped"
    assert set(FOLDERS) <= {s for s, _, _ in readme_blocks()}


def test_added_options_and_replacements_apply():
    """Each pattern of ADDED_OPTIONS matches a README line that runs, each PYTHON_REPLACED text is in a
    Python block that runs: neither list can silently stop doing anything."""
    run = [(lang, text) for section, lang, text in readme_blocks() if section in FOLDERS]
    lines = [line for lang, text in run if lang == "sh" for line in shell_lines(text) if not skip_reason(line)]
    for pattern in ADDED_OPTIONS:
        assert any(re.search(pattern, line) for line in lines), pattern
    python = "\n".join(text for lang, text in run if lang == "python")
    assert all(old in python for old in PYTHON_REPLACED)
    assert as_run("amnetvid table1 --protocol paper") == "amnetvid table1 --protocol paper --max-epochs 1"
    assert as_run("amnetvid sql \"SELECT 1\"") == "amnetvid sql \"SELECT 1\""


def test_mediaeval_block(mediaeval):
    """Extract (one file fails and is recorded), import labels, Table 1 in both protocols with the videos used."""
    done, folder = mediaeval
    extract = done["amnetvid extract data/videos/ --fps 4"]
    assert f"extracted {N_MEDIAEVAL}," in extract.stdout and "failed 3" in extract.stdout
    assert all(name in extract.stdout for name in MEDIAEVAL_BROKEN)
    assert "imported 11 labels" in done["amnetvid labels import data/ground-truth_dev-set.csv --format mediaeval"].stdout
    for line in ("amnetvid table1", "amnetvid table1 --protocol paper"):
        out, err = done[line].stdout, done[line].stderr
        assert "short-term" in out and "long-term" in out and "AMNetVid ConvLSTM" in out, out
        # every cell: a Spearman with its interval, or the folds in which it is undefined (tiny test parts)
        assert len(re.findall(r"\d\.\d{4} \[|\d\.\d{4} \[interval undefined\]|undefined in all", out)) == 6, out
        assert f"short-term: {N_MEDIAEVAL} labelled videos with features (3 left out: no features)" in out, out
        assert "warning: 3 of 11 videos with a short-term label" in err and "video99" in err, err
        # the clips of 0.4 and 0.75 s hold 2 and 3 frames at --fps 4: left out of the 4-frame models, named
        assert "hold fewer stored frames than the model reads" in err and "'video10' (2 of 4)" in err, err
        assert "Traceback" not in err and "site-packages" not in err, err
    assert "OPTIMISTIC" in done["amnetvid table1 --protocol paper"].stdout


def test_mediaeval_report_renders_in_chromium(mediaeval):
    """The README's `amnetvid report` on the irregular MediaEval store: both protocols' runs, the failures
    and the short clips; every image loads and no text overflows in headless Chromium."""
    from test_report import assert_renders

    done, folder = mediaeval
    assert done["amnetvid report"].returncode == 0
    index = folder / "report" / "index.html"
    text = index.read_text()
    assert all(name.removesuffix(".webm") in text for name in MEDIAEVAL_BROKEN)
    assert "OPTIMISTIC" in text and "95%" in text
    assert_renders(index)


def test_python_api_block(mediaeval):
    """The README's Python example runs on a MediaEval-layout store whose labelled video99 has no features."""
    from amnetvid_sk import FeatureStore

    _, folder = mediaeval
    store = FeatureStore(folder / "store")
    # the case the example must survive: a label without features
    assert set(store.labelled_ids("short")) - set(store.labelled_ids("short", extracted=True)) == {
        "video97", "video98", "video99"}
    done = run_section("Python API", folder)
    out = next(iter(done.values())).stdout
    assert "net__lr" in out, out  # best_params_ printed after the fold scores


def test_sql_block(mediaeval):
    """The SQL section's queries, info and compact run on the MediaEval store."""
    _, folder = mediaeval
    done = run_section("SQL on the store", folder)
    first = next(iter(done.values())).stdout
    assert f"({N_MEDIAEVAL} rows)" in first and "mean_score" in first
    text = next(p for line, p in done.items() if "00042" in line).stdout
    assert "(0 rows)" in text  # bound as the text '00042': no such video, and no type error
    typed = next(p for line, p in done.items() if "int:4" in line).stdout
    # bound as the number 4: the clips holding at least 4 frames at --fps 4 (1 s and longer)
    assert f"({sum(s >= 1 for s in MEDIAEVAL_SECONDS)} rows)" in typed
    assert "frames" in done["amnetvid info"].stdout


def test_own_videos_block(tmp_path):
    """Score with figures, extract, import labels, evaluate, fit and predict new files, as written."""
    _clip(tmp_path / "clip.mp4", 12, seed=0, fps=12)
    for i in range(6):  # short clips: the default 28 frames finds 4 in each
        _clip(tmp_path / "my_videos" / f"mine{i}.mp4", 4, seed=10 + i, fps=8)
    for i in range(2):
        _clip(tmp_path / "new_videos" / f"new{i}.mp4", 4, seed=20 + i, fps=8)
    (tmp_path / "my_labels.csv").write_text("video_id,short_term,long_term\n" + "".join(
        f"mine{i},{0.6 + 0.05 * i:.2f},{0.3 + 0.04 * i:.2f}\n" for i in range(6)))
    from PIL import Image

    Image.fromarray(moving_frames(1, 48, 64, seed=3)[0]).save(tmp_path / "photo.png")
    done = run_section("Your own videos", tmp_path)
    per_frame = next(p for line, p in done.items() if "--per-frame" in line).stdout.splitlines()
    assert per_frame[0] == "video_id,frame_index,timestamp,score" and len(per_frame) == 1 + 8 + 1
    assert per_frame[-1].startswith("photo,0,")
    assert len(list((tmp_path / "maps").glob("*.png"))) == 8
    assert "extracted 6," in next(p for line, p in done.items() if line.startswith("amnetvid extract")).stdout
    evaluate = next(p for line, p in done.items() if line.startswith("amnetvid evaluate"))
    assert evaluate.stdout.count("fold ") == 5 and "6 labelled videos used, 0 left out" in evaluate.stdout
    assert (tmp_path / "model.safetensors").is_file()
    predicted = next(p for line, p in done.items() if line.startswith("amnetvid predict")).stdout
    rows = dict(line.split("\t") for line in predicted.strip().splitlines()[1:])
    assert set(rows) == {"new0", "new1"} and all(np.isfinite(float(v)) for v in rows.values())
    assert (tmp_path / "run.csv").read_text().splitlines()[0] == "video,short-term_memorability,long-term_memorability"
    run_labels = subprocess.run([str(BIN / "amnetvid"), "sql", "SELECT video_id, short_term FROM labels ORDER BY 1",
                                 "--store", str(tmp_path / "run_store"), "--format", "csv"],
                                capture_output=True, text=True, check=True).stdout
    assert [line.split(",")[0] for line in run_labels.splitlines()[1:]] == ["new0", "new1"]
