"""Built-in synthetic datasets: deterministic images and masks drawn from a seed, so that tests, the main job and
smoke runs need no files. Pure NumPy (the NumPy twin imports this module), no torch. Bad options raise a
`UnetlabError`.

- "cells" (binary, 1 channel): blob-shaped cells that touch their neighbours, separated by thin (2 px) gaps, on a
  textured background, with uneven illumination, blur and noise. Class 1 = cell, 0 = background and the gaps
  between touching cells. This is the case the U-Net paper's weight map exists for (Ronneberger et al. 2015,
  Sec. 3 and Fig. 3): the gaps are few pixels, easy to miss, and separate the instances.
  `generate_cell_instances` gives the instance labels too (0 = background, 1..n = cells).
- "shapes" (multi-class, 3 channels, RGB): discs, squares and triangles (classes 1, 2, 3) on a textured
  background (class 0), each class with its own tint plus a random colour jitter, so that shape and colour
  both matter; later shapes cover earlier ones.

Every image is float32 (C, H, W) in [0, 1] and every mask int64 (H, W); the same (kind, index, seed, size) always
gives the same arrays, on any machine.
"""

import numpy as np

from unetlab.errors import UnetlabError  # no torch in errors.py: this module stays NumPy-only

KINDS = ("cells", "shapes")
CHANNELS = {"cells": 1, "shapes": 3}  # image channels C of each kind
CLASS_NAMES = {"cells": ["background", "cell"], "shapes": ["background", "disc", "square", "triangle"]}


