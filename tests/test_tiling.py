"""The overlap-tile engine against independent witnesses: the untiled network, numpy's mirror padding, MONAI's
`sliding_window_inference`, and test-time augmentation averaged by hand."""

import numpy as np
import pytest
import torch
from conftest import tiny_model
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from unetlab import UnetlabError, create_model, list_models
from unetlab.device import resolve_amp
from unetlab.inference.tiling import (
    TestTimeAugmentation,
    blend_weights,
    mirror_indices,
    pooling_stride,
    predict_tiled,
    tile_starts,
)
from unetlab.models.blocks import SegmentationModel


def classic(**kwargs) -> SegmentationModel:
    """The paper's network at a small width: depth 2 takes sides 44 + 4k and trims 20 px on each side."""
    return create_model("unet-classic", base_channels=4, depth=2, in_channels=2, num_classes=3, **kwargs).eval()


def padded(**kwargs) -> SegmentationModel:
    return create_model("unet", base_channels=4, depth=2, in_channels=2, num_classes=3, **kwargs).eval()


def border_of(model) -> int:
    side = model.valid_input_size(1)
    return (side - model.output_size(side)) // 2


def untiled_valid(model, image: torch.Tensor, border: int) -> torch.Tensor:
    """The whole image through the network at once, mirror-padded by numpy (and beyond, up to a valid size)."""
    _, h, w = image.shape
    extra_h = model.valid_input_size(h + 2 * border) - (h + 2 * border)
    extra_w = model.valid_input_size(w + 2 * border) - (w + 2 * border)
    pad = ((0, 0), (border, border + extra_h), (border, border + extra_w))
    padded_image = torch.from_numpy(np.pad(image.numpy(), pad, mode="reflect"))
    with torch.no_grad():
        return model(padded_image[None])[0, :, :h, :w]


@pytest.fixture
def native_conv(monkeypatch):
    """Convolutions on torch's own im2col + GEMM path, which sums each output pixel in the same order whatever the
    input size; oneDNN picks kernels by size, so its results differ from one size to another by float rounding."""
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)


# --- tile_starts -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "tile", "step", "expected"),
    [
        (10, 4, 3, [0, 3, 6]),
        (10, 4, 4, [0, 4, 6]),  # the last window moves back to end flush with the edge
        (8, 4, 4, [0, 4]),  # exact fit: no extra window
        (4, 4, 1, [0]),
        (3, 4, 2, [0]),  # shorter than a window: one window, cropped by the caller
        (5, 4, 1, [0, 1]),
        (388 * 3 + 5, 388, 384, [0, 384, 768, 781]),
    ],
)
def test_tile_starts_known_cases(length, tile, step, expected):
    assert tile_starts(length, tile, step) == expected


@given(st.integers(1, 400), st.integers(1, 60), st.data())
def test_tile_starts_cover_the_axis_with_the_last_window_flush(length, tile, data):
    step = data.draw(st.integers(1, tile))
    starts = tile_starts(length, tile, step)
    assert starts[0] == 0 and starts == sorted(set(starts))
    if length <= tile:
        assert starts == [0]
        return
    assert starts[-1] == length - tile, "the last window ends at the edge"
    assert all(b - a <= step for a, b in zip(starts, starts[1:])), "no gap between windows"
    assert all(b - a == step for a, b in zip(starts[:-2], starts[1:-1])), "regular steps before the last"


@pytest.mark.parametrize("step", [0, 5])
def test_tile_starts_refuses_steps_that_leave_gaps(step):
    with pytest.raises(ValueError, match="gaps"):
        tile_starts(10, 4, step)


# --- mirroring and weights ---------------------------------------------------------------------------------------


@given(st.integers(1, 12), st.integers(0, 40), st.integers(0, 40))
def test_mirror_indices_match_numpy_reflect_padding(length, before, after):
    axis = np.arange(length) * 10
    expected = np.pad(axis, (before, after), mode="reflect")
    got = axis[mirror_indices(-before, length + before + after, length).numpy()]
    assert got.tolist() == expected.tolist()


