"""A disk that fills up while the store (or a model file) is written: one clear line and exit 2,
no temporary or half-written file, what was committed before intact, and a rerun after freeing
space completes. The real CLI, run in process, on a small tmpfs (skipped, saying why, where none mounts);
the extraction case is ``test_cli_errors.py::test_full_disk_during_extraction_then_rerun_completes``.

The disk is filled with a filler file up to its last byte; removing the filler frees the space.
"""

import errno
import os
import shutil
import subprocess

import pytest

from conftest import run_cli

CLIPS = [0, 1, 3, 4]  # the H.264 clips of clip_dir; AMNet on the CPU is the slow part: few clips, 2 frames
LABELS = "video_id,short_term,long_term\n" + "".join(f"clip{i},{0.5 + 0.05 * i:.2f},{0.3 + 0.02 * i:.2f}\n"
                                                      for i in CLIPS)


@pytest.fixture(scope="module")
def base_store(clip_dir, amnet_weights, tmp_path_factory):
    """A store of four clips (AMNet, random weights, 2 frames each; 2 part files per table) and their labels."""
    root = tmp_path_factory.mktemp("disk_full")
    store = root / "store"
    run_cli("extract", *[clip_dir / f"clip{i}.mp4" for i in CLIPS], "--store", store, "--frame-model", "amnet",
            "--weights", amnet_weights, "--frames", "2", "--flush-every", "2", "--no-progress", "--device", "cpu",
            check=0)
    labels = root / "labels.csv"
    labels.write_text(LABELS)
    run_cli("labels", "import", labels, "--store", store, "--format", "csv", check=0)
    assert len(list((store / "frames").glob("part-*.parquet"))) == 2
    return store


@pytest.fixture
def disk(tiny_tmpfs):
    """The tiny tmpfs, made large enough for a copy of the store (the filler takes the rest)."""
    subprocess.run(["mount", "-o", "remount,size=4m", str(tiny_tmpfs)], check=True)
    return tiny_tmpfs


def fill(folder):
    """Fill the disk of ``folder`` to its last byte; returns the filler file (delete it to free the space)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 16, 4096, 1):  # big writes, then what is left of the last page
            try:
                while True:
                    os.write(fd, bytes(size))
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    assert os.statvfs(folder).f_bavail == 0
    return filler


def files(store):
    """Every file under ``store`` (relative names); the array cache's folder left out."""
    return sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file() and ".cache" not in p.parts)


def temporary(folder):
    """Temporary files left anywhere under ``folder``."""
    return [str(p) for p in folder.rglob("*") if p.name.endswith(".tmp")]


def one_error_line(proc, *words):
    """The run failed with exit 2 and one ``error:`` line that holds ``words`` (beside the warnings about
    the data, such as the small-set one); the line."""
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("warning: ")]
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def rows(store, query):
    from amnetvid_sk.store import FeatureStore

    with FeatureStore(store) as fs:
        return fs.sql(query).to_pylist()


def test_labels_import_on_a_full_disk_then_rerun(base_store, disk, tmp_path):
    """A label import that fills the disk writes nothing and keeps the labels imported before; the rerun imports
    each row once."""
    store = disk / "store"
    shutil.copytree(base_store, store)
    new = tmp_path / "more.csv"
    new.write_text("video_id,short_term\n" + "".join(f"extra{i},{0.1 * i:.1f}\n" for i in range(5)))
    before, listing = rows(store, "SELECT * FROM labels ORDER BY video_id"), files(store)
    filler = fill(disk)

    proc = run_cli("labels", "import", new, "--store", store, "--format", "csv")
    line = one_error_line(proc, "no space left", str(store), "'labels'", "free space")
    assert "imported" not in proc.stdout, line
    assert temporary(disk) == [] and files(store) == listing  # no tmp, no half part file
    assert rows(store, "SELECT * FROM labels ORDER BY video_id") == before

    filler.unlink()
    assert "imported 5 labels" in run_cli("labels", "import", new, "--store", store, "--format", "csv",
                                          check=0).stdout
    counts = rows(store, "SELECT video_id, count(*) AS n FROM labels_all GROUP BY 1 ORDER BY 1")
    assert [r["video_id"] for r in counts] == [f"clip{i}" for i in CLIPS] + [f"extra{i}" for i in range(5)]
    assert {r["n"] for r in counts} == {1}
    assert rows(store, "SELECT short_term FROM labels WHERE video_id = 'extra3'")[0]["short_term"] == \
        pytest.approx(0.3, abs=1e-6)
    assert temporary(disk) == []


def test_compact_on_a_full_disk_then_rerun(base_store, disk):
    """A compaction that fills the disk leaves the old part files, every row once, and no new file;
    after freeing space it compacts."""
    store = disk / "store"
    shutil.copytree(base_store, store)
    frames_q = ("SELECT count(*) AS n, count(DISTINCT (extraction_id, frame_index)) AS distinct_n, "
                "list(DISTINCT video_id ORDER BY video_id) AS ids FROM frames_all")
    videos_q = "SELECT extraction_id, video_id FROM videos_all ORDER BY 1"
    scores_q = "SELECT video_id, frame_index, score FROM frames ORDER BY 1, 2"
    frames, videos, scores = rows(store, frames_q), rows(store, videos_q), rows(store, scores_q)
    assert frames[0]["n"] == frames[0]["distinct_n"] == 8 and len(videos) == 4
    listing = files(store)
    filler = fill(disk)

    proc = run_cli("compact", "--store", store)
    one_error_line(proc, "no space left", str(store), "'frames'", "free space")
    # every old part is still there and nothing new: DuckDB wrote no temp or .wal file either
    assert files(store) == listing and temporary(disk) == []
    assert rows(store, frames_q) == frames and rows(store, videos_q) == videos

    filler.unlink()
    out = run_cli("compact", "--store", store, check=0).stdout
    assert "2 part files -> 1" in out, out
    assert len(list((store / "frames").glob("part-*.parquet"))) == 1
    assert rows(store, frames_q) == frames and rows(store, scores_q) == scores
    assert sorted(r["video_id"] for r in rows(store, videos_q)) == sorted(r["video_id"] for r in videos)
    assert temporary(disk) == []


