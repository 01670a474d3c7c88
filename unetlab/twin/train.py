"""Training the NumPy twin: a plain loop of forward, loss, hand-written backward and Adam, in NumPy only.

What `unetlab twin train` runs. The order follows nanoGPT's `train.py`: batch -> forward -> loss -> backward ->
step -> log -> periodic evaluation. The data are arrays held in memory (`synthetic_cells` generates the built-in ones).

- Loss: cross-entropy (binary for one output channel) plus `dice_weight` times the soft Dice loss
  (`losses.loss_and_grad`).
- Validation score: the Dice coefficient of the hard prediction over the whole validation set (pixels of all
  images pooled), averaged over the foreground classes 1 .. K-1 (the one foreground class for K = 1 or 2). A
  class absent from both truth and prediction is undefined and left out of the mean, the convention of
  `unetlab.evaluation.metrics` (whose per-class Dice the tests compare this with).
- Valid-padding nets predict the centre of their input, so masks are centre-cropped to the output size.
"""

import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from unetlab.data.synthetic import generate
from unetlab.errors import UnetlabError
from unetlab.logits import decide, num_labels
from unetlab.settings import check_settings, setting
from unetlab.twin.losses import loss_and_grad
from unetlab.twin.model import NumpyUNet
from unetlab.twin.optim import Adam


@dataclass
class TwinTrainConfig:
    """The settings of `train_twin` and of its data, each declared once (`unetlab twin train` takes its flags here)."""

    steps: int = setting(300, "optimiser steps (typically 100 for a smoke test to 1000)", low=1)
    batch_size: int = setting(8, "images per step", low=1)
    lr: float = setting(3e-3, "Adam learning rate", low=0, low_open=True)
    dice_weight: float = setting(1.0, "loss = cross-entropy + this x soft Dice; 0 = cross-entropy only", low=0)
    eval_every: int = setting(100, "steps between validations; 0 = only after the last step", low=0)
    seed: int = setting(0, "seeds the data, the weights and the batch order", low=0)
    image_size: int = setting(64, "synthetic image side", unit="px", low=32)
    num_train: int = setting(256, "synthetic training images", low=1)
    num_val: int = setting(64, "synthetic validation images", low=1)

    def __post_init__(self):
        check_settings(self)


def synthetic_cells(cfg: TwinTrainConfig) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The built-in synthetic cells of `cfg` as (images (n, C, size, size) float32, masks (n, size, size) int64),
    for training and for validation."""

    def cells(indices):
        pairs = [generate("cells", i, seed=cfg.seed, size=cfg.image_size) for i in indices]
        return np.stack([p[0] for p in pairs]).astype(np.float32), np.stack([p[1] for p in pairs]).astype(np.int64)

    return cells(range(cfg.num_train)), cells(range(cfg.num_train, cfg.num_train + cfg.num_val))


def crop_to(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre-crop masks (N, H, W) to `size`, the output of a valid-padding net (the identity for same padding)."""
    top, left = (mask.shape[1] - size[0]) // 2, (mask.shape[2] - size[1]) // 2
    return mask[:, top : top + size[0], left : left + size[1]]  # (N, h, w)


def predict(twin: NumpyUNet, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Hard labels (N, H', W') from the twin in evaluation mode (its mode is restored afterwards)."""
    mode, preds = twin.training, []
    twin.eval()
    for start in range(0, len(images), batch_size):
        logits = twin.forward(images[start : start + batch_size])  # (n, K, H', W')
        # `unetlab.logits.decide` at the default threshold: sigmoid >= 0.5, i.e. logit >= 0, for one logit.
        preds.append(decide(logits, threshold=0.0))
    twin.train(mode)
    return np.concatenate(preds).astype(np.int64)


def dice_score(pred: np.ndarray, mask: np.ndarray, num_classes: int) -> float:
    """Dice of hard labels over all pixels pooled, averaged over the foreground classes (see module docstring).

    Args:
        pred, mask: (N, H, W) class indices (0/1 for a one-channel model).
        num_classes: K of the model.

    Returns:
        The mean over classes 1 .. max(K, 2) - 1 of 2 TP / (2 TP + FP + FN); NaN if every class is undefined.
    """
    scores = []
    for k in range(1, num_labels(num_classes)):
        tp = np.sum((pred == k) & (mask == k))
        fp_fn = np.sum((pred == k) != (mask == k))  # false positives + false negatives
        if tp + fp_fn:  # else the class is absent from truth and prediction: undefined, left out
            scores.append(2 * tp / (2 * tp + fp_fn))
    return float(np.mean(scores)) if scores else float("nan")


def train_twin(twin: NumpyUNet, cfg: TwinTrainConfig, train_data, val_data, progress: bool = True) -> dict:
    """Train `twin` in place with Adam on (images (N, C, H, W), masks (N, H, W)) pairs; validate on `val_data`.

    Raises:
        UnetlabError: for a batch size larger than the training set, mask labels the model has no output for, or
            images a valid-padding twin cannot take.

    Returns:
        {"losses": loss per step, "val_dice": [(step, dice), ...], "seconds": wall time of the loop}.
    """
    images, masks = train_data
    val_images, val_masks = val_data
    labels = num_labels(twin.num_classes)
    if max(masks.max(initial=0), val_masks.max(initial=0)) >= labels:
        raise UnetlabError(
            f"the masks hold class {max(masks.max(), val_masks.max())} but the twin has num_classes={twin.num_classes}"
            f"; give num_classes above the largest class (1 or 2 for two classes)"
        )
    if not 1 <= cfg.batch_size <= len(images):
        raise UnetlabError(
            f"batch size {cfg.batch_size} is not valid for {len(images)} training images; use 1 to {len(images)}"
        )
    out_size = (twin.output_size(images.shape[2]), twin.output_size(images.shape[3]))
    masks, val_masks = crop_to(masks, out_size), crop_to(val_masks, out_size)
    rng = np.random.default_rng(cfg.seed)
    optimizer = Adam(lr=cfg.lr)
    history = {"losses": [], "val_dice": []}
    order, cursor = rng.permutation(len(images)), 0
    start = time.perf_counter()
    bar = tqdm(range(1, cfg.steps + 1), desc="twin train", disable=not progress, dynamic_ncols=True)
    twin.train()
    for step in bar:
        if cursor + cfg.batch_size > len(order):  # a new epoch: reshuffle
            order, cursor = rng.permutation(len(images)), 0
        batch = order[cursor : cursor + cfg.batch_size]
        cursor += cfg.batch_size
        logits = twin.forward(images[batch])  # (B, K, H', W')
        loss, dlogits = loss_and_grad(logits, masks[batch], cfg.dice_weight)
        optimizer.step(twin.params, twin.backward(dlogits))
        history["losses"].append(loss)
        if step == cfg.steps or (cfg.eval_every and step % cfg.eval_every == 0):
            dice = dice_score(predict(twin, val_images, cfg.batch_size), val_masks, twin.num_classes)
            history["val_dice"].append((step, dice))
            bar.set_postfix(loss=f"{loss:.4f}", val_dice=f"{dice:.4f}")
        elif step % 10 == 0:
            bar.set_postfix(loss=f"{loss:.4f}")
    history["seconds"] = time.perf_counter() - start
    return history
