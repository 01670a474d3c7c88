"""Reading and writing images and masks: PNG, JPEG, BMP through Pillow; TIFF through tifffile.

Arrays are (H, W) for single-channel images and (H, W, C) otherwise, in the dtype the file stores (uint8,
uint16, float32, ...), with four exceptions that keep the pixel values what the file means:
- alpha is dropped: RGBA -> RGB, grey + alpha -> grey (Pillow's RGBA/LA modes, and TIFF extra samples marked as
  alpha), so that a transparent PNG reads like its opaque twin and the model never sees a transparency channel;
- a 16-bit grey PNG that Pillow hands over as 32-bit integers (mode "I") is read back as uint16;
- bilevel (1-bit) images read as 0 / 255 uint8, like any 8-bit black-and-white image; as masks they stay 0 / 1;
- an EXIF orientation (a camera's rotation, in JPEGs) is applied, so arrays are upright as image viewers show them.
Palette PNGs read as colours with `read_image` and as palette indices with `read_mask`, since a palette mask's
indices are its class values.

Damaged and hostile files: every reader raises a `UnetlabError` naming the file, whatever the decoder raised
(`CORRUPT_FILE_ERRORS`; `scripts/fuzz.py` feeds them thousands of damaged files). One decompression-bomb policy
holds for all of them: the bytes an image takes once decoded are computed from its header, before any pixel is
decoded, and refused past `max_image_bytes()` (2 GiB unless `set_max_image_bytes` says otherwise; Pillow's own pixel
limit is lifted); a PNG, JPEG or BMP too small to hold the pixels its header promises, a TIFF that lists fewer
strips or tiles than its size needs, and one whose chain of images loops, are refused as damaged without decoding
them either.
"""

import lzma
import struct
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from unetlab.errors import UnetlabError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
TIFF_SUFFIXES = (".tif", ".tiff")
LOSSY_SUFFIXES = (".jpg", ".jpeg")  # lossy compression changes pixel values: never for masks
ALPHA_SAMPLES = (1, 2)  # TIFF ExtraSamples values meaning associated and unassociated alpha
EXIF_ORIENTATION = 0x0112  # the EXIF tag of a camera's rotation
# The formats Pillow may take a file for: those of the suffixes above (its JPEG reader also opens the MPO JPEGs of
# some cameras), never any other, e.g. EPS, which Pillow hands to Ghostscript.
PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "TIFF")
# The decompression-bomb limit: the most bytes an image may take once decoded (H x W x channels x bytes per
# sample), checked from the file's header before any pixel is decoded. 2 GiB reads a 14000 x 14000 palette mask
# (0.2 GB), a 14000 x 14000 16-bit RGB image (1.2 GB) or a 40000 x 40000 8-bit scan (1.6 GB), and refuses what
# asks for more, such as the 2.9 and 6.4 GB of two small PNGs: after reading, an image becomes float32 and a mask
# class indices, so the decoded size comes to memory several times over. Raise it for larger genuine images.
DEFAULT_MAX_IMAGE_BYTES = 2 * 2**30
# The most a file's compression can shrink pixels (a smaller file cannot hold what its header promises: it is
# truncated or forged, and decoding it would only fill memory with made-up pixels). Deflate (PNG) codes a 258-byte
# match in no less than 2 bits: 1032 to 1. A Huffman-coded JPEG spends at least 1 bit on every 8 x 8 block (its DC
# code; progressive files too, whose AC scans can skip blocks).
DEFLATE_MAX_RATIO = 1032
JPEG_HUFFMAN_SOFS = (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7)  # start-of-frame markers of Huffman-coded JPEGs
RAISE_LIMIT = (
    "if the image is genuine, raise the limit: --max-image-gib on the command line, or "
    "unetlab.data.io.set_max_image_bytes from Python"
)
# What Pillow, tifffile and their codecs raise for damaged or hostile files (the fuzzing in scripts/fuzz.py found
# each): broken structure (OSError, ValueError, SyntaxError, struct.error, EOFError), compressed data that does not
# decompress (zlib.error, lzma.LZMAError), header fields that make no sense (TypeError, IndexError, KeyError,
# ZeroDivisionError, OverflowError), codecs that need another package (NotImplementedError) and Pillow's own bomb
# check (DecompressionBombError).
CORRUPT_FILE_ERRORS = (
    NotImplementedError,
    OSError,
    ValueError,
    SyntaxError,
    struct.error,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    TypeError,
    LookupError,
    ArithmeticError,
    Image.DecompressionBombError,
)

_max_image_bytes = DEFAULT_MAX_IMAGE_BYTES


