"""`summarize` and `unetlab summary`: hand-written FLOP formulas against torch's own FLOP counter."""

import pytest
import torch
from conftest import tiny_model
from torch.utils.flop_counter import FlopCounterMode

from unetlab import create_model, list_models
from unetlab.cli import main
from unetlab.models.summary import format_summary, summarize


@pytest.mark.parametrize("name", list_models())
def test_summary_flops_equal_torch_flop_counter(name):
    model = tiny_model(name, upsample="bilinear" if name == "unet" else "transpose")
    side = model.valid_input_size(37)
    summary = summarize(model, (2, side, side + (0 if model.padding == "valid" else 5)))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, 2, side, side + (0 if model.padding == "valid" else 5)))
    assert summary.flops == counter.get_total_flops() > 0


@pytest.mark.parametrize("name", list_models())
def test_summary_stage_parameters_add_up_to_model_parameters(name):
    model = tiny_model(name)
    summary = summarize(model, (2, *(model.valid_input_size(32),) * 2))
    assert sum(s.params for s in summary.stages) == summary.params == sum(p.numel() for p in model.parameters())
    assert summary.stages[-1].name == "head"
    assert summary.output_shape == summary.stages[-1].output_shape


def test_summary_leaves_model_state_untouched():
    model = tiny_model("unet").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summarize(model, (2, 32, 32))
    assert not model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_summary_activation_memory_scales_with_pixels():
    model = tiny_model("unet", norm=None)
    small, large = (summarize(model, (2, s, s)).activation_bytes for s in (32, 64))
    assert 3.5 * small < large < 4.5 * small


def test_summary_of_classic_lists_valid_sizes_near_the_input():
    text = format_summary(summarize(create_model("unet-classic", base_channels=2), (1, 572, 572)))
    assert "556 -> 372, 572 -> 388, 588 -> 404" in text
    assert "31,030,658" not in text  # base 2, not the paper's width


def test_cli_summary_prints_each_stage(capsys):
    assert main(["summary", "unet", "--base-channels", "4", "--depth", "3", "--input", "3,40,40"]) == 0
    out = capsys.readouterr().out
    for stage in ("enc1", "enc3", "bottleneck", "dec3", "dec1", "head", "total"):
        assert stage in out
    assert "2 x 40 x 40" in out


def test_cli_summary_moves_an_invalid_size_to_the_next_valid_one(capsys):
    assert main(["summary", "unet-classic", "--base-channels", "2", "--input", "1,500,500"]) == 0
    out = capsys.readouterr().out
    assert "500 x 500 does not fit" in out and "508 x 508" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["summary", "unet-big"], "unknown model 'unet-big'; choose one of unet-classic"),
        (["summary", "unet", "--input", "3,a,4"], "--input '3,a,4' is not valid"),
        (["summary", "unet", "--input", "3,64,64", "--in-channels", "1"], "make them agree"),
        (["summary", "unet", "--depth", "12"], "--depth 12 is not valid: it must be from 1 to 8"),
        (
            ["summary", "unet", "--base-channels", "100000"],
            "has 75,740,021,000,002 parameters, whose weights alone would take 282,153.6 GiB",
        ),
    ],
)
def test_cli_summary_bad_input_exits_2_with_one_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "output"),
    [
        (["summary", "unet", "--base-channels", "4", "--input", "1,16,16"], "2 x 16 x 16"),
        (["summary", "unet", "--base-channels", "4", "--input", "1,1,1"], "2 x 1 x 1"),
        (["summary", "resnet18-unet", "--base-channels", "4", "--input", "3,16,16"], "2 x 16 x 16"),
        (["summary", "unet-classic", "--input", "1,100000,100000"], "2 x 99828 x 99828"),  # ~30 TB if it were run
    ],
)
def test_cli_summary_of_tiny_and_huge_inputs_allocates_nothing(capsys, argv, output):
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert output in captured.out and "Traceback" not in captured.err


def saved_bytes_of_one_image(model, shape) -> int:
    """A witness: the bytes autograd keeps for one real image on the CPU, each storage once, parameters not."""
    seen = {p.untyped_storage().data_ptr() for p in model.parameters()}
    total = 0

    def pack(tensor):
        nonlocal total
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.train()(torch.randn(1, *shape))
    return total


@pytest.mark.parametrize("name", ["unet-classic", "unet", "resnet18-unet"])
def test_summary_figures_are_those_of_one_real_image(name):
    model = tiny_model(name, **({"norm": None} if name == "unet" else {}))  # batch norm keeps per-batch statistics
    shape = (2, *(model.valid_input_size(32),) * 2)
    summary = summarize(model, shape)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, *shape))
    assert summary.flops == counter.get_total_flops()
    # Batch norm also keeps each batch's mean and inverse std (2 x C floats, whatever the image size), which the
    # summary leaves out.
    batch_statistics = sum(2 * 4 * m.num_features for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert summary.activation_bytes == saved_bytes_of_one_image(model, shape) - batch_statistics
