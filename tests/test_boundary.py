"""Boundary metrics against MONAI on the same masks (HD95, ASSD, surface Dice, and the surfaces themselves), the
hand-written distance transform against scipy's exact one, and the empty-mask conventions."""

import math
import warnings

import numpy as np
import pytest
import torch
from report_data import smooth_field

from unetlab import UnetlabError
from unetlab.data.info import IGNORE_INDEX
from unetlab.evaluation.boundary import (
    boundary_scores,
    distance_transform,
    distances_to,
    image_boundary_scores,
    surface,
    surface_distances,
)


def blobs(seed, shape=(40, 56), level=0.5):
    """A smooth random mask (a few blobs, some touching the border)."""
    return smooth_field(np.random.default_rng(seed), (1, *shape), passes=4)[0] > level


@pytest.mark.parametrize(
    ("shape", "share"),
    [((1, 1), 0.0), ((1, 9), 0.3), ((9, 1), 0.3), ((13, 17), 0.9), ((48, 64), 0.99), ((64, 48), 0.02)],
)
def test_distance_transform_equals_scipy_exactly(shape, share):
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    features = rng.random(shape) < share
    features.flat[rng.integers(features.size)] = True  # at least one feature
    ours = distance_transform(features)
    np.testing.assert_array_equal(ours**2, ndimage.distance_transform_edt(~features) ** 2)  # integer squares
    np.testing.assert_allclose(ours, ndimage.distance_transform_edt(~features), rtol=1e-15)


@pytest.mark.parametrize("max_steps", [0, 3, 10_000])  # envelope only, both, outward search only
def test_distances_at_chosen_pixels_equal_scipy_with_either_search(max_steps):
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(max_steps)
    for share in (0.0005, 0.01, 0.3):
        features = rng.random((70, 90)) < share
        features[rng.integers(70), rng.integers(90)] = True
        rows, cols = rng.integers(0, 70, 500), rng.integers(0, 90, 500)
        ours = distances_to(features, rows, cols, max_steps=max_steps)
        np.testing.assert_allclose(ours, ndimage.distance_transform_edt(~features)[rows, cols], rtol=1e-15)


def test_distance_transform_without_features_is_infinite():
    assert np.isinf(distance_transform(np.zeros((3, 4), bool))).all()
    assert np.isinf(distances_to(np.zeros((3, 4), bool), [0, 2], [1, 3])).all()


def test_surface_equals_monai_mask_edges():
    utils = pytest.importorskip("monai.metrics.utils")
    for seed in range(4):
        a, b = blobs(seed), blobs(seed + 10)
        edges_a, edges_b = utils.get_mask_edges(a, b, crop=False)
        np.testing.assert_array_equal(surface(a), edges_a)
        np.testing.assert_array_equal(surface(b), edges_b)
    full = np.ones((4, 5), bool)
    assert surface(full).sum() == 4 * 5 - 2 * 3  # the image border is a surface


def monai_scores(pred, truth, tolerance):
    metrics = pytest.importorskip("monai.metrics")
    y_pred = torch.from_numpy(np.stack([~pred, pred])[None]).float()  # (1, 2, H, W) one-hot
    y = torch.from_numpy(np.stack([~truth, truth])[None]).float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns about empty masks, which some tests make on purpose
        return {
            "hd95": float(metrics.compute_hausdorff_distance(y_pred, y, percentile=95)),
            "assd": float(metrics.compute_average_surface_distance(y_pred, y, symmetric=True)),
            "surface_dice": float(metrics.compute_surface_dice(y_pred, y, [tolerance])),
        }


@pytest.mark.parametrize("tolerance", [0.0, 1.0, 2.0, 3.5])
def test_boundary_scores_equal_monai(tolerance):
    for seed in range(5):
        pred, truth = blobs(seed), blobs(seed + 20, level=0.45 + 0.02 * seed)
        ours, reference = boundary_scores(pred, truth, tolerance), monai_scores(pred, truth, tolerance)
        # MONAI works in float32: distances and means carry float32 rounding (rel ~1e-7). HD95 more: torch.quantile
        # puts the 95th percentile at 0.95 (n - 1) rounded to float32 (an ulp of 3e-5 at n ~ 300 surface pixels),
        # which moves the interpolated value by up to ~1e-5 relative.
        assert ours["hd95"] == pytest.approx(reference["hd95"], rel=2e-5)
        assert ours["assd"] == pytest.approx(reference["assd"], rel=1e-6)
        assert ours["surface_dice"] == pytest.approx(reference["surface_dice"], rel=1e-6)


