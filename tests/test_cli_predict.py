"""`unetlab predict`: inputs from files, folders and globs; masks in the original values; probabilities, overlays;
one-line errors, and outputs kept when one file fails."""

import re

import numpy as np
import pytest
from PIL import Image

from unetlab import UnetlabError, create_model
from unetlab.checkpoint import save_checkpoint
from unetlab.cli import main
from unetlab.data.info import DataInfo
from unetlab.data.io import read_image, read_mask, write_image
from unetlab.outputs import collect_inputs, overlay
from unetlab.prediction import Predictor


@pytest.fixture
def images(tmp_path):
    """A folder with an 8-bit grey, a 16-bit grey and a colour image of odd sizes."""
    folder = tmp_path / "images"
    rng = np.random.default_rng(0)
    write_image(folder / "a.png", rng.integers(0, 256, (37, 51), dtype=np.uint8))
    write_image(folder / "b.tif", rng.integers(0, 65536, (20, 9), dtype=np.uint16))
    write_image(folder / "c.png", rng.integers(0, 256, (3, 70, 3), dtype=np.uint8))
    return folder


def checkpoint(tmp_path, class_values, num_classes=1, name="unet"):
    model = create_model(name, base_channels=4, depth=2, in_channels=1, num_classes=num_classes)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, DataInfo(1, class_values), threshold=0.5 if num_classes == 1 else None)
    return path


def run(*argv) -> int:
    return main(["predict", *map(str, argv)])


@pytest.mark.parametrize("name", ["unet", "unet-classic"])
def test_predict_writes_masks_in_the_original_values(tmp_path, images, name):
    ckpt = checkpoint(tmp_path, [0, 255], name=name)
    assert run(ckpt, images, "--out", tmp_path / "out", "--tile", 64, "--threshold", 0.0) == 0  # all foreground
    for stem, shape in [("a", (37, 51)), ("b", (20, 9)), ("c", (3, 70))]:
        mask = read_mask(tmp_path / "out" / f"{stem}.png")
        assert mask.shape == shape and mask.dtype == np.uint8 and (mask == 255).all()


def test_predict_mask_equals_the_python_api(tmp_path, images):
    ckpt = checkpoint(tmp_path, [3, 7, 9], num_classes=3)
    assert run(ckpt, images / "a.png", "--out", tmp_path / "out") == 0
    expected = Predictor(ckpt)(images / "a.png").mask
    assert np.array_equal(read_mask(tmp_path / "out" / "a.png"), expected)
    assert set(np.unique(expected)) <= {3, 7, 9}


def test_values_beyond_8_bits_are_written_as_tiff(tmp_path, images):
    ckpt = checkpoint(tmp_path, [0, 1000])
    assert run(ckpt, images / "b.tif", "--out", tmp_path / "out", "--threshold", 0.0) == 0
    mask = read_mask(tmp_path / "out" / "b.tif")
    assert mask.dtype == np.uint16 and (mask == 1000).all()


def test_probabilities_and_overlays(tmp_path, images):
    ckpt = checkpoint(tmp_path, [0, 255], num_classes=1)
    assert run(ckpt, images / "a.png", images / "c.png", "--out", tmp_path / "out", "--probs", "--overlay") == 0
    probs = read_image(tmp_path / "out" / "probs" / "a.tif")
    assert probs.shape == (37, 51) and probs.dtype == np.float32 and 0 <= probs.min() <= probs.max() <= 1
    assert read_image(tmp_path / "out" / "overlays" / "c.png").shape == (3, 70, 3)


def test_overlay_tints_classes_above_zero_only():
    image = np.full((2, 2), 100, dtype=np.uint16)  # flat: displayed as 0
    classes = np.array([[0, 1], [2, 0]])
    rgb = overlay(image, classes)
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[1, 1].tolist() == [0, 0, 0]
    assert rgb[0, 1, 0] > 0 and rgb[0, 1, 1] == 0 and rgb[1, 0, 1] > 0, "class 1 red, class 2 green"


def test_glob_and_duplicate_inputs(tmp_path, images):
    assert [p.name for p in collect_inputs([str(images / "*.png"), images / "a.png"])] == ["a.png", "c.png"]
    write_image(tmp_path / "other" / "a.png", np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(UnetlabError, match="would both be written as a"):
        collect_inputs([images, tmp_path / "other"])


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (["missing.png"], "input .*missing.png not found"),
        (["*.jpg"], "no image matches"),
        (["empty"], "folder .*empty holds no images"),
    ],
)
def test_bad_inputs_are_one_line_errors_with_exit_2(tmp_path, capsys, inputs, message):
    (tmp_path / "empty").mkdir()
    ckpt = checkpoint(tmp_path, [0, 255])
    assert run(ckpt, *[tmp_path / i for i in inputs], "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("unetlab predict: error: ")
    assert re.search(message, err)


def test_one_bad_file_keeps_the_other_outputs(tmp_path, images, capsys):
    (images / "broken.png").write_bytes(b"not a png")
    write_image(images / "five.tif", np.zeros((6, 6, 5), dtype=np.uint8))  # 5 channels cannot become 1
    ckpt = checkpoint(tmp_path, [0, 255])
    assert run(ckpt, images, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "broken.png could not be read" in err and "five.tif has 5 channels but the model takes 1" in err
    assert "2 of 5 images failed" in err and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png", "c.png"]


def test_images_past_pillows_pixel_limit_are_read(tmp_path, images, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # a 37 x 51 image is now a "decompression bomb" to Pillow
    ckpt = checkpoint(tmp_path, [0, 255])
    assert run(ckpt, images / "a.png", "--out", tmp_path / "out") == 0
    assert read_mask(tmp_path / "out" / "a.png").shape == (37, 51)
    assert Image.MAX_IMAGE_PIXELS == 100, "the limit is lifted only while unetlab opens a file"