@pytest.mark.parametrize("size", [1, 2, 7, 64, 572])
def test_gaussian_weight_peaks_at_one_is_symmetric_and_never_zero(size):
    weight = blend_weights(size, "gaussian")
    assert weight.min() > 3e-4 and weight.max() <= 1.0
    assert weight[(size - 1) // 2] == weight.max() and (size % 2 == 0 or weight.max() == 1.0)
    assert torch.equal(weight, weight.flip(0))


def test_pooling_stride_is_two_to_the_depth():
    assert pooling_stride(classic()) == 4
    assert pooling_stride(create_model("unet-classic", base_channels=4, depth=4)) == 16


# --- valid-convolution models: the paper's overlap-tile ------------------------------------------------------------


@pytest.mark.parametrize("tile", [48, 56, 84])
def test_classic_tiled_equals_untiled_bit_for_bit(native_conv, tile):
    model = classic()
    border = border_of(model)
    image = torch.randn(2, 112, 160)  # 112 + 40 and 160 + 40 are valid sides: the whole image fits the network
    expected = untiled_valid(model, image, border)
    got = predict_tiled(model, image, tile=tile, batch_size=3)
    assert torch.equal(got, expected)


def test_classic_tiled_equals_untiled_with_onednn_to_float_rounding():
    model = classic()
    image = torch.randn(2, 112, 160)
    expected = untiled_valid(model, image, border_of(model))
    torch.testing.assert_close(predict_tiled(model, image, tile=56), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("h", "w"), [(1, 1), (5, 3), (16, 13), (30, 7), (101, 67)])
def test_classic_any_size_equals_the_untiled_mirror_padded_image(native_conv, h, w):
    # Sides + 40 px of border that the network does not take are mirrored on to the next size it does (16 is one
    # window's output, so 1 x 1 to 16 x 13 are single windows; 30, 101 and 67 take several).
    model = classic()
    image = torch.randn(2, h, w)
    expected = untiled_valid(model, image, border_of(model))
    assert torch.equal(predict_tiled(model, image, tile=56), expected)


def test_classic_window_too_small_for_the_stride_is_refused():
    with pytest.raises(UnetlabError, match="tile=48 with overlap=6 is too small"):
        predict_tiled(classic(), torch.randn(2, 50, 50), tile=48, overlap=6)


# --- padded models: blended windows --------------------------------------------------------------------------------


@pytest.mark.parametrize("blend", ["constant", "gaussian"])
def test_padded_blending_equals_monai_sliding_window_inference(blend):
    inferers = pytest.importorskip("monai.inferers")
    model = padded()
    image = torch.randn(2, 90, 117)
    tile, overlap = 32, 8
    weight = blend_weights(tile, blend)
    with torch.no_grad():
        expected = inferers.sliding_window_inference(
            image[None],
            (tile, tile),
            5,
            model,
            overlap=overlap / tile,  # MONAI steps by int(tile * (1 - overlap)) = 24 px, as we do
            mode="constant",
            roi_weight_map=weight[:, None] * weight[None, :],  # our weight; MONAI's own stitching and normalising
        )[0]
    got = predict_tiled(model, image, tile=tile, overlap=overlap, blend=blend, batch_size=5)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("h", "w"), [(32, 32), (20, 31), (1, 1)])
def test_padded_one_window_covering_the_image_is_exact(h, w):
    model = padded()
    image = torch.randn(2, h, w)
    with torch.no_grad():
        expected = model(image[None])[0]
    assert torch.equal(predict_tiled(model, image, tile=32, overlap=8), expected)


