"""Touching objects, scored as the ISBI 2012 EM segmentation challenge scored them: pixel error, adapted Rand error
and variation of information on the connected cells.

In EM membrane masks the membrane is the foreground (class 1) and the cells are the background regions that the
thin membrane separates, so the objects to compare are the 4-connected regions of the *cell class* (`cell_class`,
default 0), labelled by `unetlab.data.weight_map.connected_components`: label 0 is the membrane (every pixel not of
the cell class), labels 1..n the cells. (For cells drawn as the foreground on a background, pass cell_class=1.)

From the contingency table n_ij (pixels of true cell i and predicted region j; a sparse table from np.unique over
pair keys, never the n^2 pixel pairs), with the truth's membrane pixels (true label 0) left out, as the SNEMI3D and
ISBI challenges restrict the scores to the true cells, while the predicted membrane stays one region, label 0:
- adapted Rand error (Arganda-Carreras et al. 2015, "Crowdsourcing the creation of image segmentation algorithms
  for connectomics"), as `skimage.metrics.adapted_rand_error`:
      1 - sum_ij n_ij (n_ij - 1) / (1/2 sum_i t_i (t_i - 1) + 1/2 sum_j s_j (s_j - 1))
  with t_i the true cells' sizes and s_j the predicted regions' sizes (pairs of distinct pixels);
- variation of information (Meila 2007) in bits, split + merge, as `skimage.metrics.variation_of_information`:
  split = H(prediction | truth) (a true cell cut into several regions), merge = H(truth | prediction) (cells
  joined into one region);
- pixel error: 1 - pixel accuracy of the class masks, over the labelled pixels.
Undefined values (no true cell pixel, or fewer than two) are NaN. The scores of a set are the means over its images.
"""

import numpy as np

from unetlab.data.info import IGNORE_INDEX
from unetlab.data.weight_map import connected_components
from unetlab.errors import UnetlabError
from unetlab.evaluation.scores import as_numpy

REGION_SCORES = ("pixel_error", "rand_error", "vi", "vi_split", "vi_merge")


def cell_labels(classes: np.ndarray, cell_class: int = 0) -> np.ndarray:
    """int64 (H, W) labels of the 4-connected regions of `cell_class`: 0 elsewhere, 1..n the cells."""
    return connected_components((np.asarray(classes) == cell_class).astype(np.int64))


def contingency(true_labels: np.ndarray, pred_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sparse contingency table of two label images of one shape, pixels with true label 0 left out.

    Returns:
        (true label, predicted label, count) for each pair that occurs: int64 (m,) arrays, m <= the pixel count.
    """
    true_labels, pred_labels = np.asarray(true_labels).ravel(), np.asarray(pred_labels).ravel()
    keep = true_labels != 0
    true_labels, pred_labels = true_labels[keep].astype(np.int64), pred_labels[keep].astype(np.int64)
    if true_labels.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    width = int(pred_labels.max()) + 1
    keys, counts = np.unique(true_labels * width + pred_labels, return_counts=True)  # one key per (i, j) pair
    return keys // width, keys % width, counts


def _entropy_given(joint: np.ndarray, groups: np.ndarray) -> float:
    """H(A | B) in bits from the joint counts n_ab and, for each, the index of its b: sum -p_ab log2(n_ab / n_b)."""
    marginal = np.bincount(groups, weights=joint)  # n_b
    total = joint.sum()
    return float(-(joint / total * np.log2(joint / marginal[groups])).sum())


def region_scores(true_labels: np.ndarray, pred_labels: np.ndarray) -> dict[str, float]:
    """Adapted Rand error and VI (split, merge) of two label images; the truth's label 0 is left out.

    Returns:
        {"rand_error", "vi", "vi_split", "vi_merge"}: floats, NaN when the truth has no labelled pixel (and the Rand
        error also when no two true pixels share a cell).
    """
    i, j, n_ij = contingency(true_labels, pred_labels)
    nan = float("nan")
    if n_ij.size == 0:
        return {"rand_error": nan, "vi": nan, "vi_split": nan, "vi_merge": nan}
    n_ij = n_ij.astype(np.float64)
    t = np.bincount(i, weights=n_ij)  # true cell sizes (0 for absent labels, which add nothing)
    s = np.bincount(j, weights=n_ij)  # predicted region sizes, counted on the true cells only
    pairs_both = (n_ij * (n_ij - 1)).sum()
    pairs_true, pairs_pred = (t * (t - 1)).sum(), (s * (s - 1)).sum()
    denominator = 0.5 * pairs_true + 0.5 * pairs_pred
    rand_error = 1.0 - pairs_both / denominator if denominator > 0 else nan
    split = _entropy_given(n_ij, i)  # H(prediction | truth)
    merge = _entropy_given(n_ij, j)  # H(truth | prediction)
    return {"rand_error": float(rand_error), "vi": split + merge, "vi_split": split, "vi_merge": merge}


def image_region_scores(pred, truth, cell_class: int = 0, ignore_index: int = IGNORE_INDEX) -> dict[str, float]:
    """The ISBI 2012 scores of one image of a binary segmentation.

    Args:
        pred, truth: (H, W) class indices in {0, 1} (truth may hold `ignore_index`, left out of every score:
            an unlabelled pixel is in no true cell).
        cell_class: the class whose connected regions are the objects (0: cells separated by a membrane class 1).

    Returns:
        {"pixel_error", "rand_error", "vi", "vi_split", "vi_merge"}.
    """
    pred, truth = as_numpy(pred), as_numpy(truth)
    if pred.shape != truth.shape or pred.ndim != 2:
        raise UnetlabError(f"prediction {pred.shape} and truth {truth.shape} must both be (H, W)")
    if cell_class not in (0, 1):
        raise UnetlabError(f"cell_class must be 0 or 1 for a binary mask, got {cell_class}")
    labelled = truth != ignore_index
    pixel_error = float((pred[labelled] != truth[labelled]).mean()) if labelled.any() else float("nan")
    true_cells = np.where(labelled, cell_labels(truth, cell_class), 0)  # unlabelled pixels: in no true cell
    return {"pixel_error": pixel_error, **region_scores(true_cells, cell_labels(pred, cell_class))}
