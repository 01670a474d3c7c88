"""`unetlab data check DIR`: a summary and exit 0 for usable folders, every problem named and exit 2 otherwise."""

from pathlib import Path

import numpy as np
import pytest
from folder_data import box_mask, write_pairs

from unetlab.cli import main
from unetlab.data.io import write_image

ISBI = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2012-membrane"


def check(capsys, *args):
    code = main(["data", "check", *map(str, args)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out + err


def good_folder(tmp_path):
    masks = {str(i): box_mask(16, 16, (0, 0, 8, 8 + i)) for i in range(3)}
    masks["3"] = np.zeros((16, 16), np.uint8)  # background only: a note, not a problem
    return write_pairs(tmp_path / "ds", masks)


def test_usable_folder_exits_0_with_a_summary(tmp_path, capsys):
    root = good_folder(tmp_path)
    (root / "images" / ".hidden.png").write_bytes(b"junk")
    (root / "masks" / "README.txt").write_text("stray")
    code, out = check(capsys, root)
    assert code == 0 and "usable: yes" in out
    assert "4 pairs" in out and "image sizes (width x height px): 16 x 16" in out and "channels: 1" in out
    assert "mask values (pixel share): 0 " in out and "255 " in out
    assert "masks with background (0) only: 1: 3.png" in out


def test_broken_folder_exits_2_naming_every_problem(tmp_path, capsys):
    root = good_folder(tmp_path)
    write_image(root / "images" / "orphan.png", np.zeros((16, 16), np.uint8))
    write_image(root / "masks" / "lonely.png", np.zeros((16, 16), np.uint8))
    write_image(root / "masks" / "1.png", np.zeros((8, 16), np.uint8))
    (root / "masks" / "2.png").write_bytes(b"\x89PNG broken")
    mask = box_mask(16, 16, (0, 0, 4, 4))
    mask[10, 10] = 128
    write_image(root / "masks" / "0.png", mask)
    code, out = check(capsys, root, "--class-values", 0, 255)
    assert code == 2 and "not usable" in out
    for expected in (
        "orphan.png in",
        "has no mask",
        "lonely.png in",
        "has no image",
        "1.png is 16 x 8 px but its image 1.png is 16 x 16",
        "2.png could not be read",
        "0.png has values 128 outside the classes 0, 255",
    ):
        assert expected in out, expected
    assert "problems (5):" in out


def test_empty_and_missing_folders_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, out = check(capsys, tmp_path / "empty")
    assert code == 2 and "has no images/ folder" in out
    (tmp_path / "bare" / "images").mkdir(parents=True)
    (tmp_path / "bare" / "masks").mkdir()
    code, out = check(capsys, tmp_path / "bare")
    assert code == 2 and "holds no images" in out and "holds no masks" in out


def test_split_layout_reports_each_split_and_test_images_without_masks(tmp_path, capsys):
    write_pairs(tmp_path / "ds" / "train", {"a": box_mask(8, 8, (0, 0, 4, 4), 1), "b": box_mask(8, 8, (2, 2, 6, 6), 2)})
    write_pairs(tmp_path / "ds" / "val", {"c": box_mask(8, 8, (0, 0, 4, 4), 1)})
    write_image(tmp_path / "ds" / "test" / "images" / "d.png", np.zeros((8, 8), np.uint8))
    code, out = check(capsys, tmp_path / "ds")
    assert code == 0
    assert "train: 2 pairs" in out and "val: 1 pair in" in out and "test: 1 image without masks" in out
    assert "training / validation: 2 / 1 pair" in out and "classes (index = mask value): 0 = 0, 1 = 1, 2 = 2" in out
    assert "mask values (pixel share): 0 " in out and ", 2 " in out


def test_bad_value_option_exits_2_with_the_command_usage(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "check", str(good_folder(tmp_path)), "--class-values", "red"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("usage: unetlab data check")
    assert "argument --class-values: 'red' is not a mask value" in err


def test_unknown_flag_shows_the_data_check_usage(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "check", str(good_folder(tmp_path)), "--images", "imgs"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("usage: unetlab data check")
    assert "unetlab data check: error: unrecognized arguments: --images imgs" in err


def test_usable_means_that_training_would_accept_the_folder(tmp_path, capsys):
    one = write_pairs(tmp_path / "one", {"a": box_mask(8, 8, (0, 0, 4, 4))})
    code, out = check(capsys, one)
    assert code == 2 and "has 1 pair, too few to hold out a validation fraction" in out
    assert check(capsys, one, "--val-fraction", 0)[0] == 0
    write_pairs(tmp_path / "valonly" / "val", {"a": box_mask(8, 8, (0, 0, 4, 4))})
    code, out = check(capsys, tmp_path / "valonly")
    assert code == 2 and "has no train/ split" in out
    code, out = check(capsys, one / "images" / "a.png")
    assert code == 2 and "a.png is a file; pass the dataset folder" in out


def test_class_table_problems_and_names_are_those_of_training(tmp_path, capsys):
    masks = {str(i): box_mask(8, 8, (0, 0, 4, 4 + i)) for i in range(3)}
    masks["0"][7, 7] = 128
    root = write_pairs(tmp_path / "ds", masks)
    for args, problem in (
        (["--class-values", "0", "0", "255"], "class_values lists 0 more than once"),
        (["--class-values", "0", "255", "--ignore-values", "255"], "255 is in class_values and in ignore_values"),
        (
            ["--class-values", "0", "255", "300", "--ignore-values", "128"],
            "class value 300 occurs in no mask (the masks hold 0, 128, 255)",
        ),
    ):
        code, out = check(capsys, root, *args)
        assert code == 2 and problem in out, args
    code, out = check(
        capsys, root, "--class-values", 0, 255, 128, "--class-names", "bg", "cell", "void", "--ignore-values", "void"
    )
    assert code == 0 and "classes (index = mask value): 0 bg = 0, 1 cell = 255; unlabelled: 128" in out


def test_jpeg_masks_are_not_usable(tmp_path, capsys):
    root = write_pairs(tmp_path / "ds", {str(i): box_mask(8, 8, (0, 0, 4, 4)) for i in range(3)}, mask_suffix=".jpg")
    code, out = check(capsys, root)
    assert code == 2 and out.count("is a JPEG: lossy compression changes mask values") == 3


@pytest.mark.skipif(not ISBI.is_dir(), reason="ISBI 2012 data not in ../shared")
def test_isbi_folder_is_usable(capsys):
    code, out = check(capsys, ISBI)
    assert code == 0 and "30 pairs" in out and "512 x 512" in out and "0 22.0%, 255 78.0%" in out