@pytest.mark.slow  # two runs that import scikit-learn and torch: over 20 s here
def test_evaluate_results_on_a_full_disk_then_rerun(base_store, disk):
    """``evaluate`` whose run finds the disk full (its predictions, written first, then its results rows):
    one line, no part of either; the rerun writes one run."""
    store = disk / "store"
    shutil.copytree(base_store, store)
    listing = files(store)
    filler = fill(disk)
    args = ["evaluate", "mean_score", "--store", store, "--target", "short", "--cv", "2"]

    proc = run_cli(*args)
    one_error_line(proc, "no space left", str(store), "'predictions'", "free space")
    assert files(store) == listing and temporary(disk) == []

    filler.unlink()
    proc = run_cli(*args, check=0)
    assert "fold 2: spearman" in proc.stdout, proc.stdout
    results = rows(store, "SELECT run_id, fold FROM results ORDER BY fold")
    assert [r["fold"] for r in results] == [0, 1] and len({r["run_id"] for r in results}) == 1
    kept = rows(store, "SELECT DISTINCT run_id FROM predictions")
    assert kept == [{"run_id": results[0]["run_id"]}]  # the failed run left no predictions behind
    assert temporary(disk) == []


@pytest.mark.slow  # as the one above
def test_fit_out_on_a_full_disk_then_rerun(base_store, disk, tmp_path):
    """``fit --out`` onto a full disk: one line, no model file nor temporary; after freeing space it saves a model
    that loads. Saving over that file on a full disk keeps it whole."""
    from amnetvid_sk.errors import DiskFullError
    from amnetvid_sk.model_files import load_model, save_model

    store = tmp_path / "store"  # the store has room: only the model file is on the small disk
    shutil.copytree(base_store, store)
    out = disk / "model.safetensors"
    filler = fill(disk)
    args = ["fit", "mean_score", "--store", store, "--target", "short", "--out", out]

    proc = run_cli(*args)
    one_error_line(proc, "no space left", str(out), "free space")
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # no model file, no .tmp

    filler.unlink()
    proc = run_cli(*args, check=0)
    assert "saved to" in proc.stdout, proc.stdout
    model = load_model(out)
    assert model.predict(["clip0", "clip1"]).shape == (2,)

    saved = out.read_bytes()
    filler = fill(disk)
    with pytest.raises(DiskFullError, match="model file") as err:
        save_model(model, out, recipe="mean_score")
    assert err.value.errno == errno.ENOSPC
    assert out.read_bytes() == saved and temporary(disk) == []


def test_write_part_on_a_full_disk_is_store_full_error(tiny_tmpfs):
    """The store's writer turns ENOSPC into StoreFullError (still an OSError with its errno), removes its
    temporary file, and a later write with room succeeds."""
    import numpy as np
    import pyarrow as pa

    from amnetvid_sk.errors import StoreFullError
    from amnetvid_sk.store.write import write_part

    store = tiny_tmpfs / "store"
    schema = pa.schema([("x", pa.float32())])
    data = pa.table({"x": pa.array(np.random.default_rng(0).random(100_000, dtype=np.float32))})  # ~400 KB
    with pytest.raises(StoreFullError) as err:
        write_part(store, "results", data, schema)
    assert isinstance(err.value, OSError) and err.value.errno == errno.ENOSPC
    assert str(store) in str(err.value) and "'results'" in str(err.value) and "[Errno" not in str(err.value)
    assert list((store / "results").iterdir()) == []

    subprocess.run(["mount", "-o", "remount,size=4m", str(tiny_tmpfs)], check=True)
    part = write_part(store, "results", data, schema)
    assert [p.name for p in (store / "results").iterdir()] == [part.name]


def test_cli_reports_a_raw_full_disk_in_one_line():
    """An ENOSPC OSError from outside the package's writers (with or without a file name, or under another
    error raised while handling it) is a user error with one line saying what to do."""
    from amnetvid_sk.cli import _error_line, _is_user_error

    named = OSError(errno.ENOSPC, "No space left on device", "out/scores.tsv")
    bare = OSError(errno.EDQUOT, "Disk quota exceeded")
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("Error while serializing")
    except RuntimeError as exc:
        wrapped = exc
    for exc, words in ((named, ["no space left", "'out/scores.tsv'"]), (bare, ["quota"]),
                       (wrapped, ["no space left"])):
        assert _is_user_error(exc)
        line = _error_line(exc)
        assert line.startswith("error: ") and "\n" not in line and "free space" in line, line
        assert all(w in line for w in words), line
    assert not _is_user_error(RuntimeError("a bug"))
