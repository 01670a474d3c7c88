"""Image and mask files: formats, bit depths, palettes, and clear errors for unreadable files."""

import numpy as np
import pytest
from PIL import Image

from unetlab import UnetlabError
from unetlab.data.io import _pillow_to_array, read_image, read_mask, write_image


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


def test_alpha_is_dropped_from_rgba_and_grey_alpha_files(tmp_path):
    rgb = np.arange(36, dtype=np.uint8).reshape(3, 4, 3)
    alpha = np.full((3, 4, 1), 7, np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], axis=2), mode="RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(np.concatenate([rgb[..., :1], alpha], axis=2), mode="LA").save(tmp_path / "la.png")
    write_image(tmp_path / "rgba.tif", np.concatenate([rgb, alpha], axis=2))  # photometric RGB + an alpha sample
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "la.png"), rgb[..., 0])
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.tif"), rgb)


def test_four_channel_tiff_without_alpha_keeps_its_channels(tmp_path):
    import tifffile

    channels = np.arange(80, dtype=np.uint16).reshape(4, 5, 4)
    tifffile.imwrite(tmp_path / "x.tif", channels, photometric="minisblack", planarconfig="contig")
    np.testing.assert_array_equal(read_image(tmp_path / "x.tif"), channels)


def test_bilevel_png_reads_as_0_255_image_and_0_1_mask(tmp_path):
    bits = np.array([[0, 1, 1], [1, 0, 0]], bool)
    Image.fromarray(bits).save(tmp_path / "bits.png")
    assert read_image(tmp_path / "bits.png").tolist() == (bits * 255).tolist()
    assert read_mask(tmp_path / "bits.png").tolist() == bits.astype(int).tolist()


def test_pillow_32_bit_grey_in_the_16_bit_range_reads_as_uint16():
    values = np.array([[0, 1000], [40000, 65535]], np.int32)  # what older Pillows give for a 16-bit PNG (mode "I")
    got = _pillow_to_array(Image.fromarray(values, mode="I"), mask=False)
    assert got.dtype == np.uint16 and got.tolist() == values.tolist()
    wide = _pillow_to_array(Image.fromarray(values * 2, mode="I"), mask=False)
    assert wide.dtype == np.int32  # out of 16 bits: left to DataInfo's rule, which refuses it


def test_a_folder_is_not_an_image(tmp_path):
    with pytest.raises(UnetlabError, match="is a folder; pass an image file"):
        read_image(tmp_path)


def test_a_cameras_exif_rotation_is_applied(tmp_path):
    upright = np.zeros((30, 80), np.uint8)
    upright[:, :10] = 255  # a bar on the left, as a viewer shows the photo
    stored = Image.fromarray(np.rot90(upright, 1))  # the sensor's frame: 80 x 30, the bar at the bottom
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    stored.save(tmp_path / "photo.jpg", exif=exif, quality=100)
    image = read_image(tmp_path / "photo.jpg")
    assert image.shape == (30, 80) and image[:, :10].mean() > 200 and image[:, 20:].mean() < 50
