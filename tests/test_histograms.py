"""Ranking curves and calibration from streamed probability histograms, against the exact values: scikit-learn's
average_precision_score and roc_auc_score on the raw probabilities, torchmetrics' calibration errors.

Bins: the default ranking histogram has 1200 bins (1000 equal-width bins, the first and the last split into 101
log-spaced bins each, down to 1e-8 from 0 and from 1); calibration has 15 equal-width bins. On the synthetic sets
below (six 64 x 64 images, moderate and heavy noise, one sigmoid output and three softmax outputs), the largest
differences from the exact values are asserted as |AP_hist - AP| <= 2e-3 and |AUC_hist - AUC| <= 5e-4 (measured:
1.3e-3 and 3.4e-4 at the heaviest noise, 1.5e-4 and 5e-6 at moderate noise), and each is also within the bound
that `ProbabilityHistograms` derives from the counts alone. ECE is exact: per class equal to torchmetrics' within
1e-12 (float64), top-label within 2e-6 (torchmetrics works in float32 there).
"""

import math

import numpy as np
import pytest
import torch
from report_data import synthetic_items

from unetlab import UnetlabError
from unetlab.data.info import IGNORE_INDEX
from unetlab.evaluation.histograms import ProbabilityHistograms, _ranking_index, ranking_edges

AP_TOLERANCE = 2e-3  # the default 1200 bins, the sets of `streamed` (see the module docstring)
AUC_TOLERANCE = 5e-4


def streamed(num_outputs, noise, seed=1, **bins):
    """Histograms of six synthetic images, and the raw probabilities (K, n) and truth (n,) of all their pixels."""
    items = synthetic_items(num_outputs, n=6, size=(64, 64), seed=seed, noise=noise)
    histograms = ProbabilityHistograms(num_outputs, **bins)
    for _, _, probs, truth in items:
        histograms.update(probs, truth)
    probs = np.concatenate([p.reshape(num_outputs, -1) for _, _, p, _ in items], axis=1)
    truth = np.concatenate([t.ravel() for *_, t in items])
    return histograms, probs, truth


def class_probability(probs, num_outputs, c):
    return probs[0] if num_outputs == 1 else probs[c]


@pytest.mark.parametrize("noise", [1.5, 8.0])
@pytest.mark.parametrize("num_outputs", [1, 3])
def test_average_precision_and_auc_are_within_the_stated_difference_of_scikit_learn(num_outputs, noise):
    metrics = pytest.importorskip("sklearn.metrics")
    histograms, probs, truth = streamed(num_outputs, noise)
    assert len(histograms.edges) - 1 == 1200
    for c in histograms.classes:
        p, positive = class_probability(probs, num_outputs, c), truth == c
        ap, ap_bound = histograms.average_precision(c)
        auc, auc_bound = histograms.auc(c)
        ap_exact = metrics.average_precision_score(positive, p)
        auc_exact = metrics.roc_auc_score(positive, p)
        assert abs(ap - ap_exact) <= min(AP_TOLERANCE, ap_bound)
        assert abs(auc - auc_exact) <= min(AUC_TOLERANCE, auc_bound)


@pytest.mark.parametrize(("bins", "tail_decades"), [(2, 0), (10, 0), (10, 2), (100, 5)])
def test_difference_bounds_hold_for_coarse_bins_and_tied_scores(bins, tail_decades):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, (40, 50))
    probs = np.clip(truth * 0.3 + rng.random(truth.shape) * 0.7, 0, 1)
    probs = (np.round(probs * 20) / 20).astype(np.float32)[None]  # exact ties, as saturated models make them
    histograms = ProbabilityHistograms(1, bins=bins, tail_decades=tail_decades)
    histograms.update(probs, truth)
    ap, ap_bound = histograms.average_precision(1)
    auc, auc_bound = histograms.auc(1)
    ap_exact = metrics.average_precision_score(truth.ravel() == 1, probs.ravel())
    auc_exact = metrics.roc_auc_score(truth.ravel() == 1, probs.ravel())
    assert abs(ap - ap_exact) <= ap_bound + 1e-12
    assert abs(auc - auc_exact) <= auc_bound + 1e-12
    if bins == 2:
        assert abs(ap - ap_exact) > 1e-3  # the check has teeth: two bins do lose the order


