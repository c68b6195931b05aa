"""Every bad ``amnetvid`` command gets one clear line on stderr and exit status 2 (run in process:
what is tested is what ``main`` prints and returns)."""

import shutil
import subprocess
import sys

import joblib
import numpy as np
import pytest

from conftest import moving_frames, run_cli


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture(scope="module")
def bad(tmp_path_factory, amnet_weights, clip_dir):
    """Real files for the bad invocations: stores in several broken states, bad model files, ..."""
    from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store

    root = tmp_path_factory.mktemp("bad")
    maps, scores, y = make_moving_peak_dataset(12, n_frames=4, seed=0)
    good = root / "good"
    write_synthetic_store(good, maps, scores, y)

    nolabels = root / "nolabels"
    shutil.copytree(good, nolabels)
    shutil.rmtree(nolabels / "labels")

    labels_only = root / "labels_only"
    csv = root / "labels.csv"
    csv.write_text("video_id,short_term,long_term\nv1,0.5,0.3\nv2,0.6,0.4\n")
    run_cli("labels", "import", csv, "--store", labels_only, "--format", "csv", check=0)

    damaged = root / "damaged"
    shutil.copytree(good, damaged)
    part = next((damaged / "videos").glob("part-*.parquet"))
    data = bytearray(part.read_bytes())
    data[-8:] = b"\xff" * 8  # the footer length and magic bytes: no reader can find the schema
    part.write_bytes(bytes(data))

    (root / "empty").mkdir()
    not_a_folder = root / "store_file"
    not_a_folder.write_text("I am a file, not a store\n")

    joblib.dump({"not": "a pipeline"}, root / "dict.joblib")
    (root / "text.joblib").write_text("this is not a joblib file\n")
    (root / "text.safetensors").write_text("this is not a model file\n")
    bad_labels = root / "bad_labels.csv"
    bad_labels.write_text("video_id,short_term\nv1,1.5\nv2,abc\n")

    return {
        "good": good, "nolabels": nolabels, "labels_only": labels_only, "damaged": damaged,
        "damaged_part": part.name, "empty": root / "empty", "missing_store": root / "no_such_store",
        "file": not_a_folder, "dict_joblib": root / "dict.joblib", "text_joblib": root / "text.joblib",
        "text_model": root / "text.safetensors",
        "missing_joblib": root / "missing.joblib", "clip": clip_dir / "clip0.mp4", "weights": amnet_weights,
        "bad_labels": bad_labels, "missing_labels": root / "missing.csv",
        "no_folder": root / "no_such_folder" / "model.joblib",
    }


NO_CUDA = "this machine has CUDA: the --device cuda rows need a machine without it"