class Pointwise(SegmentationModel):
    """A network without spatial context: every window gives the same value at a pixel, so any weighted average of
    the windows must return it (a check that the blend weights are normalised)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(2, 3, 1)

    def forward(self, image):
        return self.head(image).tanh()


@pytest.mark.parametrize("blend", ["constant", "gaussian"])
def test_padded_blend_weights_sum_to_one_everywhere(blend):
    model = Pointwise().eval()
    image = torch.randn(2, 77, 103)
    with torch.no_grad():
        expected = model(image[None])[0]
    got = predict_tiled(model, image, tile=24, overlap=10, blend=blend)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_padded_gaussian_blending_is_close_to_untiled_and_beats_plain_tiling():
    model = padded()
    image = torch.randn(2, 96, 96)
    with torch.no_grad():
        whole = model(image[None])[0]
    seams = (predict_tiled(model, image, tile=32, overlap=0, blend="constant") - whole).abs()
    blended = (predict_tiled(model, image, tile=32, overlap=16) - whole).abs()
    # Windows see zero padding at their edges, so blending is not exact; it should be far better than seams.
    assert blended.max() < seams.max() / 5 and blended.mean() < seams.mean() / 5
    assert blended.max() < 0.1 * whole.std()


def test_memory_is_bounded_by_the_window_batch():
    model = padded()
    shapes = []
    model.register_forward_pre_hook(lambda _m, args: shapes.append(tuple(args[0].shape)))
    predict_tiled(model, torch.randn(2, 200, 150), tile=40, overlap=8, batch_size=3)
    assert shapes and all(n <= 3 and h <= 40 and w <= 40 for n, _, h, w in shapes)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("overlap", 32, "overlap 32 is not valid: it must be less than the tile, 32 px"),
        ("overlap", -1, "overlap -1 is not valid: it must be at least 0 px"),
        ("blend", "median", "blend 'median' is not valid: it must be one of gaussian, constant"),
        ("batch_size", 0, "batch_size 0 is not valid: it must be at least 1"),
        ("tile", 0, "tile 0 is not valid: it must be at least 1 px"),
    ],
)
def test_invalid_tiling_options_name_the_option(option, value, message):
    options = {"tile": 32, "overlap": 8, "blend": "gaussian", "batch_size": 2, option: value}
    with pytest.raises(UnetlabError, match=message):
        predict_tiled(padded(), torch.randn(2, 40, 40), **options)


@pytest.mark.parametrize(
    ("make", "smallest"), [(padded, 4), (lambda: create_model("resnet18-unet", base_channels=4, depth=3), 8)]
)
def test_a_padded_tile_under_the_downsampling_is_refused_naming_the_smallest(make, smallest):
    model = make().eval()
    image = torch.randn(model.in_channels, 40, 40)
    with pytest.raises(
        UnetlabError,
        match=rf"tile {smallest - 1} is not valid: it must be at least {smallest} px \(this model downsamples",
    ):
        predict_tiled(model, image, tile=smallest - 1, overlap=0)
    assert predict_tiled(model, image, tile=smallest, overlap=0).shape[1:] == (40, 40)
    assert predict_tiled(model, image[:, :1, :1], tile=smallest).shape[1:] == (1, 1), "a 1-px image is still fine"


class DtypeProbe(SegmentationModel):
    """One 1x1 conv that records the dtype its output has under the autocast in effect."""

    def __init__(self):
        super().__init__()
        self.head, self.dtypes = nn.Conv2d(2, 3, 1), []

    def forward(self, image):
        out = self.head(image)
        self.dtypes.append(out.dtype)
        return out


@pytest.mark.parametrize("amp", [None, torch.bfloat16])
def test_amp_is_the_autocast_dtype_exactly_as_given(amp):
    model = DtypeProbe().eval()
    logits = predict_tiled(model, torch.randn(2, 20, 20), tile=8, overlap=2, amp=amp)
    assert set(model.dtypes) == {amp or torch.float32} and logits.dtype == torch.float32
    with pytest.raises(TypeError, match="give an autocast dtype"):
        predict_tiled(model, torch.randn(2, 20, 20), amp="bf16")


# --- test-time augmentation ----------------------------------------------------------------------------------------


class Symmetric(SegmentationModel):
    """A network that commutes with flips and 90-degree rotations: one 3x3 conv whose kernel has that symmetry."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        with torch.no_grad():
            w = self.conv.weight
            w.copy_(sum(torch.rot90(f, k, (-2, -1)) for k in range(4) for f in (w, w.flip(-1))) / 8)

    def forward(self, image):
        return self.conv(image).relu()


def dihedral_average_by_hand(model, image: torch.Tensor) -> np.ndarray:
    """Average over the 8 transforms written with numpy, undoing each on the output."""
    x = image.numpy()
    outputs = []
    for k in range(4):
        for flip in (False, True):
            t = np.rot90(x, k, axes=(-2, -1))
            t = np.flip(t, -1) if flip else t
            with torch.no_grad():
                y = model(torch.from_numpy(t.copy())).numpy()
            y = np.flip(y, -1) if flip else y
            outputs.append(np.rot90(y, -k, axes=(-2, -1)))
    return np.mean(outputs, axis=0)


def test_tta_of_a_symmetric_model_is_the_model_itself():
    model = Symmetric().eval()
    image = torch.randn(1, 2, 13, 21)  # not square, not symmetric
    with torch.no_grad():
        torch.testing.assert_close(TestTimeAugmentation(model)(image), model(image), rtol=1e-5, atol=1e-6)
        generic = padded()  # the check can fail: a model without the symmetry changes under TTA
        assert not torch.allclose(TestTimeAugmentation(generic)(image), generic(image), atol=1e-3)


