"""`predict` / `Predictor`: checkpoints and bare models, bit depths, channel conversion, thresholds, class values."""

import numpy as np
import pytest
import torch
from PIL import Image

from unetlab import UnetlabError, create_model
from unetlab.data.info import DataInfo
from unetlab.data.io import write_image
from unetlab.device import resolve_device
from unetlab.inference.predictor import Predictor, predict
from unetlab.training.checkpoint import load_checkpoint, save_checkpoint


def binary_model(in_channels: int = 1):
    return create_model("unet", base_channels=4, depth=2, in_channels=in_channels, num_classes=1).eval()


def logits_of(model, x: np.ndarray) -> torch.Tensor:
    """The untiled logits of an (H, W) or (H, W, C) float image, as a witness."""
    x = torch.from_numpy(np.ascontiguousarray(np.atleast_3d(x).transpose(2, 0, 1), dtype=np.float32))
    with torch.no_grad():
        return model(x[None])[0]  # (K, H, W)


def test_bare_model_gives_class_indices_and_probabilities():
    model = create_model("unet", base_channels=4, depth=2, in_channels=1, num_classes=3).eval()
    image = np.random.rand(40, 30).astype(np.float32)
    result = predict(model, image, tile=64)
    expected = logits_of(model, image).softmax(0)
    torch.testing.assert_close(torch.from_numpy(result.probs), expected, rtol=1e-5, atol=1e-6)
    assert np.array_equal(result.classes, expected.argmax(0).numpy())
    assert result.classes.dtype == np.uint8 and np.array_equal(result.mask, result.classes)


def test_binary_model_thresholds_the_sigmoid_at_the_checkpoints_threshold_or_the_given_one(tmp_path):
    model = binary_model()
    image = np.random.rand(33, 47).astype(np.float32)
    probs = torch.sigmoid(logits_of(model, image))[0].numpy()
    threshold = float(np.median(probs))
    save_checkpoint(tmp_path / "b.pt", model, DataInfo(1, [0, 255]), threshold=threshold)
    result = predict(tmp_path / "b.pt", image)
    np.testing.assert_allclose(result.probs[0], probs, rtol=1e-5, atol=1e-6)
    assert np.array_equal(result.classes, probs >= threshold), "foreground from the threshold on, as validation"
    assert result.classes[probs == threshold].all(), "the median pixel itself is foreground"
    assert set(np.unique(result.mask)) == {0, 255}, "class values of the checkpoint"
    overridden = predict(tmp_path / "b.pt", image, threshold=0.0)
    assert (overridden.mask == 255).all()


def test_checkpoint_normalisation_and_16_bit_scaling_are_applied(tmp_path):
    model = binary_model()
    save_checkpoint(tmp_path / "n.pt", model, DataInfo(1, [0, 1], mean=[0.25], std=[0.5]))
    image = np.random.default_rng(0).integers(0, 65536, (20, 26), dtype=np.uint16)
    result = predict(load_checkpoint(tmp_path / "n.pt"), image)
    expected = torch.sigmoid(logits_of(model, (image / 65535.0 - 0.25) / 0.5))[0]
    torch.testing.assert_close(torch.from_numpy(result.probs[0]), expected, rtol=1e-5, atol=1e-6)


def test_16_bit_file_and_8_bit_file_of_the_same_picture_agree(tmp_path):
    picture = np.random.default_rng(1).integers(0, 256, (25, 19), dtype=np.uint8)
    write_image(tmp_path / "a8.png", picture)
    write_image(tmp_path / "a16.tif", picture.astype(np.uint16) * 257)  # 255 * 257 = 65535: the same values
    predictor = Predictor(binary_model())
    np.testing.assert_allclose(predictor(tmp_path / "a16.tif").probs, predictor(tmp_path / "a8.png").probs, atol=1e-6)


def test_colour_image_to_grey_model_uses_luminance_and_grey_to_colour_repeats():
    rgb = np.random.default_rng(2).random((17, 23, 3)).astype(np.float32)
    grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    grey_model = binary_model(in_channels=1)
    np.testing.assert_allclose(predict(grey_model, rgb).probs, predict(grey_model, grey).probs, atol=1e-6)
    colour_model = binary_model(in_channels=3)
    repeated = np.repeat(grey[..., None], 3, axis=2)
    np.testing.assert_allclose(predict(colour_model, grey).probs, predict(colour_model, repeated).probs, atol=1e-6)


def test_channels_that_cannot_be_converted_name_the_file(tmp_path):
    write_image(tmp_path / "five.tif", np.zeros((8, 8, 5), dtype=np.uint8))
    with pytest.raises(UnetlabError, match="five.tif has 5 channels but the model takes 3"):
        predict(binary_model(in_channels=3), tmp_path / "five.tif")


