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
        (["twin", "check", "--upsample", "bilinear"], "upsample='bilinear' is not supported by the NumPy twin"),
        (["twin", "check", "--norm", "group"], "norm='group' is not supported by the NumPy twin"),
        (["twin", "check", *SMALL, "--input", "1,30,30"], "input side 30 px does not fit"),
        (["twin", "check", *SMALL, "--input", "3,44,44"], "give 1,H,W"),
        (["twin", "check", "--batch", "0"], "--batch 0 is not valid"),
        (["twin", "train", "--checkpointing"], "the NumPy twin has no option checkpointing"),
        (["twin", "train", "--size", "16"], "--size 16 is not valid; use 32 or more"),
    ],
)
def test_twin_mistakes_are_one_line_errors_with_exit_2(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_twin_train_smoke_reports_validation_dice(capsys):
    args = ["--size", "32", "--train-images", "4", "--val-images", "2", "--steps", "2", "--batch-size", "2"]
    assert main(["twin", "train", *args, "--depth", "1", "--base-channels", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "synthetic cells 32x32, 4 train / 2 val images" in out
    assert "validation Dice" in out and "after 2 steps" in out
