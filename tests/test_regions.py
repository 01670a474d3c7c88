"""The ISBI 2012 touching-object scores against scikit-image on the same label images: adapted Rand error and
variation of information (split, merge); the cells as 4-connected regions; known answers."""

import math

import numpy as np
import pytest
from report_data import smooth_field

from unetlab import UnetlabError
from unetlab.data.info import IGNORE_INDEX
from unetlab.evaluation.regions import cell_labels, contingency, image_region_scores, region_scores


def membranes(seed, shape=(48, 64)):
    """A binary EM-like mask: class 1 (membrane) on the ridges between smooth blobs, class 0 the cells."""
    field = smooth_field(np.random.default_rng(seed), (1, *shape), passes=3)[0]
    return (np.abs(field - np.median(field)) < 0.02).astype(np.int64)


def skimage_scores(true_labels, pred_labels):
    metrics = pytest.importorskip("skimage.metrics")
    error = metrics.adapted_rand_error(true_labels, pred_labels, ignore_labels=(0,))[0]
    split, merge = metrics.variation_of_information(true_labels, pred_labels, ignore_labels=(0,))
    return {"rand_error": error, "vi_split": split, "vi_merge": merge}


def test_random_label_images_match_scikit_image():
    rng = np.random.default_rng(0)
    for _ in range(4):
        true_labels, pred_labels = rng.integers(0, 7, (30, 40)), rng.integers(0, 11, (30, 40))
        ours, reference = region_scores(true_labels, pred_labels), skimage_scores(true_labels, pred_labels)
        for name in reference:
            assert ours[name] == pytest.approx(reference[name], rel=1e-12, abs=1e-12), name
        assert ours["vi"] == pytest.approx(ours["vi_split"] + ours["vi_merge"], rel=1e-15)


@pytest.mark.parametrize("cell_class", [0, 1])
def test_membrane_masks_scored_on_their_cells_match_scikit_image(cell_class):
    measure = pytest.importorskip("skimage.measure")
    for seed in range(3):
        truth, pred = membranes(seed), membranes(seed + 50)
        pred[:, :32] = truth[:, :32]  # half right, half wrong
        true_cells, pred_cells = cell_labels(truth, cell_class), cell_labels(pred, cell_class)
        reference_cells = measure.label(truth == cell_class, connectivity=1)  # 4-connected, 0 elsewhere
        assert true_cells.max() == reference_cells.max() > 1
        ours = image_region_scores(pred, truth, cell_class)
        reference = skimage_scores(true_cells, pred_cells)
        for name in reference:
            assert ours[name] == pytest.approx(reference[name], rel=1e-12, abs=1e-12), name
        assert ours["pixel_error"] == pytest.approx((pred != truth).mean(), rel=1e-15)


def test_contingency_table_is_sparse_and_equals_a_dense_count():
    rng = np.random.default_rng(1)
    true_labels, pred_labels = rng.integers(0, 5, (20, 20)), rng.integers(0, 4, (20, 20))
    i, j, n = contingency(true_labels, pred_labels)
    dense = np.zeros((5, 4), np.int64)
    np.add.at(dense, (true_labels.ravel(), pred_labels.ravel()), 1)
    dense[0] = 0  # the truth's label 0 is left out
    assert n.sum() == dense.sum() and len(n) == np.count_nonzero(dense)
    np.testing.assert_array_equal(dense[i, j], n)


def test_known_answers():
    truth = np.array([[0, 0, 1, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 0, 0]])  # two cells, a membrane between
    perfect = image_region_scores(truth, truth)
    assert perfect == {"pixel_error": 0.0, "rand_error": 0.0, "vi": 0.0, "vi_split": 0.0, "vi_merge": 0.0}
    merged = image_region_scores(np.zeros_like(truth), truth)  # the membrane missed: the cells merge
    assert merged["pixel_error"] == pytest.approx(3 / 15)
    assert merged["vi_split"] == 0.0 and merged["vi_merge"] == pytest.approx(1.0)  # one bit: which of two cells
    assert merged["rand_error"] == pytest.approx(1 - (2 * 6 * 5) / (0.5 * 2 * 6 * 5 + 0.5 * 12 * 11))
    cut = truth.copy()
    cut[1, :2] = 1  # a false membrane across the left cell: split errors only
    split = image_region_scores(cut, truth)
    assert split["vi_merge"] == 0.0 and split["vi_split"] > 0 and split["rand_error"] > 0
    no_cells = image_region_scores(np.ones_like(truth), np.ones_like(truth))
    assert all(math.isnan(no_cells[k]) for k in ("rand_error", "vi")) and no_cells["pixel_error"] == 0.0


def test_unlabelled_pixels_belong_to_no_cell_and_bad_inputs_raise():
    truth = np.array([[0, 0, 1, 0, 0]] * 3)
    pred = np.zeros_like(truth)
    unlabelled = truth.copy()
    unlabelled[0] = IGNORE_INDEX
    scores = image_region_scores(pred, unlabelled)
    assert scores["pixel_error"] == pytest.approx(2 / 10)
    assert scores == image_region_scores(pred[1:], truth[1:])
    with pytest.raises(UnetlabError, match="cell_class"):
        image_region_scores(pred, truth, cell_class=2)
    with pytest.raises(UnetlabError, match="must both be"):
        image_region_scores(pred[:, :2], truth)