# (id, arguments with {placeholders} from the `bad` fixture, words the message must hold, options)
ROWS = [
    # the command line itself
    ("no-command", [], ["COMMAND"], {}),
    ("unknown-command", ["frobnicate"], ["invalid choice", "frobnicate"], {}),
    ("extract-frames-0", ["extract", "{clip}", "--frames", "0"], ["--frames", ">= 1", "'0'"], {}),
    ("extract-fps-negative", ["extract", "{clip}", "--fps", "-1"], ["--fps", "> 0", "'-1'"], {}),
    ("extract-fps-nan", ["extract", "{clip}", "--fps", "nan"], ["--fps", "> 0"], {}),
    ("extract-flush-every-0", ["extract", "{clip}", "--flush-every", "0"], ["--flush-every", ">= 1"], {}),
    ("extract-workers-0", ["extract", "{clip}", "--workers", "0"], ["--workers", ">= 1"], {}),
    ("extract-batch-size-text", ["extract", "{clip}", "--batch-size", "many"], ["--batch-size", "'many'"], {}),
    ("extract-precision-float16", ["extract", "{clip}", "--precision", "float16"],
     ["--precision", "float16", "bfloat16"], {}),
    ("extract-frames-and-fps", ["extract", "{clip}", "--frames", "4", "--fps", "2"], ["not allowed with"], {}),
    ("extract-ids-unknown", ["extract", "{clip}", "--ids", "hash"], ["--ids", "relpath"], {}),
    ("extract-dask-no-scheduler", ["extract", "{clip}", "--backend", "dask"], ["--scheduler"], {}),
    ("extract-scheduler-without-dask", ["extract", "{clip}", "--scheduler", "tcp://127.0.0.1:8786"],
     ["--backend dask"], {}),
    ("extract-dask-not-installed", ["extract", "{clip}", "--backend", "dask", "--scheduler", "tcp://127.0.0.1:1"],
     ["amnetvid-sk[dask]"], {"no_dask": True}),
    ("extract-device-tpu", ["extract", "{clip}", "--device", "tpu"], ["--device", "'cpu', 'cuda'"], {}),
    ("extract-device-cuda", ["extract", "{clip}", "--store", "{empty}", "--frame-model", "amnet",
                             "--weights", "{weights}", "--device", "cuda", "--no-progress"],
     ["cuda", "CUDA"], {"no_cuda": True}),
    ("extract-store-is-file", ["extract", "{clip}", "--store", "{file}"], ["--store", "is a file"], {}),
    ("extract-amnet-weights-missing", ["extract", "{clip}", "--store", "{empty}", "--frame-model", "amnet",
                                       "--weights", "{missing_joblib}", "--device", "cpu"],
     ["missing.joblib"], {}),
    ("score-no-videos", ["score"], ["VIDEO"], {}),
    ("score-frames-0", ["score", "{clip}", "--frames", "0"], ["--frames", ">= 1"], {}),
    ("score-precision-twice", ["score", "{clip}", "--precision", "float32", "--bfloat16"],
     ["not allowed with"], {}),
    ("score-amnet-without-weights", ["score", "{clip}", "--frame-model", "amnet", "--device", "cpu"],
     ["weights", "AMNet"], {}),
    ("score-resmem-with-weights", ["score", "{clip}", "--weights", "{missing_joblib}", "--device", "cpu"],
     ["weights", "resmem"], {}),
    ("score-frame-model-unknown", ["score", "{clip}", "--frame-model", "vgg", "--device", "cpu"],
     ["vgg", "resmem"], {}),
    ("score-device-cuda", ["score", "{clip}", "--frame-model", "amnet", "--weights", "{weights}",
                           "--device", "cuda"], ["cuda", "CUDA"], {"no_cuda": True}),
    # labels
    ("labels-no-action", ["labels"], ["ACTION"], {}),
    ("labels-format-unknown", ["labels", "import", "{bad_labels}", "--format", "xml"],
     ["--format", "mediaeval"], {}),
    ("labels-file-missing", ["labels", "import", "{missing_labels}", "--store", "{empty}", "--format", "csv"],
     ["missing.csv"], {}),
    ("labels-bad-rows", ["labels", "import", "{bad_labels}", "--store", "{empty}", "--format", "csv"],
     ["line 2", "line 3"], {}),
    # SQL and the store
    ("sql-unknown-option", ["sql", "SELECT 1", "--bogus"], ["--bogus", "(see amnetvid sql --help)"], {}),
    ("labels-import-unknown-option", ["labels", "import", "{bad_labels}", "--bogus"],
     ["--bogus", "(see amnetvid labels import --help)"], {}),
    ("sql-param-bad-int", ["sql", "SELECT ?", "--param", "int:abc"], ["--param", "int:abc", "int"], {}),
    ("sql-store-is-file", ["sql", "SELECT 1", "--store", "{file}"], ["is a file"], {}),
    ("sql-syntax-error", ["sql", "SELEC 1", "--store", "{good}"], ["SELEC"], {}),
    ("sql-writes", ["sql", "DROP VIEW frames", "--store", "{good}"], ["DROP"], {}),
    ("sql-damaged-part", ["sql", "SELECT count(*) FROM videos", "--store", "{damaged}"],
     ["{damaged_part}", "damaged"], {}),
    ("info-damaged-part", ["info", "--store", "{damaged}"], ["{damaged_part}", "damaged"], {}),
    ("compact-damaged-part", ["compact", "--store", "{damaged}"], ["{damaged_part}", "damaged"], {}),
    ("info-store-is-file", ["info", "--store", "{file}"], ["is a file"], {}),
    ("compact-store-is-file", ["compact", "--store", "{file}"], ["is a file"], {}),
    # evaluation
    ("evaluate-unknown-recipe", ["evaluate", "no_such_recipe", "--store", "{good}", "--target", "short"],
     ["no_such_recipe", "mean_score"], {}),
    ("evaluate-cv-1", ["evaluate", "mean_score", "--target", "short", "--cv", "1"], ["--cv", ">= 2"], {}),
    ("evaluate-no-target", ["evaluate", "mean_score"], ["--target"], {}),
    ("evaluate-target-unknown", ["evaluate", "mean_score", "--target", "medium"], ["--target", "medium"], {}),
    ("evaluate-empty-store", ["evaluate", "mean_score", "--store", "{empty}", "--target", "short"],
     ["empty"], {}),
    ("evaluate-missing-store", ["evaluate", "mean_score", "--store", "{missing_store}", "--target", "short"],
     ["no_such_store", "does not exist"], {}),
    ("table1-missing-store", ["table1", "--store", "{missing_store}"], ["no_such_store", "does not exist"], {}),
    ("grid-missing-store", ["grid", "mean_score", "--store", "{missing_store}", "--target", "short"],
     ["no_such_store", "does not exist"], {}),
    ("fit-missing-store", ["fit", "mean_score", "--store", "{missing_store}", "--target", "short", "--out",
                           "{missing_joblib}"], ["no_such_store", "does not exist"], {}),
    ("info-missing-store", ["info", "--store", "{missing_store}"], ["no_such_store", "does not exist"], {}),
    ("sql-missing-store", ["sql", "SELECT 1", "--store", "{missing_store}"], ["no_such_store", "does not exist"],
     {}),
    ("predict-missing-store", ["predict", "{dict_joblib}", "{clip}", "--store", "{missing_store}"],
     ["no_such_store", "does not exist"], {}),
    ("predict-missing-video", ["predict", "{dict_joblib}", "{missing_store}/v.mp4"],
     ["PATH", "v.mp4", "does not exist"], {}),
    ("score-missing-video", ["score", "{missing_store}/v.mp4"], ["VIDEO", "v.mp4", "does not exist"], {}),
    ("extract-missing-path", ["extract", "{missing_store}", "--store", "{empty}"], ["PATH", "no_such_store",
                                                                                  "does not exist"], {}),
    ("evaluate-no-labels", ["evaluate", "mean_score", "--store", "{nolabels}", "--target", "short"],
     ["no short-term labels", "labels import"], {}),
    ("evaluate-labels-without-features", ["evaluate", "mean_score", "--store", "{labels_only}",
                                          "--target", "short"], ["none of its 2 videos", "extract"], {}),
    ("evaluate-damaged-part", ["evaluate", "mean_score", "--store", "{damaged}", "--target", "short"],
     ["{damaged_part}"], {}),
    ("evaluate-more-folds-than-videos", ["evaluate", "mean_score", "--store", "{good}", "--target", "short",
                                        "--cv", "13"], ["13-fold", "has 12 with a short-term label", "--cv 12"],
     {}),
    ("grid-more-folds-than-videos", ["grid", "mean_score", "--store", "{good}", "--target", "long", "--cv", "20"],
     ["20-fold", "has 12 with a long-term label", "--cv 12"], {}),
    ("table1-more-folds-than-videos", ["table1", "--store", "{good}", "--cv", "13", "--max-epochs", "1"],
     ["13-fold", "has 12"], {}),
    ("table1-cv-1", ["table1", "--cv", "1"], ["--cv", ">= 2"], {}),
    ("table1-max-epochs-0", ["table1", "--max-epochs", "0"], ["--max-epochs"], {}),
    ("table1-protocol-unknown", ["table1", "--protocol", "optimistic"], ["--protocol", "paper"], {}),
    ("table1-empty-store", ["table1", "--store", "{empty}"], ["empty"], {}),
    ("grid-cv-1", ["grid", "mean_score", "--target", "short", "--cv", "1"], ["--cv"], {}),
    ("grid-n-jobs-0", ["grid", "mean_score", "--target", "short", "--n-jobs", "0"], ["--n-jobs", "-1"], {}),
    ("grid-dask-no-scheduler", ["grid", "mean_score", "--target", "short", "--backend", "dask"],
     ["--scheduler"], {}),
    ("grid-dask-not-installed", ["grid", "mean_score", "--store", "{good}", "--target", "short",
                                 "--backend", "dask", "--scheduler", "tcp://127.0.0.1:1"],
     ["amnetvid-sk[dask]"], {"no_dask": True}),
    ("grid-no-labels", ["grid", "mean_score", "--store", "{nolabels}", "--target", "long"],
     ["no long-term labels"], {}),
    ("fit-no-out", ["fit", "mean_score", "--target", "short"], ["--out"], {}),
    ("fit-out-folder-missing", ["fit", "mean_score", "--store", "{good}", "--target", "short",
                                "--out", "{no_folder}"], ["--out", "no_such_folder", "does not exist"], {}),
    ("fit-empty-store", ["fit", "mean_score", "--store", "{empty}", "--target", "short", "--out",
                         "{missing_joblib}"], ["empty"], {}),
    # predict
    ("predict-no-paths", ["predict", "{dict_joblib}"], ["PATH"], {}),
    ("predict-model-missing", ["predict", "{missing_joblib}", "{clip}"], ["missing.joblib", "does not exist"], {}),
    ("predict-model-not-a-pipeline", ["predict", "{dict_joblib}", "{clip}"], ["dict.joblib", "dict"], {}),
    ("predict-model-pickle-refused", ["predict", "{text_joblib}", "{clip}"], ["text.joblib", "--allow-pickle"], {}),
    ("predict-model-not-a-model", ["predict", "{text_model}", "{clip}"], ["text.safetensors", "not an amnetvid-sk model file"], {}),
    ("predict-pickle-not-a-pipeline", ["predict", "{dict_joblib}", "{clip}", "--allow-pickle"], ["dict.joblib", "dict"], {}),
    ("predict-store-is-file", ["predict", "{dict_joblib}", "{clip}", "--store", "{file}"], ["is a file"], {}),
    ("verify-store-missing", ["verify", "--store", "{missing_store}"], ["no_such_store", "does not exist"], {}),
    ("verify-store-is-file", ["verify", "--store", "{file}"], ["is a file"], {}),
    ("report-store-missing", ["report", "--store", "{missing_store}"], ["no_such_store", "does not exist"], {}),
    ("evaluate-n-frames-0", ["evaluate", "mean_score", "--target", "short", "--n-frames", "0"], ["--n-frames", ">= 1"], {}),
    ("evaluate-short-videos-unknown", ["evaluate", "mean_score", "--target", "short", "--short-videos", "pad"],
     ["--short-videos", "invalid choice", "'pad'"], {}),
    # the demo's own parser reports in the same way
    ("demo-cv-text", ["demo", "--cv", "three"], ["--cv", "three"], {}),
]