def set_max_image_bytes(limit: int) -> int:
    """Set the decompression-bomb limit of every reader: the most bytes an image may take once decoded.

    Returns:
        The previous limit, to restore it.

    Raises:
        UnetlabError: when `limit` is not a positive integer.
    """
    global _max_image_bytes
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise UnetlabError(f"the image size limit {limit!r} is not valid; give a positive number of bytes")
    previous, _max_image_bytes = _max_image_bytes, limit
    return previous


def max_image_bytes() -> int:
    """The decompression-bomb limit in effect, in bytes (see `set_max_image_bytes`)."""
    return _max_image_bytes


def is_image_file(path: Path) -> bool:
    """True for a visible file with one of the image suffixes (case-insensitive)."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | Path) -> np.ndarray:
    """The image at `path` as (H, W) or (H, W, C).

    Raises:
        UnetlabError: naming the file, for a missing, damaged or unreadable file, one that would take more than
            `max_image_bytes()` once decoded (checked before decoding), or a stack of images.
    """
    return _read(Path(path), mask=False)


def read_mask(path: str | Path) -> np.ndarray:
    """The mask at `path`: like `read_image`, but palette PNGs give their palette indices and bilevel ones 0 / 1.

    Masks hold whole-number class values: a float mask (TIFF) is refused when it holds NaN, infinities or values
    that are not whole numbers, and otherwise read as int32 (`unetlab.data.info.integer_mask`).
    """
    from unetlab.data.info import integer_mask

    path = Path(path)
    return integer_mask(_read(path, mask=True), str(path))


def read_palette(path: str | Path) -> list[int] | None:
    """The palette of a palette PNG, [r0, g0, b0, r1, ...] (no pixels are decoded), or None for any other file and
    for a file that cannot be read (`read_mask` reports those).

    Raises:
        UnetlabError: for an image past the decompression-bomb limit, as `read_mask` does.
    """
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        return None
    try:
        with _no_pixel_limit(), Image.open(path, formats=PILLOW_FORMATS) as image:
            if image.mode != "P":
                return None
            _check_decoded_size(path, image.size, 1, 1)
            return image.getpalette()
    except UnetlabError:
        raise
    except (MemoryError, *CORRUPT_FILE_ERRORS):
        return None


def _read(path: Path, mask: bool) -> np.ndarray:
    if path.is_dir():
        raise UnetlabError(f"{path} is a folder; pass an image file")
    if not path.is_file():
        raise UnetlabError(f"{path} not found; check the path")
    try:
        array = _read_tiff(path) if path.suffix.lower() in TIFF_SUFFIXES else _read_pillow(path, mask)
    except UnetlabError:
        raise
    except MemoryError:
        raise UnetlabError(
            f"{path} could not be read: decoding it needs more memory than is free; free some memory, or split "
            "the image into tiles"
        ) from None
    except CORRUPT_FILE_ERRORS as exc:  # what damaged files raise
        if "imagecodecs" in str(exc):  # tifffile decodes LZW, JPEG, packbits, odd bit depths only with imagecodecs
            raise UnetlabError(
                f"{path} is encoded in a way that tifffile reads only with the imagecodecs package ({_reason(exc)}); "
                "install it (pip install imagecodecs), or save the file uncompressed (or deflate) with 8 or 16 bits "
                "per sample"
            ) from None
        raise UnetlabError(
            f"{path} could not be read as an image ({_reason(exc)}); replace or remove the file"
        ) from None
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or min(array.shape[:2]) < 1:
        raise UnetlabError(f"{path} has shape {array.shape}; unetlab reads 2-D images, (H, W) or (H, W, C)")
    return array


def _reason(exc: BaseException) -> str:
    """A short, one-line account of a decoder's exception."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_decoded_size(path: Path, size: tuple[int, int], channels: int, sample_bytes: int) -> None:
    """Refuse an image of `size` = (width, height) that would take more than `max_image_bytes()` once decoded."""
    width, height = size
    decoded = width * height * channels * sample_bytes
    if decoded > _max_image_bytes:
        layers = f"{channels} channels" if channels > 1 else "1 channel"
        raise UnetlabError(
            f"{path} is {width} x {height} px x {layers} of {8 * sample_bytes} bits, {decoded / 2**30:.1f} GiB once "
            f"decoded, more than the {_max_image_bytes / 2**30:.3g} GiB that unetlab reads (a guard against "
            f"decompression bombs); {RAISE_LIMIT}"
        )


