"""Synthetic scored images for the evaluation tests: smooth random masks and noisy, roughly calibrated probabilities."""

import numpy as np


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], passes: int = 3) -> np.ndarray:
    """Random values smoothed by repeated 3 x 3 box means over the last two axes (blobs a few px wide)."""
    field = rng.random(shape)
    for _ in range(passes):
        padded = np.pad(field, [(0, 0)] * (field.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
        field = sum(padded[..., i : i + shape[-2], j : j + shape[-1]] for i in range(3) for j in range(3)) / 9
    return field


def synthetic_items(num_outputs: int, n: int = 4, size: tuple[int, int] = (48, 64), seed: int = 0, noise=1.5):
    """(name, image, probs, truth) items: num_outputs = 1 gives sigmoid probabilities of a two-class mask, K >= 2
    softmax probabilities of a K-class mask. Names hold characters that HTML must escape."""
    rng = np.random.default_rng(seed)
    k = max(num_outputs, 2)
    items = []
    for i in range(n):
        field = smooth_field(rng, (k, *size))
        truth = field.argmax(0)  # (H, W) in 0..K-1
        logits = 3.0 * np.eye(k)[truth].transpose(2, 0, 1) + noise * rng.normal(size=(k, *size))  # (K, H, W)
        if num_outputs == 1:
            probs = 1 / (1 + np.exp(-(logits[1] - logits[0])))[None]  # (1, H, W)
        else:
            probs = np.exp(logits) / np.exp(logits).sum(0)
        image = (field[0] * 200 + 20 * rng.random(size)).astype(np.uint8)
        items.append((f"slice <{i}> & 'co'.png", image, probs.astype(np.float32), truth))
    return items
