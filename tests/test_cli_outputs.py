"""What people submit and read: ``predict`` and ``score`` as table, csv, json and MediaEval run files,
per-frame scores, still images, and the run file read back by ``labels import``."""

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from conftest import moving_frames, run_cli

from amnetvid_sk.errors import LabelFormatError
from amnetvid_sk.labels import MEDIAEVAL_RUN_HEADER

RUN_HEADER = ",".join(MEDIAEVAL_RUN_HEADER)
AMNET = ["--frame-model", "amnet", "--device", "cpu", "--precision", "float32"]


def _stderr_lines(proc):
    return [line for line in proc.stderr.splitlines() if line.strip()]


# ------------------------------------------------------------------ the writer
def test_row_writer_formats_hold_the_same_rows(tmp_path, capsys):
    """table, csv and json hold the same rows: csv floats read back exactly, no value is an empty
    field or null, a note goes to stderr in every format (never into a cell)."""
    from amnetvid_sk.cli.output import RowWriter

    rows = [{"video_id": "clip0", "frames": 3, "mean_score": 0.123456789}, {"video_id": "photo", "frames": 1}]
    for fmt in ("table", "csv", "json"):
        with RowWriter(["video_id", "frames", "mean_score"], fmt, out=tmp_path / fmt) as out:
            out.write(rows[0], note="short clip: fewer frames than asked")
            out.write(rows[1])
    table = (tmp_path / "table").read_text().splitlines()
    assert table == ["video_id\tframes\tmean_score", "clip0\t3\t0.1235", "photo\t1\t"]
    got = list(csv.DictReader(io.StringIO((tmp_path / "csv").read_text())))
    assert got == [{"video_id": "clip0", "frames": "3", "mean_score": "0.123456789"},
                   {"video_id": "photo", "frames": "1", "mean_score": ""}]
    assert json.loads((tmp_path / "json").read_text()) == [
        {"video_id": "clip0", "frames": 3, "mean_score": 0.123456789},
        {"video_id": "photo", "frames": 1, "mean_score": None}]
    assert capsys.readouterr().err.count("note: clip0: short clip: fewer frames than asked\n") == 3


