"""The ResNet encoders are interchangeable with torchvision's: same keys and shapes, same outputs.

The reference files in ../shared/reference were made with torchvision itself; tests that need them skip cleanly
when the folder is absent.
"""

import json
from pathlib import Path

import pytest
import torch

from unetlab import UnetlabError, create_model
from unetlab.models.resnet import ResNetEncoder, adapt_first_conv, load_torchvision_weights

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"reference folder {REFERENCE} is absent")


@needs_reference
@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50"])
def test_encoder_state_dict_keys_and_shapes_equal_torchvisions(arch):
    reference = json.loads((REFERENCE / "torchvision_resnet_state_dict_shapes.json").read_text())["models"][arch]
    expected = {k: v for k, v in reference.items() if not k.startswith("fc.")}  # the classifier is not an encoder's
    got = {k: list(v.shape) for k, v in ResNetEncoder(arch).state_dict().items()}
    assert list(got) == list(expected)
    assert got == expected


@needs_reference
@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_encoder_reproduces_torchvision_stem_and_layer_outputs(arch):
    path = REFERENCE / f"torchvision_{arch}_reference.pt"
    reference = torch.load(path, weights_only=True)
    model = create_model(f"{arch}-unet", encoder_weights=path).eval()  # loads with strict=True
    with torch.no_grad():
        features = model.encoder(reference["input"])
    assert len(features) == len(reference["features"]) == 5
    for got, (name, expected) in zip(features, reference["features"].items()):
        assert got.shape == expected.shape, name
        # float32 rounding, relative to the map's norm (deep ResNet-50 maps have large magnitudes)
        assert ((got - expected).norm() / expected.norm()).item() < 1e-5, name


@needs_reference
def test_encoder_weights_for_grey_images_respond_as_to_replicated_rgb():
    path = REFERENCE / "torchvision_resnet18_reference.pt"
    rgb = create_model("resnet18-unet", encoder_weights=path).eval()
    grey = create_model("resnet18-unet", encoder_weights=path, in_channels=1).eval()
    image = torch.rand(1, 1, 64, 48)
    with torch.no_grad():
        for a, b in zip(grey.encoder(image), rgb.encoder(image.expand(-1, 3, -1, -1))):
            # float32 rounding relative to the map's norm, as above: the grey conv sums the three RGB kernels before
            # multiplying, the RGB conv sums three products, and the difference grows with the maps' magnitude
            # (about 10 at layer4) through the depth of the net (observed: under 1e-6).
            assert ((a - b).norm() / b.norm()).item() < 1e-5


@needs_reference
def test_encoder_weights_of_another_architecture_get_a_clear_error():
    with pytest.raises(UnetlabError, match="does not fit resnet50.*wrong shape"):
        create_model("resnet50-unet", encoder_weights=REFERENCE / "torchvision_resnet18_reference.pt")


@needs_reference
def test_encoder_weights_load_into_a_shallower_encoder():
    model = create_model("resnet18-unet", depth=3, encoder_weights=REFERENCE / "torchvision_resnet18_reference.pt")
    assert not hasattr(model.encoder, "layer3")


def test_encoder_weights_missing_file_names_it(tmp_path):
    with pytest.raises(UnetlabError, match=r"nope\.pth not found"):
        create_model("resnet34-unet", encoder_weights=tmp_path / "nope.pth")


def test_encoder_weights_corrupt_file_names_it_with_a_readable_reason(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UnetlabError, match=r"bad.pth is not a PyTorch file \(torch.save writes a zip archive\)"):
        create_model("resnet34-unet", encoder_weights=bad)
    torch.save({"conv1.weight": torch.zeros(2)}, bad)
    bad.write_bytes(bad.read_bytes()[:-40])  # a torch file cut short
    with pytest.raises(UnetlabError, match=r"bad.pth could not be read by torch.load \(\w"):
        create_model("resnet34-unet", encoder_weights=bad)
    with pytest.raises(UnetlabError, match=f"encoder weights {tmp_path} is a folder"):
        create_model("resnet34-unet", encoder_weights=tmp_path)


def test_adapt_first_conv_keeps_magnitude_for_many_channels():
    weight = torch.randn(64, 3, 7, 7)
    adapted = adapt_first_conv(weight, 6)
    assert adapted.shape == (64, 6, 7, 7)
    # an image whose 6 channels are RGB twice responds as the RGB image does
    torch.testing.assert_close(adapted[:, :3] + adapted[:, 3:], weight)


def test_frozen_encoder_gets_no_gradient_and_keeps_batchnorm_statistics():
    model = create_model("resnet18-unet", base_channels=4, depth=3, freeze_encoder=True).train()
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.decoders.parameters())
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not model.encoder.training and model.decoders.training


def test_decoder_is_built_from_encoder_channels():
    model = create_model("resnet50-unet", base_channels=8)
    assert model.encoder.out_channels == [64, 256, 512, 1024, 2048]
    assert model.encoder.reductions == [2, 4, 8, 16, 32]
    # level i joins the upsampled map (base * 2**i channels) with the encoder map one level up (or the image)
    assert model.decoders[4].up.in_channels == 2048
    assert [d.conv.conv1.in_channels for d in model.decoders] == [3 + 8, 64 + 16, 256 + 32, 512 + 64, 1024 + 128]


def test_load_torchvision_weights_round_trips_an_encoder(tmp_path):
    source = ResNetEncoder("resnet34", depth=5)
    path = tmp_path / "resnet34.pth"
    torch.save({**source.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}, path)
    target = ResNetEncoder("resnet34", depth=5)
    load_torchvision_weights(target, path)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
