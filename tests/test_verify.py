"""``amnetvid verify``: damaged part files found by name with their videos, quarantined by --repair,
redone by the next extract; every other command stops with one line (real stores, the CLI run in process)."""

import os
import shutil

import pyarrow.parquet as pq
import pytest

from conftest import run_cli


def _extract_args(clips, store, weights):
    # one videos part and one frames part per video (--flush-every 1), to damage them one by one
    return ["extract", clips, "--store", store, "--frame-model", "amnet", "--weights", weights, "--frames", "4",
            "--flush-every", "1", "--device", "cpu", "--precision", "float32", "--no-progress"]


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, clip_dir, amnet_weights):
    """A real store of three clips extracted by AMNet (random weights), each in its own part files."""
    root = tmp_path_factory.mktemp("verify")
    clips = root / "clips"
    clips.mkdir()
    for name in ("clip0.mp4", "clip1.mp4", "clip3.mp4"):
        shutil.copy(clip_dir / name, clips / name)
    store = root / "store"
    run_cli(*_extract_args(clips, store, amnet_weights), check=0)
    return clips, store


def _part_of(store, table, video_id):
    """The part file of ``table`` that holds ``video_id``."""
    for part in sorted((store / table).glob("part-*.parquet")):
        if video_id in pq.read_table(part, columns=["video_id"])["video_id"].to_pylist():
            return part
    raise AssertionError(f"no {table} part holds {video_id}")


def _garble_a_page(part, column):
    """Overwrite the page header of ``column``'s first data page: the footer stays intact, so only
    decoding the data finds it."""
    meta = pq.read_metadata(part)
    names = [meta.schema.column(i).path for i in range(meta.num_columns)]
    chunk = meta.row_group(0).column(names.index(column))
    data = bytearray(part.read_bytes())
    data[chunk.data_page_offset:chunk.data_page_offset + 16] = b"\xff" * 16
    part.write_bytes(bytes(data))
    pq.read_metadata(part)  # the footer still reads


