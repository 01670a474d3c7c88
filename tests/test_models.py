"""Behaviour of every registered model: shapes, gradients, determinism, checkpointing, channels_last."""

import pytest
import torch
from conftest import tiny_model

from unetlab import UnetlabError, create_model, list_models
from unetlab.models.summary import summarize
from unetlab.models.unet import valid_input_sizes, valid_output_size
from unetlab.training.losses import DeepSupervisionLoss, build_loss, deep_supervision_weights, downsample_target

ALL = list_models()


def sizes_for(model) -> list[tuple[int, int]]:
    """Several input sizes the model must take, odd ones included."""
    if model.padding == "valid":
        lo = model.valid_input_size(1)
        step = 2**model.depth
        return [(lo, lo), (lo + step, lo + 3 * step), (lo + 5 * step, lo)]
    return [(32, 32), (33, 47), (7, 5), (1, 1)]


def test_registry_has_every_model_family():
    assert ALL == ["unet-classic", "unet", "attention-unet", "resnet18-unet", "resnet34-unet", "resnet50-unet"]


def test_create_model_unknown_name_lists_valid_names():
    with pytest.raises(KeyError, match="unet-classic, unet, attention-unet"):
        create_model("unet-small")


def test_create_model_unknown_option_names_it_and_the_valid_ones():
    with pytest.raises(UnetlabError, match="no option encoder_weights; its options are in_channels"):
        create_model("unet", encoder_weights="x.pth")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("depth", 0),
        ("depth", 9),
        ("norm", "layer"),
        ("padding", "full"),
        ("num_classes", 0),
        ("upsample", "nearest"),
        ("dropout", 1.0),
    ],
)
def test_unet_invalid_option_names_option(option, value):
    with pytest.raises(UnetlabError, match=option):
        create_model("unet", **{option: value})


@pytest.mark.parametrize("name", ALL)
def test_model_output_shape_at_several_sizes(name):
    model = tiny_model(name, num_classes=3).eval()
    for h, w in sizes_for(model):
        with torch.no_grad():
            logits = model(torch.randn(2, 2, h, w))
        assert logits.shape == (2, 3, model.output_size(h), model.output_size(w)), (h, w)
        if model.padding == "same":
            assert logits.shape[-2:] == (h, w)


@pytest.mark.parametrize("name", ALL)
def test_model_backward_reaches_every_parameter_without_nan(name):
    model = tiny_model(name).train()
    h = model.valid_input_size(20)
    logits = model(torch.randn(2, 2, h, h + (0 if model.padding == "valid" else 3)))
    assert torch.isfinite(logits).all()
    logits.square().mean().backward()
    for key, param in model.named_parameters():
        assert param.grad is not None, f"{key} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{key} has a non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{key} has an all-zero gradient"


@pytest.mark.parametrize("name", ALL)
def test_model_eval_mode_is_deterministic(name):
    model = tiny_model(name, **({"dropout": 0.5} if "unet" == name else {})).eval()
    image = torch.randn(1, 2, *(model.valid_input_size(24),) * 2)
    with torch.no_grad():
        assert torch.equal(model(image), model(image))


