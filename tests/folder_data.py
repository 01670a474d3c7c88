"""Small dataset folders written into a test's tmp_path."""

from pathlib import Path

import numpy as np

from unetlab.data.io import write_image


def write_pairs(
    root: Path, masks: dict[str, np.ndarray], image_suffix: str = ".png", mask_suffix: str = ".png"
) -> Path:
    """root/images/<stem><image_suffix> and root/masks/<stem><mask_suffix> for every stem of `masks`. Each image
    is a ramp plus 40 on the mask's foreground, so that images differ and relate to their masks."""
    for i, (stem, mask) in enumerate(masks.items()):
        h, w = mask.shape[:2]
        foreground = (mask if mask.ndim == 2 else mask[..., 0]) > 0
        image = (np.add.outer(np.arange(h), np.arange(w)) * 3 + 40 * foreground + i) % 256
        write_image(root / "images" / f"{stem}{image_suffix}", image.astype(np.uint8))
        write_image(root / "masks" / f"{stem}{mask_suffix}", mask)
    return root


def box_mask(h: int, w: int, box: tuple[int, int, int, int], value: int = 255) -> np.ndarray:
    """(h, w) uint8 zeros with `value` in the box (top, left, bottom, right)."""
    mask = np.zeros((h, w), np.uint8)
    top, left, bottom, right = box
    mask[top:bottom, left:right] = value
    return mask
