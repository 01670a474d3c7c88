"""Ranking curves and calibration from fixed-bin histograms of the probabilities, streamed image by image.

`ProbabilityHistograms.update(probs, truth)` adds one image; memory is a few (classes, bins) count arrays, the same
for ten images or a million. Each class c is scored one against the rest with its own probability: the softmax
probability of c for K >= 2 outputs, the sigmoid probability of the foreground (class 1) for one-logit models.

- Ranking: B equal-width bins on [0, 1] (`bins`, default 1000), the first and the last of them split further into
  log-spaced bins, 20 per decade over `tail_decades` decades (default 5), towards 0 and towards 1: with the
  defaults, [0, 0.001) becomes [0, 1e-8) and 100 bins with edges 1e-3 x 10^(-k/20), k = 100..0, and [0.999, 1]
  its mirror image; 998 + 2 x 101 = 1200 bins in all (`ranking_edges`). Over-confident models put most pixels within
  1e-3 of 0 or 1, where equal-width bins alone lose the order of the confident mistakes (an AP 0.01 to 0.02 off on
  noisy synthetic sets, 0.001 with the split). Bin b holds edge_b <= p < edge_b+1 (the last one also p = 1), so
  counting the pixels of bins >= b gives the confusion counts at the threshold p >= edge_b exactly: every point of
  the precision-recall and ROC curves is exact, and only the order of the pixels inside one bin is lost. Average
  precision (scikit-learn's step sum, no interpolation) and ROC AUC (trapezoids) are those of the probabilities
  rounded down to a bin edge. How far they can be from the exact values follows from the counts alone, whatever
  the order of the pixels inside each bin: AP from the best and the worst order of each bin
  (`average_precision`), and |AUC_hist - AUC| <= 1/2 sum_b P_b F_b / (P F) (P_b positives and F_b negatives in
  bin b, P and F in all), since only pairs inside one bin can change order. `summary()` returns these bounds with
  the scores; both shrink as B grows.
- Calibration: M equal-width bins (`calibration_bins`, default 15, torchmetrics' default), holding per class the
  pixel count, the sum of the probabilities and the count of positives, so the reliability diagram (mean
  probability against observed frequency, per bin) and the expected calibration error
      ECE = sum_m (n_m / n) |mean probability_m - observed frequency_m|
  are exact, as torchmetrics' `BinaryCalibrationError(n_bins=M, norm="l1")` on (p_c, truth == c). The top-label
  ECE (torchmetrics' `MulticlassCalibrationError`) uses the largest probability of each pixel and whether its class
  (the first one on ties) is the true one; a one-logit model counts as the two classes (1 - p, p). Bin m holds
  m/M <= p < (m+1)/M and the last bin also p = 1, where torchmetrics puts p = 1 in a bin of its own.

Undefined values are NaN (no positives: AP, AUC; no negatives: AUC; no pixels: ECE), as elsewhere in unetlab.
Pixels marked `ignore_index` in the truth are not counted.
"""

import numpy as np

from unetlab.data.info import IGNORE_INDEX
from unetlab.errors import UnetlabError
from unetlab.evaluation.scores import as_numpy

RANKING_BINS = 1000
TAIL_DECADES = 5  # log-spaced bins below 1/B and above 1 - 1/B: down to 1e-8 from 0 and 1 with B = 1000
PER_DECADE = 20
CALIBRATION_BINS = 15


def ranking_edges(bins: int = RANKING_BINS, tail_decades: int = TAIL_DECADES) -> np.ndarray:
    """The edges of the ranking bins, float64 (n + 1,), from 0 to 1 (see the module docstring).

    With bins = 1000 and tail_decades = 5: 0, 1e-8, 1.12e-8, ..., 8.9e-4, then 0.001, 0.002, ..., 0.998, 0.999,
    1 - 8.9e-4, ..., 1 - 1e-8, and 1; 1201 edges.
    """
    tail = np.logspace(-tail_decades, 0, tail_decades * PER_DECADE + 1) / bins  # (S,), ending at 1/B
    low = np.concatenate([[0.0], tail[:-1]])  # lower edges of the S bins split from [0, 1/B)
    middle = np.arange(1, bins - 1) / bins  # lower edges of the equal-width bins 1..B-2
    high = np.concatenate([[(bins - 1) / bins], 1 - tail[::-1][1:]])  # the S bins split from [1 - 1/B, 1]
    return np.concatenate([low, middle, high, [1.0]])


