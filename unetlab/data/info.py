"""`DataInfo`: what a model trained on a dataset must know to read new images and write its predictions back.

It travels inside every checkpoint (as plain types, so `torch.load(..., weights_only=True)` reads it):
- `in_channels`: channels the model takes; images with another channel count are converted where that is
  unambiguous (grey <-> RGB, RGBA -> RGB) and refused otherwise.
- `class_values`: the original mask value of each class index 0 .. K-1, an int (grey-level or palette index) or an
  [r, g, b] list (colour masks); `class_names` name them.
- `ignore_values`: original mask values that mean "not labelled" (e.g. 255, or a void colour); they become
  `IGNORE_INDEX` in class-index masks, which losses and metrics skip.
- `mean`, `std`: per-channel normalisation on the [0, 1] scale (8-bit images are divided by 255, 16-bit by 65535,
  float images are taken as they are).
"""

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from unetlab.errors import UnetlabError

IGNORE_INDEX = -100  # class index of unlabelled pixels in int64 masks (torch's cross-entropy default)


def _value_key(value) -> tuple[int, ...]:
    return tuple(int(v) for v in np.atleast_1d(value))


@dataclass
class DataInfo:
    in_channels: int
    class_values: list  # [v0, v1, ...] ints, or [[r, g, b], ...]
    class_names: list[str] | None = None
    ignore_values: list = field(default_factory=list)
    mean: list[float] | None = None  # per channel; None = 0
    std: list[float] | None = None  # per channel; None = 1

    @property
    def num_classes(self) -> int:
        return len(self.class_values)

    @property
    def is_colour_mask(self) -> bool:
        return bool(self.class_values) and isinstance(self.class_values[0], (list, tuple))

    def to_dict(self) -> dict:
        """Plain lists, ints, floats and strings only."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DataInfo":
        return cls(**d)

    def image_to_tensor(self, image: np.ndarray, source: str = "image") -> torch.Tensor:
        """(H, W) or (H, W, C) array of any dtype -> normalised float32 tensor (in_channels, H, W).

        Raises:
            UnetlabError: naming `source` when the channels cannot be converted to `in_channels`.
        """
        scale = {np.uint8: 255.0, np.uint16: 65535.0}.get(image.dtype.type, 1.0)
        x = np.asarray(image, dtype=np.float32) / scale
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

        Ignore values become `IGNORE_INDEX`. Raises a `UnetlabError` naming `source` and the unknown values.
        """
        if self.is_colour_mask:
            if mask.ndim != 3 or mask.shape[2] < 3:
                raise UnetlabError(f"{source}: expected a colour (RGB) mask, got shape {mask.shape}")
            mask = mask[..., :3].astype(np.int64)
            flat = (mask[..., 0] << 16) | (mask[..., 1] << 8) | mask[..., 2]  # one int per colour
            keys = [(r << 16) | (g << 8) | b for r, g, b in map(_value_key, self.class_values)]
            ignore = [(r << 16) | (g << 8) | b for r, g, b in map(_value_key, self.ignore_values)]
        else:
            if mask.ndim == 3:
                raise UnetlabError(f"{source}: expected a single-channel mask, got shape {mask.shape}")
            flat = mask.astype(np.int64)
            keys = [int(v) for v in self.class_values]
            ignore = [int(v) for v in self.ignore_values]
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

    def _show(self, key: int) -> str:
        return f"({key >> 16}, {(key >> 8) & 255}, {key & 255})" if self.is_colour_mask else str(key)


def match_channels(image: np.ndarray, channels: int, source: str = "image") -> np.ndarray:
    """Convert an (H, W, C) image to `channels` channels where that is unambiguous.

    grey -> C: repeat; RGB/RGBA -> grey: luminance (ITU-R 601); RGBA -> RGB: drop alpha. Anything else raises.
    """
    have = image.shape[2]
    if have == channels:
        return image
    if have == 1:
        return np.repeat(image, channels, axis=2)
    if have in (3, 4) and channels == 1:
        return image[..., :3] @ np.array([[0.299], [0.587], [0.114]], dtype=image.dtype)
    if have == 4 and channels == 3:
        return image[..., :3]
    raise UnetlabError(
        f"{source} has {have} channels but the model takes {channels}; convert the image, or train a model "
        f"with in_channels={have}"
    )
