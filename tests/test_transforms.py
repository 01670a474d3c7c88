"""Batched joint augmentation: image and mask stay aligned, labels never change, zero strength is the identity,
a seed reproduces it, and the elastic field, warping and blur agree with known answers and scipy."""

import pytest
import torch

from unetlab import UnetlabError
from unetlab.data.info import IGNORE_INDEX
from unetlab.data.transforms import PIPELINES, Augmentation, build_augmentation, elastic_field, gaussian_blur, warp

GEOMETRIC = {"flip": True, "rot90": True, "rotate": 30.0, "scale": 0.2, "shift": 0.1, "elastic": 10.0}


def batch_from_masks(n=4, size=48, classes=4):
    """Blocky random masks, an image that is the one-hot mask (so it can be compared), and a weight map."""
    g = torch.Generator().manual_seed(1)
    mask = torch.randint(0, classes, (n, size // 8, size // 8), generator=g).repeat_interleave(8, 1)
    mask = mask.repeat_interleave(8, 2)  # (n, size, size), 8 x 8 blocks
    mask[:, :4, :4] = IGNORE_INDEX
    image = torch.nn.functional.one_hot(mask.clamp_min(0), classes).permute(0, 3, 1, 2).float()  # (n, K, H, W)
    return {"image": image, "mask": mask, "weight": mask.float() + 1, "name": ["a"] * n}


def run(augment, batch, seed=0):
    return augment(batch, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list(PIPELINES))
def test_every_pipeline_keeps_shapes_dtypes_and_the_label_set(name):
    batch = batch_from_masks()
    out = run(build_augmentation(name), batch)
    for key in ("image", "mask", "weight"):
        assert out[key].shape == batch[key].shape and out[key].dtype == batch[key].dtype
    assert set(out["mask"].unique().tolist()) <= set(batch["mask"].unique().tolist())
    assert out["name"] is batch["name"]


def test_geometric_transforms_keep_image_and_mask_aligned():
    batch = batch_from_masks()
    out = run(build_augmentation("none", **GEOMETRIC), batch)
    moved = (out["mask"] != batch["mask"]).float().mean()
    assert moved > 0.3  # the transform really moved things
    agree = (out["image"].argmax(1) == out["mask"])[out["mask"] >= 0].float().mean()
    assert agree > 0.97  # bilinear and nearest differ only on the few pixels at label edges


def test_flips_and_quarter_turns_are_exact_permutations():
    batch = batch_from_masks(n=8)
    out = run(Augmentation(flip=True, rot90=True), batch)
    for i in range(8):
        m = batch["mask"][i]
        candidates = [torch.rot90(f, k) for f in (m, m.flip(0), m.flip(1), m.flip(0).flip(1)) for k in range(4)]
        index = next(j for j, c in enumerate(candidates) if torch.equal(out["mask"][i], c))
        image = batch["image"][i]
        flipped = (image, image.flip(1), image.flip(2), image.flip(1).flip(2))[index // 4]
        torch.testing.assert_close(out["image"][i], torch.rot90(flipped, index % 4, dims=(1, 2)), rtol=0, atol=1e-5)


def test_zero_strength_is_the_identity():
    batch = batch_from_masks()
    assert run(build_augmentation("none"), batch)["image"] is batch["image"]
    out = run(Augmentation(), batch)
    assert all(torch.equal(out[k], batch[k]) for k in ("image", "mask", "weight"))


def test_identity_grid_warps_to_the_input_and_a_shifted_grid_shifts_it():
    batch = batch_from_masks(n=2)
    h = w = 48
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")

    def grid(dx):  # sample from x + dx, in grid_sample's normalised pixel-centre coordinates
        return torch.stack([(2 * (xs + dx) + 1) / w - 1, (2 * ys + 1) / h - 1], -1).float().expand(2, h, w, 2)

    same = warp(batch, grid(0))
    torch.testing.assert_close(same["image"], batch["image"], rtol=0, atol=1e-5)
    assert torch.equal(same["mask"], batch["mask"])
    shifted = warp(batch, grid(3))
    assert torch.equal(shifted["mask"][..., :-3], batch["mask"][..., 3:])


def test_outside_ignore_marks_pixels_brought_in_from_outside():
    batch = batch_from_masks()
    batch["mask"] = batch["mask"].clamp_min(0)
    out = run(Augmentation(shift=0.3, outside="ignore"), batch)
    ignored = out["mask"] == IGNORE_INDEX
    assert ignored.any() and torch.equal(out["weight"][ignored], torch.zeros(int(ignored.sum())))


def test_augmentation_is_reproducible_under_a_seed():
    batch = batch_from_masks()
    augment = build_augmentation("default")
    a, b, c = run(augment, batch, 5), run(augment, batch, 5), run(augment, batch, 6)
    assert all(torch.equal(a[k], b[k]) for k in ("image", "mask", "weight"))
    assert not torch.equal(a["image"], c["image"])


def test_elastic_field_is_the_bicubic_interpolation_of_the_coarse_displacements():
    sigma, n = 10.0, 2000
    field = elastic_field(n, 9, 13, sigma, 3, torch.Generator().manual_seed(0), "cpu")  # (n, 9, 13, 2)
    coarse = sigma * torch.randn(n, 2, 3, 3, generator=torch.Generator().manual_seed(0))  # the same draws
    nodes = field[:, ::4, ::6].permute(0, 3, 1, 2)  # rows 0, 4, 8 and columns 0, 6, 12: the grid, corner to corner
    torch.testing.assert_close(nodes, coarse, rtol=1e-5, atol=1e-6)
    dense = torch.nn.functional.interpolate(coarse, size=(9, 13), mode="bicubic", align_corners=True)  # 2-D reference
    # The separable product sums in another order than F.interpolate: float32 rounding of the order of 1e-7 of the
    # largest displacement (about 40 px here), so atol scales with it; values near zero need atol, not rtol.
    scale = float(coarse.abs().max())
    torch.testing.assert_close(field, dense.permute(0, 2, 3, 1), rtol=1e-5, atol=1e-6 * scale)
    assert abs(float(coarse.std()) - sigma) < 0.3  # paper: 10 px standard deviation


def test_gaussian_blur_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    image = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.0, 1.5])
    out = gaussian_blur(image, sigma, radius=5)
    torch.testing.assert_close(out[0], image[0])
    expected = ndimage.gaussian_filter(image[1].numpy(), sigma=(0, 1.5, 1.5), mode="mirror", truncate=5 / 1.5)
    torch.testing.assert_close(out[1], torch.from_numpy(expected), rtol=1e-5, atol=1e-6)


def test_intensity_transforms_touch_the_image_only():
    batch = batch_from_masks()
    out = run(Augmentation(brightness=0.5, contrast=0.5, gamma=0.5, noise=0.1, blur=1.0), batch)
    assert not torch.equal(out["image"], batch["image"])
    assert torch.equal(out["mask"], batch["mask"]) and torch.equal(out["weight"], batch["weight"])


def test_brightness_adds_one_offset_per_sample_within_range():
    batch = batch_from_masks()
    delta = run(Augmentation(brightness=0.2), batch)["image"] - batch["image"]
    per_sample = delta.flatten(1)
    torch.testing.assert_close(per_sample, per_sample[:, :1].expand_as(per_sample))
    assert per_sample.abs().max() <= 0.2 and per_sample[:, 0].unique().numel() == 4


def test_rotation_turns_about_the_centre_and_keeps_distances():
    mask = torch.zeros(8, 49, 49, dtype=torch.int64)
    mask[:, 23:26, 38:41] = 1  # a 3 x 3 blob 15 px right of the centre pixel (24, 24)
    batch = {"image": mask[:, None].float(), "mask": mask}
    out = run(Augmentation(rotate=180.0, outside="ignore"), batch)["mask"]  # no mirrored copies in the corners
    ys, xs = torch.meshgrid(torch.arange(49.0), torch.arange(49.0), indexing="ij")
    blob = (out == 1).float()
    cy, cx = [(blob * c).sum((1, 2)) / blob.sum((1, 2)) - 24 for c in (ys, xs)]
    torch.testing.assert_close(torch.hypot(cx, cy), torch.full((8,), 15.0), rtol=0, atol=0.5)  # nearest: +-0.5 px
    assert torch.atan2(cy, cx).std() > 0.5  # and the angles differ between samples


def test_bad_pipeline_and_options_raise():
    with pytest.raises(KeyError, match="none, light, default, paper"):
        build_augmentation("heavy")
    with pytest.raises(UnetlabError, match="no option elastic_sigma; its options are flip"):
        build_augmentation("default", elastic_sigma=3)
    with pytest.raises(UnetlabError, match="rotate=-1"):
        build_augmentation("none", rotate=-1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_augmentation_runs_on_the_gpu_and_matches_the_cpu_for_flips():
    batch = batch_from_masks()
    cuda = {k: v.cuda() if torch.is_tensor(v) else v for k, v in batch.items()}
    augment = build_augmentation("default")
    out = augment(cuda, torch.Generator("cuda").manual_seed(0))
    assert out["image"].is_cuda and set(out["mask"].unique().tolist()) <= set(batch["mask"].unique().tolist())
    flips = Augmentation(flip=True, rot90=True)
    on_gpu = flips(cuda, torch.Generator().manual_seed(0))  # a CPU generator drives a GPU batch
    assert torch.equal(on_gpu["mask"].cpu(), run(flips, batch)["mask"])
