"""The whole evaluation of a labelled set, streamed image by image into one `Evaluation` that a report is written from.

`evaluate_stream(items, class_names)` takes (name, image, probabilities, truth) items one at a time, e.g. from a
generator that reads and predicts each image, and keeps only accumulators and one row per image (its scores and a
thumbnail), so memory does not grow with the images' size or number beyond those rows:
- a confusion matrix (`scores.ConfusionMatrix`) at the decision rule, and, for binary models, one more at each of
  `other_thresholds` (e.g. 0.5 besides the threshold chosen on validation images);
- probability histograms (`histograms.ProbabilityHistograms`): ranking curves, AP, AUC, calibration;
- per image: the scores of its own confusion matrix, the boundary metrics of each foreground class
  (`boundary.image_boundary_scores`), for binary models the ISBI 2012 scores (`regions.image_region_scores`), and
  the overlay thumbnail (`figures.overlay_thumbnail`).

The decision rule is `unetlab.logits.decide` (p >= threshold) for one-logit models and the most
probable class (argmax, the first on ties) for softmax models, as `unetlab predict` writes masks.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from unetlab.data.info import IGNORE_INDEX
from unetlab.errors import UnetlabError
from unetlab.evaluation.boundary import BOUNDARY_SCORES, image_boundary_scores
from unetlab.evaluation.figures import overlay_thumbnail
from unetlab.evaluation.histograms import CALIBRATION_BINS, RANKING_BINS, ProbabilityHistograms
from unetlab.evaluation.regions import REGION_SCORES, image_region_scores
from unetlab.evaluation.scores import SCORES, ConfusionMatrix, as_numpy, class_scores, foreground_mean
from unetlab.logits import decide

SURFACE_TOLERANCE = 2.0  # px, the default tolerance of the surface Dice
THUMBNAIL_SIDE = 160  # px, the longest side of the per-image overlays
MAX_THUMBNAILS = 200  # overlays kept, of the worst images by Dice: a bound on memory and on report.html's size


@dataclass
class ImageRow:
    """One scored image: `scores` holds "dice", "iou", "precision", "recall", "specificity" (foreground means) and
    "<score>/<class>", "pixel_accuracy", "hd95", "assd", "surface_dice" (means over the foreground classes) and
    "<score>/<class>" for those classes, and for binary models "pixel_error", "rand_error", "vi", "vi_split",
    "vi_merge"; NaN where undefined. `thumbnail` is a PNG overlay (None when thumbnails are off)."""

    name: str
    scores: dict[str, float]
    thumbnail: bytes | None = None


@dataclass
class Evaluation:
    """Everything a report needs from the scored images (see `evaluate_stream`).

    Attributes:
        class_names: the K names, K >= 2 (a binary model's are its two classes).
        num_outputs: the model's probability channels: 1 for a one-logit (sigmoid) model, else K.
        threshold: the binary decision threshold used (None for softmax models).
        tolerance: the surface Dice tolerance in px.
        cell_class: the class whose regions are the cells of the touching-object scores (None: not scored, K > 2).
        confusion: the set's confusion matrix at the decision rule.
        histograms: probability histograms of the set.
        rows: one per image, in the order given.
        other_thresholds: {threshold: confusion matrix} for binary models (e.g. {0.5: ...}).
    """

    class_names: list[str]
    num_outputs: int
    threshold: float | None
    tolerance: float
    cell_class: int | None
    confusion: ConfusionMatrix
    histograms: ProbabilityHistograms
    rows: list[ImageRow] = field(default_factory=list)
    other_thresholds: dict[float, ConfusionMatrix] = field(default_factory=dict)

    @property
    def binary(self) -> bool:
        """True for a one-logit model (and for K = 2 softmax models: two classes)."""
        return len(self.class_names) == 2

    def summary(self) -> dict[str, float]:
        """The set's scores, flat: the confusion-matrix scores (`ConfusionMatrix.summary`), the histogram scores
        (`ProbabilityHistograms.summary`), the boundary and region scores as means over images ("hd95/<class>", ...;
        "hd95" the mean over foreground classes; "undefined_hd95/<class>": images where the class was in only one
        of truth and prediction), "imagewise/<score>" (the mean over images of each image's foreground mean), and
        for each other threshold t "at_<t>/<score>"."""
        names = self.class_names
        flat = {"images": len(self.rows), **self.confusion.summary(names), **self.histograms.summary(names)}
        for score in BOUNDARY_SCORES:
            per_class = []
            for c in range(1, len(names)):
                key = f"{score}/{names[c]}"
                per_class.append(_nanmean([row.scores.get(key, math.nan) for row in self.rows]))
                flat[key] = per_class[-1]
                if score == "hd95":  # NaN although the class is in the truth or the prediction: one side empty
                    flat[f"undefined_hd95/{names[c]}"] = sum(
                        math.isnan(row.scores[key]) and row.scores[f"surface_dice/{names[c]}"] == 0 for row in self.rows
                    )
            flat[score] = _nanmean(per_class)
        if self.cell_class is not None:
            for score in REGION_SCORES:
                flat[score] = _nanmean([row.scores[score] for row in self.rows])
        for score in SCORES:
            flat[f"imagewise/{score}"] = _nanmean([row.scores[score] for row in self.rows])
        for t, matrix in self.other_thresholds.items():
            flat.update({f"at_{t:g}/{k}": v for k, v in matrix.summary(names).items()})
        return flat


def _nanmean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def evaluate_stream(
    items: Iterable,
    class_names: list[str],
    *,
    threshold: float | None = None,
    other_thresholds: tuple[float, ...] = (),
    tolerance: float = SURFACE_TOLERANCE,
    bins: int = RANKING_BINS,
    calibration_bins: int = CALIBRATION_BINS,
    cell_class: int = 0,
    thumbnail_side: int | None = THUMBNAIL_SIDE,
    max_thumbnails: int = MAX_THUMBNAILS,
    ignore_index: int = IGNORE_INDEX,
) -> Evaluation:
    """Score a stream of predicted images against their truth.

    Args:
        items: (name, image, probs, truth) tuples, one per image: name a str (shown in the report); image the
            (H, W) or (H, W, C) input, any dtype, for the thumbnail (None: an overlay on black); probs (1, H, W)
            sigmoid or (K, H, W) softmax probabilities (the predictor's `Prediction.probs`); truth (H, W) integer
            class indices, `ignore_index` for unlabelled pixels. Arrays or tensors.
        class_names: K names (two for a one-logit model: background and foreground).
        threshold: the decision threshold of a one-logit model (required there; ignored for softmax models).
        other_thresholds: more thresholds at which a one-logit model's confusion matrix is kept (e.g. (0.5,)).
        tolerance: the surface Dice tolerance in px.
        bins, calibration_bins: the histogram bins of the ranking curves and of calibration.
        cell_class: for two classes, the class whose 4-connected regions are the objects of the ISBI 2012 scores.
        thumbnail_side: the longest side of each overlay in px; None: no thumbnails.
        max_thumbnails: overlays are kept for this many images, the worst by Dice (undefined Dice counts as best);
            the other rows have none.

    Raises:
        UnetlabError: for no items, a missing threshold, a channel count that does not fit the class names, or
            shapes that differ (naming the image).
    """
    k = len(class_names)
    if k < 2:
        raise UnetlabError(f"give at least two class names (background and foreground), got {class_names}")
    evaluation, holding = None, []  # holding: the rows that keep their thumbnail
    for name, image, probs, truth in items:
        probs, truth = as_numpy(probs), as_numpy(truth)
        if probs.ndim != 3 or probs.shape[1:] != truth.shape or probs.shape[0] not in (1, k) or truth.ndim != 2:
            raise UnetlabError(
                f"{name}: probabilities {probs.shape} and truth {truth.shape} must be (1 or {k}, H, W) and (H, W)"
            )
        if probs.shape[0] == 1 and k != 2:
            raise UnetlabError(f"{name}: one probability channel is a binary model, but {k} class names were given")
        if evaluation is None:
            if probs.shape[0] == 1 and threshold is None:
                raise UnetlabError("a one-logit model needs a threshold: pass threshold=0.5 or the chosen one")
            evaluation = Evaluation(
                class_names=list(class_names),
                num_outputs=probs.shape[0],
                threshold=threshold if probs.shape[0] == 1 else None,
                tolerance=tolerance,
                cell_class=cell_class if k == 2 else None,
                confusion=ConfusionMatrix(k, ignore_index),
                histograms=ProbabilityHistograms(probs.shape[0], bins, calibration_bins, ignore_index),
                other_thresholds={t: ConfusionMatrix(k, ignore_index) for t in other_thresholds}
                if probs.shape[0] == 1
                else {},
            )
        elif probs.shape[0] != evaluation.num_outputs:
            raise UnetlabError(f"{name}: {probs.shape[0]} probability channels, the images before had another count")
        row = _score_image(evaluation, str(name), image, probs, truth, thumbnail_side, ignore_index)
        evaluation.rows.append(row)
        if row.thumbnail is not None:
            holding.append(row)
        if len(holding) > max_thumbnails:  # drop the overlay of the best image holding one
            best = max(holding, key=dice_order)
            best.thumbnail = None
            holding.remove(best)
    if evaluation is None:
        raise UnetlabError("no images to evaluate")
    return evaluation


def dice_order(row: ImageRow) -> tuple[bool, float]:
    """Sort key of rows, worst first: ascending Dice, undefined Dice (no foreground anywhere) last."""
    dice = row.scores["dice"]
    return (math.isnan(dice), 0.0 if math.isnan(dice) else dice)


def _score_image(evaluation: Evaluation, name, image, probs, truth, thumbnail_side, ignore_index) -> ImageRow:
    names = evaluation.class_names
    pred = decide(probs, evaluation.threshold, dim=0).astype(np.int64)  # (H, W)
    own = evaluation.confusion.update(pred, truth)  # (K, K), this image's counts
    evaluation.histograms.update(probs, truth)
    for t, matrix in evaluation.other_thresholds.items():
        matrix.update(decide(probs, t, dim=0).astype(np.int64), truth)
    scores = {}
    for score, per_class in class_scores(own).items():
        scores[score] = foreground_mean(per_class)
        scores.update({f"{score}/{c}": float(v) for c, v in zip(names, per_class)})
    total = own.sum()
    scores["pixel_accuracy"] = float(np.trace(own) / total) if total else math.nan
    boundary = image_boundary_scores(pred, truth, len(names), evaluation.tolerance, ignore_index)
    for score in BOUNDARY_SCORES:
        scores[score] = _nanmean([boundary[c][score] for c in boundary])
        scores.update({f"{score}/{names[c]}": boundary[c][score] for c in boundary})
    if evaluation.cell_class is not None:
        scores.update(image_region_scores(pred, truth, evaluation.cell_class, ignore_index))
    thumbnail = None
    if thumbnail_side:
        image = None if image is None else as_numpy(image)
        thumbnail = overlay_thumbnail(image, truth, pred, thumbnail_side, ignore_index)
    return ImageRow(name, scores, thumbnail)