@pytest.mark.parametrize("name", ALL)
def test_model_checkpointing_gives_same_gradients_and_batchnorm_statistics(name):
    plain = tiny_model(name).train()
    checkpointed = tiny_model(name, checkpointing=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    image = torch.randn(2, 2, *(plain.valid_input_size(24),) * 2)
    for model in (plain, checkpointed):
        torch.manual_seed(1)  # the same dropout masks
        model(image).square().mean().backward()
    for (key, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-6, msg=key)
    for (key, a), b in zip(plain.named_buffers(), checkpointed.buffers()):
        torch.testing.assert_close(b, a, msg=f"buffer {key} changed differently under checkpointing")


@pytest.mark.parametrize("name", ALL)
def test_model_checkpointing_keeps_fewer_activations(name):
    plain = tiny_model(name, base_channels=8)
    checkpointed = tiny_model(name, base_channels=8, checkpointing=True)
    shape = (2, *(plain.valid_input_size(64),) * 2)
    kept, kept_checkpointed = (summarize(m, shape).activation_bytes for m in (plain, checkpointed))
    # A checkpointed stage still keeps its input for the recomputation, so how much is saved depends on the stage
    # layout; the memory benchmark measures the real saving. Half is a bound every model must clear.
    assert kept_checkpointed < 0.5 * kept


@pytest.mark.parametrize("name", ALL)
def test_model_channels_last_gives_same_output(name):
    model = tiny_model(name).eval()
    image = torch.randn(2, 2, *(model.valid_input_size(40),) * 2)
    with torch.no_grad():
        expected = model(image)
        model = model.to(memory_format=torch.channels_last)
        got = model(image.to(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_unet_classic_has_the_papers_31030658_parameters():
    model = create_model("unet-classic")
    assert sum(p.numel() for p in model.parameters()) == 31_030_658


def test_unet_classic_output_is_388_for_572():
    with torch.device("meta"):  # the real forward, shapes only
        model = create_model("unet-classic")
        logits = model(torch.empty(1, 1, 572, 572))
    assert logits.shape == (1, 2, 388, 388)
    assert model.output_size(572) == 388


def test_unet_classic_valid_sizes_are_16k_plus_124_at_depth_4():
    sizes = valid_input_sizes(4, 1, 2000)
    assert sizes[0] == 188 and all(s % 16 == 124 % 16 for s in sizes)
    assert sizes == list(range(188, 2001, 16))
    assert create_model("unet-classic").valid_input_size(500) == 508


def test_unet_classic_invalid_size_error_names_nearest_valid_sizes():
    model = create_model("unet-classic", base_channels=2)
    with pytest.raises(UnetlabError, match="use 556 or 572 px"):
        model(torch.randn(1, 1, 570, 572))
    with pytest.raises(UnetlabError, match="use 188 px"):
        model.output_size(100)


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5, 6])
def test_unet_depth_1_to_6(padding, depth):
    model = create_model("unet", base_channels=2, depth=depth, padding=padding, norm=None).eval()
    side = model.valid_input_size(2**depth + 3)
    with torch.no_grad():
        logits = model(torch.randn(1, 1, side, side))
    assert (
        logits.shape[-1] == model.output_size(side) == (side if padding == "same" else valid_output_size(side, depth))
    )
    assert len(model.encoders) == depth and len(model.decoders) == depth


@pytest.mark.parametrize("norm", ["batch", "group", "instance", None, "none"])
@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
def test_unet_norms_and_upsamplings(norm, upsample):
    model = create_model("unet", base_channels=4, depth=2, norm=norm, upsample=upsample)
    logits = model(torch.randn(2, 1, 19, 22))
    assert logits.shape == (2, 2, 19, 22)
    logits.sum().backward()


def test_unet_classic_stage_widths_double_per_level():
    model = create_model("unet-classic")
    assert [e.conv.conv2.out_channels if hasattr(e, "conv") else e.conv2.out_channels for e in model.encoders] == [
        64,
        128,
        256,
        512,
    ]
    assert model.bottleneck.conv.conv2.out_channels == 1024


def test_attention_unet_maps_are_probabilities_per_decoder_stage():
    model = tiny_model("attention-unet", depth=3).eval()
    maps = model.attention_maps(torch.randn(2, 2, 24, 20))
    assert list(maps) == ["dec3", "dec2", "dec1"]
    assert maps["dec1"].shape == (2, 1, 24, 20) and maps["dec3"].shape == (2, 1, 6, 5)
    for alpha in maps.values():
        assert ((alpha > 0) & (alpha < 1)).all()


def test_attention_unet_classic_configuration_crops_before_gating():
    model = create_model("attention-unet", base_channels=2, depth=2, padding="valid", norm=None).eval()
    side = model.valid_input_size(40)
    maps = model.attention_maps(torch.randn(1, 1, side, side))
    assert maps["dec1"].shape[-1] == model.output_size(side) + 4  # the map the last DoubleConv trims by 4


DEEP = [n for n in ALL if n != "unet-classic"]  # deep supervision: the padded models


@pytest.mark.parametrize("name", DEEP)
def test_deep_supervision_gives_every_head_a_gradient(name):
    model = tiny_model(name, depth=4, deep_supervision=True).train()
    image = torch.randn(2, model.in_channels, 33, 47)
    outputs = model(image, all_levels=True)
    assert [tuple(o.shape[-2:]) for o in outputs] == [(33, 47), (17, 24), (9, 12)]  # levels 0, 1, 2 of depth 4
    mask = torch.randint(0, 2, (2, 33, 47))
    DeepSupervisionLoss(build_loss("dice_ce", model.num_classes))(outputs, mask).backward()
    for key, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, key
    assert model(image).shape == outputs[0].shape, "forward(image) gives the full-resolution head alone"


def test_deep_supervision_weights_halve_and_sum_to_one_and_targets_keep_their_values():
    assert deep_supervision_weights(3) == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    mask = torch.tensor([[[0, 1, 2, -100], [1, 1, 2, 2], [0, 0, 0, 0]]])  # (1, 3, 4)
    small = downsample_target(mask, (2, 2))
    assert set(small.unique().tolist()) <= set(mask.unique().tolist()) and small.dtype == mask.dtype
    expected = torch.nn.functional.interpolate(mask[:, None].float(), size=(2, 2), mode="nearest-exact")[:, 0]
    assert torch.equal(small, expected.long())


def test_deep_supervision_is_refused_for_the_valid_network():
    with pytest.raises(UnetlabError, match="deep_supervision True is not supported with valid padding"):
        create_model("unet-classic", deep_supervision=True)


def test_every_model_declares_the_seam():
    for name in ALL:
        model = tiny_model(name)
        features = model.encode(torch.randn(1, model.in_channels, 188 if model.padding == "valid" else 32, 188
                                             if model.padding == "valid" else 32))  # fmt: skip
        assert len(features) == len(model.decoders) + 1, name  # one skip per decoder level, then the deepest map
        assert len(model.decode(features)) == len(model.decoders), name