def generate(kind: str, index: int, *, seed: int = 0, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic image and its mask.

    Args:
        kind: "cells" or "shapes".
        index: which image of the dataset (>= 0); different indices give independent images.
        seed: dataset seed (>= 0).
        size: image side in pixels (>= 32); object sizes are in pixels and do not scale with it, so larger images
            hold more objects.

    Returns:
        image float32 (C, size, size) in [0, 1], C = `CHANNELS[kind]`; mask int64 (size, size) of class indices
        0 .. len(CLASS_NAMES[kind]) - 1.
    """
    rng = _rng(kind, index, seed, size)
    if kind == "cells":
        image, instances = _cells(rng, size)
        return image, (instances > 0).astype(np.int64)
    return _shapes(rng, size)


def generate_cell_instances(index: int, *, seed: int = 0, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """The image of `generate("cells", index, seed=seed, size=size)` and its instance labels.

    Returns:
        image float32 (1, size, size); instances int64 (size, size), 0 = background, 1..n = cells (the mask is
        `instances > 0`).
    """
    return _cells(_rng("cells", index, seed, size), size)


def _rng(kind: str, index: int, seed: int, size: int) -> np.random.Generator:
    if kind not in KINDS:
        raise UnetlabError(f"unknown synthetic kind {kind!r}; use one of {', '.join(KINDS)}")
    if min(index, seed) < 0 or size < 32:
        raise UnetlabError(
            f"synthetic data needs index >= 0, seed >= 0 and size >= 32 px; got index={index}, seed={seed}, size={size}"
        )
    return np.random.default_rng([seed, index, size, KINDS.index(kind)])


def _cells(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    centres, radii = _scatter(rng, size, count=round(24 * (size / 128) ** 2), min_gap=14.0, radius=(10.0, 16.0))
    amps = rng.uniform(0.0, 0.12, (len(radii), 2))  # outline wobble: 2nd and 3rd harmonics of the angle
    phases = rng.uniform(0.0, 2 * np.pi, (len(radii), 2))
    nuclei = rng.uniform(-0.4, 0.4, (len(radii), 2)) * radii[:, None]  # off-centre nucleus offsets (dy, dx)
    # Each pixel goes to the cell it is deepest inside (reach = distance / wobbly radius, < 1 inside a blob), so
    # neighbours meet on a curved edge. Work in each cell's bounding box: cost O(H W), not O(cells H W).
    reach = np.full((size, size), np.inf, np.float32)
    owner = np.zeros((size, size), np.int64)  # cell index + 1 of the smallest reach
    in_nucleus = np.zeros((size, size), bool)
    for i, ((cy, cx), r) in enumerate(zip(centres, radii)):
        box, dy, dx = _box(cy, cx, r * (1 + amps[i].sum()) + 1, size)
        angle = np.arctan2(dy, dx)
        wobble = amps[i, 0] * np.cos(2 * angle + phases[i, 0]) + amps[i, 1] * np.cos(3 * angle + phases[i, 1])
        mine = np.hypot(dy, dx) / (r * (1 + wobble))
        closer = mine < reach[box]
        reach[box] = np.where(closer, mine, reach[box])
        owner[box] = np.where(closer, i + 1, owner[box])
        in_nucleus[box] = np.where(closer, np.hypot(dy - nuclei[i, 0], dx - nuclei[i, 1]) < 0.35 * r, in_nucleus[box])
    labels = np.where(reach < 1, owner, 0)  # (H, W)
    # Open a 2 px gap wherever two cells touch: clear a pixel when a 4-neighbour belongs to another cell.
    padded = np.pad(labels, 1)
    neighbours = np.stack([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])  # (4, H, W)
    touching = ((neighbours != labels) & (neighbours > 0)).any(axis=0) & (labels > 0)
    instances = np.where(touching, 0, labels)

    # Texture: each cell has its own brightness, a darker nucleus and a granular inside; edges fade over ~2 px.
    brightness = np.concatenate([[0.0], rng.uniform(0.4, 0.8, len(radii))])  # by owner; 0 = no cell
    edge = np.clip((1 - reach) * np.concatenate([[1.0], radii])[owner] / 2, 0.6, 1)
    cell = brightness[owner] * (1 - 0.25 * in_nucleus) * edge * (1 + 0.15 * _value_noise(rng, size, size // 6))
    background = 0.3 + 0.12 * _value_noise(rng, size, cells=6)
    # Debris: small bright specks in the background, as bright as cells but too small to be cells (class 0).
    specks, speck_radii = _scatter(rng, size, count=round(10 * (size / 128) ** 2), min_gap=6.0, radius=(1.5, 4.0))
    for (cy, cx), r in zip(specks, speck_radii):
        box, dy, dx = _box(cy, cx, r + 1, size)
        speck = (np.hypot(dy, dx) < r) & (labels[box] == 0)
        background[box] = np.where(speck, rng.uniform(0.45, 0.8), background[box])
    image = np.where(instances > 0, cell, background)
    image = image * (1 + 0.35 * _value_noise(rng, size, cells=2))  # uneven illumination
    image = _blur(image) + rng.normal(0, 0.08, image.shape)
    return np.clip(image, 0, 1).astype(np.float32)[None], instances.astype(np.int64)


def _shapes(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    tints = np.array([[0.9, 0.35, 0.3], [0.3, 0.8, 0.35], [0.35, 0.4, 0.9]], dtype=np.float32)  # classes 1, 2, 3
    centres, radii = _scatter(rng, size, count=round(6 * (size / 128) ** 2), min_gap=12.0, radius=(7.0, 18.0))
    mask = np.zeros((size, size), np.int64)
    image = 0.45 + 0.1 * np.stack([_value_noise(rng, size, cells=6) for _ in range(3)])  # (3, H, W) background
    texture = 0.9 + 0.1 * _value_noise(rng, size, cells=max(2, size // 8))  # shared by all objects
    corners = np.pi / 2 + np.array([0, 2, 4]) * np.pi / 3  # directions of a triangle's edge normals
    for (cy, cx), r in zip(centres, radii):
        cls = int(rng.integers(1, 4))
        theta = rng.uniform(0, 2 * np.pi)
        box, dy, dx = _box(cy, cx, 1.2 * r + 1, size)
        u = np.cos(theta) * dx + np.sin(theta) * dy  # coordinates in the shape's rotated frame
        v = -np.sin(theta) * dx + np.cos(theta) * dy
        if cls == 1:
            inside = u**2 + v**2 < r**2
        elif cls == 2:
            inside = np.maximum(abs(u), abs(v)) < 0.8 * r
        else:  # equilateral triangle with circumradius r: inside three half-planes
            inside = np.all([np.cos(a) * u + np.sin(a) * v < r / 2 for a in corners], axis=0)
        colour = np.clip(tints[cls - 1] + rng.uniform(-0.2, 0.2, 3), 0, 1).astype(np.float32)
        mask[box] = np.where(inside, cls, mask[box])
        image[(slice(None), *box)] = np.where(inside, colour[:, None, None] * texture[box], image[(slice(None), *box)])
    image = np.stack([_blur(c) for c in image]) + rng.normal(0, 0.05, image.shape)
    return np.clip(image, 0, 1).astype(np.float32), mask


def _box(cy: float, cx: float, radius: float, size: int) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    """The pixels within `radius` of (cy, cx), clipped to the image: (rows, cols) slices and the offsets dy (h, 1),
    dx (1, w) of those pixels from the centre."""
    y0, y1 = max(0, int(cy - radius)), min(size, int(cy + radius) + 2)
    x0, x1 = max(0, int(cx - radius)), min(size, int(cx + radius) + 2)
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
    return (slice(y0, y1), slice(x0, x1)), dy, dx


def _scatter(rng, size, count, min_gap, radius) -> tuple[np.ndarray, np.ndarray]:
    """Up to `count` centres (n, 2) at least `min_gap` px apart (dart throwing), and their radii (n,)."""
    centres = np.empty((0, 2))
    for candidate in rng.uniform(0, size, (count * 20, 2)):
        if len(centres) == 0 or np.hypot(*(centres - candidate).T).min() >= min_gap:
            centres = np.vstack([centres, candidate])
            if len(centres) == count:
                break
    radii = rng.uniform(*radius, len(centres))
    return centres.astype(np.float32), radii.astype(np.float32)


def _value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in [-1, 1], (size, size): uniform values on a (cells + 1)^2 grid, interpolated bilinearly."""
    grid = rng.uniform(-1, 1, (cells + 1, cells + 1)).astype(np.float32)
    t = np.linspace(0, cells, size, dtype=np.float32)
    i = np.minimum(t.astype(int), cells - 1)
    f = t - i
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]  # (size, cells + 1)
    return rows[:, i] * (1 - f) + rows[:, i + 1] * f


def _blur(image: np.ndarray) -> np.ndarray:
    """3 x 3 binomial blur of an (H, W) array, edges replicated."""
    p = np.pad(image, 1, mode="edge")
    rows = (p[:-2] + 2 * p[1:-1] + p[2:]) / 4  # (H, W + 2)
    return (rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:]) / 4
