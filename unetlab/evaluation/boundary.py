"""Boundary metrics per image and class: HD95, average symmetric surface distance, normalised surface Dice.

Surfaces are defined as MONAI defines them (`monai.metrics.utils.get_mask_edges` without spacing): the pixels of a
mask with a 4-neighbour outside it, `mask XOR binary_erosion(mask)` with the cross-shaped structuring element, where
the outside of the image counts as outside the mask (so a mask touching the border has a surface there). For each
surface pixel, its distance to the other mask's surface is the exact Euclidean distance in px, from our own
separable distance transform (`distances_to`, evaluated at the surface pixels only; `distance_transform` gives the
whole image). Then, as MONAI:

- HD95 (`monai.metrics.compute_hausdorff_distance(percentile=95)`): the larger of the two directed 95th
  percentiles (linear interpolation) of the distances, prediction -> truth and truth -> prediction;
- ASSD (`compute_average_surface_distance(symmetric=True)`): the mean of both directions' distances together;
- surface Dice at a tolerance of tau px (Nikolov et al. 2021, "Clinically applicable segmentation of head and neck
  anatomy for radiotherapy", counted per surface pixel as `compute_surface_dice` does by default):
  (#{prediction surface within tau of the truth} + #{truth surface within tau of the prediction})
  / (#prediction surface + #truth surface).

Empty masks (MONAI returns inf or NaN there; unetlab keeps every undefined score NaN, left out of means):
- truth and prediction both empty for the class: all three are NaN;
- exactly one empty: HD95 and ASSD are NaN (a distance to nothing; MONAI says inf), and surface Dice is 0 (no
  surface pixel is matched), so a missed or hallucinated object still lowers the mean surface Dice.
Pixels the truth leaves unlabelled (`ignore_index`) count as outside the class in the truth, and surface pixels on
them, of either mask, are left out.
"""

import numpy as np

from unetlab.data.info import IGNORE_INDEX
from unetlab.errors import UnetlabError
from unetlab.evaluation.scores import as_numpy

BOUNDARY_SCORES = ("hd95", "assd", "surface_dice")
OUTWARD_STEPS = 32  # columns searched outward from each pixel before its row gets the full lower envelope


def _column_distance(features: np.ndarray) -> np.ndarray:
    """Distance from each pixel to the nearest feature pixel of its column, float64 (H, W), inf for a column
    without one: the nearest feature row above and below, by running extrema down and up each column."""
    rows = np.arange(features.shape[0], dtype=np.float64)[:, None]  # (H, 1)
    above = np.maximum.accumulate(np.where(features, rows, -np.inf), axis=0)  # last feature row at or above
    below = np.minimum.accumulate(np.where(features, rows, np.inf)[::-1], axis=0)[::-1]  # first at or below
    return np.minimum(rows - above, below - rows)


