"""Image and mask files: formats, bit depths, palettes, and clear errors for unreadable files."""

import importlib.util
import io
import re
import signal
import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageFile

from unetlab import UnetlabError
from unetlab.data.io import (
    DEFAULT_MAX_IMAGE_BYTES,
    _pillow_to_array,
    max_image_bytes,
    read_image,
    read_mask,
    read_palette,
    set_max_image_bytes,
    write_image,
)


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


# ---------------------------------------------------------------------------------------------------------------
# Damaged, hostile and oversized files: a UnetlabError naming the file, never another exception (issue: hardening)


def tiff_bytes(array, **options) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **options)
    return buffer.getvalue()


def set_tiff_tag(data: bytes, tag: int, value: int) -> bytes:
    """A little-endian classic TIFF with the inline SHORT or LONG `tag` of its first IFD set to `value`."""
    (ifd,) = struct.unpack("<I", data[4:8])
    (count,) = struct.unpack("<H", data[ifd : ifd + 2])
    for at in range(ifd + 2, ifd + 2 + 12 * count, 12):
        if struct.unpack("<H", data[at : at + 2])[0] == tag:
            kind = struct.unpack("<H", data[at + 2 : at + 4])[0]
            packed = struct.pack("<H", value) + b"\0\0" if kind == 3 else struct.pack("<I", value)
            return data[: at + 8] + packed + data[at + 12 :]
    raise AssertionError(f"no tag {tag}")


def png_claiming(width: int, height: int, bit_depth: int = 8, colour_type: int = 0) -> bytes:
    """A PNG whose header (with a valid CRC) claims the given size, followed by a few zero-filled rows."""
    header = b"IHDR" + struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    data = zlib.compress(b"\0" * 1000)

    def chunk(body: bytes) -> bytes:
        return struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))

    return b"\x89PNG\r\n\x1a\n" + chunk(header) + chunk(b"IDAT" + data) + chunk(b"IEND")


GREY = np.arange(300, dtype=np.uint16).reshape(15, 20)
DAMAGED = {  # what each raised before: struct.error, IndexError, zlib.error, lzma.LZMAError, ZeroDivisionError, ...
    "4-byte-tiff.tif": lambda: b"II*\0",
    "8-byte-tiff.tif": lambda: b"II*\0\x08\0\0\0",
    "empty.tif": lambda: b"",
    "empty.png": lambda: b"",
    "truncated.tif": lambda: tiff_bytes(GREY)[:150],
    "deflate-damaged.tif": lambda: (lambda d: d[:8] + bytes(40) + d[48:])(tiff_bytes(GREY, compression="zlib")),
    "lzma-truncated.tif": lambda: (lambda d: d[:-100])(
        tiff_bytes(np.arange(4000, dtype=np.uint32), compression="lzma")
    ),
    "tile-width-0.tif": lambda: set_tiff_tag(tiff_bytes(np.zeros((32, 32), np.uint8), tile=(16, 16)), 322, 0),
    "tiles-missing.tif": lambda: set_tiff_tag(tiff_bytes(np.zeros((32, 32), np.uint8), tile=(16, 16)), 256, 65520),
    "strip-offset-past-the-end.tif": lambda: set_tiff_tag(tiff_bytes(GREY), 273, 2**31),
    "truncated.png": lambda: png_bytes(GREY.astype(np.uint8))[:60],
    "png-header-only.png": lambda: png_bytes(GREY.astype(np.uint8))[:33],
    "truncated.bmp": lambda: png_bytes(GREY.astype(np.uint8), "BMP")[:100],
    "random-after-magic.png": lambda: b"\x89PNG\r\n\x1a\n" + np.random.default_rng(0).bytes(300),
    "random-after-magic.tif": lambda: b"II*\0" + np.random.default_rng(0).bytes(300),
    "truncated.jpg": lambda: png_bytes(GREY.astype(np.uint8), "JPEG")[:200],
    "eps-named.png": lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
}


