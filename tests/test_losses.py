"""Losses: known answers (perfect -> 0, disjoint -> 1, half overlap, hand-computed CE and focal), agreement with
torch's cross-entropy and MONAI's Dice and Tversky losses, the weight map, ignored pixels, and clear errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from unetlab import UnetlabError
from unetlab.data.info import IGNORE_INDEX
from unetlab.training.losses import LOSS_OPTIONS, build_loss


def random_inputs(k, n=2, h=6, w=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, h, w, generator=g)
    mask = torch.randint(0, max(k, 2), (n, h, w), generator=g)
    return logits, mask


def confident_logits(labels, k):
    """Logits that predict `labels` (N, H, W) with probability 1 in float32."""
    if k == 1:
        return (labels[:, None].float() * 2 - 1) * 50
    return F.one_hot(labels, k).permute(0, 3, 1, 2).float() * 100


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("name", list(LOSS_OPTIONS))
def test_perfect_prediction_gives_zero(name, k):
    _, mask = random_inputs(k)
    loss = build_loss(name, k)(confident_logits(mask, k), mask)
    assert 0 <= float(loss) < 1e-6


@pytest.mark.parametrize("k", [1, 2])
def test_dice_of_disjoint_prediction_is_one_and_of_half_overlap_is_one_half(k):
    truth = torch.tensor([[[1, 1, 0, 0]]])
    dice = build_loss("dice", k, smooth=0.0)
    assert float(dice(confident_logits(torch.tensor([[[0, 0, 1, 1]]]), k), truth)) == pytest.approx(1.0, abs=1e-6)
    half = confident_logits(torch.tensor([[[0, 1, 1, 0]]]), k)  # 2 predicted, 2 true, 1 shared: Dice 2/4
    assert float(dice(half, truth)) == pytest.approx(0.5, abs=1e-6)


def test_cross_entropy_hand_computed_pixel():
    logits = torch.tensor([0.0, math.log(3.0)]).reshape(1, 2, 1, 1)  # softmax: 0.25, 0.75
    mask = torch.ones(1, 1, 1, dtype=torch.int64)
    assert float(build_loss("ce", 2)(logits, mask)) == pytest.approx(-math.log(0.75), rel=1e-6)
    focal = (1 - 0.75) ** 2 * -math.log(0.75)  # Lin et al. eq. 4 with gamma = 2
    assert float(build_loss("focal", 2)(logits, mask)) == pytest.approx(focal, rel=1e-5)


def test_cross_entropy_matches_torch_with_class_weights_and_ignore_index():
    logits, mask = random_inputs(3)
    mask[0, :2] = IGNORE_INDEX
    weights = [0.2, 1.0, 3.0]
    got = build_loss("ce", 3, class_weights=weights)(logits, mask)
    want = F.cross_entropy(logits, mask, weight=torch.tensor(weights), ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_binary_cross_entropy_with_weight_map_is_the_mean_of_weighted_terms():
    logits, mask = random_inputs(1)
    weight = torch.rand(mask.shape, generator=torch.Generator().manual_seed(3)) * 10
    mask[1, 0] = IGNORE_INDEX
    labelled = mask != IGNORE_INDEX
    terms = F.binary_cross_entropy_with_logits(logits[:, 0], mask.clamp_min(0).float(), reduction="none")
    want = (terms * weight)[labelled].sum() / labelled.sum()
    torch.testing.assert_close(build_loss("ce", 1)(logits, mask, weight), want, rtol=1e-5, atol=1e-6)


def test_focal_with_gamma_zero_is_cross_entropy():
    logits, mask = random_inputs(4)
    weight = torch.rand(mask.shape)
    torch.testing.assert_close(
        build_loss("focal", 4, gamma=0.0)(logits, mask, weight), build_loss("ce", 4)(logits, mask, weight)
    )


@pytest.mark.parametrize("include_background", [False, True])
def test_dice_matches_monai_multiclass(include_background):
    monai = pytest.importorskip("monai.losses")
    logits, mask = random_inputs(3, n=3, h=9, w=8)
    ours = build_loss("dice", 3, include_background=include_background, smooth=0.0)(logits, mask)
    options = {"to_onehot_y": True, "softmax": True, "batch": True, "smooth_nr": 0.0, "smooth_dr": 0.0}
    reference = monai.DiceLoss(include_background=include_background, **options)(logits, mask[:, None])
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def test_binary_dice_matches_monai_sigmoid():
    monai = pytest.importorskip("monai.losses")
    logits, mask = random_inputs(1, n=3)
    reference = monai.DiceLoss(sigmoid=True, batch=True, smooth_nr=0.0, smooth_dr=0.0)(logits, mask[:, None].float())
    torch.testing.assert_close(build_loss("dice", 1, smooth=0.0)(logits, mask), reference, rtol=1e-5, atol=1e-6)


def test_tversky_matches_monai():
    monai = pytest.importorskip("monai.losses")
    logits, mask = random_inputs(3, n=3)
    options = {"include_background": False, "to_onehot_y": True, "softmax": True, "batch": True}
    reference = monai.TverskyLoss(alpha=0.3, beta=0.7, **options)(logits, mask[:, None])  # smooth 1e-5 as ours
    torch.testing.assert_close(build_loss("tversky", 3)(logits, mask), reference, rtol=1e-5, atol=1e-6)


def test_dice_ce_is_the_sum_of_dice_and_ce():
    logits, mask = random_inputs(3)
    weight = torch.rand(mask.shape)
    total = build_loss("dice_ce", 3)(logits, mask, weight)
    torch.testing.assert_close(total, build_loss("dice", 3)(logits, mask) + build_loss("ce", 3)(logits, mask, weight))


@pytest.mark.parametrize("name", list(LOSS_OPTIONS))
def test_ignored_pixels_neither_count_nor_get_gradient(name):
    logits, mask = random_inputs(3)
    mask[:, :3] = IGNORE_INDEX
    logits.requires_grad_(True)
    loss = build_loss(name, 3)(logits, mask)
    loss.backward()
    assert torch.isfinite(loss) and logits.grad[:, :, :3].abs().max() == 0 and logits.grad.abs().max() > 0
    changed = logits.detach().clone()
    changed[:, :, :3] = 99.0
    torch.testing.assert_close(build_loss(name, 3)(changed, mask), loss.detach())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: build_loss("lovasz", 2), "loss 'lovasz' is unknown; use one of ce, focal"),
        (lambda: build_loss("dice", 2, gamma=2), "loss dice has no option gamma"),
        (lambda: build_loss("ce", 3, class_weights=[1, 2]), r"must be 3 values >= 0"),
        (lambda: build_loss("dice", 3, class_weights=[1, 2, 3]), "class_weights apply to the ce, focal"),
        (lambda: build_loss("ce", 2)(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4).long()), "3 channels but"),
        (lambda: build_loss("ce", 2)(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4)), "integer class indices"),
        (lambda: build_loss("dice", 2)(torch.zeros(1, 2, 4, 4), torch.zeros(1, 6, 6).long()), "centre-crop the mask"),
        (lambda: build_loss("ce", 2)(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4).long(), torch.ones(4, 4)), "weight"),
    ],
)
def test_bad_names_options_and_shapes_raise_clear_errors(call, message):
    with pytest.raises(UnetlabError, match=message):
        call()
