"""Datasets on disk: folder layouts, image/mask pairing, and one scan that reads every pair and records what
`build_datasets` and `unetlab data check` need (sizes, channels, mask values, problems).

Layouts, under a dataset folder DIR (`images` and `masks` are the default sub-folder names; any names, or
absolute paths, can be given instead):
- flat: DIR/images + DIR/masks, one split that `build_datasets` divides into training and validation;
- split: DIR/<split>/images + DIR/<split>/masks, with <split> in train|training, val|valid|validation, test.
A mask pairs with the image of the same file stem; the stem may carry a `_mask` suffix ("cell7.tif" <->
"cell7_mask.png"). Hidden files, sub-folders and files that are not images (by suffix) are skipped.

Mask values: a single-channel mask holds one value per pixel (0/255, 0/1, class indices, palette indices). An
RGB(A) mask whose three colour channels are equal counts as single-channel; otherwise its (r, g, b) colours are the
values, and then every mask of the dataset is read as colours (grey value v = colour (v, v, v)). JPEG masks are
refused: lossy compression invents values along every edge.

Channels: files lose their alpha when read (`unetlab.data.io`), so a dataset's channel counts are colour channels;
grey and RGB images mix as RGB (`common_channels`).
"""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unetlab.data.info import mask_value, pack_values, unit_range, unpack_value
from unetlab.data.io import IMAGE_SUFFIXES, LOSSY_SUFFIXES, is_image_file, read_image, read_mask, read_palette
from unetlab.errors import UnetlabError, plural

SPLITS = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test",)}
MASK_SUFFIX = "_mask"
MAX_CLASSES = 256  # more distinct mask values than this means the "mask" is not a label image


def find_layout(root: str | Path, image_dir: str = "images", mask_dir: str = "masks") -> dict[str, tuple[Path, Path]]:
    """The image and mask folders of each split under `root`.

    Returns:
        {"all": (images, masks)} for the flat layout, or {"train": ..., "val": ..., "test": ...} (the splits
        present) for the split layout.

    Raises:
        UnetlabError: `root` is missing or has neither layout.
    """
    root = Path(root)
    if root.is_file():
        raise UnetlabError(f"{root} is a file; pass the dataset folder, which holds {image_dir}/ and {mask_dir}/")
    if not root.is_dir():
        raise UnetlabError(f"dataset folder {root} not found; pass a folder holding {image_dir}/ and {mask_dir}/")
    if (root / image_dir).is_dir():
        return {"all": (root / image_dir, root / mask_dir)}
    layout = {}
    for split, names in SPLITS.items():
        for name in names:
            if (root / name / image_dir).is_dir():
                layout[split] = (root / name / image_dir, root / name / mask_dir)
                break
    if not layout:
        raise UnetlabError(
            f"{root} has no {image_dir}/ folder and no train/{image_dir}/ (or val/, test/) folders; lay the dataset "
            f"out as {root}/{image_dir} + {root}/{mask_dir}, or give the image and mask folders"
        )
    return layout