def test_surface_distances_by_brute_force():
    pred, truth = blobs(3, (20, 24)), blobs(4, (20, 24))
    to_truth, to_pred = surface_distances(pred, truth)
    a, b = np.argwhere(surface(pred)), np.argwhere(surface(truth))  # raster order, as returned
    pairwise = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))  # (n_pred, n_truth)
    np.testing.assert_allclose(to_truth, pairwise.min(axis=1), rtol=1e-15)
    np.testing.assert_allclose(to_pred, pairwise.min(axis=0), rtol=1e-15)


def test_known_answers_perfect_and_shifted_square():
    square = np.zeros((30, 30), bool)
    square[5:15, 5:15] = True
    assert boundary_scores(square, square, 0.0) == {"hd95": 0.0, "assd": 0.0, "surface_dice": 1.0}
    shifted = np.roll(square, 3, axis=1)  # 3 px to the right
    scores = boundary_scores(shifted, square, 2.0)
    assert scores["hd95"] == 3.0  # the vertical sides are 3 px apart, and they are > 5% of the surface
    assert scores["surface_dice"] < 1
    far = np.zeros((30, 30), bool)
    far[25:28, 25:28] = True  # disjoint
    assert boundary_scores(far, square, 2.0)["surface_dice"] == 0.0


def test_empty_masks_follow_the_stated_convention():
    empty, square = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    square[2:5, 2:5] = True
    both = boundary_scores(empty, empty, 2.0)
    assert all(math.isnan(v) for v in both.values())
    for pred, truth in ((empty, square), (square, empty)):
        one = boundary_scores(pred, truth, 2.0)
        assert math.isnan(one["hd95"]) and math.isnan(one["assd"]) and one["surface_dice"] == 0.0
        reference = monai_scores(pred, truth, 2.0)  # MONAI: infinite distances (HD95 NaN, from inf - inf), the same
        assert not math.isfinite(reference["hd95"]) and math.isinf(reference["assd"])  # surface Dice
        assert reference["surface_dice"] == 0.0
    reference = monai_scores(empty, empty, 2.0)
    assert math.isnan(reference["hd95"]) and math.isnan(reference["surface_dice"])


def test_image_boundary_scores_per_foreground_class_and_unlabelled_pixels():
    truth = np.zeros((30, 40), np.int64)
    truth[3:12, 4:15], truth[15:25, 20:35] = 1, 2
    pred = np.roll(truth, 1, axis=0)
    scores = image_boundary_scores(pred, truth, num_classes=3, tolerance=1.0)
    assert set(scores) == {1, 2}
    for c in (1, 2):
        assert scores[c] == boundary_scores(pred == c, truth == c, 1.0)
    unlabelled = truth.copy()
    unlabelled[:, 30:] = IGNORE_INDEX  # the right end of class 2 is unlabelled
    partial = image_boundary_scores(pred, unlabelled, num_classes=3, tolerance=1.0)[2]
    to_truth, to_pred = surface_distances(pred == 2, unlabelled == 2)
    keep_pred, keep_truth = (
        (unlabelled != IGNORE_INDEX)[surface(pred == 2)],
        (unlabelled != IGNORE_INDEX)[surface(unlabelled == 2)],
    )
    kept = np.concatenate([to_truth[keep_pred], to_pred[keep_truth]])
    assert partial["assd"] == pytest.approx(kept.mean(), rel=1e-12)
    with pytest.raises(UnetlabError, match="tolerance"):
        image_boundary_scores(pred, truth, 3, tolerance=-1)
    with pytest.raises(UnetlabError, match="must both be"):
        image_boundary_scores(pred[:, :5], truth, 3, tolerance=1)