@pytest.mark.parametrize("make", [padded, classic])
def test_tta_averages_the_eight_transforms(make):
    model = make()
    image = torch.randn(1, 2, 48, 52)  # both sides valid for the classic model, so its rotations are too
    with torch.no_grad():
        got = TestTimeAugmentation(model)(image).numpy()
    np.testing.assert_allclose(got, dihedral_average_by_hand(model, image), rtol=1e-5, atol=1e-6)


def test_tta_tiled_equals_tta_untiled_for_the_classic_model(native_conv):
    model = TestTimeAugmentation(classic())
    image = torch.randn(2, 48, 64)
    expected = untiled_valid(model, image, border_of(model))
    assert torch.equal(predict_tiled(model, image, tile=56), expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_with_amp_is_close_to_cpu():
    model = padded()
    image = torch.randn(2, 100, 90)
    cpu = predict_tiled(model, image, tile=48, overlap=16)
    gpu = predict_tiled(
        model.cuda(), image, tile=48, overlap=16, device="cuda", amp=resolve_amp("auto", torch.device("cuda"))
    )
    assert gpu.device.type == "cpu"
    torch.testing.assert_close(gpu, cpu, rtol=0, atol=0.05)  # bf16/fp16 keeps 8-11 mantissa bits


# ---------------------------------------------------------------------------------------------------------------
# Norms that need more than one value per channel (instance norm, group norm of one channel per group)


def norm_model(name: str, norm) -> SegmentationModel:
    return tiny_model(name, norm=norm, num_classes=2).eval()  # base 4: group norm of 4 groups, one channel each


def works(model, h: int, w: int) -> bool:
    """Whether torch runs `model` on one (h, w) window: the brute-force witness of `smallest_window`."""
    try:
        with torch.no_grad():
            model(torch.zeros(1, model.in_channels, h, w))
    except ValueError:  # torch's "Expected more than 1 value per channel" / "more than 1 spatial element"
        return False
    return True


@pytest.mark.parametrize("name", [n for n in list_models() if n != "unet-classic"])
@pytest.mark.parametrize("norm", ["batch", "group", "instance", None])
def test_smallest_window_is_what_torch_runs(name, norm):
    model = norm_model(name, norm)
    smallest, reduction = model.smallest_window(), model.reduction
    assert smallest == (1 if norm in ("batch", None) else reduction + 1)
    for side in (smallest, smallest + 1, smallest + reduction, 2 * smallest + 3):
        assert works(model, side, side) and works(model, side, smallest) and works(model, smallest, side)
    if smallest > 1 and name in ("unet", "attention-unet"):  # exact for U-Nets: one px less leaves a 1 x 1 map
        assert not works(model, smallest - 1, smallest - 1)
    wide = create_model("unet", base_channels=64, depth=1, norm="group")  # 32 groups of 2 channels: any size
    assert wide.smallest_window() == 1 and works(wide.eval(), 1, 1)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("norm", ["group", "instance"])
@pytest.mark.parametrize(("h", "w"), [(1, 1), (1, 6), (3, 2), (9, 1)])
def test_tiny_images_predict_with_norms_that_need_more_than_one_value(name, norm, h, w):
    model = norm_model(name, norm)
    image = torch.rand(model.in_channels, h, w)
    logits = predict_tiled(model, image, batch_size=1)
    assert logits.shape == (2, h, w) and torch.isfinite(logits).all()
    if model.padding == "valid":
        return  # the paper's network mirrors every window already (tested above)
    smallest = model.smallest_window()  # the image mirrored by numpy up to it, through the network, cropped back
    pads = [((smallest - n) // 2, smallest - n - (smallest - n) // 2) if n < smallest else (0, 0) for n in (h, w)]
    mirrored = torch.from_numpy(np.pad(image.numpy(), [(0, 0), *pads], mode="reflect"))
    with torch.no_grad():
        expected = model(mirrored[None])[0, :, pads[0][0] : pads[0][0] + h, pads[1][0] : pads[1][0] + w]
    torch.testing.assert_close(logits, expected)


def test_a_tile_too_small_for_the_norm_is_refused_naming_the_smallest():
    model = norm_model("unet", "instance")  # depth 2: downsamples by 4
    with pytest.raises(
        UnetlabError, match=r"tile 4 is not valid: it must be at least 5 px \(this model's instance or group norm"
    ):
        predict_tiled(model, torch.rand(2, 20, 20), tile=4, overlap=0)
    assert predict_tiled(model, torch.rand(2, 20, 20), tile=5, overlap=1).shape == (2, 20, 20)
