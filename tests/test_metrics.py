"""Metrics from confusion counts, compared with torchmetrics and scikit-learn on random masks; the empty-mask
convention; the accumulator the trainer uses."""

import math

import numpy as np
import pytest
import torch

from unetlab import UnetlabError
from unetlab.data.info import IGNORE_INDEX
from unetlab.evaluation.metrics import MetricAccumulator, accuracy, confusion_counts, dice, iou, precision, recall


def random_masks(n=3, k=4, h=10, w=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.randint(0, k, (n, h, w), generator=g)
    pred = torch.where(torch.rand(n, h, w, generator=g) < 0.6, mask, torch.randint(0, k, (n, h, w), generator=g))
    mask[torch.rand(n, h, w, generator=g) < 0.1] = IGNORE_INDEX
    return pred, mask


def test_confusion_counts_match_torchmetrics_stat_scores():
    stat_scores = pytest.importorskip("torchmetrics.functional.classification").multiclass_stat_scores
    pred, mask = random_masks()
    tp, fp, fn, tn = confusion_counts(pred, mask, 4)
    ref = stat_scores(pred, mask, 4, average=None, multidim_average="samplewise", ignore_index=IGNORE_INDEX)
    assert torch.equal(torch.stack([tp, fp, tn, fn], -1), ref[..., :4])  # torchmetrics: tp, fp, tn, fn, support
    assert tp.dtype == torch.int64 and tp.shape == (3, 4)


@pytest.mark.parametrize(
    ("ours", "sklearn_name", "extra"),
    [
        (dice, "f1_score", {}),
        (iou, "jaccard_score", {}),
        (precision, "precision_score", {}),
        (recall, "recall_score", {}),
    ],
)
def test_per_class_macro_and_micro_scores_match_scikit_learn(ours, sklearn_name, extra):
    metrics = pytest.importorskip("sklearn.metrics")
    reference = getattr(metrics, sklearn_name)
    pred, mask = random_masks()
    counts = confusion_counts(pred, mask, 4)
    keep = mask >= 0
    y_true, y_pred = mask[keep].numpy(), pred[keep].numpy()
    per_class = reference(y_true, y_pred, labels=[0, 1, 2, 3], average=None, **extra)
    np.testing.assert_allclose(ours(*counts, reduction="per-class").numpy(), per_class, rtol=1e-12)
    assert float(ours(*counts, reduction="macro")) == pytest.approx(per_class.mean(), rel=1e-12)
    micro = reference(y_true, y_pred, labels=[0, 1, 2, 3], average="micro")
    assert float(ours(*counts, reduction="micro")) == pytest.approx(micro, rel=1e-12)


def test_imagewise_and_none_reductions_score_each_image_on_its_own():
    f1_score = pytest.importorskip("sklearn.metrics").f1_score
    pred, mask = random_masks(k=3)
    counts = confusion_counts(pred, mask, 3)
    per_image = [f1_score(m[m >= 0], p[m >= 0], labels=[0, 1, 2], average=None) for p, m in zip(pred, mask)]
    np.testing.assert_allclose(dice(*counts, reduction="none").numpy(), np.stack(per_image), rtol=1e-12)
    expected = np.mean([scores.mean() for scores in per_image])
    assert float(dice(*counts, reduction="imagewise")) == pytest.approx(expected, rel=1e-12)


def test_one_against_the_rest_accuracy_per_class():
    pred, mask = random_masks()
    keep = mask >= 0
    got = accuracy(*confusion_counts(pred, mask, 4), reduction="per-class")
    want = [((pred[keep] == c) == (mask[keep] == c)).double().mean() for c in range(4)]
    torch.testing.assert_close(got, torch.stack(want))


def test_a_class_absent_from_truth_and_prediction_is_nan_and_skipped():
    mask = torch.tensor([[[0, 0, 1, 1]]])
    pred = torch.tensor([[[0, 1, 1, 1]]])  # class 2 appears nowhere
    counts = confusion_counts(pred, mask, 3)
    per_class = dice(*counts, reduction="per-class")
    assert math.isnan(per_class[2]) and float(per_class[1]) == pytest.approx(0.8)
    assert float(dice(*counts, reduction="macro")) == pytest.approx((2 / 3 + 0.8) / 2)
    predicted_but_absent = confusion_counts(torch.tensor([[[2, 0, 1, 1]]]), mask, 3)
    assert float(dice(*predicted_but_absent, reduction="per-class")[2]) == 0.0


def test_accumulator_sums_batches_and_reports_foreground_headlines_and_per_class_keys():
    pred, mask = random_masks(n=4, k=3)
    acc = MetricAccumulator(3, class_names=["bg", "a", "b"])
    acc.update(pred[:1], mask[:1])
    acc.update(pred[1:], mask[1:])
    scores = acc.compute()
    counts = confusion_counts(pred, mask, 3)
    per_class = dice(*counts, reduction="per-class")
    assert scores["dice"] == pytest.approx(float(per_class[1:].mean()))
    assert scores["dice/bg"] == pytest.approx(float(per_class[0]))
    assert scores["iou/b"] == pytest.approx(float(iou(*counts, reduction="per-class")[2]))
    keep = mask >= 0
    assert scores["accuracy"] == pytest.approx(float((pred[keep] == mask[keep]).double().mean()))
    metrics = ("dice", "iou", "precision", "recall", "accuracy")
    assert set(scores) == {f"{m}{suffix}" for m in metrics for suffix in ("", "/bg", "/a", "/b")}
    assert all(isinstance(v, float) for v in scores.values())


def test_accumulator_for_a_binary_model_scores_the_foreground_class():
    mask = torch.tensor([[[0, 1, 1, 0]]])
    acc = MetricAccumulator(2)
    acc.update(torch.tensor([[[0, 1, 0, 0]]]), mask)
    scores = acc.compute()
    assert (scores["dice"], scores["precision"], scores["recall"], scores["accuracy"]) == pytest.approx(
        (2 / 3, 1, 0.5, 0.75)
    )
    assert "dice/1" in scores


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(UnetlabError, match="must both be"):
        confusion_counts(torch.zeros(2, 3, 3).long(), torch.zeros(2, 3, 4).long(), 2)
    with pytest.raises(UnetlabError, match="argmax"):
        confusion_counts(torch.zeros(1, 3, 3), torch.zeros(1, 3, 3).long(), 2)
    with pytest.raises(UnetlabError, match="reduction 'mean' is unknown"):
        dice(*confusion_counts(*random_masks(), 4), reduction="mean")
    with pytest.raises(UnetlabError, match="before any update"):
        MetricAccumulator(2).compute()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_accumulator_update_does_not_synchronise_with_the_host():
    pred, mask = random_masks()
    on_cpu = MetricAccumulator(4)
    on_cpu.update(pred, mask)
    on_gpu = MetricAccumulator(4)
    on_gpu.update(pred.cuda(), mask.cuda())  # warm-up: allocations
    on_gpu.reset()
    torch.cuda.set_sync_debug_mode("error")
    try:
        on_gpu.update(pred.cuda(), mask.cuda())
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert on_gpu.compute() == pytest.approx(on_cpu.compute())
