"""The report of a store (``amnetvid report``, ``write_report``): its sections, its figures, and the
page as a real browser shows it (headless Chromium: every image loads, no text overflows its box)."""

import json
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest

from conftest import ROOT, run_cli

CHROMIUM = "/usr/bin/chromium"
# what the page must show, by section id
SECTIONS = ("store", "results", "predicted", "worst", "figure1", "figure4", "failures", "sql")

# Appended to a copy of index.html: on load, every image must have loaded and no text element may
# be wider than its box (a pre scrolls instead); the findings go into <pre id="check-result">.
CHECK_SCRIPT = """<script>
window.addEventListener("load", () => {
  const broken = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute("src"));
  const overflow = [];
  for (const el of document.querySelectorAll("td, th, p, li, h1, h2, h3, h4, caption, pre, figcaption")) {
    if (el.scrollWidth <= el.clientWidth + 1) continue;
    if (el.tagName === "PRE" && ["auto", "scroll"].includes(getComputedStyle(el).overflowX)) continue;
    overflow.push({tag: el.tagName, text: el.textContent.slice(0, 100), scroll: el.scrollWidth,
                   client: el.clientWidth});
  }
  const root = document.documentElement;
  const result = document.createElement("pre");
  result.id = "check-result";
  result.textContent = JSON.stringify({
    images: document.images.length, broken, overflow,
    page_wider_than_window: root.scrollWidth > root.clientWidth + 1,
    sections: [...document.querySelectorAll("section")].map(s => s.id),
  });
  document.body.appendChild(result);
});
</script>"""