def png_bytes(array, format="PNG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=format, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_a_damaged_file_is_a_clear_error_naming_it(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(DAMAGED[name]())
    for reader in (read_image, read_mask):
        with pytest.raises(UnetlabError) as caught:
            reader(path)
        assert type(caught.value) is UnetlabError and str(caught.value).startswith(str(path))
        assert "\n" not in str(caught.value)
    assert read_palette(path) is None


@pytest.mark.parametrize(("tag", "value"), [(259, 5), (258, 4), (258, 3)], ids=["lzw", "4-bit", "3-bit"])
def test_a_tiff_that_needs_imagecodecs_says_so(tmp_path, tag, value):
    if importlib.util.find_spec("imagecodecs") is not None:
        pytest.skip("imagecodecs is installed: these files are read")
    path = tmp_path / "x.tif"
    path.write_bytes(set_tiff_tag(tiff_bytes(GREY.astype(np.uint8)), tag, value))
    with pytest.raises(UnetlabError, match=f"{path} is encoded in a way .*pip install imagecodecs"):
        read_image(path)


BOMBS = {  # each asks for far more memory than its size on disk
    "huge.png": lambda: png_claiming(100_000, 100_000),  # 9.3 GiB once decoded, in 100 bytes
    "huge-rgba-16.png": lambda: png_claiming(30_000, 30_000, 16, 6),  # 3.4 GiB (Pillow reads 8 bits a sample)
    "huge.bmp": lambda: (lambda d: d[:18] + struct.pack("<ii", 60_000, 60_000) + d[26:])(
        png_bytes(GREY.astype(np.uint8), "BMP")
    ),
    "huge.jpg": lambda: (lambda d, at: d[: at + 5] + struct.pack(">HH", 65_000, 65_000) + d[at + 9 :])(
        png_bytes(GREY.astype(np.uint8), "JPEG"), png_bytes(GREY.astype(np.uint8), "JPEG").find(b"\xff\xc0")
    ),
    "huge.tif": lambda: set_tiff_tag(set_tiff_tag(tiff_bytes(GREY), 256, 60_000), 257, 60_000),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_a_decompression_bomb_is_refused_from_its_header_before_decoding(tmp_path, monkeypatch, name):
    path = tmp_path / name
    path.write_bytes(BOMBS[name]())

    def decoded(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decoded)
    monkeypatch.setattr(tifffile.TiffFile, "asarray", decoded)
    for reader in (read_image, read_mask):
        with pytest.raises(UnetlabError, match=rf"{re.escape(str(path))} is \d+ x \d+ px .* GiB once decoded"):
            reader(path)
    with pytest.raises(UnetlabError, match="set_max_image_bytes"):
        read_image(path)


def jpeg_claiming(width: int, height: int, **options) -> bytes:
    data = png_bytes(GREY.astype(np.uint8), "JPEG", **options)
    at = data.find(b"\xff\xc0") if b"\xff\xc0" in data else data.find(b"\xff\xc2")
    return data[: at + 5] + struct.pack(">HH", height, width) + data[at + 9 :]


TRUNCATED_BOMBS = {  # within the size limit, but far too small to hold the pixels their headers promise
    "grey.png": lambda: png_claiming(20_000, 20_000),  # 400 MB of pixels, which deflate cannot fit in 100 bytes
    "bilevel.png": lambda: png_claiming(60_000, 30_000, 1, 0),  # 1.8 GB read, 225 MB of bits
    "baseline.jpg": lambda: jpeg_claiming(50_000, 24_958),  # 1.2 GB; took 10 s to decode, twice with its EXIF
    "progressive.jpg": lambda: jpeg_claiming(40_000, 40_000, progressive=True),
    "raw.bmp": lambda: (lambda d: d[:18] + struct.pack("<ii", 20_000, 20_000) + d[26:])(
        png_bytes(GREY.astype(np.uint8), "BMP")
    ),
}


@pytest.mark.parametrize("name", sorted(TRUNCATED_BOMBS))
def test_a_file_too_small_for_its_header_is_refused_before_decoding(tmp_path, monkeypatch, name):
    path = tmp_path / name
    path.write_bytes(TRUNCATED_BOMBS[name]())

    def decoded(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decoded)
    with pytest.raises(UnetlabError, match=rf"{re.escape(str(path))} is truncated or damaged: its header promises"):
        read_image(path)


def test_highly_compressed_files_are_not_taken_for_truncated_ones(tmp_path):
    """Flat images compress the most: a PNG by about 1029 to 1 (deflate's bound: 1032), a JPEG to 2 bits a block."""
    flat = np.zeros((3000, 3000), np.uint8)
    for name, options in [("a.png", {"compress_level": 9}), ("a.jpg", {"quality": 1, "optimize": True})]:
        Image.fromarray(flat).save(tmp_path / name, **options)
        Image.fromarray(flat).save(tmp_path / f"p{name}", progressive=True, **options)
        for path in (tmp_path / name, tmp_path / f"p{name}"):
            assert read_image(path).shape == (3000, 3000)
    Image.fromarray(flat > 0).save(tmp_path / "bits.png", optimize=True)  # 1 bit a pixel
    assert read_mask(tmp_path / "bits.png").shape == (3000, 3000)


def test_the_limit_counts_the_decoded_bytes(tmp_path):
    """The header's count (H x W x channels x bytes per sample) against the array actually read."""
    arrays = {
        "grey.png": np.arange(35, dtype=np.uint8).reshape(5, 7),
        "grey16.png": np.arange(35, dtype=np.uint16).reshape(5, 7) * 1000,
        "rgb.png": np.arange(105, dtype=np.uint8).reshape(5, 7, 3),
        "rgb.bmp": np.arange(105, dtype=np.uint8).reshape(5, 7, 3),
        "float.tif": np.linspace(0, 1, 35, dtype=np.float32).reshape(5, 7),
        "rgb16.tif": np.arange(105, dtype=np.uint16).reshape(5, 7, 3),
    }
    for name, array in arrays.items():
        write_image(tmp_path / name, array)
        previous = set_max_image_bytes(array.nbytes)
        try:
            np.testing.assert_array_equal(read_image(tmp_path / name), array)
            set_max_image_bytes(array.nbytes - 1)
            with pytest.raises(UnetlabError, match=f"{name} is 7 x 5 px"):
                read_image(tmp_path / name)
        finally:
            assert set_max_image_bytes(previous) == array.nbytes - 1
    assert max_image_bytes() == DEFAULT_MAX_IMAGE_BYTES


def test_read_palette_follows_unetlabs_limit_not_pillows(tmp_path, monkeypatch):
    indices = (np.arange(37 * 51) % 3).astype(np.uint8).reshape(37, 51)
    write_image(tmp_path / "p.png", indices, palette=[0, 0, 0, 255, 0, 0, 0, 255, 0])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow's bomb limit, far below the mask (1887 px)
    assert read_palette(tmp_path / "p.png")[:9] == [0, 0, 0, 255, 0, 0, 0, 255, 0]
    monkeypatch.setattr("unetlab.data.io._max_image_bytes", 1000)  # unetlab's, below the mask's 1887 bytes
    with pytest.raises(UnetlabError, match="p.png is 51 x 37 px x 1 channel of 8 bits"):
        read_palette(tmp_path / "p.png")
    with pytest.raises(UnetlabError, match="p.png is 51 x 37 px"):
        read_mask(tmp_path / "p.png")


@pytest.mark.parametrize("limit", [0, -1, 1.5, "2G", True, None])
def test_the_image_limit_must_be_a_positive_number_of_bytes(limit):
    with pytest.raises(UnetlabError, match="the image size limit .* is not valid; give a positive number of bytes"):
        set_max_image_bytes(limit)
    assert max_image_bytes() == DEFAULT_MAX_IMAGE_BYTES


@pytest.mark.slow
def test_a_14000_px_palette_mask_is_read(tmp_path):
    indices = np.zeros((14_000, 14_000), np.uint8)
    indices[::7, ::5] = 1
    write_image(tmp_path / "big.png", indices, palette=[0, 0, 0, 255, 0, 0])
    assert read_palette(tmp_path / "big.png")[:6] == [0, 0, 0, 255, 0, 0]
    mask = read_mask(tmp_path / "big.png")
    assert mask.shape == (14_000, 14_000) and int(mask.sum()) == 2000 * 2800


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([0.0, 0.5], "values that are not whole numbers, such as 0.5"),
        ([0.0, -3.7], "such as -3.7"),
        ([0.0, np.nan], "NaN or infinite values"),
        ([0.0, np.inf], "NaN or infinite values"),
        ([0.0, 1e12], "values from 0 to 1e\\+12"),
    ],
)
def test_a_float_mask_of_fractions_or_nan_is_refused_never_truncated(tmp_path, values, message):
    path = tmp_path / "m.tif"
    write_image(path, np.array(values * 6, np.float32).reshape(3, 4))
    with pytest.raises(UnetlabError, match=f"{re.escape(str(path))} (has|holds) .*{message}"):
        read_mask(path)