def test_row_writer_file_appears_only_when_complete(tmp_path):
    """--out FILE: an interrupted run leaves the older FILE as it was and no temporary file; a
    finished run replaces it; an empty json output is an empty list."""
    from amnetvid_sk.cli.output import RowWriter

    target = tmp_path / "run.csv"
    target.write_text("older\n")
    with pytest.raises(KeyboardInterrupt):
        with RowWriter(["video_id"], "csv", out=target) as out:
            out.write({"video_id": "clip0"})
            raise KeyboardInterrupt
    assert target.read_text() == "older\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.csv"]
    with RowWriter(["video_id"], "csv", out=target) as out:
        out.write({"video_id": "clip0"})
    assert target.read_text() == "video_id\nclip0\n"
    with RowWriter(["video_id"], "json", out=tmp_path / "empty.json"):
        pass
    assert json.loads((tmp_path / "empty.json").read_text()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.json", "run.csv"]


def test_mediaeval_run_refuses_scores_outside_0_1():
    """A run file holds MediaEval scores; a prediction outside [0, 1] is refused, naming the file and target."""
    import pyarrow as pa

    from amnetvid_sk.predict import mediaeval_run

    predicted = pa.table({"video_id": ["a", "b"], "file": ["a.mp4", "b.webm"], "short_term": [0.5, 1.25],
                          "long_term": pa.array([None, None], pa.float64())})
    with pytest.raises(LabelFormatError, match=r"b\.webm short-term 1\.25"):
        mediaeval_run(predicted)


# ------------------------------------------------------------------ refused before any work
def test_bad_output_options_are_one_line_before_any_work(tmp_path):
    """A missing video with --format mediaeval (one MODEL: whose target its file records, so read after the
    paths are checked; a file without one: tests/test_model_files.py), --out in a missing folder and
    --maps-out with --maps none exit 2 with one line, before a model or video is read."""
    clip = tmp_path / "never_read.mp4"
    proc = run_cli("predict", tmp_path / "missing.joblib", clip, "--format", "mediaeval")
    assert proc.returncode == 2 and len(_stderr_lines(proc)) == 1
    assert "never_read.mp4" in proc.stderr and "does not exist" in proc.stderr
    proc = run_cli("predict", "--short-model", tmp_path / "missing.joblib", clip, "--out",
                   tmp_path / "no_such_folder" / "run.csv")
    assert proc.returncode == 2 and len(_stderr_lines(proc)) == 1
    assert "no_such_folder" in proc.stderr and "does not exist" in proc.stderr
    proc = run_cli("score", clip, "--maps", "none", "--maps-out", tmp_path / "maps")
    assert proc.returncode == 2 and len(_stderr_lines(proc)) == 1
    assert "--maps-out" in proc.stderr and "--maps none" in proc.stderr
    assert sorted(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ score
@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "photo.png"
    Image.fromarray(moving_frames(1, height=40, width=56, seed=7)[0]).save(path)
    return path


def _amnet(amnet_weights):
    from amnetvid_sk.frame_models import make_frame_model

    return make_frame_model("amnet", weights=amnet_weights, device="cpu", precision="float32")


def test_score_per_frame_csv_mixes_videos_and_images_without_maps(clip_dir, photo, amnet_weights):
    """``score --per-frame --format csv --maps none`` on a video and an image: one row per sampled frame
    with its index and timestamp, one row (index 0, no timestamp) for the image; the scores are those
    the frame model gives with its maps."""
    from amnetvid_sk.video import read_image, sample_frames

    video = clip_dir / "clip0.mp4"
    proc = run_cli("score", video, photo, *AMNET, "--weights", amnet_weights, "--frames", "3", "--per-frame",
                   "--format", "csv", "--maps", "none", check=0)
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert list(rows[0]) == ["video_id", "frame_index", "timestamp", "score"]
    sampled = sample_frames(video, n_frames=3)
    assert [(r["video_id"], r["frame_index"]) for r in rows] == \
        [("clip0", str(i)) for i in sampled.indices] + [("photo", "0")]
    assert [float(r["timestamp"]) for r in rows[:3]] == pytest.approx(sampled.timestamps, abs=1e-9)
    assert rows[3]["timestamp"] == ""
    model = _amnet(amnet_weights)
    expected = np.concatenate([model.predict(sampled.frames)[0], model.predict(read_image(photo)[None])[0]])
    assert [float(r["score"]) for r in rows] == pytest.approx(expected, abs=1e-4)


def test_score_json_out_one_object_per_file(clip_dir, photo, amnet_weights, tmp_path):
    """``score --format json --out FILE``: a JSON list with one object per video or image (frames, mean
    score), a failed file named on stderr and exit 1; stdout holds no rows."""
    out = tmp_path / "scores.json"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image\n")
    proc = run_cli("score", clip_dir / "clip2.webm", broken, photo, *AMNET,
                   "--weights", amnet_weights, "--frames", "2", "--format", "json", "--out", out)
    assert proc.returncode == 1 and "broken.jpg" in proc.stderr and proc.stdout == ""
    got = json.loads(out.read_text())
    assert [(r["video_id"], r["frames"]) for r in got] == [("clip2", 2), ("photo", 1)]
    from amnetvid_sk.video import read_image

    assert got[1]["mean_score"] == pytest.approx(float(_amnet(amnet_weights).predict(read_image(photo)[None])[0][0]),
                                                 abs=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.jpg", "scores.json"]


@pytest.mark.parametrize("fmt,per_frame", [("table", False), ("csv", False), ("json", False), ("table", True)])
def test_score_short_clip_note_goes_to_stderr_in_every_format(clip_dir, amnet_weights, fmt, per_frame):
    """``score --frames 1000`` on a 12-frame clip: every cell of table, csv and json (and --per-frame) holds
    its column's value only; the short-clip note is one line on stderr naming the clip and the counts."""
    proc = run_cli("score", clip_dir / "clip0.mp4", *AMNET, "--weights", amnet_weights, "--frames", "1000",
                   "--format", fmt, *(["--per-frame"] if per_frame else []), check=0)
    if fmt == "json":
        rows = json.loads(proc.stdout)
    else:
        rows = list(csv.DictReader(io.StringIO(proc.stdout), delimiter="\t" if fmt == "table" else ","))
    assert len(rows) == (12 if per_frame else 1)
    for row in rows:
        assert None not in row and len(row) == (4 if per_frame else 3)  # no cell beyond the header's
        assert row["video_id"] == "clip0"
        float(row["score" if per_frame else "mean_score"])  # a number, nothing after it
    assert "short clip" not in proc.stdout
    notes = [line for line in _stderr_lines(proc) if line.startswith("note:")]
    assert notes == ["note: clip0: short clip: 12 frames, fewer than the 1000 asked"]


# ------------------------------------------------------------------ predict
FIRST_FRAME_RECIPE = '''"""The score of each video's first stored frame (a long-term model unlike the short one)."""
from sklearn.pipeline import Pipeline

from amnetvid_sk import FrameScores, MeanScoreRegressor


def pipeline(store="store"):
    return Pipeline([("frames", FrameScores(store, n_frames=1)), ("mean", MeanScoreRegressor())])


param_grid = {}
'''


@pytest.fixture(scope="module")
def fitted(clip_dir, amnet_weights, tmp_path_factory):
    """A store of three clips (AMNet, random weights) and two models fitted by ``amnetvid fit``: short-term
    the mean frame score, long-term the first frame's score (so that the two columns differ)."""
    from amnetvid_sk.cli import main
    from amnetvid_sk.labels import import_labels

    folder = tmp_path_factory.mktemp("fitted")
    store = folder / "store"
    clips = [str(clip_dir / name) for name in ("clip0.mp4", "clip1.mp4", "clip2.webm")]
    assert main(["extract", *clips, "--store", str(store), *AMNET, "--weights", str(amnet_weights),
                 "--frames", "2", "--no-progress"]) == 0
    (folder / "labels.csv").write_text("video_id,short_term,long_term\nclip0,0.7,0.4\nclip1,0.8,0.5\nclip2,0.75,0.45\n")
    import_labels(folder / "labels.csv", store, format="csv")
    (folder / "first_frame.py").write_text(FIRST_FRAME_RECIPE)
    short, long = folder / "short.joblib", folder / "long.joblib"
    assert main(["fit", "mean_score", "--store", str(store), "--target", "short", "--out", str(short)]) == 0
    assert main(["fit", str(folder / "first_frame.py"), "--store", str(store), "--target", "long",
                 "--out", str(long)]) == 0
    return {"store": store, "short": short, "long": long}


def _predicted(model_file, ids):
    """What the fitted pipeline predicts for ids already in its store, in this process."""
    from amnetvid_sk.predict import load_pipeline

    return load_pipeline(model_file).predict(np.array(ids, dtype=object))


@pytest.mark.slow
def test_fit_records_target_and_training_size(fitted):
    """``amnetvid fit --target`` writes the target, the number of training videos and the range of their
    labels into the model file."""
    from amnetvid_sk.model_files import model_file_info

    short, long = model_file_info(fitted["short"]), model_file_info(fitted["long"])
    assert (short["target"], short["n_videos"], short["label_range"]) == ("short", 3, [0.7, 0.8])
    assert (long["target"], long["n_videos"], long["label_range"]) == ("long", 3, [0.4, 0.5])


@pytest.mark.slow
def test_predict_one_model_mediaeval_goes_under_its_target_and_warns_once(fitted, clip_dir, tmp_path):
    """``predict MODEL --format mediaeval`` with a long-term model: its predictions under long-term, short-term
    empty; a model trained on fewer than FEW_VIDEOS videos gets one stderr line naming the file, the count and
    the threshold."""
    from amnetvid_sk.metrics import FEW_VIDEOS

    run = tmp_path / "run.csv"
    proc = run_cli("predict", fitted["long"], clip_dir / "clip3.mp4", clip_dir / "clip4.mp4", "--format",
                   "mediaeval", "--out", run, "--no-progress", check=0)
    rows = list(csv.DictReader(io.StringIO(run.read_text())))
    assert list(rows[0]) == list(MEDIAEVAL_RUN_HEADER) and [r["video"] for r in rows] == ["clip3.mp4", "clip4.mp4"]
    assert [r["short-term_memorability"] for r in rows] == ["", ""]
    assert [float(r["long-term_memorability"]) for r in rows] == \
        pytest.approx(_predicted(fitted["long"], ["clip3", "clip4"]), abs=1e-9)
    warnings = [line for line in _stderr_lines(proc) if line.startswith("warning:")]
    assert warnings == [f"warning: the model {fitted['long']} was trained on 3 videos, fewer than {FEW_VIDEOS}: "
                        "its predictions are mostly noise; fit it on more labelled videos"]


@pytest.mark.slow
def test_predict_run_file_round_trip_into_labels(fitted, clip_dir, tmp_path):
    """predict with a short- and a long-term model -> a MediaEval run file (file names with extension) ->
    ``labels import --format mediaeval`` into another store: its labels table holds the predictions."""
    from amnetvid_sk.store import FeatureStore

    run = tmp_path / "run.csv"
    run_cli("predict", "--short-model", fitted["short"], "--long-model", fitted["long"], clip_dir / "clip3.mp4",
            clip_dir / "clip5.webm", "--format", "mediaeval", "--out", run, "--no-progress", check=0)
    lines = run.read_text().splitlines()
    assert lines[0] == RUN_HEADER and [line.split(",")[0] for line in lines[1:]] == ["clip3.mp4", "clip5.webm"]

    other = tmp_path / "other_store"
    assert "imported 2" in run_cli("labels", "import", run, "--format", "mediaeval", "--store", other, check=0).stdout
    got = FeatureStore(other).sql("SELECT video_id, short_term, long_term, source FROM labels ORDER BY video_id")
    assert got.column("video_id").to_pylist() == ["clip3", "clip5"]
    assert set(got.column("source").to_pylist()) == {"mediaeval:run.csv"}
    short, long = _predicted(fitted["short"], ["clip3", "clip5"]), _predicted(fitted["long"], ["clip3", "clip5"])
    assert np.abs(short - long).max() > 1e-5  # the columns can tell a swap
    assert got.column("short_term").to_pylist() == pytest.approx(short, abs=1e-9)
    assert got.column("long_term").to_pylist() == pytest.approx(long, abs=1e-9)


@pytest.mark.slow
def test_predict_one_target_json_and_one_model_csv(fitted, clip_dir, tmp_path):
    """--long-model alone fills long_term and leaves short_term null (json list of objects, --out);
    one MODEL.joblib gives video_id,prediction in csv at full precision."""
    out = tmp_path / "pred.json"
    run_cli("predict", "--long-model", fitted["long"], clip_dir / "clip4.mp4", "--format", "json", "--out", out,
            "--no-progress", check=0)
    got = json.loads(out.read_text())
    assert got == [{"video_id": "clip4", "short_term": None,
                    "long_term": pytest.approx(float(_predicted(fitted["long"], ["clip4"])[0]), abs=1e-9)}]
    proc = run_cli("predict", fitted["short"], clip_dir / "clip4.mp4", "--format", "csv", "--no-progress", check=0)
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [list(r) for r in rows] == [["video_id", "prediction"]]
    assert float(rows[0]["prediction"]) == pytest.approx(float(_predicted(fitted["short"], ["clip4"])[0]), abs=1e-9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.json"]
