"""The streamed evaluation: its set scores equal the accumulators fed with every pixel at once, each row equals the
image's own scores, binary thresholds are honoured, and no image is kept after it is scored."""

import gc
import math
import weakref

import numpy as np
import pytest
from report_data import synthetic_items

from unetlab import UnetlabError
from unetlab.evaluation.boundary import image_boundary_scores
from unetlab.evaluation.histograms import ProbabilityHistograms
from unetlab.evaluation.regions import image_region_scores
from unetlab.evaluation.scores import ConfusionMatrix
from unetlab.evaluation.scoring import evaluate_stream


def test_softmax_set_scores_equal_the_accumulators_over_all_pixels():
    items = synthetic_items(3, n=3)
    evaluation = evaluate_stream(items, ["bg", "a", "b"], thumbnail_side=None)
    matrix, histograms = ConfusionMatrix(3), ProbabilityHistograms(3)
    for _, _, probs, truth in items:
        matrix.update(probs.argmax(0), truth)
        histograms.update(probs, truth)
    np.testing.assert_array_equal(evaluation.confusion.matrix, matrix.matrix)
    np.testing.assert_array_equal(evaluation.histograms.positives, histograms.positives)
    summary = evaluation.summary()
    assert summary["images"] == 3 and summary["dice"] == matrix.summary(["bg", "a", "b"])["dice"]
    assert summary["ap/a"] == histograms.average_precision(1)[0] and "rand_error" not in summary
    assert evaluation.threshold is None and evaluation.cell_class is None and not evaluation.binary
    for (name, _, probs, truth), row in zip(items, evaluation.rows):
        assert row.name == name and row.thumbnail is None
        own = ConfusionMatrix(3)
        own.update(probs.argmax(0), truth)
        assert row.scores["dice/b"] == own.scores()["dice"][2]
        assert row.scores["hd95/a"] == image_boundary_scores(probs.argmax(0), truth, 3, 2.0)[1]["hd95"]
    per_class = [np.nanmean([r.scores[f"assd/{c}"] for r in evaluation.rows]) for c in ("a", "b")]
    assert summary["assd"] == pytest.approx(np.mean(per_class), rel=1e-12)
    assert summary["imagewise/dice"] == pytest.approx(np.mean([r.scores["dice"] for r in evaluation.rows]))


def test_binary_model_uses_its_threshold_and_keeps_other_thresholds():
    items = synthetic_items(1, n=3)
    evaluation = evaluate_stream(items, ["background", "membrane"], threshold=0.7, other_thresholds=(0.5,))
    at, half = ConfusionMatrix(2), ConfusionMatrix(2)
    for _, _, probs, truth in items:
        at.update((probs[0] >= 0.7).astype(np.int64), truth)
        half.update((probs[0] >= 0.5).astype(np.int64), truth)
    np.testing.assert_array_equal(evaluation.confusion.matrix, at.matrix)
    np.testing.assert_array_equal(evaluation.other_thresholds[0.5].matrix, half.matrix)
    summary = evaluation.summary()
    assert summary["at_0.5/dice"] == half.summary(["b", "m"])["dice"] != summary["dice"]
    assert evaluation.histograms.classes == [1] and evaluation.binary and evaluation.cell_class == 0
    _, _, probs, truth = items[0]
    expected = image_region_scores((probs[0] >= 0.7).astype(np.int64), truth, 0)
    assert {k: evaluation.rows[0].scores[k] for k in expected} == expected
    with pytest.raises(UnetlabError, match="needs a threshold"):
        evaluate_stream(items, ["background", "membrane"])


def test_only_the_worst_images_keep_thumbnails():
    items = synthetic_items(1, n=5, noise=1.0) + synthetic_items(1, n=3, seed=7, noise=6.0)  # the last 3 worse
    evaluation = evaluate_stream(items, ["b", "f"], threshold=0.5, max_thumbnails=3)
    kept = [row for row in evaluation.rows if row.thumbnail is not None]
    dice = sorted(row.scores["dice"] for row in evaluation.rows)
    assert sorted(row.scores["dice"] for row in kept) == dice[:3]
    assert all(row.thumbnail[:4] == b"\x89PNG" for row in kept)


def test_no_image_is_kept_after_it_is_scored():
    alive = []

    def stream():
        for name, image, probs, truth in synthetic_items(3, n=4):
            alive.extend(weakref.ref(a) for a in (image, probs, truth))
            yield name, image, probs, truth

    evaluation = evaluate_stream(stream(), ["bg", "a", "b"])
    gc.collect()
    assert len(alive) == 12 and not any(ref() is not None for ref in alive)
    assert len(evaluation.rows) == 4


def test_bad_streams_raise_naming_the_image():
    items = synthetic_items(3, n=2)
    with pytest.raises(UnetlabError, match="no images"):
        evaluate_stream([], ["bg", "a"])
    with pytest.raises(UnetlabError, match=r"slice <0>.*must be \(1 or 2, H, W\)"):
        evaluate_stream(items, ["bg", "a"])
    name, image, probs, truth = items[0]
    binary = synthetic_items(1, n=1)[0]
    two_channels = (name, image, np.concatenate([1 - binary[2], binary[2]]), binary[3])
    with pytest.raises(UnetlabError, match="another count"):
        evaluate_stream([binary, two_channels], ["bg", "a"], threshold=0.5)
    with pytest.raises(UnetlabError, match="binary model"):
        evaluate_stream([(name, image, probs[:1], truth)], ["bg", "a", "b"])
    with pytest.raises(UnetlabError, match="two class names"):
        evaluate_stream(items, ["bg"])
    background = np.zeros_like(probs)
    background[0] = 1  # nothing but background, in truth and prediction: every foreground score is undefined
    empty = evaluate_stream([(name, None, background, np.zeros_like(truth))], ["bg", "a", "b"]).summary()
    assert math.isnan(empty["dice"]) and math.isnan(empty["hd95"]) and empty["pixel_accuracy"] == 1.0