def _check_holds_pixels(path: Path, image: Image.Image) -> None:
    """Refuse a PNG, JPEG or uncompressed BMP too small to hold the pixels its header promises (before decoding)."""
    width, height = image.size
    if image.format == "PNG":
        with open(path, "rb") as f:
            f.seek(24)  # the IHDR chunk's bit depth and colour type
            depth, colour = f.read(2)
        bits = depth * {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 1) * width
        needed = height * (1 + (bits + 7) // 8) // DEFLATE_MAX_RATIO  # each row: a filter byte, then its samples
    elif image.format == "JPEG" and _jpeg_frame(path) in JPEG_HUFFMAN_SOFS:
        needed = -(-width // 8) * -(-height // 8) // 8
    elif image.format == "BMP" and image.tile and image.tile[0][0] == "raw":  # (codec, extents, offset, args)
        needed = image.tile[0][2] + image.tile[0][3][1] * height  # the header, then rows of `stride` bytes
    else:
        return
    size = path.stat().st_size
    if size < needed:
        raise UnetlabError(
            f"{path} is truncated or damaged: its header promises {width} x {height} px, which take at least "
            f"{needed:,} bytes, but the file has {size:,}; replace or remove the file"
        )


def _jpeg_frame(path: Path) -> int | None:
    """The start-of-frame marker of a JPEG (0xC0 baseline, 0xC2 progressive, 0xC9 arithmetic, ...), None if none."""
    with open(path, "rb") as f:
        f.seek(2)  # after the start-of-image marker
        while (head := f.read(4))[:1] == b"\xff" and len(head) == 4:  # a segment: marker, then its length
            marker, length = head[1], struct.unpack(">H", head[2:])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # not DHT, JPG or DAC
                return marker
            if marker == 0xDA:  # the scan starts: no frame before it
                return None
            f.seek(length - 2, 1)
    return None


@contextmanager
def _no_pixel_limit():
    """Lift Pillow's own decompression-bomb limit (a warning past 89 Mpx, an error past 179 Mpx) while a file is
    opened: `_check_decoded_size` is unetlab's, the same for every reader, and allows scans of tens of thousands of
    px per side."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _read_pillow(path: Path, mask: bool) -> np.ndarray:
    with _no_pixel_limit(), Image.open(path, formats=PILLOW_FORMATS) as image:
        # The header gives size and mode without decoding: refuse a bomb before any pixel is decoded.
        bands = 3 if image.mode == "P" and not mask else len(image.getbands())
        sample = 4 if image.mode in ("I", "F") else 2 if image.mode.startswith("I;16") else 1
        _check_decoded_size(path, image.size, bands, sample)
        _check_holds_pixels(path, image)
        if image.getexif().get(EXIF_ORIENTATION, 1) != 1:  # a camera's rotation: as viewers show the image
            image = ImageOps.exif_transpose(image)
        return _pillow_to_array(image, mask)


def _check_tiff_chain(path: Path) -> None:
    """Refuse a TIFF whose chain of images (IFDs, each naming the next) loops: tifffile would follow it forever."""
    with open(path, "rb") as f:
        head = f.read(16)
        order = {b"II": "<", b"MM": ">"}.get(head[:2])
        if order is None or len(head) < 8:
            return  # not a TIFF: tifffile says so
        big = struct.unpack(order + "H", head[2:4])[0] == 43  # BigTIFF: 8-byte counts and offsets
        count, entry, link = ("Q", 20, "Q") if big else ("H", 12, "I")
        offset = struct.unpack(order + link, head[8:16] if big else head[4:8])[0]
        seen = set()
        while offset:
            if offset in seen:
                raise UnetlabError(f"{path} is damaged: its chain of images loops back on itself; replace or remove it")
            seen.add(offset)
            f.seek(offset)
            raw = f.read(struct.calcsize(count))
            if len(raw) < struct.calcsize(count):
                return  # past the end: tifffile reports the damage
            f.seek(offset + len(raw) + entry * struct.unpack(order + count, raw)[0])
            raw = f.read(struct.calcsize(link))
            offset = struct.unpack(order + link, raw)[0] if len(raw) == struct.calcsize(link) else 0


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    _check_tiff_chain(path)
    with tifffile.TiffFile(path) as tiff:
        series = tiff.series[0]  # what `asarray` reads: the first image, or stack of images, of the file
        # Length-1 axes are dropped (a stack of one page), but never the rows and columns: a 1 x 1 px image stays 2-D.
        axes = series.axes if "Y" in series.axes and "X" in series.axes else "?" * len(series.shape)
        kept = [(int(n), axis) for n, axis in zip(series.shape, axes) if n != 1 or axis in "YX"]
        shape, axes = tuple(n for n, _ in kept), "".join(axis for _, axis in kept)
        planar = len(shape) == 3 and (axes == "SYX" or shape[0] <= 4 < shape[2])  # (C, H, W), read as (H, W, C)
        size = (*shape[1:], shape[0]) if planar else shape
        if len(size) > 3 or (len(size) == 3 and size[2] > 16):
            raise UnetlabError(
                f"{path} holds a stack of shape {size}; unetlab segments 2-D images, so save one slice per file"
            )
        height, width, channels = (*(1,) * (2 - min(len(size), 2)), *size, 1)[:3]  # () and (W,) as 1 x W
        _check_decoded_size(path, (width, height), channels, np.dtype(series.dtype).itemsize)
        page = tiff.pages[0]
        blocks = int(np.prod(page.chunked))  # the strips or tiles its size asks for
        if len(page.dataoffsets) < blocks:  # tifffile would fill in the rest, one block at a time (minutes)
            raise UnetlabError(
                f"{path} is damaged: its size asks for {blocks} strips or tiles of pixels but it lists "
                f"{len(page.dataoffsets)}; replace or remove the file"
            )
        array = tiff.asarray().reshape(shape)
        alpha = sum(sample in ALPHA_SAMPLES for sample in page.extrasamples)  # alpha samples come last
    if planar:
        array = np.moveaxis(array, 0, -1)  # (C, H, W) -> (H, W, C)
    if alpha and array.ndim == 3 and array.shape[2] == page.samplesperpixel > alpha:
        array = array[..., : array.shape[2] - alpha]  # (H, W, C - alpha)
    return array


def _pillow_to_array(image: Image.Image, mask: bool) -> np.ndarray:
    image.load()
    if image.mode == "P":
        return np.asarray(image) if mask else np.asarray(image.convert("RGB"))  # indices, or colours without alpha
    if image.mode == "1":
        bilevel = np.asarray(image, dtype=np.uint8)  # 0 / 1
        return bilevel if mask else bilevel * np.uint8(255)
    if image.mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)
    if image.mode == "I":  # 32-bit integers: how some Pillow versions hand over a 16-bit grey PNG
        array = np.asarray(image)
        return array.astype(np.uint16) if 0 <= array.min(initial=0) and array.max(initial=0) <= 65535 else array
    if image.mode in ("LA", "RGBA"):
        return np.asarray(image)[..., :-1]  # alpha dropped: (H, W, 1) grey or (H, W, 3) RGB
    if image.mode in ("F", "L", "RGB"):
        return np.asarray(image)
    return np.asarray(image.convert("RGB"))  # CMYK, YCbCr, PA, premultiplied alpha, ...


def write_image(path: str | Path, array: np.ndarray, palette: list[int] | None = None) -> None:
    """Write (H, W) or (H, W, 3|4) `array`: PNG/BMP/JPEG for 8-bit (and 16-bit grey PNG), TIFF for anything else.

    With a `palette` ([r0, g0, b0, r1, ...]), an 8-bit (H, W) array is written as a palette PNG of those indices.
    Raises a `UnetlabError` when the format cannot hold the array (e.g. 16-bit colour as PNG): use .tif.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        tifffile.imwrite(path, array, photometric="rgb" if array.ndim == 3 and array.shape[2] in (3, 4) else None)
        return
    if array.dtype == np.uint8 or (array.dtype == np.uint16 and array.ndim == 2 and path.suffix.lower() == ".png"):
        image = Image.fromarray(array)
        if palette is not None and array.dtype == np.uint8 and array.ndim == 2:
            image.putpalette(palette)  # mode L -> P: the values become palette indices
        image.save(path)
        return
    raise UnetlabError(f"{path}: a {array.dtype} array of shape {array.shape} does not fit this format; write a .tif")


def write_planes(path: str | Path, planes: np.ndarray) -> None:
    """Write (K, H, W) `planes` as a TIFF of K separate channels (planar, min-is-black, no alpha), which viewers show
    as K grey channels and never as colours or transparency; `tifffile.imread` gives them back as (K, H, W)."""
    import tifffile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if len(planes) == 1:
        tifffile.imwrite(path, planes[0], photometric="minisblack")  # (H, W): one plane
    else:
        tifffile.imwrite(path, planes, photometric="minisblack", planarconfig="separate")


def read_text(path: Path, what: str, example: str) -> str:
    """The UTF-8 text of the file `path`, which the user gave as `what` (e.g. "config file").

    Raises:
        UnetlabError: naming `what` and `path`, for a folder, a missing or unreadable file, or text that is not
            UTF-8; `example` is the kind of file to pass instead.
    """
    if path.is_dir():
        raise UnetlabError(f"{what} {path} is a folder; pass {example}")
    if not path.is_file():
        raise UnetlabError(f"{what} {path} not found; pass {example}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UnetlabError(f"{what} {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise UnetlabError(f"{what} {path} cannot be read ({exc.strerror})") from None
