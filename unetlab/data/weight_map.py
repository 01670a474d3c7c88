"""The U-Net paper's pixel weight map, and the connected components it needs when only a semantic mask exists.

Ronneberger et al. 2015, Sec. 3, eq. 2:

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

d1 and d2 are the distances from pixel x to the nearest and the second-nearest cell (instance); w_c balances the
class frequencies; the paper sets w0 = 10 and sigma = ~5 px. The border term is given to background (class 0)
pixels only, the thin gaps between touching cells that Fig. 3d lights up: inside a cell, d1 = 0 and the term would
only raise the weight of cell pixels near a neighbour, which the separation does not need. (Common public
implementations make the same choice.)

Pure NumPy, run once per mask by the datasets (not in the training step):
- `connected_components`: 4-connected regions of equal class, by a vectorised union-find (hooking to the smaller
  root, then pointer jumping), labelled in raster order of their first pixel like `scipy.ndimage.label`.
- distances: exact Euclidean distances to the two nearest distinct instances, by a separable two-pass search
  (columns, then rows) that keeps the two nearest distinct labels per pixel. Keeping two per column is enough:
  a label that is third in some column is beaten there by two others, so it cannot be among a pixel's two
  nearest through that column. The search stops at `_search_radius`, beyond which the border term is below
  1e-3.
"""

import math

import numpy as np

from unetlab.errors import UnetlabError

_TOLERANCE = 1e-3  # largest border term left out by the bounded distance search