def pair_files(image_dir: Path, mask_dir: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Pairs (image, mask) matched by stem, sorted by image name, and the problems found (each a sentence)."""
    problems = []
    images = _by_stem(image_dir, "", problems)
    masks = _by_stem(mask_dir, MASK_SUFFIX, problems) if mask_dir.is_dir() else {}
    if not mask_dir.is_dir():
        problems.append(f"{mask_dir} not found; put the masks there, with the images' file names")
    elif not masks:
        problems.append(f"{mask_dir} holds no masks ({'/'.join(IMAGE_SUFFIXES)})")
    if not images:
        problems.append(f"{image_dir} holds no images ({'/'.join(IMAGE_SUFFIXES)})")
    elif masks:
        problems += [f"{images[s].name} in {image_dir} has no mask in {mask_dir}" for s in images if s not in masks]
        problems += [f"{masks[s].name} in {mask_dir} has no image in {image_dir}" for s in masks if s not in images]
    pairs = [(images[s], masks[s]) for s in sorted(images, key=_natural) if s in masks]
    return pairs, problems


def _by_stem(folder: Path, strip: str, problems: list[str]) -> dict[str, Path]:
    files = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not is_image_file(path):
            continue
        stem = path.stem[: -len(strip)] if strip and path.stem.endswith(strip) else path.stem
        if stem in files:
            problems.append(f"{files[stem].name} and {path.name} in {folder} have the same stem; keep one")
        files[stem] = path
    return files


def _natural(stem: str) -> tuple:
    """Sort key putting "2" before "10"."""
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


@dataclass
class Record:
    """What the scan learnt about one image/mask pair."""

    image: Path
    mask: Path
    size: tuple[int, int]  # (H, W)
    channels: int
    dtype: str
    values: Counter  # mask value (int, or (r, g, b)) -> pixel count
    palette: list[int] | None = None  # the mask's PNG palette, when it is a palette PNG
    arrays: tuple[np.ndarray, np.ndarray] | None = None  # (image, mask) as read, when kept


@dataclass
class Scan:
    records: list[Record] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    colour: bool = False  # masks are read as (r, g, b) colours

    def values(self, colour: bool) -> Counter:
        """Pixel count of every mask value over all pairs, spelt by `canonical`."""
        total = Counter()
        for record in self.records:
            total.update({canonical(v, colour): n for v, n in record.values.items()})
        return total

    def unknown(self, expected: set, colour: bool) -> list[tuple[Path, list]]:
        """(mask, its values not in `expected`) for every mask that has some."""
        found = [(r.mask, sorted({canonical(v, colour) for v in r.values} - expected)) for r in self.records]
        return [(mask, values) for mask, values in found if values]


def scan_pairs(pairs: list[tuple[Path, Path]], keep_arrays: bool = False) -> Scan:
    """Read every pair once: sizes, channels, mask values; unreadable files and size mismatches become problems."""
    scan = Scan()
    for image_path, mask_path in pairs:
        if mask_path.suffix.lower() in LOSSY_SUFFIXES:
            scan.problems.append(
                f"{mask_path} is a JPEG: lossy compression changes mask values along every edge; save the masks as "
                "PNG or TIFF"
            )
            continue
        try:
            image, mask = read_image(image_path), read_mask(mask_path)
            if image.dtype not in (np.uint8, np.uint16):  # the scaling training applies must be possible
                unit_range(image, str(image_path))
        except UnetlabError as exc:
            scan.problems.append(str(exc))
            continue
        if image.shape[:2] != mask.shape[:2]:
            scan.problems.append(
                f"{mask_path} is {mask.shape[1]} x {mask.shape[0]} px but its image {image_path.name} is "
                f"{image.shape[1]} x {image.shape[0]}; masks must match their images pixel for pixel"
            )
            continue
        mask = _drop_alpha_and_grey(mask)
        if mask.ndim == 3 and (mask.max(initial=0) > 255 or mask.min(initial=0) < 0):
            scan.problems.append(
                f"{mask_path} is a colour mask with values from {mask.min()} to {mask.max()}; colour masks are 8-bit "
                "RGB, so save it with 8 bits per channel"
            )
            continue
        # Grey masks are counted in their own dtype: packed into int64 they took 8 bytes per pixel.
        keys, counts = np.unique(pack_values(mask, colour=True) if mask.ndim == 3 else mask, return_counts=True)
        values = Counter({unpack_value(int(k), mask.ndim == 3): int(n) for k, n in zip(keys, counts)})
        if len(values) > MAX_CLASSES:
            scan.problems.append(
                f"{mask_path} has {len(values)} distinct values; a mask holds class labels (is it an image, "
                "an instance mask or a lossy JPEG?)"
            )
            continue
        scan.colour |= mask.ndim == 3
        arrays = (image, mask) if keep_arrays else None
        channels = image.shape[2] if image.ndim == 3 else 1
        palette = read_palette(mask_path)
        record = Record(image_path, mask_path, image.shape[:2], channels, str(image.dtype), values, palette, arrays)
        scan.records.append(record)
    return scan


def _drop_alpha_and_grey(mask: np.ndarray) -> np.ndarray:
    """(H, W, 3|4) colour masks -> (H, W, 3); equal colour channels -> (H, W)."""
    if mask.ndim == 3:
        mask = mask[..., :3]
        if (mask == mask[..., :1]).all():
            return mask[..., 0]
    return mask


def prepare_mask(mask: np.ndarray, colour: bool) -> np.ndarray:
    """A mask as read -> what `DataInfo.mask_to_classes` takes: (H, W, 3) for colour datasets, else (H, W)."""
    mask = _drop_alpha_and_grey(mask)
    if colour and mask.ndim == 2:
        return np.repeat(mask[..., None], 3, axis=2)
    return mask[..., 0] if mask.ndim == 3 and not colour else mask


def canonical(value, colour: bool, what: str = "class_values/ignore_values entry"):
    """One spelling per mask value: an int, or for colour datasets an (r, g, b) tuple (grey v -> (v, v, v)).

    Raises:
        UnetlabError: naming `what`, for a value that is not a whole number (255.7 is refused, never truncated) or
            a colour that is not three values from 0 to 255 (`unetlab.data.info.mask_value`).
    """
    value = mask_value(value, what)
    return value if isinstance(value, tuple) or not colour else (value,) * 3


def common_channels(channels: set[int]) -> int:
    """The model's input channels for images with these channel counts (alpha already dropped): one count is kept,
    grey and RGB mix as RGB, and any other mix is refused."""
    if len(channels) == 1:
        return next(iter(channels))
    if channels == {1, 3}:
        return 3
    counts = sorted(channels)
    raise UnetlabError(
        f"the images have {', '.join(map(str, counts[:-1]))} and {plural(counts[-1], 'channel')}; unetlab mixes only "
        "grey and RGB images, so convert the images to one channel count"
    )
