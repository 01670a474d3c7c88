"""The report files: a self-contained report.html (inline PNGs, no URL, no script, escaped text, worst image first),
strict report.json, per_image.csv and the figure files, all written atomically."""

import base64
import csv
import io
import json
import math
import os
import re

import numpy as np
import pytest
from PIL import Image
from report_data import synthetic_items

from unetlab import UnetlabError
from unetlab.evaluation.html import ReportFacts, write_report
from unetlab.evaluation.scoring import evaluate_stream

FACTS = ReportFacts(
    model="unet <small> & quick",
    checkpoint="runs/<a>/checkpoints/best.pt",
    data="data/em & more",
    images="the 4 validation images that the run recorded",
    threshold_source="chosen on the validation images of the run",
    extra={"time": "1.2 s <fast>"},
)
TRAINING = [{"epoch": 1, "step": 4, "train/loss": 0.9, "val/dice": 0.5, "lr": 0.01},
            {"epoch": 2, "step": 8, "train/loss": 0.7, "val/dice": None, "lr": 0.005}]  # fmt: skip


@pytest.fixture(scope="module")
def binary_report(tmp_path_factory):
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("binary")
    evaluation = evaluate_stream(synthetic_items(1, n=4), ["background", "membrane"], threshold=0.45,
                                 other_thresholds=(0.5,))  # fmt: skip
    return out, write_report(out, evaluation, FACTS, TRAINING), evaluation


def test_files_are_written_with_nothing_else_left(binary_report):
    out, written, _ = binary_report
    names = {p.name for p in written}
    assert written[0].name == "report.html"
    assert names == {"report.html", "report.json", "per_image.csv", "confusion_matrix.png", "reliability.png",
                     "precision_recall.png", "roc.png", "training_curves.png", "overlay_legend.png"}  # fmt: skip
    assert set(os.listdir(out)) == names  # no temporary file left behind


def test_html_is_self_contained_and_escaped(binary_report):
    out, _, evaluation = binary_report
    page = (out / "report.html").read_text()
    assert "<script" not in page and "http://" not in page and "https://" not in page and "url(" not in page
    sources = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert len(sources) == 5 + 1 + 4  # figures, legend, thumbnails
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))).load()
    assert "slice &lt;0&gt; &amp; &#x27;co&#x27;.png" in page and "slice <0>" not in page
    assert "unet &lt;small&gt; &amp; quick" in page and "1.2 s &lt;fast&gt;" in page
    assert "p &ge; 0.45 (chosen on the validation images of the run)" in page
    classes = page[page.index('<section id="classes">') :]
    first_header = classes[classes.index("<thead>") : classes.index("</thead>")]
    assert re.findall(r"<th[^>]*>([^<]*)</th>", first_header) == [
        "class", "Dice", "IoU", "precision", "recall", "specificity", "AP", "AUC", "ECE"
    ]  # fmt: skip
    assert "surface Dice at 2 px" in page and "Touching objects" in page and "Training curves" in page
    assert "undefined, shown as &ndash; and left out of every mean" in page  # the empty-mask convention
    order = re.findall(r"<td class=\"name\">slice &lt;(\d)&gt;", page)
    dice = {row.name[7]: row.scores["dice"] for row in evaluation.rows}
    assert len(order) == 4 and [dice[i] for i in order] == sorted(dice.values())  # worst first


def test_json_is_strict_with_null_for_undefined_and_csv_has_a_row_per_image(binary_report):
    out, _, evaluation = binary_report

    def no_constants(name):
        raise AssertionError(f"{name} in report.json")

    report = json.loads((out / "report.json").read_text(), parse_constant=no_constants)
    assert report["summary"]["images"] == 4 and report["threshold"] == 0.45
    assert report["confusion_matrix"] == evaluation.confusion.matrix.tolist()
    assert report["facts"]["model"] == FACTS.model and report["calibration"]["membrane"]["count"][0] > 0
    assert report["summary"]["ap/membrane"] == pytest.approx(evaluation.histograms.average_precision(1)[0])
    assert [row["image"] for row in report["images"]] == [row.name for row in evaluation.rows]
    rows = list(csv.DictReader(io.StringIO((out / "per_image.csv").read_text())))
    assert [r["image"] for r in rows] == [row.name for row in evaluation.rows]
    assert float(rows[0]["rand_error"]) == evaluation.rows[0].scores["rand_error"]


def test_undefined_scores_are_null_in_json_and_empty_in_csv(tmp_path):
    pytest.importorskip("matplotlib")
    items = synthetic_items(3, n=2)
    no_class_2 = [(n, i, p, np.where(t == 2, 0, t)) for n, i, p, t in items]  # class 2 in no truth...
    for _, _, probs, _ in no_class_2:
        probs[2] = 0  # ...and never predicted
    evaluation = evaluate_stream(no_class_2, ["bg", "a", "<b>"])
    write_report(tmp_path, evaluation, ReportFacts())
    report = json.loads((tmp_path / "report.json").read_text())
    assert math.isnan(evaluation.summary()["dice/<b>"]) and report["summary"]["dice/<b>"] is None
    assert report["summary"]["ap/<b>"] is None  # no positives
    rows = list(csv.DictReader(io.StringIO((tmp_path / "per_image.csv").read_text())))
    assert rows[0]["dice/<b>"] == "" and rows[0]["dice/a"] != ""
    page = (tmp_path / "report.html").read_text()
    assert "Touching objects" not in page and "roc.png" not in os.listdir(tmp_path)
    assert "&lt;b&gt;" in page and "the most probable class (softmax)" in page


def test_training_report_alone_and_bad_calls(tmp_path):
    pytest.importorskip("matplotlib")
    written = write_report(tmp_path / "run_report", None, ReportFacts(title="run <x>"), TRAINING)
    assert [p.name for p in written] == ["report.html", "training_curves.png"]
    page = written[0].read_text()
    assert "<title>run &lt;x&gt;</title>" in page and "Per-class scores" not in page
    with pytest.raises(UnetlabError, match="nothing to report"):
        write_report(tmp_path / "empty", None, ReportFacts())
    (tmp_path / "file").write_text("")
    with pytest.raises(UnetlabError, match="is a file"):
        write_report(tmp_path / "file", None, ReportFacts(), TRAINING)