def connected_components(mask: np.ndarray) -> np.ndarray:
    """Instance labels of a class-index mask: 4-connected regions of equal class >= 1.

    Args:
        mask: (H, W) integer class indices; 0 (background) and negative values (ignore) belong to no instance.

    Returns:
        int64 (H, W): 0 outside instances, 1..n numbered in raster order of each region's first pixel.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise UnetlabError(f"connected_components takes an (H, W) mask, got shape {mask.shape}")
    h, w = mask.shape
    foreground = mask > 0
    index = np.arange(h * w).reshape(h, w)
    right = foreground[:, :-1] & (mask[:, :-1] == mask[:, 1:])  # same class as the right neighbour
    down = foreground[:-1] & (mask[:-1] == mask[1:])
    a = np.concatenate([index[:, :-1][right], index[:-1][down]])  # the edges (a, b) of the pixel graph
    b = np.concatenate([index[:, 1:][right], index[1:][down]])
    parent = np.arange(h * w)
    while True:
        root_a, root_b = parent[a], parent[b]
        open_edges = root_a != root_b
        if not open_edges.any():
            break
        a, b, root_a, root_b = a[open_edges], b[open_edges], root_a[open_edges], root_b[open_edges]
        np.minimum.at(parent, np.maximum(root_a, root_b), np.minimum(root_a, root_b))  # hook to the smaller root
        while True:  # pointer jumping until every pixel points at its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    roots = np.where(foreground.ravel(), parent, -1)  # a root is its region's first pixel in raster order
    labels = np.unique(np.concatenate([[-1], roots]), return_inverse=True)[1][1:]  # -1 (no instance) -> 0
    return labels.reshape(h, w).astype(np.int64)


def border_weight_map(
    mask: np.ndarray,
    instances: np.ndarray | None = None,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_balance: bool = True,
) -> np.ndarray:
    """The paper's weight map (eq. 2) for one mask.

    Args:
        mask: (H, W) class indices; negative values (IGNORE_INDEX) are unlabelled and get weight 0.
        instances: (H, W) instance labels (0 = none); None = `connected_components(mask)`.
        w0: weight of the border term (paper: 10).
        sigma: its width in pixels (paper: ~5).
        class_balance: w_c(x) = labelled pixels / (present classes * pixels of x's class), so that every class
            present carries the same total weight and the mean of w_c is 1; False: w_c = 1.

    Returns:
        float32 (H, W) per-pixel weights for the cross-entropy.
    """
    mask = np.asarray(mask)
    if instances is None:
        instances = connected_components(mask)
    if mask.ndim != 2 or np.shape(instances) != mask.shape:
        raise UnetlabError(f"border_weight_map needs (H, W) mask and instances, got {mask.shape}, {instances.shape}")
    if w0 < 0 or sigma <= 0:
        raise UnetlabError(f"border_weight_map needs w0 >= 0 and sigma > 0, got w0={w0}, sigma={sigma}")
    labelled = mask >= 0
    weight = labelled.astype(np.float64)
    if class_balance:
        classes, counts = np.unique(mask[labelled], return_counts=True)
        per_class = counts.sum() / (len(classes) * counts)
        weight[labelled] = per_class[np.searchsorted(classes, mask[labelled])]
    if w0 > 0:
        d1, d2 = two_nearest_distances(instances, _search_radius(w0, sigma))
        weight += np.where(mask == 0, w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2)), 0.0)  # eq. 2
    return weight.astype(np.float32)


def two_nearest_distances(instances: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Distances from every pixel to the nearest and second-nearest instance (pixel centre to pixel centre).

    Args:
        instances: (H, W) labels, 0 = none.
        radius: search radius in pixels; distances beyond it come back as inf.

    Returns:
        d1, d2: float64 (H, W), d1 <= d2; 0 for d1 inside an instance.
    """
    instances = np.asarray(instances, dtype=np.int64)
    h, w = instances.shape
    # Pass 1, along columns: the two nearest distinct labels within `radius` rows, squared distance dy^2.
    column = _Nearest2((h, w))
    padded = np.pad(instances, ((radius, radius), (0, 0)))
    for dy in range(-radius, radius + 1):
        column.insert(padded[radius + dy : radius + dy + h], np.full((h, w), float(dy * dy)))
    # Pass 2, along rows: combine each column's two candidates with the horizontal offset, dx^2 + dy^2.
    best = _Nearest2((h, w))
    labels = np.pad(np.stack([column.label1, column.label2]), ((0, 0), (0, 0), (radius, radius)))  # (2, H, W + 2R)
    squared = np.pad(np.stack([column.d1, column.d2]), ((0, 0), (0, 0), (radius, radius)), constant_values=np.inf)
    for dx in range(-radius, radius + 1):
        window = slice(radius + dx, radius + dx + w)
        for k in range(2):
            best.insert(labels[k, :, window], squared[k, :, window] + dx * dx)
    # Distances beyond the radius may come from a farther pixel of the label than its nearest: drop them.
    d1, d2 = (np.where(d <= radius**2, np.sqrt(d), np.inf) for d in (best.d1, best.d2))
    return d1, d2


class _Nearest2:
    """Per pixel, the two nearest distinct labels seen so far and their squared distances (updated in place)."""

    def __init__(self, shape):
        self.label1, self.label2 = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
        self.d1, self.d2 = np.full(shape, np.inf), np.full(shape, np.inf)

    def insert(self, label: np.ndarray, d: np.ndarray) -> None:
        """Offer candidate `label` (0 = none) at squared distance `d`, both (H, W)."""
        seen = label > 0
        same1 = seen & (label == self.label1)  # a nearer pixel of the nearest label
        np.minimum(self.d1, d, out=self.d1, where=same1)
        same2 = seen & (label == self.label2) & ~same1  # ... of the second label, which may overtake the first
        np.minimum(self.d2, d, out=self.d2, where=same2)
        swap = same2 & (self.d2 < self.d1)
        new = seen & ~same1 & ~same2
        first = new & (d < self.d1)  # a new nearest label; the old nearest becomes the second
        second = new & ~first & (d < self.d2)
        label1, d1 = self.label1.copy(), self.d1.copy()
        np.copyto(self.label1, label, where=first)
        np.copyto(self.d1, d, where=first)
        np.copyto(self.label1, self.label2, where=swap)
        np.copyto(self.d1, self.d2, where=swap)
        np.copyto(self.label2, label1, where=first | swap)
        np.copyto(self.d2, d1, where=first | swap)
        np.copyto(self.label2, label, where=second)
        np.copyto(self.d2, d, where=second)


def _search_radius(w0: float, sigma: float) -> int:
    """Pixels beyond which w0 * exp(-r^2 / (2 sigma^2)) < _TOLERANCE, since d1 + d2 >= d2."""
    return max(1, math.ceil(sigma * math.sqrt(2 * math.log(max(w0, _TOLERANCE * 1.01) / _TOLERANCE))))
