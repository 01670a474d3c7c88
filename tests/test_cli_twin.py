"""`unetlab twin check|train`: the tables, the verdict, and one-line errors for what the twin does not do."""

import pytest

from unetlab import create_model
from unetlab.cli import main

SMALL = ["--depth", "2", "--base-channels", "2"]


def test_twin_check_lists_every_stage_and_parameter_and_passes(capsys):
    assert main(["twin", "check", "--model", "unet", *SMALL, "--input", "1,11,9"]) == 0
    out = capsys.readouterr().out
    assert "input 2x1x11x9, float64, train mode" in out
    lines = out.splitlines()
    for key in create_model("unet", depth=2, base_channels=2).state_dict():
        assert any(line.startswith(key + " ") for line in lines), key
    for stage in ["input", "encoders.0", "encoders.1", "bottleneck", "dropout", "decoders.1", "decoders.0", "head"]:
        assert any(line.startswith(stage + " ") for line in lines), stage
    assert lines[-1].startswith("worst relative error") and lines[-1].endswith("tolerance 1e-09: OK")


def test_twin_check_classic_defaults_to_the_smallest_valid_side_with_dropout(capsys):
    assert main(["twin", "check", *SMALL, "--eval"]) == 0
    side = create_model("unet-classic", depth=2).valid_input_size(1)
    out = capsys.readouterr().out
    assert f"input 2x1x{side}x{side}, float64, eval mode" in out and "dropout 0.5" in out


def test_twin_check_exits_1_when_an_error_exceeds_the_tolerance(capsys):
    assert main(["twin", "check", *SMALL, "--tol", "0"]) == 1
    assert ": FAIL (" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["twin", "check", *SMALL, "--input", "1,30,30"], "input side 30 px does not fit"),
        (["twin", "check", *SMALL, "--input", "3,44,44"], "give 1,H,W"),
        (["twin", "check", "--batch-size", "0"], "--batch-size 0 is not valid"),
        (["twin", "check", "--tol", "-1"], "--tol -1.0 is not valid"),
        (
            ["twin", "check", "--model", "unet", "--input", "1,3000,3000"],
            "GiB (PyTorch and the twin in float64), and this machine has",
        ),
        (["twin", "check", "--depth", "9"], "--depth 9 is not valid: it must be from 1 to 8"),
        (["twin", "train", "--image-size", "16"], "--image-size 16 is not valid: it must be at least 32 px"),
        (["twin", "train", "--lr", "-1"], "--lr -1.0 is not valid: it must be more than 0"),
        (["twin", "train", "--dice-weight", "-5"], "--dice-weight -5.0 is not valid: it must be at least 0"),
        (
            ["twin", "train", "--num-classes", "3"],
            "--num-classes 3 is not valid: it must be 1 (one sigmoid output) or 2 (softmax) for the 2 classes",
        ),
    ],
)
def test_twin_mistakes_are_one_line_errors_with_exit_2(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["twin", "check", "--upsample", "bilinear"], "unrecognized arguments: --upsample bilinear"),
        (["twin", "check", "--norm", "group"], "argument --norm: invalid choice: 'group'"),
        (["twin", "train", "--checkpointing"], "unrecognized arguments: --checkpointing"),
        (["twin", "train", "--encoder-weights", "x.pth"], "unrecognized arguments: --encoder-weights x.pth"),
        (["twin", "train", "--size", "32"], "unrecognized arguments: --size 32"),
    ],
)
def test_options_the_twin_does_not_have_are_not_offered(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith(f"usage: unetlab twin {args[1]}") and message in err


@pytest.mark.parametrize("command", ["check", "train"])
def test_help_lists_only_what_the_twin_supports(capsys, command):
    with pytest.raises(SystemExit):
        main(["twin", command, "--help"])
    out = capsys.readouterr().out
    for absent in ("--encoder-weights", "--freeze-encoder", "--checkpointing", "--upsample", "group", "instance"):
        assert absent not in out, absent
    assert "--norm {batch,none}" in out and "--padding {same,valid}" in out


def test_twin_train_smoke_reports_validation_dice(capsys):
    args = ["--image-size", "32", "--num-train", "4", "--num-val", "2", "--steps", "2", "--batch-size", "2"]
    assert main(["twin", "train", *args, "--depth", "1", "--base-channels", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "synthetic cells 32x32, 4 train / 2 val images" in out
    assert "validation Dice" in out and "after 2 steps" in out
