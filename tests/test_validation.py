"""Validation metrics and the binary threshold, each against an independent witness."""

import numpy as np
import pytest
import torch

from unetlab import create_model
from unetlab.data.info import IGNORE_INDEX
from unetlab.evaluation.metrics import MetricAccumulator
from unetlab.evaluation.validation import THRESHOLD_BINS, choose_threshold, counts_at, evaluate
from unetlab.training.losses import build_loss
from unetlab.training.runtime import setup_runtime

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def histograms(prob: np.ndarray, truth: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    bins = np.minimum((prob * THRESHOLD_BINS).astype(int), THRESHOLD_BINS - 1)
    count = lambda b: torch.from_numpy(np.bincount(b, minlength=THRESHOLD_BINS))  # noqa: E731
    return count(bins[truth == 0]), count(bins[truth == 1])


def test_choose_threshold_matches_a_brute_force_search_with_sklearn():
    rng = np.random.default_rng(0)
    truth = rng.random(5000) < 0.3
    prob = np.clip(0.35 * truth + 0.65 * rng.random(5000), 0, 1)  # informative, but not separable
    threshold, dice = choose_threshold(*histograms(prob, truth))
    # every bin edge k / B, predicting foreground where floor(p * B) >= k, scored by sklearn's F1 (= Dice)
    bins = np.minimum((prob * THRESHOLD_BINS).astype(int), THRESHOLD_BINS - 1)
    scores = [sklearn_metrics.f1_score(truth, bins >= k, zero_division=1.0) for k in range(THRESHOLD_BINS)]
    assert threshold == int(np.argmax(scores)) / THRESHOLD_BINS
    assert dice == pytest.approx(max(scores), abs=1e-12)


def test_counts_at_threshold_equal_the_counts_of_thresholded_masks():
    rng = np.random.default_rng(1)
    truth = (rng.random((3, 20, 20)) < 0.4).astype(np.int64)
    prob = rng.random((3, 20, 20))
    threshold = 0.42
    counts = counts_at(threshold, *histograms(prob.ravel(), truth.ravel()))
    witness = MetricAccumulator(2)
    pred = np.minimum((prob * THRESHOLD_BINS).astype(int), THRESHOLD_BINS - 1) >= round(threshold * THRESHOLD_BINS)
    witness.update(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(truth))
    assert torch.equal(counts, witness.counts)


def test_evaluate_reports_the_metrics_of_the_masks_predict_would_write():
    torch.manual_seed(0)
    model = create_model("unet", base_channels=4, depth=2, num_classes=1).eval()
    images = [torch.randn(1, 24, 30), torch.randn(1, 17, 21)]
    masks = [torch.randint(0, 2, (24, 30)), torch.randint(0, 2, (17, 21))]
    masks[1][:3] = IGNORE_INDEX
    dataset = [{"image": i, "mask": m} for i, m in zip(images, masks)]
    metrics, threshold, _ = evaluate(model, dataset, build_loss("ce", 1), setup_runtime("cpu", "none"), ["bg", "fg"])
    witness = MetricAccumulator(2, ["bg", "fg"])
    for image, mask in zip(images, masks):
        with torch.no_grad():
            prob = torch.sigmoid(model(image[None]))[0, 0]
        bins = (prob * THRESHOLD_BINS).long().clamp(max=THRESHOLD_BINS - 1)
        witness.update((bins >= round(threshold * THRESHOLD_BINS)).long()[None], mask[None])
    for key, value in witness.compute().items():
        assert metrics[key] == pytest.approx(value, nan_ok=True, abs=1e-12), key
    assert metrics["threshold"] == threshold and not model.training