def _bin_index(p: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bin of each probability: floor(p * bins), with p = 1 in the last bin. (p * bins is exact in
    float64 for float32 p, so a bin edge m/bins is never misplaced by rounding.)"""
    return np.minimum((p.astype(np.float64) * bins).astype(np.int64), bins - 1)


def _ranking_index(p: np.ndarray, edges: np.ndarray, bins: int) -> np.ndarray:
    """The ranking bin of each probability: equal-width by arithmetic, the split end bins by search (only the few
    pixels that fall there pay for it)."""
    split = (len(edges) - 1 - (bins - 2)) // 2  # S, bins split from each end bin
    uniform = _bin_index(p, bins)  # 0..B-1
    index = uniform + (split - 1)  # bins 1..B-2 follow the S low ones
    for end, offset in ((0, 0), (bins - 1, split + bins - 2)):
        at = np.flatnonzero(uniform == end)
        local = edges[offset : offset + split + 1]  # the S + 1 edges of this end
        found = np.searchsorted(local, p[at].astype(np.float64), side="right") - 1
        index[at] = offset + np.clip(found, 0, split - 1)
    return index


class ProbabilityHistograms:
    """Per-class histograms of the probabilities of positive and negative pixels, and calibration sums.

    Args:
        num_outputs: the model's probability channels: 1 for a binary (sigmoid) model, K >= 2 for softmax.
        bins: B, the equal-width ranking bins (curves, AP, AUC), >= 2.
        tail_decades: decades of log-spaced bins split from the first and the last of them (0: none).
        calibration_bins: M, the calibration bins (reliability diagram, ECE).
        ignore_index: the value of unlabelled truth pixels.

    Attributes:
        classes: the class index scored in each row: [1] for a binary model, [0, ..., K-1] otherwise.
        edges: (n + 1,) float64 edges of the n ranking bins (`ranking_edges`).
        positives, negatives: (len(classes), n) int64 pixel counts per ranking bin.
        cal_count, cal_positives: (len(classes), M) int64; cal_prob_sum: (len(classes), M) float64.
        top_count, top_correct: (M,) int64; top_conf_sum: (M,) float64: the top-label calibration sums.
    """

    def __init__(
        self,
        num_outputs: int,
        bins: int = RANKING_BINS,
        calibration_bins: int = CALIBRATION_BINS,
        ignore_index: int = IGNORE_INDEX,
        tail_decades: int = TAIL_DECADES,
    ):
        if num_outputs < 1 or bins < 2 or calibration_bins < 1 or tail_decades < 0:
            raise UnetlabError(
                f"histograms need num_outputs >= 1, bins >= 2, calibration_bins >= 1 and tail_decades >= 0, got "
                f"{num_outputs}, {bins}, {calibration_bins}, {tail_decades}"
            )
        self.num_outputs, self.bins, self.calibration_bins = num_outputs, bins, calibration_bins
        self.ignore_index = ignore_index
        self.classes = [1] if num_outputs == 1 else list(range(num_outputs))
        self.edges = ranking_edges(bins, tail_decades)
        c, m, n = len(self.classes), calibration_bins, len(self.edges) - 1
        self.positives = np.zeros((c, n), dtype=np.int64)
        self.negatives = np.zeros((c, n), dtype=np.int64)
        self.cal_count = np.zeros((c, m), dtype=np.int64)
        self.cal_positives = np.zeros((c, m), dtype=np.int64)
        self.cal_prob_sum = np.zeros((c, m), dtype=np.float64)
        self.top_count = np.zeros(m, dtype=np.int64)
        self.top_correct = np.zeros(m, dtype=np.int64)
        self.top_conf_sum = np.zeros(m, dtype=np.float64)

    def update(self, probs, truth) -> None:
        """Add one image.

        Args:
            probs: (K, H, W) probabilities in [0, 1], K = `num_outputs` (array or tensor).
            truth: (H, W) true class indices, `ignore_index` for unlabelled pixels.
        """
        probs, truth = as_numpy(probs), as_numpy(truth)
        if probs.ndim != 3 or probs.shape[0] != self.num_outputs or probs.shape[1:] != truth.shape:
            raise UnetlabError(
                f"probabilities {probs.shape} and truth {truth.shape} must be ({self.num_outputs}, H, W) and (H, W)"
            )
        labelled = truth != self.ignore_index
        probs, truth = probs[:, labelled], truth[labelled].astype(np.int64)  # (K, n), (n,)
        if probs.size and not (probs.min() >= 0 and probs.max() <= 1):  # also catches NaN
            raise UnetlabError("probabilities must lie in [0, 1]; pass softmax or sigmoid outputs, not logits")
        n, m = len(self.edges) - 1, self.calibration_bins
        for row, c in enumerate(self.classes):
            p = probs[0] if self.num_outputs == 1 else probs[c]  # (pixels,)
            positive = truth == c
            fine = _ranking_index(p, self.edges, self.bins)
            self.positives[row] += np.bincount(fine[positive], minlength=n)
            self.negatives[row] += np.bincount(fine[~positive], minlength=n)
            coarse = _bin_index(p, m)
            self.cal_count[row] += np.bincount(coarse, minlength=m)
            self.cal_positives[row] += np.bincount(coarse[positive], minlength=m)
            self.cal_prob_sum[row] += np.bincount(coarse, weights=p.astype(np.float64), minlength=m)
        if self.num_outputs == 1:
            probs = np.concatenate([1 - probs, probs])  # (2, n): a sigmoid model as two classes
        top = probs.argmax(axis=0)  # (n,) the first class on ties, as torch's max
        confidence = probs.max(axis=0).astype(np.float64)
        coarse = _bin_index(confidence, m)
        self.top_count += np.bincount(coarse, minlength=m)
        self.top_correct += np.bincount(coarse[top == truth], minlength=m)
        self.top_conf_sum += np.bincount(coarse, weights=confidence, minlength=m)

    def _row(self, c: int) -> int:
        if c not in self.classes:
            raise UnetlabError(f"class {c} is not scored; the scored classes are {self.classes}")
        return self.classes.index(c)

    def _cumulative(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """tp[b], fp[b]: positives and negatives with p >= edge_b, for every bin b (float64, (n,) each)."""
        counts = self.threshold_counts(c)
        return counts["tp"].astype(np.float64), counts["fp"].astype(np.float64)

    def threshold_counts(self, c: int) -> dict[str, np.ndarray]:
        """Class c's confusion counts at every threshold p >= edge_b, rising thresholds (e.g. for TensorBoard's
        `add_pr_curve_raw`).

        Returns:
            {"threshold", "tp", "fp", "fn", "tn"}: (n,) arrays, float64 thresholds and int64 counts.
        """
        row = self._row(c)
        tp = np.cumsum(self.positives[row, ::-1])[::-1]
        fp = np.cumsum(self.negatives[row, ::-1])[::-1]
        return {"threshold": self.edges[:-1].copy(), "tp": tp, "fp": fp, "fn": tp[0] - tp, "tn": fp[0] - fp}

    def pr_curve(self, c: int) -> dict[str, np.ndarray]:
        """Class c's precision-recall curve at the thresholds p >= edge_b, from the highest edge down (rising recall).

        Returns:
            {"threshold", "precision", "recall"}: float64 (n,) arrays over the thresholds that select at least one
            pixel (precision is undefined before); recall is NaN throughout when the class has no positives.
        """
        tp, fp = self._cumulative(c)
        keep = (tp + fp) > 0
        thresholds = self.edges[:-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = tp / (tp + fp)
            recall = tp / tp[0] if tp[0] > 0 else np.full_like(tp, np.nan)
        return {"threshold": thresholds[keep][::-1], "precision": precision[keep][::-1], "recall": recall[keep][::-1]}

    def roc_curve(self, c: int) -> dict[str, np.ndarray]:
        """Class c's ROC curve from (0, 0) through the thresholds p >= edge_b (the highest first) to (1, 1).

        Returns:
            {"threshold", "fpr", "tpr"}: float64 (n + 1,) arrays (threshold inf first); NaN rates when the class has
            no positives (tpr) or no negatives (fpr).
        """
        tp, fp = self._cumulative(c)
        with np.errstate(invalid="ignore", divide="ignore"):
            tpr = np.concatenate([[0.0], tp[::-1] / tp[0]])
            fpr = np.concatenate([[0.0], fp[::-1] / fp[0]])
        thresholds = np.concatenate([[np.inf], self.edges[:-1][::-1]])
        return {"threshold": thresholds, "fpr": fpr, "tpr": tpr}

    def average_precision(self, c: int) -> tuple[float, float]:
        """Class c's average precision, sum_b (R_b - R_b+1) P_b, and its bound on the difference from the exact AP.

        The bound holds for any order (and any ties) of the pixels inside each bin. With A_b positives and N_b
        pixels above bin b, P_b positives and F_b negatives in it, and C_b = N_b + F_b, the exact precision of the
        j-th positive of bin b (at the end of its group of tied scores, as scikit-learn counts) lies between
        (A_b + j) / (C_b + j) (the negatives of the bin first) and (A_b + P_b) / (N_b + P_b) (the positives first,
        tied), so the exact AP lies between
            L = 1/P sum_b [P_b - (C_b - A_b) ln((C_b + P_b) / C_b)]   (sum_j 1/(C + j) <= ln((C + m) / C))
            U = 1/P sum_b P_b (A_b + P_b) / (N_b + P_b),
        and the bound is max(U - AP_hist, AP_hist - L).
        """
        tp, fp = self._cumulative(c)
        if tp[0] == 0:
            return float("nan"), float("nan")
        row = self._row(c)
        positives, negatives = self.positives[row].astype(np.float64), self.negatives[row].astype(np.float64)
        selected = tp + fp
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(selected > 0, tp / selected, 0.0)  # bins that select nothing add no recall
            above, above_pos = selected - positives - negatives, tp - positives  # N_b, A_b
            upper = np.where(positives > 0, positives * (above_pos + positives) / (above + positives), 0.0)
            c_b = above + negatives
            lower = np.where(c_b > 0, positives - (c_b - above_pos) * np.log((c_b + positives) / c_b), positives)
        ap = float((positives / tp[0] * precision).sum())
        low, high = float(lower.sum() / tp[0]), float(upper.sum() / tp[0])
        return ap, max(high - ap, ap - low, 0.0)

    def auc(self, c: int) -> tuple[float, float]:
        """Class c's area under the ROC curve (trapezoids), and its bound on the difference from the exact AUC."""
        tp, fp = self._cumulative(c)
        if tp[0] == 0 or fp[0] == 0:
            return float("nan"), float("nan")
        roc = self.roc_curve(c)
        fpr, tpr = roc["fpr"], roc["tpr"]
        area = float(((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2).sum())
        row = self._row(c)
        ties = float((self.positives[row] * self.negatives[row].astype(np.float64)).sum())  # pairs in one bin
        return area, 0.5 * ties / (tp[0] * fp[0])

    def reliability(self, c: int | None = None) -> dict[str, np.ndarray]:
        """The reliability diagram of class c (one against the rest), or the top-label one for c = None.

        Returns:
            {"lower", "upper", "count", "mean_prob", "frequency"}: (M,) arrays per calibration bin: its edges, its
            pixel count, the mean probability (confidence) and the observed frequency of positives (correct
            pixels) in it; NaN means in empty bins.
        """
        if c is None:
            count, hits, total = self.top_count, self.top_correct, self.top_conf_sum
        else:
            row = self._row(c)
            count, hits, total = self.cal_count[row], self.cal_positives[row], self.cal_prob_sum[row]
        edges = np.arange(self.calibration_bins + 1) / self.calibration_bins
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_prob = np.where(count > 0, total / count, np.nan)
            frequency = np.where(count > 0, hits / count, np.nan)
        return {"lower": edges[:-1], "upper": edges[1:], "count": count.copy(), "mean_prob": mean_prob,
                "frequency": frequency}  # fmt: skip

    def ece(self, c: int | None = None) -> float:
        """Expected calibration error of class c (one against the rest), or the top-label ECE for c = None."""
        bins = self.reliability(c)
        count = bins["count"]
        if count.sum() == 0:
            return float("nan")
        gap = np.abs(bins["mean_prob"] - bins["frequency"])
        return float(np.nansum(count / count.sum() * gap))

    def summary(self, class_names: list[str]) -> dict[str, float]:
        """Flat scores for each scored class c named n: "ap/n", "ap_bound/n", "auc/n", "auc_bound/n", "ece/n"; the
        foreground means "ap", "auc", "ece" (NaN left out; for a binary model, the foreground's own); "ece_top"."""
        flat, means = {}, {"ap": [], "auc": [], "ece": []}
        for c in self.classes:
            name = class_names[c]
            flat[f"ap/{name}"], flat[f"ap_bound/{name}"] = self.average_precision(c)
            flat[f"auc/{name}"], flat[f"auc_bound/{name}"] = self.auc(c)
            flat[f"ece/{name}"] = self.ece(c)
            if c >= 1:
                for key in means:
                    means[key].append(flat[f"{key}/{name}"])
        for key, values in means.items():
            values = [v for v in values if not np.isnan(v)]
            flat[key] = float(np.mean(values)) if values else float("nan")
        flat["ece_top"] = self.ece(None)
        return flat