def test_there_are_enough_rows():
    """The table covers at least 30 bad invocations and every subcommand."""
    from amnetvid_sk.cli import build_parser

    assert len(ROWS) >= 30
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    covered = {args[0] for _, args, _, _ in ROWS if args}
    assert commands <= covered, commands - covered


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_bad_invocation_gets_one_line(row, bad, monkeypatch):
    """A bad invocation exits 2 with exactly one non-empty stderr line, no traceback, naming what is wrong."""
    name, args, words, opts = row
    if opts.get("no_cuda") and _cuda_available():
        pytest.skip(NO_CUDA)
    if opts.get("no_dask"):
        # as when the dask extra is not installed: `import distributed` raises ImportError
        monkeypatch.setitem(sys.modules, "distributed", None)
    proc = run_cli(*[a.format(**bad) for a in args])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    for word in words:
        assert word.format(**bad) in lines[0], (word, lines[0])


def test_sklearn_parameter_errors_called_by_the_cli_are_user_errors(bad):
    """scikit-learn's InvalidParameterError from a package function the CLI called is a user error in one
    line; the same error from a call outside the package, or a ValueError deep in a dependency, is a bug."""
    import argparse

    from sklearn.metrics import mean_squared_error

    from amnetvid_sk.cli import _error_line, _is_user_error
    from amnetvid_sk.cli.model_commands import cmd_evaluate

    args = argparse.Namespace(recipe="mean_score", store=str(bad["good"]), target="medium", cv=2, n_jobs=1, seed=0,
                              max_epochs=None)
    with pytest.raises(ValueError) as err:
        cmd_evaluate(args)  # past argparse's own check, as a value no option checks would be
    assert _is_user_error(err.value)
    line = _error_line(err.value)
    assert line.startswith("error: The 'target' parameter") and "'medium'" in line and "\n" not in line
    with pytest.raises(ValueError) as err:
        mean_squared_error([1.0], [1.0], multioutput="nonsense")  # called from here, not from the package
    assert not _is_user_error(err.value)
    with pytest.raises(ValueError) as err:
        np.zeros(3).reshape(2, 2)
    assert not _is_user_error(err.value)