def chromium_check(index):
    """Open a copy of the report's ``index`` (beside its PNGs) in headless Chromium; the check's findings."""
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is not installed (Debian: apt-get install chromium; .ci/run installs it): "
                    "the report is not checked in a browser here")
    page = index.with_name("_browser_check.html")
    page.write_text(index.read_text().replace("</body>", CHECK_SCRIPT + "</body>"))
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120)
    page.unlink()
    found = re.search(r'<pre id="check-result">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"the check did not run in Chromium (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
    import html

    return json.loads(html.unescape(found.group(1)))


def assert_renders(index, sections=SECTIONS):
    """Every image loads, no text overflows, the page is no wider than the window, the sections are there."""
    result = chromium_check(index)
    assert result["images"] > 0 and result["broken"] == [], result["broken"]
    assert result["overflow"] == [], result["overflow"]
    assert not result["page_wider_than_window"]
    assert set(sections) <= set(result["sections"]), result["sections"]
    return result


def test_browser_check_finds_overflow_and_broken_images(tmp_path):
    """The check itself: a paragraph wider than its box and an image that does not load are reported."""
    index = tmp_path / "index.html"
    index.write_text("<!doctype html><html><body><p style='width:80px;white-space:nowrap'>" + "wide " * 40 +
                     "</p><pre style='width:80px;overflow-x:auto'>" + "scrolls " * 40 + "</pre>"
                     "<img src='missing.png'><section id='x'></section></body></html>")
    result = chromium_check(index)
    assert result["broken"] == ["missing.png"] and [o["tag"] for o in result["overflow"]] == ["P"]
    assert result["sections"] == ["x"]


def texts_outside(fig):
    """What of a matplotlib figure is drawn outside its canvas: each title, text, axis label and legend
    entry by name, then everything drawn together (tick labels included)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width, height = fig.canvas.get_width_height()
    texts = list(fig.texts)
    for ax in fig.axes:
        texts += [ax.title, *ax.texts]
        if ax.axison:  # an axes turned off draws no axis labels (nor ticks)
            texts += [ax.xaxis.label, ax.yaxis.label]
        if ax.get_legend() is not None:
            texts += ax.get_legend().get_texts()
    out = []
    for text in texts:
        if text.get_visible() and text.get_text().strip():
            box = text.get_window_extent(renderer)
            if box.x0 < -0.5 or box.y0 < -0.5 or box.x1 > width + 0.5 or box.y1 > height + 0.5:
                out.append((text.get_text(), tuple(np.round(box.extents, 1))))
    x0, y0, x1, y1 = fig.get_tightbbox(renderer).extents * fig.dpi  # inches -> pixels
    if x0 < -0.5 or y0 < -0.5 or x1 > width + 0.5 or y1 > height + 0.5:
        out.append(("everything drawn", tuple(np.round((x0, y0, x1, y1), 1))))
    return out


# ----------------------------------------------------------------------- results made up for tests
def _result(ids, labels, recipe, target, noise, protocol="cv", seed=0, n_folds=3):
    """A CVResult with out-of-fold predictions: the labels plus noise."""
    from scipy.stats import spearmanr

    from amnetvid_sk.evaluate import CVResult
    from amnetvid_sk.uncertainty import OutOfFold

    rng = np.random.default_rng(seed)
    fold = np.arange(len(ids)) % n_folds
    pred = labels + rng.normal(0, noise, len(ids))
    scores = np.array([spearmanr(pred[fold == f], labels[fold == f])[0] for f in range(n_folds)])
    return CVResult(recipe, target, protocol, scores=scores, n_videos=len(ids), n_frames=4,
                    predictions=OutOfFold.from_arrays(ids, fold, pred, labels))


def made_up_tables(ids, short, long, protocols=("cv",)):
    """Table 1 on both targets and the block beyond the note on short-term only, as the demo has them."""
    from amnetvid_sk.pipelines import BEYOND_RECIPES, TABLE1_RECIPES
    from amnetvid_sk.tables import Table1

    tables = []
    for protocol in protocols:
        noise = dict(zip([r for r, _ in TABLE1_RECIPES], (0.4, 0.2, 0.05)))
        targets = (("short", short), ("long", long))
        first = Table1(protocol, {(r, t): _result(ids, y, r, t, noise[r], protocol, seed=k)
                                  for k, (r, _) in enumerate(TABLE1_RECIPES) for t, y in targets})
        beyond = Table1(protocol, {(r, "short"): _result(ids, short, r, "short", 0.1, protocol, seed=10 + k)
                                   for k, (r, _) in enumerate(BEYOND_RECIPES)},
                        columns=BEYOND_RECIPES, title="Beyond the note", baseline=first.results)
        tables += [first, beyond]
    return tables


# ----------------------------------------------------------------------- a store of real clips
@pytest.fixture(scope="module")
def clip_report(tmp_path_factory, clip_dir, amnet_weights):
    """A report of a store of real clips (AMNet with random weights): one file that cannot be decoded,
    one clip deleted after extraction, a labelled video without features, long names everywhere."""
    from amnetvid_sk.extraction import extract
    from amnetvid_sk.labels import import_labels
    from amnetvid_sk.report import write_report
    from amnetvid_sk.store import FeatureStore

    root = tmp_path_factory.mktemp("clip_report")
    videos = root / ("a_folder_with_a_rather_long_name_" * 3) / "videos"
    shutil.copytree(clip_dir, videos)
    (videos / "broken_clip_whose_name_runs_on_and_on_without_any_break.mp4").write_bytes(b"\x00" * 64)
    store = root / "store"
    extract(sorted(videos.iterdir()), store=store, frame_model="amnet", weights=amnet_weights, n_frames=4,
            device="cpu", progress=False)
    ids = [f"clip{i}" for i in range(6)]
    rng = np.random.default_rng(0)
    short, long = rng.uniform(0.6, 0.95, 6), rng.uniform(0.3, 0.9, 6)
    labels = root / "labels.csv"
    labels.write_text("video_id,short_term,long_term\n" + "".join(
        f"{v},{s:.3f},{lo:.3f}\n" for v, s, lo in zip(ids + ["never_extracted_video"], [*short, 0.7], [*long, 0.5])))
    import_labels(labels, store, format="csv")
    next(videos.glob("clip5.*")).unlink()  # its features stay: the figure is drawn without the frame
    # the runs' videos: the clips and more (a Spearman on 6 videos has no interval)
    more = [f"another_video_with_a_long_id_{'x' * 40}_{k}" for k in range(54)]
    y_short, y_long = np.r_[short, rng.uniform(0.6, 0.95, 54)], np.r_[long, rng.uniform(0.3, 0.9, 54)]
    tables = made_up_tables(np.array(ids + more, dtype=object), y_short, y_long, protocols=("cv", "paper"))
    index = write_report(store, root / "report", tables=tables, videos=["clip0", "clip5", "clip2"])
    return index, FeatureStore(store)


def test_report_renders_in_chromium(clip_report):
    """In headless Chromium every image of the report loads and no text overflows its box; all sections are there."""
    index, _ = clip_report
    result = assert_renders(index)
    # figures: 3 of Figure 1, Figure 4, a bar chart and 2 predicted-vs-true per protocol
    assert result["images"] == 3 + 1 + 2 * 3


def test_report_contents(clip_report):
    """The page says how the store was made, lists the failure and the left-out video, and shows intervals."""
    index, fs = clip_report
    text = index.read_text()
    assert "amnet.w-" in text and "frames=4" in text  # frame model fingerprint and sampling
    assert "broken_clip_whose_name_runs_on" in text  # the failure, with its reason
    assert "never_extracted_video" in text  # labelled, no features: left out
    assert "Table 1" in text and "Beyond the note" in text and "OPTIMISTIC" in text  # both protocols
    assert re.search(r"0\.\d{4} \[-?\d\.\d\d, -?\d\.\d\d\]", text)  # a Spearman with its interval
    assert "vs mean score: " in text
    for name in ("spearman_cv.png", "spearman_paper.png", "predicted_cv_0.png", "predicted_cv_1.png",
                 "figure4_densities.png", "figure1_0.png", "figure1_1.png", "figure1_2.png"):
        assert name in text and (index.parent / name).is_file(), name
    # clip5's file is gone: its figure is drawn without the frame, and the caption says so
    caption = text[text.index("<figcaption>clip5"):]
    assert "video file not found" in caption[:caption.index("</figcaption>")]
    assert text.index("figure1_0.png") < text.index("figure1_1.png")  # in the order asked
    worst = text[text.index("<section id='worst'>"):]
    assert "short-term, AMNetVid ConvLSTM" in worst[:worst.index("</section>")]


def test_report_default_videos_spread_over_memorability(clip_report, tmp_path):
    """Without --videos, Figure 1 shows the least, a middle and the most memorable of the videos whose files exist."""
    from amnetvid_sk.report import write_report

    index, fs = clip_report
    out = write_report(fs.path, tmp_path / "r", tables=[])
    labels = dict(zip(*fs.sql("SELECT video_id, short_term FROM labels").to_pydict().values()))
    present = sorted((labels[v], v) for v in [f"clip{i}" for i in range(5)])  # clip5's file is gone
    shown = re.findall(r"<figcaption>(clip\d)", out.read_text())
    assert shown == [present[0][1], present[2][1], present[-1][1]]


def test_figure1_titles_fit_and_colour_bar():
    """Figure 1: every title lies inside the canvas (a long one is broken into lines), the map panels
    carry the titles given, and a colour bar says how the maps are coloured."""
    from amnetvid_sk.render import MAP_TITLES, attention_figure

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    fig = attention_figure(frame, rng.random((3, 14, 14)), title="gbuckbunny frame 56 (t=2.24 s)", score=0.8123,
                           map_titles=("Grad-CAM of layer2", "Grad-CAM of layer3", "Grad-CAM of layer4"))
    assert texts_outside(fig) == []
    titles = [ax.get_title() for ax in fig.axes[:4]]
    assert titles[0].replace("\n", " ") == "gbuckbunny frame 56 (t=2.24 s), score 0.812" and "\n" in titles[0]
    assert titles[1:] == ["Grad-CAM of layer2", "Grad-CAM of layer3", "Grad-CAM of layer4"]
    bars = [ax for ax in fig.axes[4:] if ax.get_ylabel()]
    assert len(bars) == 1 and "min to max" in bars[0].get_ylabel()
    # without a frame (its file is gone): grey panel, the note inside the canvas, the default titles
    fig = attention_figure(None, rng.random((3, 14, 14)), title="x" * 120, frame_size=(90, 120),
                           note="video file not found: /" + "very_long_folder_name/" * 8 + "clip.mp4")
    assert texts_outside(fig) == []
    assert [ax.get_title() for ax in fig.axes[1:4]] == list(MAP_TITLES)
    assert any("video file not found" in t.get_text() for t in fig.axes[0].texts)


def test_map_titles_from_the_frame_model_class(monkeypatch):
    """Panel titles come from each frame model's class attribute, by name, without loading weights;
    a model the registry does not know gets the default titles."""
    import amnetvid_sk.frame_models.resmem_gradcam as resmem
    from amnetvid_sk.frame_models.amnet import AMNet
    from amnetvid_sk.render import MAP_TITLES
    from amnetvid_sk.report import map_titles

    def refuse(*args, **kwargs):
        raise AssertionError("the weights were loaded")

    monkeypatch.setattr(resmem, "load_resmem", refuse)
    assert map_titles("resmem") == ("Grad-CAM of layer2", "Grad-CAM of layer3", "Grad-CAM of layer4")
    assert map_titles("resmem", {"layers": ["layer1", "layer2", "layer4"]})[0] == "Grad-CAM of layer1"
    assert map_titles("amnet") == AMNet.map_titles == ("attention step 1", "attention step 2", "attention step 3")
    assert map_titles("synthetic") == map_titles("mypackage.models:Mine") == MAP_TITLES
    assert map_titles("resmem", {"layers": ["layer2"]}) == MAP_TITLES  # titles that cannot be filled


def test_map_titles_looked_up_from_the_store(tmp_path):
    """The report takes the titles of the frame model the store's models table names."""
    from amnetvid_sk.report import map_titles
    from amnetvid_sk.report.store_summary import summarise_store
    from amnetvid_sk.store import FeatureStore
    from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store

    write_synthetic_store(tmp_path / "s", *make_moving_peak_dataset(3))
    fs = FeatureStore(tmp_path / "s", create=True)
    fs.write_model("resmem.w-0.pre-x.gradcam-layer3-layer4-layer4.maps-3x14x14.fp32", "resmem",
                   {"params": {"layers": ["layer3", "layer4", "layer4"]}}, (3, 14, 14))
    row = next(m for m in summarise_store(fs, model="synthetic").models if m["name"] == "resmem")
    assert map_titles(row["name"], row["config"]["params"])[0] == "Grad-CAM of layer3"


def test_bar_chart_ticks_under_their_bars():
    """Each target's bars are centred on its tick, also when the second block has one target only;
    whiskers are drawn; every text is inside the canvas."""
    from matplotlib.patches import Rectangle

    from amnetvid_sk.report.figures import spearman_figure

    rng = np.random.default_rng(0)
    ids = np.array([f"v{i}" for i in range(60)], dtype=object)
    short, long = rng.random(60), rng.random(60)
    fig = spearman_figure(made_up_tables(ids, short, long))
    ax = fig.axes[0]
    centres = np.array([p.get_x() + p.get_width() / 2 for p in ax.patches if isinstance(p, Rectangle)])
    assert len(centres) == 3 + 4 + 3  # short: Table 1 and beyond; long: Table 1
    ticks = ax.get_xticks()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["short-term", "long-term"]
    for tick in ticks:
        under = centres[np.abs(centres - tick) < 0.5]
        assert len(under) and abs((under.min() + under.max()) / 2 - tick) < 1e-9
    low, high = ax.get_xlim()
    assert low < centres.min() and centres.max() < high
    from matplotlib.container import BarContainer

    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == 10 and all(c.errorbar is not None for c in bars)  # each with its whiskers
    assert texts_outside(fig) == []


def test_other_figures_keep_their_texts_inside():
    """Predicted against true and Figure 4: every title and label lies inside the canvas."""
    from amnetvid_sk.report.figures import density_figure, predicted_figure

    rng = np.random.default_rng(1)
    ids = np.array([f"v{i}" for i in range(40)], dtype=object)
    tables = made_up_tables(ids, rng.random(40), rng.random(40))
    for table in tables:
        fig = predicted_figure(table)
        assert texts_outside(fig) == []
        assert len([ax for ax in fig.axes if ax.collections]) == len(table.results)
    assert texts_outside(density_figure(rng.random(40), rng.random(40), [])) == []
    assert texts_outside(density_figure([], [], [])) == []


def test_report_of_a_store_without_runs(tmp_path):
    """A store with no runs yet gets a report: the store, Figure 1, Figure 4, failures, and how to add runs."""
    from amnetvid_sk.report import write_report
    from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store

    write_synthetic_store(tmp_path / "store", *make_moving_peak_dataset(12))
    index = write_report(tmp_path / "store", tmp_path / "report")
    text = index.read_text()
    assert f"amnetvid table1 --store {tmp_path / 'store'}" in text
    assert "video file not found: /synthetic/" in text  # synthetic videos have no files
    assert_renders(index, ("store", "results", "figure1", "figure4", "failures", "sql"))


def test_report_of_an_empty_store(tmp_path):
    """A store that holds nothing yet still gets a page that says what to do first."""
    from amnetvid_sk.report import write_report

    (tmp_path / "store").mkdir()
    text = write_report(tmp_path / "store", tmp_path / "report").read_text()
    assert "amnetvid extract VIDEOS --store" in text and "amnetvid table1 --store" in text


def test_results_without_predictions_or_defined_folds(tmp_path):
    """A run that kept no predictions has no whiskers and says so; one undefined in every fold reads
    "undefined"; neither raises nor warns."""
    import warnings

    from amnetvid_sk.evaluate import CVResult
    from amnetvid_sk.report import write_report
    from amnetvid_sk.tables import Table1
    from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store

    write_synthetic_store(tmp_path / "store", *make_moving_peak_dataset(6))
    table = Table1("cv", {("mean_score", "short"): CVResult("mean_score", "short", "cv", np.array([0.2, 0.4])),
                          ("amnetvid", "short"): CVResult("amnetvid", "short", "cv", np.array([np.nan, np.nan]))})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        index = write_report(tmp_path / "store", tmp_path / "report", tables=[table])
    cells = index.read_text()
    assert "no interval: the run kept no predictions" in cells and "undefined in every fold" in cells
    assert "0.3000" in cells and "No run kept out-of-fold predictions" in cells
    assert_renders(index, ("results", "predicted", "worst"))


def test_report_command_on_stored_runs(tmp_path):
    """`amnetvid report` on a store with a cross-validation run: its interval, bar chart and predictions
    come back from the store; a video id the store lacks is one line (exit 2) and changes nothing."""
    from amnetvid_sk.evaluate import cross_validate
    from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store

    store, out = tmp_path / "store", tmp_path / "report"
    write_synthetic_store(store, *make_moving_peak_dataset(50, seed=3))
    res = cross_validate("mean_score", store, cv=2)
    proc = run_cli("report", "--store", store, "--out", out, "--videos", "syn0003", "syn0001", check=0)
    assert proc.stdout.strip() == f"report: {out / 'index.html'}"
    text = (out / "index.html").read_text()
    assert res.interval.text() in text  # the run's interval, computed again from the stored predictions
    assert (out / "spearman_cv.png").is_file() and (out / "predicted_cv_0.png").is_file()
    assert re.findall(r"<figcaption>(syn\d+)", text) == ["syn0003", "syn0001"]
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    bad = run_cli("report", "--store", store, "--out", out, "--videos", "syn0001", "no_such_video", check=2)
    assert bad.stderr.count("\n") == 1 and "no_such_video" in bad.stderr and "Traceback" not in bad.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert_renders(out / "index.html")


def test_demo_label_rule_is_the_same_in_readme_report_and_code():
    """The README and the demo's report describe the demo's label rule as demo_labels computes it."""
    import html
    import inspect

    from amnetvid_sk import demo

    readme = (ROOT / "README.md").read_text()
    report = html.unescape(re.sub(r"<[^>]+>", "", demo.REPORT_DESCRIPTION))
    source = inspect.getsource(demo.demo_labels)
    for target in ("short_term", "long_term"):
        rule = re.search(rf"`{target} = ([^`]+)`", readme).group(1)
        assert f"{target} = {rule}" in report, (target, rule)
        terms, noise = re.fullmatch(r"(.*) \+ noise \(sd ([\d.]+)\)", rule).groups()
        assert re.sub(r"([\d.]+) z\((\w)\)", r"\1 * \2", terms) + f" + rng.normal(0, {noise}" in source
    for term in ("`m`", "`r`", "`a`", "`c`"):  # the README's four terms, in the report too
        assert term in readme and f"{term[1]}, " in report