def test_grey_alpha_and_rgba_files_predict_like_their_opaque_twins(tmp_path):
    grey = np.add.outer(np.arange(8), np.arange(8)).astype(np.uint8) * 9  # (8, 8)
    alpha = np.full_like(grey, 100)
    Image.fromarray(np.stack([grey, alpha], axis=2), mode="LA").save(tmp_path / "la.png")
    Image.fromarray(np.stack([grey, grey, grey, alpha], axis=2), mode="RGBA").save(tmp_path / "rgba.png")
    for channels in (1, 3):
        predictor = Predictor(binary_model(in_channels=channels), device="cpu")
        expected = predictor(np.stack([grey] * channels, axis=2)).probs
        for name in ("la.png", "rgba.png"):
            np.testing.assert_array_equal(predictor(tmp_path / name).probs, expected)


def test_colour_class_values_come_back_as_colours(tmp_path):
    model = create_model("unet", base_channels=4, depth=2, in_channels=3, num_classes=3).eval()
    colours = [[0, 0, 0], [255, 0, 0], [0, 0, 255]]
    save_checkpoint(tmp_path / "c.pt", model, DataInfo(3, colours))
    result = predict(tmp_path / "c.pt", np.random.rand(12, 14, 3).astype(np.float32))
    assert result.mask.shape == (12, 14, 3) and result.mask.dtype == np.uint8
    assert np.array_equal(result.mask, np.array(colours, dtype=np.uint8)[result.classes])


def test_tta_option_averages_flips_and_rotations():
    model = binary_model()
    image = np.random.rand(24, 24).astype(np.float32)
    plain, augmented = predict(model, image).probs, predict(model, image, tta=True).probs
    # The average over the group is invariant: TTA of the rotated image is the rotated TTA of the image.
    rotated = predict(model, np.rot90(image).copy(), tta=True).probs
    np.testing.assert_allclose(rotated[0], np.rot90(augmented[0]), atol=1e-6)
    assert not np.allclose(plain, augmented, atol=1e-4)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threshold": 0.3, "model": "multi"}, "threshold 0.3 applies to binary"),
        ({"threshold": 1.5}, "threshold 1.5 is not valid: it must be from 0 to 1"),
        ({"overlap": 600}, "overlap 600 is not valid: it must be less than the tile, 512 px"),
        ({"device": "tpu:x"}, "device 'tpu:x' is not valid: it must be auto, cpu, cuda or cuda:N"),
    ],
)
def test_invalid_options_are_named(options, message):
    model = create_model("unet", base_channels=4, depth=2, num_classes=3) if options.pop("model", None) else None
    with pytest.raises(UnetlabError, match=message):
        Predictor(model or binary_model(), **options)


def test_device_auto_is_cuda_only_when_available():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UnetlabError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(UnetlabError, match="nope.pt not found"):
        predict(tmp_path / "nope.pt", np.zeros((4, 4)))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_a_model_passed_in_keeps_its_mode_and_predicts_in_eval_mode(mode):
    model = create_model("unet", base_channels=4, depth=2, num_classes=1, dropout=0.5)
    getattr(model, mode)()
    frozen = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    frozen.eval()  # a caller's own choice inside the model, kept too
    image = np.random.default_rng(0).random((24, 20), dtype=np.float32)
    first, second = predict(model, image).probs, predict(model, image).probs
    assert model.training == (mode == "train") and not frozen.training
    np.testing.assert_array_equal(first, second)  # dropout off: eval mode inside each call


def test_a_float64_model_is_given_float64_images():
    model = binary_model().double()
    image = np.random.default_rng(0).random((24, 20))
    expected = torch.sigmoid(logits_of(model.float(), image.astype(np.float32)))[0].numpy()
    model.double()
    np.testing.assert_allclose(predict(model, image).probs[0], expected, atol=1e-6)


def test_a_channels_first_array_is_named_as_such():
    model = create_model("unet", base_channels=4, depth=2, in_channels=3)
    with pytest.raises(UnetlabError, match=r"looks channels-first \(C, H, W\); pass \(H, W, C\)"):
        predict(model, np.zeros((3, 40, 50), np.uint8))


def test_a_deep_supervision_model_predicts_its_full_resolution_head():
    model = create_model("unet", base_channels=4, depth=3, deep_supervision=True, num_classes=3)
    result = Predictor(model, tile=32)(np.random.default_rng(0).random((45, 37)).astype(np.float32))
    assert result.probs.shape == (3, 45, 37) and result.classes.shape == (45, 37)