@pytest.mark.parametrize("command", [["score", "{clip}"], ["extract", "{clip}", "--store", "{empty}"]],
                         ids=["score", "extract"])
def test_device_this_machine_lacks_is_a_cli_worded_error(command, bad):
    """--device cuda:N beyond this machine's GPUs (every machine lacks one) is one line, exit 2, in the
    command line's terms: it names --device, what was asked, what this machine has and the values
    allowed here, never the Python parameter (device=None); nothing is extracted."""
    import torch

    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    asked = f"cuda:{n_gpus}"
    before = sorted(bad["empty"].rglob("*"))
    proc = run_cli(*[a.format(**bad) for a in command], "--frame-model", "amnet", "--weights", bad["weights"],
                   "--device", asked, "--no-progress" if command[0] == "extract" else "--frames=1")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("error: argument --device: ") and f"{asked!r} was asked" in line, line
    has = f"{n_gpus} CUDA device" if n_gpus else "no CUDA device (torch sees none), only the CPU"
    assert f"this machine has {has}" in line and "allowed here: cpu" in line, line
    assert "device=None" not in line and "parameter" not in line, line
    assert proc.stdout == "" and sorted(bad["empty"].rglob("*")) == before


def test_resolve_device_names_the_devices_this_machine_has():
    """In Python, a CUDA device this machine lacks is a DeviceError (a ValueError) listing the devices it has."""
    import torch

    from amnetvid_sk.errors import DeviceError
    from amnetvid_sk.frame_models.base import available_devices, resolve_device

    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert available_devices() == ["cpu", *(f"cuda:{i}" for i in range(n_gpus))]
    with pytest.raises(DeviceError, match=f"'cuda:{n_gpus}'.*torch sees cpu") as err:
        resolve_device(f"cuda:{n_gpus}")
    assert isinstance(err.value, ValueError)
    assert err.value.asked == f"cuda:{n_gpus}" and err.value.available == available_devices()


