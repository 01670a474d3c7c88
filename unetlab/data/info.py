"""`DataInfo`: what a model trained on a dataset must know to read new images and write its predictions back.

It travels inside every checkpoint (as plain types, so `torch.load(..., weights_only=True)` reads it):
- `in_channels`: channels the model takes; images with another channel count are converted where that is
  unambiguous (grey <-> RGB; alpha dropped) and refused otherwise (`match_channels`).
- `class_values`: the original mask value of each class index 0 .. K-1, an int (grey-level or palette index) or an
  [r, g, b] list (colour masks); `class_names` name them.
- `ignore_values`: original mask values that mean "not labelled" (e.g. 255, or a void colour); they become
  `IGNORE_INDEX` in class-index masks, which losses and metrics skip.
- `palette`: the PNG palette all the masks share, when they are palette PNGs, so that predictions are written as
  palette PNGs that look like the masks; None otherwise.
- `mean`, `std`: per-channel normalisation on the [0, 1] scale of `unit_range`: 8-bit images are divided by 255,
  16-bit ones (and other integer images whose values fit in 0 .. 65535) by 65535; float images are taken as they
  are.

Colour mask values are compared as one int64 each, r << 16 | g << 8 | b (`pack_values`, `unpack_value`).

Mask values are whole numbers: a float mask is refused when it holds NaN, infinities or fractions (`integer_mask`),
and so are class and ignore values that are not whole numbers, such as 255.7 (`mask_value`); neither is ever
truncated.
"""

import math
import numbers
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from unetlab.errors import UnetlabError

IGNORE_INDEX = -100  # class index of unlabelled pixels in int64 masks (torch's cross-entropy default)
MASK_VALUE_LIMIT = 2**31  # mask values lie in [-2**31, 2**31): float masks become int32


def _value_key(value) -> tuple[int, ...]:
    return tuple(int(v) for v in np.atleast_1d(value))


def pack_values(values, colour: bool) -> np.ndarray:
    """Mask values as one int64 each: ints as they are, (..., 3) colours as r << 16 | g << 8 | b (shape (...))."""
    values = np.asarray(values, dtype=np.int64)
    if not colour:
        return values
    return (values[..., 0] << 16) | (values[..., 1] << 8) | values[..., 2]


def unpack_value(key: int, colour: bool) -> int | tuple[int, int, int]:
    """One key of `pack_values` back to its mask value: an int, or an (r, g, b) tuple."""
    return (key >> 16, (key >> 8) & 255, key & 255) if colour else key


def mask_value(value, what: str = "a class or ignore value"):
    """A mask value as an int, or a colour as an (r, g, b) tuple of ints from 0 to 255; `what` names it in errors.

    Whole numbers of any type are accepted (255, numpy.uint8(255), 255.0); booleans, fractions (255.7), NaN,
    strings and colours that are not three channel values are refused.

    Raises:
        UnetlabError: naming `what` and the value, with what a mask value looks like.
    """
    if isinstance(value, (list, tuple, np.ndarray)):
        channels = tuple(_whole(v, what, value) for v in value)
        if len(channels) != 3 or not all(0 <= c <= 255 for c in channels):
            raise UnetlabError(
                f"{what} {_shown(value)} is not a colour; a colour is [r, g, b], three whole numbers from 0 to 255"
            )
        return channels
    return _whole(value, what, value)


def _whole(value, what: str, given) -> int:
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value):
        if float(value).is_integer():
            return int(value)
    raise UnetlabError(
        f"{what} {_shown(given)} is not a mask value; mask values are whole numbers such as 0 or 255 (never "
        "rounded), or colours [r, g, b]"
    )


def _shown(value) -> str:
    return repr(np.asarray(value).tolist() if isinstance(value, np.ndarray) else value)[:80]


def integer_mask(mask: np.ndarray, source: str = "mask") -> np.ndarray:
    """`mask` with integer values: integer and bool masks as they are, float masks of whole numbers as int32.

    Raises:
        UnetlabError: naming `source`, for NaN or infinite values, values that are not whole numbers (0.5 would
            otherwise become class 0, -3.7 class -3), values out of [-2**31, 2**31), or a dtype that is not a
            number.
    """
    dtype = mask.dtype
    if dtype == np.bool_ or (np.issubdtype(dtype, np.integer) and dtype != np.uint64):
        return mask
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise UnetlabError(f"{source} holds values of type {dtype}; a mask holds whole-number class values")
    if np.issubdtype(dtype, np.floating):
        if not np.isfinite(mask).all():
            raise UnetlabError(
                f"{source} has NaN or infinite values; a mask holds whole-number class values, so label those pixels"
            )
        fraction = mask != np.floor(mask)
        if fraction.any():
            raise UnetlabError(
                f"{source} has values that are not whole numbers, such as {mask[fraction][0]:g}; a mask holds "
                "class values such as 0, 1 or 255: save it with integer values (uint8 or uint16), and resize masks "
                "with nearest-neighbour interpolation, never a smoothing one"
            )
    low, high = mask.min(initial=0), mask.max(initial=0)
    if low < -MASK_VALUE_LIMIT or high >= MASK_VALUE_LIMIT:
        shown = [f"{v:g}" if np.issubdtype(dtype, np.floating) else str(v) for v in (low, high)]
        raise UnetlabError(
            f"{source} has values from {shown[0]} to {shown[1]}; mask values are class values within +-2**31, such "
            "as 0 or 255"
        )
    return mask.astype(np.int32)


