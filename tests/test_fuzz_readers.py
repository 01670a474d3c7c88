"""Property-based tests of the image readers: whatever bytes a file holds, `read_image` and `read_mask` give a 2-D
image or a one-line `UnetlabError` naming the file, and `read_palette` a palette, None or such an error; never any
other exception. The files are valid small files of every format, damaged by hypothesis: random bytes after their
magic number, truncated, bytes overwritten, random header fields (PNG, TIFF, BMP, JPEG). `scripts/fuzz.py` runs
thousands of such cases; these run a few dozen each, in a few seconds.
"""

import functools
import io
import struct
import zlib

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from unetlab import UnetlabError
from unetlab.data.io import read_image, read_mask, read_palette, set_max_image_bytes, write_image

# No deadline: a busy machine must not fail a test that is slow only there. The file is one path, rewritten by
# each example, in a folder made once per test.
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@functools.cache
def samples() -> dict[str, tuple[str, bytes]]:
    """Valid small files of every kind the readers take: name -> (suffix, bytes)."""
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (13, 17), dtype=np.uint8)
    rgb = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)
    files = {}

    def pillow(name, image, format, suffix):
        buffer = io.BytesIO()
        image.save(buffer, format=format)
        files[name] = (suffix, buffer.getvalue())

    def tiff(name, array, **options):
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, array, **options)
        files[name] = (".tif", buffer.getvalue())

    pillow("png-grey", Image.fromarray(grey), "PNG", ".png")
    pillow("png-16", Image.fromarray(grey.astype(np.uint16) * 257), "PNG", ".png")
    pillow("png-rgba", Image.fromarray(np.dstack([rgb, grey])), "PNG", ".png")
    palette = Image.fromarray(grey % 4).convert("P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    pillow("png-palette", palette, "PNG", ".png")
    pillow("png-bilevel", Image.fromarray(grey > 127), "PNG", ".png")
    pillow("bmp", Image.fromarray(rgb), "BMP", ".bmp")
    pillow("jpeg", Image.fromarray(rgb), "JPEG", ".jpg")
    tiff("tiff-16", grey.astype(np.uint16))
    tiff("tiff-float", grey.astype(np.float32) / 255)
    tiff("tiff-rgb-planar", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    tiff("tiff-tiled", np.zeros((32, 32), np.uint8), tile=(16, 16))
    tiff("tiff-deflate", grey, compression="zlib")
    tiff("tiff-lzma", grey.astype(np.uint16), compression="lzma")
    tiff("bigtiff-big-endian", grey, bigtiff=True, byteorder=">")
    return files


SAMPLE = st.sampled_from(sorted(samples()))
MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".tif": b"II*\0", ".bmp": b"BM", ".jpg": b"\xff\xd8\xff"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The folder of the damaged files; meanwhile a bomb limit of 64 MiB keeps the decoding of the sizes that random
    headers ask for quick (`scripts/fuzz.py` runs with the default limit)."""
    previous = set_max_image_bytes(64 * 2**20)
    yield tmp_path_factory.mktemp("fuzz")
    set_max_image_bytes(previous)


def check_readers(path, data: bytes) -> None:
    """Write `data` to `path` and read it three ways: a 2-D image, or a one-line UnetlabError naming the file."""
    path.write_bytes(data)
    for reader in (read_image, read_mask):
        try:
            array = reader(path)
        except UnetlabError as exc:
            assert type(exc) is UnetlabError and str(exc).startswith(str(path)) and "\n" not in str(exc), str(exc)
        else:
            assert isinstance(array, np.ndarray) and array.ndim in (2, 3) and min(array.shape[:2]) >= 1
    try:
        palette = read_palette(path)
    except UnetlabError as exc:
        assert str(exc).startswith(str(path))
    else:
        assert palette is None or (isinstance(palette, list) and len(palette) % 3 == 0)


@FUZZ
@given(suffix=st.sampled_from(sorted(MAGIC)), tail=st.binary(max_size=600))
def test_random_bytes_after_a_magic_number(folder, suffix, tail):
    check_readers(folder / f"case{suffix}", MAGIC[suffix] + tail)


@FUZZ
@given(name=SAMPLE, data=st.data())
def test_truncated_files(folder, name, data):
    suffix, content = samples()[name]
    cut = data.draw(st.integers(0, len(content) - 1), label="cut")
    check_readers(folder / f"case{suffix}", content[:cut])


@FUZZ
@given(name=SAMPLE, data=st.data())
def test_bytes_overwritten(folder, name, data):
    suffix, content = samples()[name]
    changes = data.draw(
        st.lists(st.tuples(st.integers(0, len(content) - 1), st.integers(0, 255)), min_size=1, max_size=8)
    )
    damaged = bytearray(content)
    for at, value in changes:
        damaged[at] = value
    check_readers(folder / f"case{suffix}", bytes(damaged))


SIDE = st.one_of(st.integers(0, 70), st.sampled_from([65535, 100_000, 2**31 - 1]), st.integers(0, 2**32 - 1))


@FUZZ
@given(
    name=st.sampled_from([n for n in sorted(samples()) if n.startswith("png")]),
    width=SIDE,
    height=SIDE,
    depth=st.sampled_from([0, 1, 2, 4, 8, 16, 3]),
    colour=st.sampled_from([0, 1, 2, 3, 4, 6, 7]),
    interlace=st.integers(0, 2),
)
def test_random_png_headers(folder, name, width, height, depth, colour, interlace):
    content = samples()[name][1]
    header = b"IHDR" + struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    check_readers(
        folder / "case.png",
        content[:8] + struct.pack(">I", 13) + header + struct.pack(">I", zlib.crc32(header)) + content[33:],
    )


@FUZZ
@given(
    name=st.sampled_from([n for n in sorted(samples()) if n.startswith("tiff")]),
    fields=st.lists(st.tuples(st.integers(0, 20), st.integers(0, 2**32 - 1)), min_size=1, max_size=4),
)
def test_random_tiff_tags(folder, name, fields):
    content = bytearray(samples()[name][1])
    (ifd,) = struct.unpack("<I", content[4:8])
    (count,) = struct.unpack("<H", content[ifd : ifd + 2])
    for index, value in fields:
        at = ifd + 2 + 12 * (index % count)
        kind = struct.unpack("<H", content[at + 2 : at + 4])[0]
        if kind == 3:  # SHORT
            content[at + 8 : at + 10] = struct.pack("<H", value % 65536)
        elif kind == 4:  # LONG
            content[at + 8 : at + 12] = struct.pack("<I", value)
    check_readers(folder / "case.tif", bytes(content))


@FUZZ
@given(kind=st.sampled_from(["bmp", "jpeg"]), width=SIDE, height=SIDE)
def test_random_bmp_and_jpeg_sizes(folder, kind, width, height):
    suffix, content = samples()[kind]
    if kind == "bmp":
        sized = content[:18] + struct.pack("<ii", width % 2**31, height % 2**31) + content[26:]
    else:
        at = content.find(b"\xff\xc0")
        sized = content[: at + 5] + struct.pack(">HH", height % 65536, width % 65536) + content[at + 9 :]
    check_readers(folder / f"case{suffix}", sized)


@FUZZ
@given(
    array=hnp.arrays(
        st.sampled_from([np.uint8, np.uint16, np.float32]),
        st.tuples(st.integers(1, 12), st.integers(1, 12)).flatmap(lambda hw: st.sampled_from([hw, (*hw, 3)])),
        elements={"allow_nan": False, "allow_infinity": False, "min_value": 0, "max_value": 200},
    ),
    slack=st.integers(-3, 3),
)
def test_the_size_limit_is_the_decoded_arrays_bytes(folder, array, slack):
    """A valid file reads exactly when its array's bytes are within the limit, whatever its format."""
    suffix = ".tif" if array.dtype != np.uint8 or slack % 2 else ".png"
    if array.dtype == np.uint16 and array.ndim == 2 and slack == 0:
        suffix = ".png"  # a 16-bit grey PNG
    write_image(folder / f"case{suffix}", array)
    previous = set_max_image_bytes(max(array.nbytes + slack, 1))  # restored to the folder fixture's below
    try:
        if array.nbytes + slack >= array.nbytes:
            np.testing.assert_array_equal(read_image(folder / f"case{suffix}"), array)
        else:
            with pytest.raises(UnetlabError, match="once decoded, more than the"):
                read_image(folder / f"case{suffix}")
    finally:
        set_max_image_bytes(previous)
