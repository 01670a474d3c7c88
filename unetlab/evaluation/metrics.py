"""Segmentation metrics from one confusion matrix per image and class.

`confusion_counts(pred, mask, num_classes)` gives (tp, fp, fn, tn), each (N, K) int64, on the inputs' device and
without host synchronisation, so it runs inside a GPU training loop. The scores are small functions of those counts
(the split of segmentation_models_pytorch's `get_stats` + scores):

    dice = 2 TP / (2 TP + FP + FN)      iou = TP / (TP + FP + FN)      accuracy = (TP + TN) / (TP + FP + FN + TN)
    precision = TP / (TP + FP)          recall = TP / (TP + FN)

Reductions: "none" (N, K), per image and class; "per-class" (K,), counts summed over the images; "macro", the
mean of the per-class scores; "micro", counts summed over images and classes; "imagewise", the mean over images of
each image's mean over classes.

`REGISTRY` names every metric with what it needs and its direction (higher or lower is better), which the best
checkpoint, early stopping and the plateau schedule follow (`is_better`).

Empty-mask convention: a score whose denominator is 0 (the class is absent from both the truth and the prediction
of that image, or of the whole set) is undefined: it is NaN and left out of every mean, as MONAI does. A mean of
nothing but NaN stays NaN.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from unetlab.data.info import IGNORE_INDEX
from unetlab.errors import UnetlabError

REDUCTIONS = ("none", "per-class", "macro", "micro", "imagewise")


def confusion_counts(
    pred: torch.Tensor, mask: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image and class: true positives, false positives, false negatives, true negatives.

    Args:
        pred: (N, H, W) predicted class indices in [0, num_classes).
        mask: (N, H, W) true class indices in [0, num_classes), or `ignore_index` for pixels that do not count.
        num_classes: K (2 for a binary model: pred and mask in {0, 1}). Values outside [0, K) are not checked
            (that would synchronise with the host) and corrupt the counts.

    Returns:
        tp, fp, fn, tn: int64 (N, K) on the inputs' device.
    """
    if pred.shape != mask.shape or pred.ndim != 3:
        raise UnetlabError(f"pred {tuple(pred.shape)} and mask {tuple(mask.shape)} must both be (N, H, W)")
    if pred.is_floating_point() or mask.is_floating_point():
        raise UnetlabError("pred and mask must hold integer class indices; take logits.argmax(1) first")
    n, k = pred.shape[0], num_classes
    pred, mask = pred.reshape(n, -1).long(), mask.reshape(n, -1).long()  # (N, HW)
    cell = (torch.arange(n, device=mask.device)[:, None] * k + mask) * k + pred  # entry [image, true, pred]
    cell = torch.where(mask != ignore_index, cell, n * k * k)  # unlabelled pixels go to one spare entry
    counts = torch.zeros(n * k * k + 1, dtype=torch.int64, device=mask.device)
    counts.scatter_add_(0, cell.flatten(), torch.ones_like(cell.flatten()))  # no host sync, unlike bincount on CUDA
    confusion = counts[:-1].reshape(n, k, k)  # (N, true, pred)
    tp = confusion.diagonal(dim1=1, dim2=2)  # (N, K)
    fn = confusion.sum(dim=2) - tp
    fp = confusion.sum(dim=1) - tp
    tn = confusion.sum(dim=(1, 2))[:, None] - tp - fp - fn
    return tp, fp, fn, tn


def dice(tp, fp, fn, tn, reduction: str = "macro") -> torch.Tensor:
    """Dice (F1) score; see the module docstring for the reductions and the empty-mask convention."""
    return _reduce(lambda tp, fp, fn, tn: (2 * tp, 2 * tp + fp + fn), tp, fp, fn, tn, reduction)


def iou(tp, fp, fn, tn, reduction: str = "macro") -> torch.Tensor:
    """Intersection over union (Jaccard index)."""
    return _reduce(lambda tp, fp, fn, tn: (tp, tp + fp + fn), tp, fp, fn, tn, reduction)


def precision(tp, fp, fn, tn, reduction: str = "macro") -> torch.Tensor:
    """Positive predictive value."""
    return _reduce(lambda tp, fp, fn, tn: (tp, tp + fp), tp, fp, fn, tn, reduction)


def recall(tp, fp, fn, tn, reduction: str = "macro") -> torch.Tensor:
    """Sensitivity, true positive rate. With reduction "micro" over all classes: the pixel accuracy."""
    return _reduce(lambda tp, fp, fn, tn: (tp, tp + fn), tp, fp, fn, tn, reduction)


def accuracy(tp, fp, fn, tn, reduction: str = "macro") -> torch.Tensor:
    """Per class: the share of pixels on the right side of that class (one class against the rest)."""
    return _reduce(lambda tp, fp, fn, tn: (tp + tn, tp + fp + fn + tn), tp, fp, fn, tn, reduction)