def unit_range(image: np.ndarray, source: str = "image") -> np.ndarray:
    """An image of any dtype as float32 on the [0, 1] scale the normalisation works on (same shape).

    uint8 is divided by 255 and uint16 by 65535; other integer images are read as 16-bit (divided by 65535) when
    every value is in 0 .. 65535 (a 16-bit PNG handed over as int32, a 12-bit camera's int16 TIFF) and refused
    otherwise; bool images give 0 / 1; float images are taken as they are, and refused with NaN or inf pixels.

    Raises:
        UnetlabError: naming `source`, for an integer image out of the 16-bit range, non-finite pixels, or a dtype
            that is not a number.
    """
    dtype = image.dtype
    if dtype == np.uint8 or dtype == np.uint16 or dtype == np.bool_:
        return image.astype(np.float32) / {np.uint8: 255.0, np.uint16: 65535.0}.get(dtype.type, 1.0)
    if np.issubdtype(dtype, np.integer):
        low, high = int(image.min(initial=0)), int(image.max(initial=0))
        if low < 0 or high > 65535:
            raise UnetlabError(
                f"{source} is an image of {dtype} with values from {low} to {high}; unetlab scales integer images as "
                "8-bit (/ 255) or 16-bit (/ 65535), so convert it to uint16, or to float32 scaled as you wish"
            )
        return image.astype(np.float32) / 65535.0
    if not np.issubdtype(dtype, np.floating):
        raise UnetlabError(f"{source} has pixels of type {dtype}; give integer or float images")
    x = image.astype(np.float32)
    if not np.isfinite(x).all():
        raise UnetlabError(f"{source} has NaN or infinite pixels; replace them with numbers, or leave the image out")
    return x


