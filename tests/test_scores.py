"""The streamed confusion matrix and its per-class scores, compared with scikit-learn on random masks; the
empty-mask convention and the foreground mean (never the pixel accuracy)."""

import math

import numpy as np
import pytest
import torch

from unetlab import UnetlabError
from unetlab.data.info import IGNORE_INDEX
from unetlab.evaluation.scores import ConfusionMatrix, class_scores, foreground_mean


def random_images(n=3, k=4, shape=(10, 12), seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        truth = rng.integers(0, k, shape)
        pred = np.where(rng.random(shape) < 0.6, truth, rng.integers(0, k, shape))
        truth[rng.random(shape) < 0.1] = IGNORE_INDEX
        yield pred, truth


def test_confusion_matrix_streamed_image_by_image_equals_scikit_learn_on_all_pixels():
    metrics = pytest.importorskip("sklearn.metrics")
    images = list(random_images())
    matrix = ConfusionMatrix(4)
    for pred, truth in images:
        own = matrix.update(pred, truth)
        keep = truth != IGNORE_INDEX
        np.testing.assert_array_equal(own, metrics.confusion_matrix(truth[keep], pred[keep], labels=range(4)))
    pred = np.concatenate([p.ravel() for p, _ in images])
    truth = np.concatenate([t.ravel() for _, t in images])
    keep = truth != IGNORE_INDEX
    np.testing.assert_array_equal(matrix.matrix, metrics.confusion_matrix(truth[keep], pred[keep], labels=range(4)))
    assert matrix.pixel_accuracy() == pytest.approx(metrics.accuracy_score(truth[keep], pred[keep]), rel=1e-12)


def test_class_scores_match_scikit_learn_per_class():
    metrics = pytest.importorskip("sklearn.metrics")
    matrix, pixels = ConfusionMatrix(4), []
    for pred, truth in random_images():
        matrix.update(torch.from_numpy(pred), torch.from_numpy(truth))  # tensors are accepted too
        keep = truth != IGNORE_INDEX
        pixels.append((pred[keep], truth[keep]))
    pred, truth = (np.concatenate(a) for a in zip(*pixels))
    labels = list(range(4))
    scores = matrix.scores()
    for ours, reference in (
        ("dice", metrics.f1_score),
        ("iou", metrics.jaccard_score),
        ("precision", metrics.precision_score),
        ("recall", metrics.recall_score),
    ):
        np.testing.assert_allclose(scores[ours], reference(truth, pred, labels=labels, average=None), rtol=1e-12)
    specificity = [metrics.recall_score(truth != c, pred != c) for c in labels]  # recall of "not c"
    np.testing.assert_allclose(scores["specificity"], specificity, rtol=1e-12)


def test_headline_is_the_mean_over_foreground_classes_not_the_pixel_accuracy():
    # Class 1 is mostly missed (Dice 0.1-ish) while class 0 dominates: pixel accuracy stays high.
    truth = np.zeros((100, 100), dtype=np.int64)
    truth[:10, :10] = 1
    pred = np.zeros_like(truth)
    pred[:1, :10] = 1
    pred[50:52, :] = 1  # and 200 false positives
    matrix = ConfusionMatrix(2)
    matrix.update(pred, truth)
    summary = matrix.summary(["background", "object"])
    dice_object = 2 * 10 / (2 * 10 + 200 + 90)
    assert summary["dice"] == pytest.approx(dice_object, rel=1e-12)
    assert summary["dice/object"] == summary["dice"]  # K = 2: the headline is the foreground's own score
    assert summary["pixel_accuracy"] == pytest.approx(1 - 290 / 10_000, rel=1e-12)
    assert summary["pixel_accuracy"] > 0.95 > 0.2 > summary["dice"]


def test_empty_class_is_nan_and_left_out_of_the_foreground_mean():
    truth = np.array([[0, 1], [1, 0]])
    pred = np.array([[0, 1], [0, 0]])
    matrix = ConfusionMatrix(3)  # class 2 in neither truth nor prediction
    matrix.update(pred, truth)
    scores = matrix.scores()
    assert math.isnan(scores["dice"][2]) and math.isnan(scores["precision"][2]) and math.isnan(scores["iou"][2])
    assert scores["specificity"][2] == 1.0  # defined: the pixels that are not class 2 exist
    assert matrix.summary(["a", "b", "c"])["dice"] == pytest.approx(2 / 3)  # class 1 alone
    assert math.isnan(foreground_mean(np.array([0.5, np.nan, np.nan])))
    assert math.isnan(ConfusionMatrix(2).pixel_accuracy())


def test_known_answers_perfect_and_disjoint():
    truth = np.array([[0, 1, 1], [2, 2, 0]])
    perfect = class_scores(ConfusionMatrix(3).update(truth, truth))
    for name in ("dice", "iou", "precision", "recall", "specificity"):
        np.testing.assert_array_equal(perfect[name], 1.0)
    disjoint = class_scores(ConfusionMatrix(3).update((truth + 1) % 3, truth))
    np.testing.assert_array_equal(disjoint["dice"], 0.0)
    np.testing.assert_array_equal(disjoint["iou"], 0.0)


def test_bad_inputs_raise_unetlab_errors():
    matrix = ConfusionMatrix(2)
    with pytest.raises(UnetlabError, match="same shape"):
        matrix.update(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(UnetlabError, match="integer class indices"):
        matrix.update(np.zeros((2, 2)), np.zeros((2, 2), int))
    with pytest.raises(UnetlabError, match="outside 0..1"):
        matrix.update(np.full((2, 2), 2), np.zeros((2, 2), int))
    with pytest.raises(UnetlabError, match="num_classes >= 2"):
        ConfusionMatrix(1)
    with pytest.raises(UnetlabError, match="class names"):
        matrix.summary(["only one"])