def test_a_float_mask_of_whole_numbers_is_read_as_integers(tmp_path):
    values = np.array([[0, 255, -3], [7, 0, 65536]], np.float32)
    write_image(tmp_path / "m.tif", values)
    mask = read_mask(tmp_path / "m.tif")
    assert mask.dtype == np.int32 and mask.tolist() == values.astype(int).tolist()


class Hung(BaseException):
    """Raised by an alarm: a BaseException, which the `except Exception` of a library cannot swallow."""


@pytest.mark.parametrize("bigtiff", [False, True])
def test_a_tiff_whose_chain_of_images_loops_is_refused_not_followed_forever(tmp_path, bigtiff):
    data = bytearray(tiff_bytes(GREY, bigtiff=bigtiff, metadata=None))  # no shape stored: tifffile walks the pages
    count, entry, link = ("<Q", 20, "<Q") if bigtiff else ("<H", 12, "<I")
    (ifd,) = struct.unpack(link, data[8:16] if bigtiff else data[4:8])
    (entries,) = struct.unpack(count, data[ifd : ifd + struct.calcsize(count)])
    at = ifd + struct.calcsize(count) + entry * entries  # where the first IFD names the next one
    data[at : at + struct.calcsize(link)] = struct.pack(link, len(data))
    # A second IFD, empty, that names itself: tifffile followed it until memory ran out (found by scripts/fuzz.py).
    data += struct.pack(count, 0) + struct.pack(link, len(data))
    path = tmp_path / "loop.tif"
    path.write_bytes(bytes(data))

    def hung(*args):
        raise Hung()

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)  # a regression hangs: fail instead
    try:
        with pytest.raises(UnetlabError, match=f"{path} is damaged: its chain of images loops back on itself"):
            read_image(path)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