@dataclass
class DataInfo:
    in_channels: int
    class_values: list  # [v0, v1, ...] ints, or [[r, g, b], ...]
    class_names: list[str] | None = None
    ignore_values: list = field(default_factory=list)
    mean: list[float] | None = None  # per channel; None = 0
    std: list[float] | None = None  # per channel; None = 1
    palette: list[int] | None = None  # the masks' PNG palette, [r0, g0, b0, r1, ...], to write predictions alike

    def __post_init__(self):
        """Check every field (they come from files: configs and checkpoints), naming the first that is not valid;
        class and ignore values become plain ints, or [r, g, b] lists."""
        if not isinstance(self.in_channels, int) or isinstance(self.in_channels, bool) or self.in_channels < 1:
            raise UnetlabError(f"in_channels={self.in_channels!r} is not valid; it is a positive integer")
        for name in ("class_values", "ignore_values"):
            values = getattr(self, name)
            if not isinstance(values, (list, tuple)):
                raise UnetlabError(f"{name}={_shown(values)} is not valid; give a list of mask values")
            values = [mask_value(v, f"{name} entry") for v in values]
            setattr(self, name, [list(v) if isinstance(v, tuple) else v for v in values])
        if not self.class_values:
            raise UnetlabError("class_values is empty; give the mask value of each class")
        colours = {isinstance(v, list) for v in self.class_values + self.ignore_values}
        if len(colours) > 1:
            raise UnetlabError("class_values and ignore_values mix grey values and [r, g, b] colours; use one kind")
        names = self.class_names
        if names is not None and (
            not isinstance(names, (list, tuple))
            or len(names) != len(self.class_values)
            or not all(isinstance(n, str) for n in names)
        ):
            raise UnetlabError(f"class_names={_shown(names)} is not valid; give one name per class value")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if values is None:
                continue
            if (
                not isinstance(values, (list, tuple))
                or len(values) != self.in_channels
                or not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in values)
                or (name == "std" and min(values) <= 0)
            ):
                rule = "positive numbers" if name == "std" else "finite numbers"
                raise UnetlabError(
                    f"{name}={_shown(values)} is not a valid normalisation; give {self.in_channels} {rule}, one per "
                    "channel"
                )
        palette = self.palette
        if palette is not None and (
            not isinstance(palette, (list, tuple))
            or len(palette) % 3
            or len(palette) > 768
            or not all(isinstance(v, numbers.Integral) and 0 <= v <= 255 for v in palette)
        ):
            raise UnetlabError("palette is not a PNG palette; give [r0, g0, b0, r1, ...], at most 256 colours")

    def to_dict(self) -> dict:
        """Plain lists, ints, floats and strings only; no palette key without a palette (as before palettes)."""
        d = asdict(self)
        return d if self.palette is not None else {k: v for k, v in d.items() if k != "palette"}

    @property
    def num_classes(self) -> int:
        return len(self.class_values)

    @property
    def is_colour_mask(self) -> bool:
        return bool(self.class_values) and isinstance(self.class_values[0], (list, tuple))

    @classmethod
    def from_dict(cls, d: dict) -> "DataInfo":
        return cls(**d)

    def image_to_tensor(self, image: np.ndarray, source: str = "image") -> torch.Tensor:
        """(H, W) or (H, W, C) array -> normalised float32 tensor (in_channels, H, W), scaled by `unit_range`.

        Raises:
            UnetlabError: naming `source` when the channels cannot be converted to `in_channels`, or the pixels
                cannot be scaled (see `unit_range`).
        """
        x = unit_range(np.asarray(image), source)
        x = x[..., None] if x.ndim == 2 else x  # (H, W, C)
        x = match_channels(x, self.in_channels, source)
        tensor = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))  # (C, H, W)
        if self.mean is not None:
            tensor = tensor - torch.tensor(self.mean, dtype=torch.float32)[:, None, None]
        if self.std is not None:
            tensor = tensor / torch.tensor(self.std, dtype=torch.float32)[:, None, None]
        return tensor

    def mask_to_classes(self, mask: np.ndarray, source: str = "mask") -> np.ndarray:
        """Mask in original values, (H, W) or (H, W, 3) for colour masks -> int64 class indices (H, W).

        Ignore values become `IGNORE_INDEX`. Raises a `UnetlabError` naming `source` and the unknown values, or
        values that are not whole numbers (`integer_mask`).
        """
        mask = integer_mask(np.asarray(mask), source)
        if self.is_colour_mask:
            if mask.ndim != 3 or mask.shape[2] < 3:
                raise UnetlabError(f"{source}: expected a colour (RGB) mask, got shape {mask.shape}")
            flat = pack_values(mask[..., :3], colour=True)  # (H, W), one int per colour
        else:
            if mask.ndim == 3:
                raise UnetlabError(f"{source}: expected a single-channel mask, got shape {mask.shape}")
            flat = pack_values(mask, colour=False)
        keys, ignore = self._keys(self.class_values), self._keys(self.ignore_values)
        lookup_values = np.array(keys + ignore, dtype=np.int64)
        lookup_classes = np.array(list(range(len(keys))) + [IGNORE_INDEX] * len(ignore), dtype=np.int64)
        order = np.argsort(lookup_values)
        position = np.searchsorted(lookup_values[order], flat).clip(0, len(order) - 1)
        found = lookup_values[order][position] == flat
        if not found.all():
            unknown = np.unique(flat[~found])[:10]
            shown = [self._show(int(v)) for v in unknown]
            raise UnetlabError(
                f"{source}: mask values {', '.join(shown)} are not among the dataset's classes "
                f"({', '.join(self._show(k) for k in keys)}); relabel the mask or declare them as ignore values"
            )
        return lookup_classes[order][position]  # (H, W) int64

    def classes_to_mask(self, classes: np.ndarray) -> np.ndarray:
        """int class indices (H, W) -> mask in original values: (H, W) ints, or (H, W, 3) uint8 colours."""
        values = np.array([_value_key(v) for v in self.class_values], dtype=np.int64)  # (K, 1) or (K, 3)
        mask = values[classes]  # (H, W, 1) or (H, W, 3)
        if self.is_colour_mask:
            return mask.astype(np.uint8)
        mask = mask[..., 0]
        return mask.astype(np.uint8 if mask.max(initial=0) <= 255 else np.uint16 if mask.max() <= 65535 else np.int64)

    def _keys(self, values: list) -> list[int]:
        width = 3 if self.is_colour_mask else 1
        rows = np.array([_value_key(v) for v in values], dtype=np.int64).reshape(len(values), width)  # (n, 1 or 3)
        return pack_values(rows if self.is_colour_mask else rows[:, 0], self.is_colour_mask).tolist()

    def _show(self, key: int) -> str:
        return str(unpack_value(key, self.is_colour_mask))


def match_channels(image: np.ndarray, channels: int, source: str = "image") -> np.ndarray:
    """Convert an (H, W, C) image to `channels` channels where that is unambiguous.

    For a grey or RGB model (1 or 3 channels), a 2- or 4-channel image is grey or RGB plus alpha: the alpha is
    dropped (files lose it already when read, `unetlab.data.io`). Then grey -> C: repeat; RGB -> grey: luminance
    (ITU-R 601). Anything else raises.
    """
    have = image.shape[2]
    if have == channels:
        return image
    colour = image[..., :-1] if have in (2, 4) and channels in (1, 3) else image  # (H, W, 1 or 3) without alpha
    if colour.shape[2] == channels:
        return colour
    if colour.shape[2] == 1:
        return np.repeat(colour, channels, axis=2)
    if colour.shape[2] == 3 and channels == 1:
        return colour @ np.array([[0.299], [0.587], [0.114]], dtype=colour.dtype)
    raise UnetlabError(
        f"{source} has {have} channels but the model takes {channels}; convert the image, or train a model "
        f"with in_channels={have}"
    )
