"""The report's figures: each is a PNG that decodes; matplotlib missing is a clear error; a run's metrics.jsonl is
read as RunLogger writes it; overlay thumbnails colour each outcome; files are written atomically."""

import io
import math
import os
import sys

import numpy as np
import pytest
from PIL import Image
from report_data import synthetic_items

from unetlab import UnetlabError
from unetlab.data.info import IGNORE_INDEX
from unetlab.evaluation import figures
from unetlab.evaluation.histograms import ProbabilityHistograms
from unetlab.evaluation.scores import ConfusionMatrix
from unetlab.training.run_log import RunLogger


def decoded(png: bytes) -> Image.Image:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    picture = Image.open(io.BytesIO(png))
    picture.load()
    return picture


@pytest.fixture(scope="module")
def scored():
    pytest.importorskip("matplotlib")
    histograms, matrix = ProbabilityHistograms(3), ConfusionMatrix(3)
    for _, _, probs, truth in synthetic_items(3, n=2):
        histograms.update(probs, truth)
        matrix.update(probs.argmax(0), truth)
    return histograms, matrix, ["background", "<nucleus>", "membrane & co"]


def test_charts_are_pngs_of_a_readable_size(scored):
    histograms, matrix, names = scored
    charts = {
        "confusion": figures.confusion_figure(matrix.matrix, names),
        "reliability": figures.reliability_figure(histograms, names),
        "pr": figures.pr_figure(histograms, names),
        "roc": figures.roc_figure(histograms, names, [1]),
    }
    for name, png in charts.items():
        width, height = decoded(png).size
        assert 300 <= width <= 2000 and 250 <= height <= 1200, name
    assert decoded(charts["reliability"]).size[0] > decoded(charts["pr"]).size[0]  # one panel per class


def test_missing_matplotlib_names_the_extra(scored, monkeypatch):
    histograms, _, names = scored
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if it were not installed
    with pytest.raises(UnetlabError, match=r"pip install 'unetlab\[plot\]'"):
        figures.pr_figure(histograms, names)


def test_training_curves_from_the_metrics_log_that_run_log_writes(tmp_path):
    pytest.importorskip("matplotlib")
    logger = RunLogger(tmp_path, tensorboard=False)
    for epoch in range(1, 4):
        logger.log({"epoch": epoch, "step": 5 * epoch, "train/loss": 1 / epoch, "val/loss": math.nan,
                    "val/dice": 0.5 + 0.1 * epoch, "val/dice/cell": 0.6, "lr": 1e-3 / epoch})  # fmt: skip
    logger.close()
    records = figures.read_metrics_log(tmp_path / "metrics.jsonl")
    assert len(records) == 3 and math.isnan(records[0]["val/loss"]) and records[2]["step"] == 15
    assert decoded(figures.training_figure(records)).size[0] > 600
    (tmp_path / "bad.jsonl").write_text('{"step": 1}\n[1, 2]\n')
    with pytest.raises(UnetlabError, match="line 2"):
        figures.read_metrics_log(tmp_path / "bad.jsonl")
    with pytest.raises(UnetlabError, match="cannot be read"):
        figures.read_metrics_log(tmp_path / "missing.jsonl")
    with pytest.raises(UnetlabError, match="no records"):
        figures.training_figure([])


def test_overlay_colours_each_outcome_over_the_image():
    truth = np.zeros((40, 60), np.int64)
    pred = np.zeros_like(truth)
    truth[:10, :10], pred[:10, :10] = 1, 1  # true positive
    pred[20:30, :10] = 1  # false positive
    truth[:10, 30:40] = 1  # false negative
    truth[20:30, 30:40], pred[20:30, 30:40] = 1, 2  # wrong class
    truth[35:, 50:], pred[35:, 50:] = IGNORE_INDEX, 1  # unlabelled: untinted
    picture = np.asarray(decoded(figures.overlay_thumbnail(None, truth, pred, max_side=60)))
    assert picture.shape == (40, 60, 3)
    for (y, x), outcome in {(5, 5): "true positive", (25, 5): "false positive", (5, 35): "false negative",
                            (25, 35): "wrong class"}.items():  # fmt: skip
        expected = np.round(np.array(figures.OVERLAY_COLOURS[outcome]) * figures.OVERLAY_ALPHA[outcome])
        np.testing.assert_allclose(picture[y, x], expected, atol=1)
    assert picture[37, 55].tolist() == [0, 0, 0] and picture[15, 50].tolist() == [0, 0, 0]


def test_overlay_is_shrunk_to_the_thumbnail_side_and_keeps_the_image():
    image = np.tile(np.linspace(0, 1, 480, dtype=np.float32), (320, 1))  # dark left, bright right
    labels = np.zeros((320, 480), np.int64)
    picture = np.asarray(decoded(figures.overlay_thumbnail(image, labels, labels, max_side=160)))
    assert picture.shape == (107, 160, 3)
    assert picture[50, 5].mean() < 20 and picture[50, 155].mean() > 235  # untinted: the image itself
    huge = np.zeros((100, 20_000), np.int64)
    assert decoded(figures.overlay_thumbnail(None, huge, huge, max_side=160)).size == (160, 1)


def test_legend_names_the_outcomes_and_write_atomic_leaves_no_temporary(tmp_path):
    narrow, wide = decoded(figures.overlay_legend()), decoded(figures.overlay_legend(wrong_class=True))
    assert wide.size[0] > narrow.size[0] and narrow.size[1] >= 20
    target = figures.write_atomic(tmp_path / "sub" / "a.png", figures.overlay_legend())
    figures.write_atomic(target, "replaced")
    assert target.read_text() == "replaced" and os.listdir(tmp_path / "sub") == ["a.png"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
