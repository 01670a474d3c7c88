"""A K x K confusion matrix summed image by image, and the per-class scores of a segmentation set from it.

`ConfusionMatrix.update(pred, truth)` adds one image (or any batch) of class indices; memory is K x K counts, however
many images are added. Rows are the true classes, columns the predicted ones (scikit-learn's `confusion_matrix`).
For class c, with TP = M[c, c], FN = row c minus TP, FP = column c minus TP, TN = the rest:

    dice = 2 TP / (2 TP + FP + FN)     iou = TP / (TP + FP + FN)     precision = TP / (TP + FP)
    recall = TP / (TP + FN)            specificity = TN / (TN + FP)

Empty-mask convention (as `unetlab.evaluation.metrics` and MONAI): a score whose denominator is 0, e.g. the Dice of
a class that is in neither the truth nor the prediction, is undefined: NaN, and left out of every mean. A mean of
nothing but NaN is NaN.

The headline of each score is its mean over the foreground classes, 1..K-1 (for a binary model, K = 2, the score of
class 1), never the pixel accuracy: one-against-the-rest accuracy looks good even for a class whose Dice is 0.1.
`pixel_accuracy` is reported on its own: the share of labelled pixels given their true class.
"""

import numpy as np

from unetlab.data.info import IGNORE_INDEX
from unetlab.errors import UnetlabError

SCORES = ("dice", "iou", "precision", "recall", "specificity")


def as_numpy(array) -> np.ndarray:
    """A NumPy view of a NumPy array or a torch tensor (on any device), without importing torch."""
    if hasattr(array, "detach"):  # a torch tensor
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def class_scores(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class scores of a confusion matrix.

    Args:
        matrix: (K, K) counts, rows the true class and columns the predicted one.

    Returns:
        {"dice", "iou", "precision", "recall", "specificity"}: each a float64 (K,) array, NaN where undefined.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(matrix)  # (K,)
    fn = matrix.sum(axis=1) - tp
    fp = matrix.sum(axis=0) - tp
    tn = matrix.sum() - tp - fn - fp
    ratios = {
        "dice": (2 * tp, 2 * tp + fp + fn),
        "iou": (tp, tp + fp + fn),
        "precision": (tp, tp + fp),
        "recall": (tp, tp + fn),
        "specificity": (tn, tn + fp),
    }
    with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 -> NaN, the empty-mask convention
        return {name: np.where(den > 0, num / np.maximum(den, 1), np.nan) for name, (num, den) in ratios.items()}


def foreground_mean(per_class: np.ndarray) -> float:
    """The mean of a (K,) per-class score over classes 1..K-1, NaN left out (NaN when all are NaN)."""
    values = np.asarray(per_class, dtype=np.float64)[1:]
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


class ConfusionMatrix:
    """Counts of (true class, predicted class) pairs over every pixel added, ignored pixels left out.

    Args:
        num_classes: K >= 2 (a binary model is scored with K = 2: background 0, foreground 1).
        ignore_index: the value of unlabelled pixels in the truth; they are not counted.

    Attributes:
        matrix: (K, K) int64, rows the true class, columns the predicted one.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
        if num_classes < 2:
            raise UnetlabError(f"a confusion matrix needs num_classes >= 2 (2 for binary models), got {num_classes}")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred, truth) -> np.ndarray:
        """Add the pixels of `pred` and `truth`, class-index arrays or tensors of one shape (e.g. (H, W)).

        Returns:
            (K, K) int64: the counts of these pixels alone (an image's own confusion matrix).

        Raises:
            UnetlabError: for shapes that differ, float arrays, or class indices outside [0, K).
        """
        pred, truth = as_numpy(pred), as_numpy(truth)
        if pred.shape != truth.shape:
            raise UnetlabError(f"prediction {pred.shape} and truth {truth.shape} must have the same shape")
        if not (np.issubdtype(pred.dtype, np.integer) and np.issubdtype(truth.dtype, np.integer)):
            raise UnetlabError("prediction and truth must hold integer class indices; take probs.argmax(0) first")
        labelled = truth != self.ignore_index
        pred, truth = pred[labelled].astype(np.int64), truth[labelled].astype(np.int64)  # (n,) each
        k = self.num_classes
        for name, values in (("prediction", pred), ("truth", truth)):
            if values.size and (values.min() < 0 or values.max() >= k):
                raise UnetlabError(
                    f"{name} holds class {values.min() if values.min() < 0 else values.max()}, outside 0..{k - 1}; "
                    f"give class indices of the {k} classes (or {self.ignore_index} for unlabelled truth pixels)"
                )
        counts = np.bincount(truth * k + pred, minlength=k * k).reshape(k, k)  # [true, predicted]
        self.matrix += counts
        return counts

    def scores(self) -> dict[str, np.ndarray]:
        """Per-class scores of the counts so far; see `class_scores`."""
        return class_scores(self.matrix)

    def pixel_accuracy(self) -> float:
        """The share of labelled pixels given their true class (NaN before any pixel)."""
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def summary(self, class_names: list[str]) -> dict[str, float]:
        """Flat scores: "<score>" (the foreground mean), "<score>/<class name>", and "pixel_accuracy"."""
        if len(class_names) != self.num_classes:
            raise UnetlabError(f"{len(class_names)} class names for {self.num_classes} classes; give one per class")
        flat = {}
        for name, per_class in self.scores().items():
            flat[name] = foreground_mean(per_class)
            flat.update({f"{name}/{c}": float(v) for c, v in zip(class_names, per_class)})
        flat["pixel_accuracy"] = self.pixel_accuracy()
        return flat