def _lower_envelope(f: np.ndarray) -> np.ndarray:
    """min over q' of f[r, q'] + (q - q')^2 for every row r and position q: the 1-D squared distance transform.

    Felzenszwalb & Huttenlocher's algorithm (their Algorithm 1), with one stack of parabolas per row, all rows at
    once: v holds the parabolas' positions, z the boundaries between them. An infinite f (no feature in that
    column) adds no parabola; a row without any stays infinite.

    Args:
        f: (R, n) float64, finite values >= 0 or inf.
    """
    count, n = f.shape
    v = np.zeros((count, n), dtype=np.int64)  # v[r, j]: position of the j-th parabola of row r's envelope
    z = np.full((count, n + 1), np.inf)  # z[r, j]: where parabola j starts to be the lowest (z[r, 0] = -inf)
    top = np.full(count, -1)  # index of the top parabola of each row's stack, -1 when empty
    every = np.arange(count)
    for q in range(n):
        fq = f[:, q]
        s = np.full(count, -np.inf)  # where parabola q overtakes the top of the stack
        todo = every[np.isfinite(fq) & (top >= 0)]
        while todo.size:  # pop the parabolas that parabola q hides, all rows at once
            vk = v[todo, top[todo]]
            s[todo] = ((fq[todo] + q * q) - (f[todo, vk] + vk * vk)) / (2.0 * (q - vk))
            hidden = s[todo] <= z[todo, top[todo]]  # never true at the bottom, where z = -inf
            top[todo[hidden]] -= 1
            todo = todo[hidden]
        push = every[np.isfinite(fq)]
        top[push] += 1
        v[push, top[push]] = q
        z[push, top[push]] = s[push]
        z[push, top[push] + 1] = np.inf
    z[np.arange(n + 1)[None, :] > top[:, None]] = np.inf  # drop what popped parabolas left above the top
    # Parabola j of row r is the lowest at q when z[r, j] <= q < z[r, j+1]: count the z[r, 1:] below q, for all
    # rows in one searchsorted by giving row r the offset r * (n + 3) (z is clipped to [-1, n + 1] first).
    offset = np.arange(count)[:, None] * (n + 3.0)
    bounds = (np.clip(z[:, 1:], -1, n + 1) + offset).ravel()  # (R * n,) sorted
    j = np.searchsorted(bounds, (np.arange(n)[None, :] + offset).ravel()).reshape(count, n)
    j = np.maximum(j - np.arange(count)[:, None] * n, 0)  # (R, n) the lowest parabola's index at each q
    vj = np.take_along_axis(v, j, axis=1)
    out = (np.arange(n)[None, :] - vj) ** 2 + np.take_along_axis(f, vj, axis=1)
    out[top < 0] = np.inf
    return out


def distances_to(features: np.ndarray, rows, cols, max_steps: int = OUTWARD_STEPS) -> np.ndarray:
    """Exact Euclidean distance from the pixels (rows[i], cols[i]) to the nearest feature pixel.

    Separable, as exact transforms are: with g the distance to the nearest feature of the same column, the squared
    distance at (r, c) is min over columns c' of g(r, c')^2 + (c - c')^2 (Felzenszwalb & Huttenlocher 2012,
    "Distance transforms of sampled functions"). That minimum is first searched outward from c, up to `max_steps`
    columns away: a pixel is done once (c' - c)^2 reaches the best value found, which no farther column can beat,
    so near pixels (most surface pixels) cost a few steps. The rows of the pixels still open then get the whole
    lower envelope of parabolas (`_lower_envelope`), whose cost does not depend on the distances.

    Args:
        features: (H, W) bool.
        rows, cols: (n,) int pixel coordinates.

    Returns:
        float64 (n,); inf everywhere when there is no feature.
    """
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    if not features.any():
        return np.full(rows.shape, np.inf)
    g2 = _column_distance(features) ** 2  # (H, W)
    best = g2[rows, cols]  # (n,) squared distances found so far: column c itself first
    width = features.shape[1]
    pending, step = np.arange(rows.size), 0
    while pending.size and step < min(width - 1, max_steps):
        step += 1
        pending = pending[best[pending] > step * step]  # the others cannot improve at this distance or beyond
        for col in (cols[pending] - step, cols[pending] + step):
            inside = (col >= 0) & (col < width)
            at = pending[inside]
            best[at] = np.minimum(best[at], g2[rows[at], col[inside]] + step * step)
    if step < width - 1:  # columns beyond `step` were not tried: finish the open pixels' rows exactly
        pending = pending[best[pending] > (step + 1) ** 2]
        lines, line_of = np.unique(rows[pending], return_inverse=True)
        if lines.size:
            best[pending] = _lower_envelope(g2[lines])[line_of, cols[pending]]
    return np.sqrt(best)