def test_curve_points_are_exact_at_the_bin_edges():
    histograms, probs, truth = streamed(3, noise=1.5)
    for c in histograms.classes:
        pr, roc = histograms.pr_curve(c), histograms.roc_curve(c)
        positive = truth == c
        for i in np.linspace(0, len(pr["threshold"]) - 1, 7).astype(int):
            selected = probs[c] >= pr["threshold"][i]
            tp = (selected & positive).sum()
            assert pr["precision"][i] == pytest.approx(tp / selected.sum(), rel=1e-12)
            assert pr["recall"][i] == pytest.approx(tp / positive.sum(), rel=1e-12)
        for i in np.linspace(1, len(roc["threshold"]) - 1, 7).astype(int):
            selected = probs[c] >= roc["threshold"][i]
            assert roc["tpr"][i] == pytest.approx((selected & positive).sum() / positive.sum(), rel=1e-12)
            assert roc["fpr"][i] == pytest.approx((selected & ~positive).sum() / (~positive).sum(), rel=1e-12)
    assert np.all(np.diff(pr["recall"]) >= 0) and roc["tpr"][0] == 0 and roc["tpr"][-1] == 1
    counts = histograms.threshold_counts(2)
    for i in (0, 17, 600, len(counts["threshold"]) - 1):
        selected, positive = probs[2] >= counts["threshold"][i], truth == 2
        expected = [(selected & positive).sum(), (selected & ~positive).sum(), (~selected & positive).sum(),
                    (~selected & ~positive).sum()]  # fmt: skip
        assert [counts[k][i] for k in ("tp", "fp", "fn", "tn")] == expected


@pytest.mark.parametrize("num_outputs", [1, 3])
def test_ece_per_class_and_top_label_equal_torchmetrics(num_outputs):
    classification = pytest.importorskip("torchmetrics.classification")
    histograms, probs, truth = streamed(num_outputs, noise=1.5)
    assert histograms.calibration_bins == 15
    assert probs.max() < 1  # torchmetrics gives p = 1 a 16th bin of its own (see the next test)
    for c in histograms.classes:
        p = torch.from_numpy(class_probability(probs, num_outputs, c).astype(np.float64))
        reference = classification.BinaryCalibrationError(n_bins=15, norm="l1")(p, torch.from_numpy(truth == c))
        assert histograms.ece(c) == pytest.approx(float(reference), abs=1e-12)
    k = max(num_outputs, 2)
    two = np.concatenate([1 - probs, probs]) if num_outputs == 1 else probs  # (K, n)
    top = classification.MulticlassCalibrationError(num_classes=k, n_bins=15, norm="l1")
    reference = top(torch.from_numpy(two.T.astype(np.float64)), torch.from_numpy(truth))
    # Looser than above, not by choice: torchmetrics casts top-label confidences to float32 (`.float()` in
    # `_multiclass_calibration_error_update`) and sums the 24,576 confidences in float32.
    assert histograms.ece(None) == pytest.approx(float(reference), abs=2e-6)


def test_reliability_bins_by_brute_force_with_probability_one_in_the_last_bin():
    rng = np.random.default_rng(5)
    p = rng.random(500).astype(np.float32)
    p[:40] = 1.0
    p[40:60] = 0.0
    truth = (rng.random(500) < p).astype(np.int64)
    histograms = ProbabilityHistograms(1, calibration_bins=15)
    histograms.update(p.reshape(1, 20, 25), truth.reshape(20, 25))
    bins = histograms.reliability(1)
    index = np.minimum(np.floor(p.astype(np.float64) * 15), 14).astype(int)  # [m/15, (m+1)/15), the last closed
    for m in range(15):
        inside = index == m
        assert bins["count"][m] == inside.sum()
        if inside.any():
            assert bins["mean_prob"][m] == pytest.approx(p[inside].astype(np.float64).mean(), rel=1e-12)
            assert bins["frequency"][m] == pytest.approx(truth[inside].mean(), rel=1e-12)
    p = p.astype(np.float64)
    gaps = [abs(p[index == m].mean() - truth[index == m].mean()) * (index == m).mean() for m in range(15)]
    assert histograms.ece(1) == pytest.approx(sum(g for g in gaps if not math.isnan(g)), rel=1e-9)


