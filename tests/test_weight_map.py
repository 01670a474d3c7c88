"""The paper's weight map (eq. 2): connected components and distances against scipy/scikit-image, a hand-computed
case, class balancing, and high weights in the gaps between touching synthetic cells."""

import math

import numpy as np
import pytest

from unetlab.data.info import IGNORE_INDEX
from unetlab.data.synthetic import generate_cell_instances
from unetlab.data.weight_map import border_weight_map, connected_components, two_nearest_distances


def test_connected_components_match_scikit_image_on_random_multiclass_masks():
    measure = pytest.importorskip("skimage.measure")
    rng = np.random.default_rng(0)
    for _ in range(3):
        mask = rng.integers(0, 3, (40, 50))
        mask[rng.random(mask.shape) < 0.05] = IGNORE_INDEX
        expected = measure.label(np.where(mask < 0, 0, mask), background=0, connectivity=1)
        assert np.array_equal(connected_components(mask), expected)


def test_two_nearest_distances_match_exact_distance_transforms():
    ndimage = pytest.importorskip("scipy.ndimage")
    instances = generate_cell_instances(0, size=64)[1]
    radius = 9
    d1, d2 = two_nearest_distances(instances, radius)
    per_instance = np.sort([ndimage.distance_transform_edt(instances != k) for k in range(1, instances.max() + 1)], 0)
    for got, want in ((d1, per_instance[0]), (d2, per_instance[1])):
        want = np.where(want <= radius, want, np.inf)  # the search stops at the radius by design
        assert np.array_equal(np.isinf(got), np.isinf(want))
        np.testing.assert_allclose(got[np.isfinite(got)], want[np.isfinite(want)], rtol=1e-12)


def test_border_weight_map_hand_computed_gap_between_two_cells():
    # Two cells (columns 0-1 and 6-7) with a 4-pixel gap: every gap pixel has d1 + d2 = 5 (pixel centres).
    instances = np.array([[1, 1, 0, 0, 0, 0, 2, 2]] * 3)
    mask = (instances > 0).astype(np.int64)
    weight = border_weight_map(mask, instances, w0=10, sigma=5, class_balance=False)
    gap = 1 + 10 * math.exp(-(5**2) / (2 * 5**2))  # eq. 2 with w_c = 1
    np.testing.assert_allclose(weight, np.where(mask == 0, gap, 1.0), rtol=1e-6)


def test_border_weight_map_class_balance_gives_each_class_equal_total_weight():
    mask = np.zeros((10, 10), np.int64)
    mask[:2] = 1  # 20 foreground pixels, 80 background
    mask[9, 9] = IGNORE_INDEX
    weight = border_weight_map(mask, w0=0)
    assert weight[9, 9] == 0
    labelled = mask >= 0
    np.testing.assert_allclose(weight[labelled].mean(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(weight[mask == 1].sum(), weight[mask == 0].sum(), rtol=1e-6)


def test_border_weight_map_has_no_border_term_with_a_single_instance():
    mask = np.zeros((12, 12), np.int64)
    mask[3:6, 3:6] = 1
    np.testing.assert_array_equal(border_weight_map(mask, class_balance=False), np.ones((12, 12), np.float32))


def test_border_weight_map_from_semantic_mask_uses_connected_components():
    instances = generate_cell_instances(1, size=64)[1]
    mask = (instances > 0).astype(np.int64)
    np.testing.assert_array_equal(border_weight_map(mask), border_weight_map(mask, instances))


def test_gaps_between_touching_cells_get_the_highest_weights():
    instances = generate_cell_instances(2)[1]
    weight = border_weight_map((instances > 0).astype(np.int64), instances)
    padded = np.pad(instances, 1)
    neighbours = np.stack([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
    smallest_cell = np.where(neighbours > 0, neighbours, instances.max() + 1).min(0)
    gap = (instances == 0) & (neighbours.max(0) > smallest_cell)  # background with two different cells beside it
    assert gap.sum() > 20
    assert weight[gap].mean() > 8 and weight[instances > 0].max() < 2
