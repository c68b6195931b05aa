"""``amnetvid demo`` end to end on a tiny setting, in process, with the real ResMem weights."""

import json

import pytest
from PIL import Image

from conftest import run_cli
from test_report import SECTIONS, assert_renders


@pytest.mark.slow
def test_demo_tiny_writes_report_and_table(tmp_path):
    """The demo makes clips, extracts, prints Table 1 rows, predicts two clips and writes the report."""
    out = tmp_path / "demo"
    proc = run_cli("demo", "--out", out, "--images", "2", "--frames", "4", "--cv", "2", "--epochs", "1",
                   "--no-progress", check=0)
    text = proc.stdout
    assert "short-term |" in text and "long-term  |" in text
    for label in ("mean frame score", "LSTM on scores", "AMNetVid ConvLSTM"):
        assert label in text
    assert "predicted short-term memorability" in text
    beyond = text[text.index("Beyond the note"):]
    for label in ("embedding ridge", "Conv3D", "AMNetVid + frame subsets", "stacked ensemble"):
        assert label in beyond

    # the report, written by the same code as `amnetvid report`, as a browser shows it
    report = out / "report"
    html = (report / "index.html").read_text()
    for name in ("spearman_cv.png", "figure4_densities.png", "predicted_cv_0.png", "predicted_cv_1.png"):
        assert name in html
        with Image.open(report / name) as im:
            assert im.width >= 400 and im.height >= 200
    figures = sorted(report.glob("figure1_*.png"))
    assert len(figures) == 3 and all(f.name in html for f in figures)
    assert "ResMem" in html and "Grad-CAM" in html
    assert html.count("<table>") >= 5  # Table 1, beyond the note, predictions, two SQL results
    assert "0.04 z(a) + 0.03 z(c)" in html  # the label rule with its four terms, as the README has it
    assert_renders(report / "index.html", SECTIONS + ("predictions", "settings"))
    summary = json.loads((report / "summary.json").read_text())
    assert len(summary["table1"]) == 6 and len(summary["predictions"]) == 2
    assert sorted(row["recipe"] for row in summary["beyond"]) == [
        "amnetvid_augmented", "amnetvid_conv3d", "embedding_ridge", "stacked"]
    assert all(row["target"] == "short" and len(row["folds"]) == 2 for row in summary["beyond"])
    assert "Beyond the note" in html
    assert all(0.0 <= p <= 1.0 for p in summary["predictions"].values())

    # a second run reuses the store: nothing is extracted again
    again = run_cli("demo", "--out", out, "--images", "2", "--frames", "4", "--cv", "2", "--epochs", "1",
                    "--no-progress", check=0)
    assert "extracted 0, skipped 8" in again.stdout