def _reduce(ratio, tp, fp, fn, tn, reduction: str) -> torch.Tensor:
    if reduction not in REDUCTIONS:
        raise UnetlabError(f"reduction {reduction!r} is unknown; use one of {', '.join(REDUCTIONS)}")

    def score(*counts):  # 0 / 0 -> NaN (undefined)
        num, den = ratio(*(c.double() for c in counts))
        return torch.where(den > 0, num / den.clamp_min(1), torch.nan)

    if reduction == "none":
        return score(tp, fp, fn, tn)  # (N, K)
    if reduction == "imagewise":
        return score(tp, fp, fn, tn).nanmean(dim=1).nanmean()
    if reduction == "micro":
        return score(*(c.sum() for c in (tp, fp, fn, tn)))
    per_class = score(*(c.sum(dim=0) for c in (tp, fp, fn, tn)))  # (K,)
    return per_class if reduction == "per-class" else per_class.nanmean()


@dataclass(frozen=True)
class Metric:
    """A registered metric: what it needs to be computed, and which way is better.

    `needs`: "counts" (a function of the confusion counts, `fn(tp, fp, fn, tn, reduction)`), "masks" (of each image's
    predicted and true classes), "probs" (of the probabilities), or "loss" (the validation loss itself).
    """

    name: str
    needs: str
    higher_is_better: bool = True
    fn: Callable | None = None


REGISTRY = {
    metric.name: metric
    for metric in (
        Metric("dice", "counts", fn=dice),
        Metric("iou", "counts", fn=iou),
        Metric("precision", "counts", fn=precision),
        Metric("recall", "counts", fn=recall),
        Metric("accuracy", "counts", fn=accuracy),
        Metric("loss", "loss", higher_is_better=False),
    )
}
METRICS = {name: m.fn for name, m in REGISTRY.items() if m.needs == "counts"}  # what `MetricAccumulator` computes


def metric_of(key: str) -> Metric:
    """The registered metric behind a score's key: "dice", "dice/cell" (a class's), "val/dice/cell" (as logged).

    Raises:
        KeyError: for a key of no registered metric.
    """
    parts = key.removeprefix("val/").split("/")
    return REGISTRY[parts[0]]


def is_better(key: str, value: float, best: float | None) -> bool:
    """True when `value` of the score `key` improves on `best` (None: nothing yet) in the metric's direction; NaN
    never improves."""
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value > best if metric_of(key).higher_is_better else value < best


class MetricAccumulator:
    """Confusion counts summed over a validation pass; `compute()` turns them into scores.

    `compute()` returns, for each of "dice", "iou", "precision", "recall": the headline, the mean over the
    foreground classes (classes 1..K-1 when K >= 2; a binary model is evaluated with K = 2, so its headline is the
    foreground class's score), and "<metric>/<class name>" for every class (class names default to "0", "1", ...).
    "accuracy" is the pixel accuracy, the share of labelled pixels given their true class (equal to the foreground
    class's accuracy when K = 2); "accuracy/<class name>" is that class's one-against-the-rest accuracy.
    Scores are computed from the counts summed over all images, so a class absent from every truth and every
    prediction gives NaN (see the module docstring) and is left out of the headline.
    """

    def __init__(self, num_classes: int, class_names: list[str] | None = None, ignore_index: int = IGNORE_INDEX):
        if num_classes < 2:
            raise UnetlabError(f"MetricAccumulator needs num_classes >= 2 (2 for binary models), got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise UnetlabError(f"{len(class_names)} class names for {num_classes} classes; give one per class")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        self.reset()

    def reset(self) -> None:
        self.counts = None  # (4, K): tp, fp, fn, tn summed over the images seen

    def update(self, pred: torch.Tensor, mask: torch.Tensor) -> None:
        """Add a batch: pred and mask (N, H, W) class indices on any device; no host synchronisation."""
        counts = torch.stack(confusion_counts(pred, mask, self.num_classes, self.ignore_index)).sum(dim=1)  # (4, K)
        self.counts = counts if self.counts is None else self.counts + counts

    def compute(self) -> dict[str, float]:
        """Scores as Python floats (one host synchronisation); see the class docstring for the keys."""
        if self.counts is None:
            raise UnetlabError("MetricAccumulator.compute() called before any update()")
        tp, fp, fn, tn = self.counts[:, None]  # (1, K) each
        scores = {}
        for name, metric in METRICS.items():
            per_class = metric(tp, fp, fn, tn, reduction="per-class")  # (K,)
            scores[name] = per_class[1:].nanmean()
            scores.update({f"{name}/{c}": v for c, v in zip(self.class_names, per_class)})
        scores["accuracy"] = recall(tp, fp, fn, tn, reduction="micro")  # labelled pixels given their true class
        values = torch.stack(list(scores.values())).tolist()
        return dict(zip(scores, values))
