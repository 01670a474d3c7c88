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
"""

from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from unetlab.errors import UnetlabError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
TIFF_SUFFIXES = (".tif", ".tiff")
LOSSY_SUFFIXES = (".jpg", ".jpeg")  # lossy compression changes pixel values: never for masks
ALPHA_SAMPLES = (1, 2)  # TIFF ExtraSamples values meaning associated and unassociated alpha
EXIF_ORIENTATION = 0x0112  # the EXIF tag of a camera's rotation


def is_image_file(path: Path) -> bool:
    """True for a visible file with one of the image suffixes (case-insensitive)."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | Path) -> np.ndarray:
    """The image at `path` as (H, W) or (H, W, C). Raises a `UnetlabError` naming the file when it is unreadable."""
    return _read(Path(path), mask=False)


def read_mask(path: str | Path) -> np.ndarray:
    """The mask at `path`: like `read_image`, but palette PNGs give their palette indices and bilevel ones 0 / 1."""
    return _read(Path(path), mask=True)


def read_palette(path: str | Path) -> list[int] | None:
    """The palette of a palette PNG, [r0, g0, b0, r1, ...] (no pixels are decoded), or None for any other file."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        return None
    try:
        with Image.open(path) as image:
            return image.getpalette() if image.mode == "P" else None
    except (OSError, ValueError, UnidentifiedImageError, SyntaxError):
        return None  # `read_mask` reports unreadable files


def _read(path: Path, mask: bool) -> np.ndarray:
    if path.is_dir():
        raise UnetlabError(f"{path} is a folder; pass an image file")
    if not path.is_file():
        raise UnetlabError(f"{path} not found; check the path")
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            array = _read_tiff(path)
        else:
            with _no_pixel_limit(), Image.open(path) as image:
                if image.getexif().get(EXIF_ORIENTATION, 1) != 1:  # a camera's rotation: as viewers show the image
                    image = ImageOps.exif_transpose(image)
                array = _pillow_to_array(image, mask)
    except UnetlabError:
        raise
    except (OSError, ValueError, UnidentifiedImageError, SyntaxError) as exc:  # what corrupt files raise
        raise UnetlabError(f"{path} could not be read as an image ({exc}); replace or remove the file") from None
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or min(array.shape[:2]) < 1:
        raise UnetlabError(f"{path} has shape {array.shape}; unetlab reads 2-D images, (H, W) or (H, W, C)")
    return array


@contextmanager
def _no_pixel_limit():
    """Lift Pillow's decompression-bomb limit (a warning past 89 Mpx, an error past 179 Mpx) while a file is opened:
    unetlab reads the user's own scans, which can have tens of thousands of px per side."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        array = np.squeeze(tiff.asarray())
        page = tiff.pages[0]
        alpha = sum(sample in ALPHA_SAMPLES for sample in page.extrasamples)  # alpha samples come last
    if array.ndim == 3 and array.shape[0] <= 4 < array.shape[2]:
        array = np.moveaxis(array, 0, -1)  # planar (C, H, W) -> (H, W, C)
    if array.ndim > 3 or (array.ndim == 3 and array.shape[2] > 16):
        raise UnetlabError(
            f"{path} holds a stack of shape {array.shape}; unetlab segments 2-D images, so save one slice per file"
        )
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
