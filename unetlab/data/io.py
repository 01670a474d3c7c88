"""Reading and writing images and masks: PNG, JPEG, BMP through Pillow; TIFF through tifffile.

Arrays are (H, W) for single-channel images and (H, W, C) otherwise, in the dtype the file stores (uint8,
uint16, float32, ...). Palette PNGs read as colours with `read_image` and as palette indices with `read_mask`,
since a palette mask's indices are its class values.
"""

from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from unetlab.errors import UnetlabError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
TIFF_SUFFIXES = (".tif", ".tiff")


def is_image_file(path: Path) -> bool:
    """True for a visible file with one of the image suffixes (case-insensitive)."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | Path) -> np.ndarray:
    """The image at `path` as (H, W) or (H, W, C). Raises a `UnetlabError` naming the file when it is unreadable."""
    return _read(Path(path), keep_palette=False)


def read_mask(path: str | Path) -> np.ndarray:
    """The mask at `path`: like `read_image`, but palette PNGs give their palette indices."""
    return _read(Path(path), keep_palette=True)


def _read(path: Path, keep_palette: bool) -> np.ndarray:
    if not path.is_file():
        raise UnetlabError(f"{path} not found; check the path")
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            array = _read_tiff(path)
        else:
            with _no_pixel_limit(), Image.open(path) as image:
                array = _pillow_to_array(image, keep_palette)
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

    array = np.squeeze(tifffile.imread(path))
    if array.ndim == 3 and array.shape[0] <= 4 < array.shape[2]:
        array = np.moveaxis(array, 0, -1)  # planar (C, H, W) -> (H, W, C)
    if array.ndim > 3 or (array.ndim == 3 and array.shape[2] > 16):
        raise UnetlabError(
            f"{path} holds a stack of shape {array.shape}; unetlab segments 2-D images, so save one slice per file"
        )
    return array


def _pillow_to_array(image: Image.Image, keep_palette: bool) -> np.ndarray:
    image.load()
    if image.mode == "P":
        return (
            np.asarray(image)
            if keep_palette
            else np.asarray(image.convert("RGBA" if "transparency" in image.info else "RGB"))
        )
    if image.mode == "1":
        return np.asarray(image, dtype=np.uint8)  # bilevel: 0 / 1
    if image.mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)
    if image.mode in ("I", "F", "L", "LA", "RGB", "RGBA"):
        return np.asarray(image)
    return np.asarray(image.convert("RGB"))  # CMYK, YCbCr, ...


def write_image(path: str | Path, array: np.ndarray) -> None:
    """Write (H, W) or (H, W, 3|4) `array`: PNG/BMP/JPEG for 8-bit (and 16-bit grey PNG), TIFF for anything else.

    Raises a `UnetlabError` when the format cannot hold the array (e.g. 16-bit colour as PNG): use .tif.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        tifffile.imwrite(path, array, photometric="rgb" if array.ndim == 3 and array.shape[2] in (3, 4) else None)
        return
    if array.dtype == np.uint8 or (array.dtype == np.uint16 and array.ndim == 2 and path.suffix.lower() == ".png"):
        Image.fromarray(array).save(path)
        return
    raise UnetlabError(f"{path}: a {array.dtype} array of shape {array.shape} does not fit this format; write a .tif")