def test_traceback_env_shows_where(bad):
    """AMNETVID_TRACEBACK=1 shows the traceback of a user error (for bug reports); exit status stays."""
    args = ("evaluate", "mean_score", "--store", bad["empty"], "--target", "short")
    message = f"no video to learn from in the store {str(bad['empty'])!r}: it is empty"
    plain = run_cli(*args)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr, plain.stderr
    assert plain.stderr.strip().startswith(f"error: {message}"), plain.stderr
    proc = run_cli(*args, env={"AMNETVID_TRACEBACK": "1"})
    # the documented status of a bad input (2), as without the variable; the traceback ends in the same message
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" in proc.stderr and f"StoreError: {message}" in proc.stderr, proc.stderr


def test_full_disk_during_extraction_then_rerun_completes(tiny_tmpfs, amnet_weights, tmp_path):
    """A store on a disk that fills up: one line naming the kept videos, exit 2; with more space a rerun completes."""
    from amnetvid_sk.testing.clips import write_clip
    from amnetvid_sk.store import FeatureStore

    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(8):  # 8 videos x 12 frames of maps: about 250 KB of part files, over 128 KiB
        write_clip(videos / f"clip{i:02d}.mp4", moving_frames(12, seed=i), fps=12)
    store = tiny_tmpfs / "store"
    args = ["extract", videos, "--store", store, "--frame-model", "amnet", "--weights", amnet_weights,
            "--frames", "12", "--flush-every", "1", "--device", "cpu", "--no-progress"]
    proc = run_cli(*args)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "kept" in lines[0], lines[0]
    kept = FeatureStore(store).video_ids()
    assert 0 < len(kept) < 8
    assert f"{len(kept)} " in lines[0], (len(kept), lines[0])  # says how many were kept

    # more space on the same disk: the rerun skips what was kept and extracts the rest
    subprocess.run(["mount", "-o", "remount,size=8m", str(tiny_tmpfs)], check=True)
    proc = run_cli(*args, check=0)
    assert f"skipped {len(kept)}" in proc.stdout, proc.stdout
    assert sorted(FeatureStore(store).video_ids()) == [f"clip{i:02d}" for i in range(8)]
    scores, _ = FeatureStore(store).read_arrays([f"clip{i:02d}" for i in range(8)], maps=False)
    assert scores.shape == (8, 12) and np.isfinite(scores).all()