def test_streaming_equals_one_pass_and_memory_does_not_grow_with_images():
    histograms, probs, truth = streamed(3, noise=4.0)
    whole = ProbabilityHistograms(3)
    whole.update(probs[:, None, :], truth[None, :])  # every pixel as one (3, 1, n) image
    for name in ("positives", "negatives", "cal_count", "cal_positives", "top_count", "top_correct"):
        np.testing.assert_array_equal(getattr(histograms, name), getattr(whole, name))
    np.testing.assert_allclose(histograms.cal_prob_sum, whole.cal_prob_sum, rtol=1e-12)
    shapes = {n: a.shape for n, a in vars(histograms).items() if isinstance(a, np.ndarray)}
    for _ in range(3):
        histograms.update(probs[:, None, :], truth[None, :])
    assert shapes == {n: a.shape for n, a in vars(histograms).items() if isinstance(a, np.ndarray)}


def test_ranking_index_matches_a_search_over_all_edges():
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.random(3000), 10 ** rng.uniform(-12, 0, 3000), 1 - 10 ** rng.uniform(-9, 0, 3000)])
    p = np.concatenate([p, [0, 1, 1e-8, 1e-3, 0.999]]).astype(np.float32)
    for bins, tail_decades in ((1000, 5), (10, 0), (4, 1), (2, 3)):
        edges = ranking_edges(bins, tail_decades)
        assert np.all(np.diff(edges) > 0) and edges[0] == 0 and edges[-1] == 1
        expected = np.clip(np.searchsorted(edges, p.astype(np.float64), side="right") - 1, 0, len(edges) - 2)
        np.testing.assert_array_equal(_ranking_index(p, edges, bins), expected)


def test_known_answers_and_undefined_values():
    truth = np.array([[0, 0, 1, 1]])
    separated = np.array([[[0.1, 0.2, 0.8, 0.9]]], dtype=np.float32)
    histograms = ProbabilityHistograms(1)
    histograms.update(separated, truth)
    assert histograms.average_precision(1) == (1.0, 0.0) and histograms.auc(1) == (1.0, 0.0)
    inverted = ProbabilityHistograms(1)
    inverted.update(1 - separated, truth)
    assert inverted.auc(1)[0] == 0.0
    calibrated = ProbabilityHistograms(1)
    calibrated.update(np.full((1, 1, 10), 0.3, dtype=np.float32), np.array([[1, 1, 1] + [0] * 7]))
    assert calibrated.ece(1) == pytest.approx(0.0, abs=1e-7)
    none_positive = ProbabilityHistograms(1)
    none_positive.update(separated, np.zeros_like(truth))
    assert all(math.isnan(v) for v in (*none_positive.average_precision(1), *none_positive.auc(1)))
    assert math.isnan(ProbabilityHistograms(2).ece(0))


def test_ignored_pixels_are_not_counted_and_bad_inputs_raise():
    histograms = ProbabilityHistograms(2)
    probs = np.array([[[0.2, 0.7]], [[0.8, 0.3]]], dtype=np.float32)  # (2, 1, 2)
    histograms.update(probs, np.array([[1, IGNORE_INDEX]]))
    assert histograms.positives.sum() + histograms.negatives.sum() == 2  # one pixel, two classes
    assert histograms.top_count.sum() == 1
    with pytest.raises(UnetlabError, match="not logits"):
        histograms.update(probs * 3, np.array([[1, 0]]))
    with pytest.raises(UnetlabError, match="must be"):
        histograms.update(probs[:1], np.array([[1, 0]]))
    with pytest.raises(UnetlabError, match="not scored"):
        ProbabilityHistograms(1).average_precision(0)
