"""Image and mask files: formats, bit depths, palettes, and clear errors for unreadable files."""

import numpy as np
import pytest
from PIL import Image

from unetlab import UnetlabError
from unetlab.data.io import read_image, read_mask, write_image


@pytest.mark.parametrize(
    ("suffix", "array"),
    [
        (".png", np.arange(12, dtype=np.uint8).reshape(3, 4)),
        (".png", (np.arange(12, dtype=np.uint16) * 5000).reshape(3, 4)),
        (".png", np.arange(36, dtype=np.uint8).reshape(3, 4, 3)),
        (".bmp", np.arange(36, dtype=np.uint8).reshape(3, 4, 3)),
        (".tif", (np.arange(36, dtype=np.uint16) * 1000).reshape(3, 4, 3)),
        (".tiff", np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)),
    ],
)
def test_write_then_read_gives_the_same_array(tmp_path, suffix, array):
    path = tmp_path / f"x{suffix}"
    write_image(path, array)
    got = read_image(path)
    assert got.dtype == array.dtype and np.array_equal(got, array)


def test_palette_png_reads_indices_as_mask_and_colours_as_image(tmp_path):
    indices = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    image.save(tmp_path / "p.png")
    assert read_mask(tmp_path / "p.png").tolist() == indices.tolist()
    assert read_image(tmp_path / "p.png")[0, 1].tolist() == [255, 0, 0]


def test_corrupt_file_error_names_the_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(UnetlabError, match="broken.png could not be read as an image"):
        read_image(tmp_path / "broken.png")


def test_tiff_stack_is_refused_with_advice(tmp_path):
    write_image(tmp_path / "stack.tif", np.zeros((5, 8, 9, 20), np.uint8))
    with pytest.raises(UnetlabError, match="one slice per file"):
        read_image(tmp_path / "stack.tif")


def test_sixteen_bit_colour_png_is_refused_with_advice(tmp_path):
    with pytest.raises(UnetlabError, match="write a .tif"):
        write_image(tmp_path / "x.png", np.zeros((2, 2, 3), np.uint16))