def _snapshot(folder):
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def damaged(extracted, tmp_path):
    """A copy of the store with three damaged parts: clip0's frames part cut in half, garbage in a
    data page of clip1's videos part, clip3's videos part emptied to zero bytes."""
    clips, good = extracted
    store = tmp_path / "store"
    shutil.copytree(good, store, ignore=shutil.ignore_patterns(".cache"))
    cut = _part_of(store, "frames", "clip0")
    os.truncate(cut, cut.stat().st_size // 2)
    garbled = _part_of(store, "videos", "clip1")
    _garble_a_page(garbled, "duration")
    empty = _part_of(store, "videos", "clip3")
    empty.write_bytes(b"")
    return clips, store, {"cut": cut, "garbled": garbled, "empty": empty}


def test_verify_names_each_damaged_part_with_its_videos(damaged):
    """A cut part, a part with a garbled data page and a zero-byte part: each named with the videos it held."""
    _, store, parts = damaged
    proc = run_cli("verify", "--store", store)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    out = proc.stdout
    assert "3 damaged" in out, out
    blocks = {}
    for line in out.splitlines():
        if line.startswith("damaged: "):
            current = line
            blocks[current] = []
        elif line.startswith("  ") and blocks:
            blocks[current].append(line)
    assert len(blocks) == 3, out
    by_file = {}
    for head, rest in blocks.items():
        name = head.split(":")[1].strip()
        by_file[os.path.basename(name)] = head + "\n" + "\n".join(rest)
    cut, garbled, empty = (by_file[parts[k].name] for k in ("cut", "garbled", "empty"))
    # no footer: the videos come from the other tables, and it says so
    assert "cannot be read from it" in cut and "'clip0'" in cut and "clip1" not in cut, cut
    assert "cannot be read from it" in empty and "'clip3'" in empty and "clip1" not in empty, empty
    # footer intact, one column garbled: the ids are read from the file itself
    assert "1 videos: 'clip1'" in garbled and "clip0" not in garbled, garbled
    assert "--repair" in out
    assert not (store / "quarantine").exists()  # only a report


def test_commands_meeting_a_damaged_part_fail_in_one_line(damaged, amnet_weights):
    """info, sql, compact and extract into the damaged store: one line naming the file and `verify --repair`,
    exit 2, and not a byte of the store changes."""
    clips, store, parts = damaged
    before = _snapshot(store)
    commands = [["info", "--store", store], ["sql", "SELECT count(*) FROM videos", "--store", store],
                ["compact", "--store", store], _extract_args(clips, store, amnet_weights)]
    for args in commands:
        proc = run_cli(*args)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
        assert lines[0].startswith("error: ") and "amnetvid verify" in lines[0] and "--repair" in lines[0]
        assert any(p.name in lines[0] for p in parts.values()), lines[0]
        assert _snapshot(store) == before, args


def test_array_reads_name_a_part_garbled_inside(moving_peak_store, tmp_path):
    """A frames part whose footer reads but whose score pages are garbage: read_arrays (the path of
    evaluate and predict) raises the one-line error naming it; verify(repair=True) quarantines it."""
    from amnetvid_sk.errors import StoreError
    from amnetvid_sk.store import FeatureStore

    store = tmp_path / "store"
    shutil.copytree(moving_peak_store[0], store, ignore=shutil.ignore_patterns(".cache"))
    part = next((store / "frames").glob("part-*.parquet"))
    _garble_a_page(part, "score")
    fs = FeatureStore(store)
    with pytest.raises(StoreError) as err:
        fs.read_arrays(fs.video_ids()[:3], n_frames=2, maps=False)
    assert part.name in str(err.value) and "verify --store" in str(err.value) and "\n" not in str(err.value)
    report = fs.verify(repair=True)
    assert not report.ok and [d.file for d in report.damaged] == [str(part)]
    assert report.damaged[0].ids_from == "file" and len(report.damaged[0].video_ids) == 200
    assert (store / "quarantine" / "frames" / part.name).exists() and not part.exists()
    # the videos rows of the lost frames were written out of the videos table: its only part held
    # nothing else, so it went to quarantine too and no new part was written
    assert len(report.lost_videos) == 200 and report.rewritten == []
    assert sorted(os.path.basename(os.path.dirname(p)) for p in report.quarantined) == ["frames", "videos"]
    assert fs.verify().ok and len(fs.video_ids()) == 0


def test_repair_quarantines_and_extract_redoes_the_videos(damaged, amnet_weights):
    """--repair moves the damaged parts into quarantine/ (exit 1, damage was found); verify is then clean
    (exit 0); the next extract redoes exactly those videos, and each table holds each row once."""
    from amnetvid_sk.store import FeatureStore

    clips, store, parts = damaged
    proc = run_cli("verify", "--store", store, "--repair")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    for key, table in (("cut", "frames"), ("garbled", "videos"), ("empty", "videos")):
        assert not parts[key].exists()
        assert (store / "quarantine" / table / parts[key].name).exists()
        assert f"quarantined: {os.path.join('quarantine', table, parts[key].name)}" in proc.stdout, proc.stdout
    assert FeatureStore(store).video_ids().tolist() == []  # clip0's videos row went with its frames
    # clip0's videos part held only the row of its lost frames: quarantined too, and said why
    assert "(it held the videos rows of lost frames)" in proc.stdout, proc.stdout
    assert len(list((store / "quarantine" / "videos").iterdir())) == 3
    run_cli("verify", "--store", store, check=0)
    run_cli("info", "--store", store, check=0)

    proc = run_cli(*_extract_args(clips, store, amnet_weights), check=0)
    assert "extracted 3, skipped 0" in proc.stdout, proc.stdout
    run_cli("verify", "--store", store, check=0)
    fs = FeatureStore(store)
    assert fs.video_ids().tolist() == ["clip0", "clip1", "clip3"]
    once = fs.sql("SELECT (SELECT count(*) FROM videos) AS videos, "
                  "(SELECT count(DISTINCT video_id) FROM videos) AS ids, "
                  "(SELECT count(*) FROM frames) AS frames, "
                  "(SELECT count(DISTINCT (extraction_id, frame_index)) FROM frames) AS distinct_frames, "
                  "(SELECT sum(n_frames) FROM videos) AS stored, "
                  "(SELECT count(*) FROM models) AS models").to_pylist()[0]
    assert once == {"videos": 3, "ids": 3, "frames": 12, "distinct_frames": 12, "stored": 12, "models": 1}, once
    scores, maps = fs.read_arrays(["clip0", "clip1", "clip3"], n_frames=4)
    assert scores.shape == (3, 4) and maps.shape == (3, 4, 3, 14, 14)


def test_repair_of_a_videos_part_listing_lost_and_intact_videos(extracted, amnet_weights, tmp_path):
    """One videos part lists three videos and the frames part of one of them is cut: --repair writes the
    videos part again without that video and quarantines the old one; the two others still count as
    extracted with all their frames, the lost one as not extracted, and the next extract redoes it alone."""
    from amnetvid_sk.store import FeatureStore

    clips, good = extracted
    store = tmp_path / "store"
    shutil.copytree(good, store, ignore=shutil.ignore_patterns(".cache"))
    # the videos rows into one part; the frames stay one part per video
    assert FeatureStore(store).compact(["videos"]) == {"videos": (3, 1)}
    (mixed,) = (store / "videos").glob("part-*.parquet")
    assert sorted(pq.read_table(mixed, columns=["video_id"])["video_id"].to_pylist()) == ["clip0", "clip1", "clip3"]
    kept = FeatureStore(store).sql("SELECT video_id, extraction_id FROM videos WHERE video_id <> 'clip1' "
                                   "ORDER BY 1").to_pylist()
    cut = _part_of(store, "frames", "clip1")
    os.truncate(cut, cut.stat().st_size // 2)

    proc = run_cli("verify", "--store", store, "--repair")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "1 damaged" in proc.stdout and f"damaged: {os.path.join('frames', cut.name)}" in proc.stdout
    assert "by the videos table, it held 1: 'clip1'" in proc.stdout, proc.stdout
    assert (f"quarantined: {os.path.join('quarantine', 'videos', mixed.name)} (it held the videos rows of "
            "lost frames)") in proc.stdout, proc.stdout
    assert (store / "quarantine" / "frames" / cut.name).exists() and not cut.exists() and not mixed.exists()
    (rewritten,) = (store / "videos").glob("part-*.parquet")
    assert f"rewrote: {os.path.join('videos', rewritten.name)}" in proc.stdout, proc.stdout
    assert sorted(pq.read_table(rewritten, columns=["video_id"])["video_id"].to_pylist()) == ["clip0", "clip3"]
    run_cli("verify", "--store", store, check=0)

    fs = FeatureStore(store)
    assert fs.video_ids().tolist() == ["clip0", "clip3"]
    assert fs.sql("SELECT video_id, extraction_id FROM videos ORDER BY 1").to_pylist() == kept
    frames = fs.sql("SELECT video_id, count(DISTINCT frame_index) AS n FROM frames GROUP BY 1 ORDER BY 1")
    assert frames.to_pylist() == [{"video_id": "clip0", "n": 4}, {"video_id": "clip3", "n": 4}]
    scores, maps = fs.read_arrays(["clip0", "clip3"], n_frames=4)
    assert scores.shape == (2, 4) and maps.shape == (2, 4, 3, 14, 14)

    proc = run_cli(*_extract_args(clips, store, amnet_weights), check=0)
    assert "extracted 1, skipped 2" in proc.stdout, proc.stdout
    run_cli("verify", "--store", store, check=0)
    fs = FeatureStore(store)
    assert fs.video_ids().tolist() == ["clip0", "clip1", "clip3"]
    # clip0 and clip3 were not redone: the same extractions as before the damage
    assert fs.sql("SELECT video_id, extraction_id FROM videos WHERE video_id <> 'clip1' "
                  "ORDER BY 1").to_pylist() == kept
    once = fs.sql("SELECT count(*) AS n, count(DISTINCT (extraction_id, frame_index)) AS once, "
                  "(SELECT sum(n_frames) FROM videos) AS stored FROM frames").to_pylist()[0]
    assert once == {"n": 12, "once": 12, "stored": 12}, once


def test_leftovers_of_killed_writes_are_reported_and_cleaned(extracted, tmp_path):
    """A temporary part file (a write killed before its rename) and a frames part stored twice (a compact
    killed before deleting the old parts): verify reports both and exits 0; compact keeps each row once
    and leaves a young temporary file (it may be a running writer's); verify --repair deletes it."""
    from amnetvid_sk.store import FeatureStore

    _, good = extracted
    store = tmp_path / "store"
    shutil.copytree(good, store, ignore=shutil.ignore_patterns(".cache"))
    part = _part_of(store, "frames", "clip1")
    shutil.copy(part, part.with_name(part.name.replace("part-", "part-9", 1)))  # sorts after the others
    tmp = store / "frames" / ".part-00000000000000000001-dead.parquet.tmp"
    tmp.write_bytes(part.read_bytes()[:100])

    proc = run_cli("verify", "--store", store, check=0)
    assert "1 temporary part files of interrupted writes (never read)" in proc.stdout, proc.stdout
    assert "rows stored twice (a compact was interrupted; queries see each once): frames 4;" in proc.stdout, \
        proc.stdout
    fs = FeatureStore(store)
    assert fs.sql("SELECT count(*) AS n FROM frames_all").to_pylist() == [{"n": 16}]
    assert fs.sql("SELECT count(*) AS n, count(DISTINCT (extraction_id, frame_index)) AS once "
                  "FROM frames").to_pylist() == [{"n": 12, "once": 12}]  # the view shows each once

    run_cli("compact", "--store", store, check=0)
    fs = FeatureStore(store)
    assert fs.sql("SELECT count(*) AS n, count(DISTINCT (extraction_id, frame_index)) AS once "
                  "FROM frames_all").to_pylist() == [{"n": 12, "once": 12}]
    assert tmp.exists()  # written a moment ago: compact cannot tell it from a running writer's
    proc = run_cli("verify", "--store", store, "--repair", check=0)
    assert "deleted 1 temporary part files" in proc.stdout and "twice" not in proc.stdout, proc.stdout
    assert not tmp.exists()
    proc = run_cli("verify", "--store", store, check=0)
    assert "temporary" not in proc.stdout and "0 damaged" in proc.stdout, proc.stdout