def distance_transform(features: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance from every pixel to the nearest feature pixel (the lower envelope on every row).

    Args:
        features: (H, W) bool, True at feature pixels.

    Returns:
        float64 (H, W): 0 on features, inf everywhere when there is no feature. With features = ~mask it equals
        `scipy.ndimage.distance_transform_edt(mask)` (the distance of each mask pixel to the nearest background).
    """
    features = np.asarray(features, dtype=bool)
    if features.ndim != 2:
        raise UnetlabError(f"distance_transform takes an (H, W) mask, got shape {features.shape}")
    rows, cols = np.indices(features.shape).reshape(2, -1)
    return distances_to(features, rows, cols, max_steps=0).reshape(features.shape)


def surface(mask: np.ndarray) -> np.ndarray:
    """The surface pixels of an (H, W) bool mask: those with a 4-neighbour outside it or outside the image."""
    padded = np.pad(mask, 1, constant_values=False)
    eroded = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~eroded


def surface_distances(pred: np.ndarray, truth: np.ndarray, labelled=None) -> tuple[np.ndarray, np.ndarray]:
    """Distances in px from each prediction surface pixel to the truth surface, and from truth to prediction.

    Args:
        pred, truth: (H, W) bool masks of one class, neither empty.
        labelled: optional (H, W) bool; surface pixels outside it are left out.

    Returns:
        (prediction -> truth, truth -> prediction): float64 (n_pred,), (n_truth,) in raster order.
    """
    edges_pred, edges_truth = surface(pred), surface(truth)
    rows, cols = np.nonzero(pred | truth)  # the distances stay inside the box of both masks: work there
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    edges_pred, edges_truth = edges_pred[box], edges_truth[box]
    to_truth = distances_to(edges_truth, *np.nonzero(edges_pred))  # raster order
    to_pred = distances_to(edges_pred, *np.nonzero(edges_truth))
    if labelled is not None:
        to_truth, to_pred = to_truth[labelled[box][edges_pred]], to_pred[labelled[box][edges_truth]]
    return to_truth, to_pred


def boundary_scores(pred: np.ndarray, truth: np.ndarray, tolerance: float, labelled=None) -> dict[str, float]:
    """HD95, ASSD and surface Dice at `tolerance` px of one class in one image (see the module docstring).

    Args:
        pred, truth: (H, W) bool masks of the class.
        tolerance: tau in px for the surface Dice (>= 0).
        labelled: optional (H, W) bool, False where the truth is unlabelled.

    Returns:
        {"hd95", "assd", "surface_dice"}: floats, NaN where undefined.
    """
    nan = float("nan")
    pred, truth = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    if labelled is not None:
        labelled = np.asarray(labelled, dtype=bool)
        pred_here, truth_here = (pred & labelled).any(), (truth & labelled).any()
    else:
        pred_here, truth_here = pred.any(), truth.any()
    if not pred_here and not truth_here:
        return {"hd95": nan, "assd": nan, "surface_dice": nan}
    if not pred_here or not truth_here:
        return {"hd95": nan, "assd": nan, "surface_dice": 0.0}
    to_truth, to_pred = surface_distances(pred, truth, labelled)
    if to_truth.size == 0 or to_pred.size == 0:  # a mask whose whole surface lies on unlabelled pixels
        return {"hd95": nan, "assd": nan, "surface_dice": 0.0 if to_truth.size + to_pred.size else nan}
    both = np.concatenate([to_truth, to_pred])
    return {
        "hd95": float(max(np.percentile(to_truth, 95), np.percentile(to_pred, 95))),
        "assd": float(both.mean()),
        "surface_dice": float((both <= tolerance).sum() / both.size),
    }


def image_boundary_scores(
    pred, truth, num_classes: int, tolerance: float, ignore_index: int = IGNORE_INDEX
) -> dict[int, dict[str, float]]:
    """`boundary_scores` of every foreground class (1..K-1) of one image.

    Args:
        pred, truth: (H, W) class indices (truth may hold `ignore_index`).
        num_classes: K >= 2 (2 for a binary model).

    Returns:
        {class index: {"hd95", "assd", "surface_dice"}} for classes 1..K-1.
    """
    if tolerance < 0:
        raise UnetlabError(f"the surface Dice tolerance must be >= 0 px, got {tolerance}")
    pred, truth = as_numpy(pred), as_numpy(truth)
    if pred.shape != truth.shape or pred.ndim != 2:
        raise UnetlabError(f"prediction {pred.shape} and truth {truth.shape} must both be (H, W)")
    labelled = truth != ignore_index
    labelled = None if labelled.all() else labelled
    return {c: boundary_scores(pred == c, truth == c, tolerance, labelled) for c in range(1, num_classes)}
