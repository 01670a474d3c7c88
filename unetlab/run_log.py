"""What a training run writes besides checkpoints: `metrics.jsonl`, TensorBoard events, sample prediction grids.

- `metrics.jsonl`: one JSON object per evaluation, with keys such as `epoch`, `step`, `lr`, `train/loss`,
  `val/loss`, `val/dice`, `val/dice/<class>`, `images_per_s`, `elapsed_s`.
- TensorBoard (when `tensorboard` is installed): the same scalars, and an image grid per evaluation.
- `samples/epoch_NNNN.png`: rows of input | truth | prediction for a few validation images.
"""

import json
from pathlib import Path

import numpy as np
import torch

from unetlab.data.io import write_image

# Distinct colours for class indices 1, 2, ... on a black background (class 0); cycles for many classes.
PALETTE = np.array(
    [[0, 0, 0], [255, 255, 255], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128]],
    dtype=np.uint8,
)  # fmt: skip
IGNORE_COLOUR = np.array([128, 128, 128], dtype=np.uint8)


def colourise(classes: np.ndarray) -> np.ndarray:
    """int class indices (H, W), negative = ignore -> RGB uint8 (H, W, 3)."""
    rgb = PALETTE[np.where(classes > 0, (classes - 1) % (len(PALETTE) - 1) + 1, 0)]
    rgb[classes < 0] = IGNORE_COLOUR
    return rgb


def to_display(image: torch.Tensor) -> np.ndarray:
    """A normalised (C, H, W) image stretched to 0..255 for display: RGB uint8 (H, W, 3) (first 3 channels)."""
    x = image.float().cpu().numpy()
    x = x[:3] if x.shape[0] >= 3 else np.repeat(x[:1], 3, axis=0)  # (3, H, W)
    lo, hi = np.percentile(x, [1, 99])
    x = np.clip((x - lo) / max(hi - lo, 1e-6), 0, 1)
    return (x.transpose(1, 2, 0) * 255).astype(np.uint8)


def sample_grid(samples: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> np.ndarray:
    """Rows of [input | truth | prediction] (each (C, H, W) / (H, W) / (H, W)), padded to a common width."""
    rows = []
    for image, mask, pred in samples:
        h, w = pred.shape[-2:]
        mh, mw = mask.shape[-2:]
        image = image[..., (image.shape[-2] - h) // 2 :, (image.shape[-1] - w) // 2 :][..., :h, :w]  # valid nets
        mask = mask[(mh - h) // 2 :, (mw - w) // 2 :][:h, :w]
        gap = np.full((h, 4, 3), 64, np.uint8)
        row = [to_display(image), gap, colourise(mask.cpu().numpy()), gap, colourise(pred.cpu().numpy())]
        rows.append(np.concatenate(row, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=64) for r in rows]
    return np.concatenate(rows, axis=0)


class RunLogger:
    """Writes the run folder's logs; only the main process (rank 0) should create one."""

    def __init__(self, run_dir: Path, tensorboard: bool):
        self.run_dir = Path(run_dir)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional extra
                SummaryWriter = None
            if SummaryWriter is not None:
                self.writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    def log(self, record: dict) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key not in ("epoch", "step") and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, record["step"])
            self.writer.flush()

    def samples(self, samples: list, epoch: int, step: int) -> None:
        if not samples:
            return
        grid = sample_grid(samples)
        write_image(self.run_dir / "samples" / f"epoch_{epoch:04d}.png", grid)
        if self.writer is not None:
            self.writer.add_image("val/input_truth_prediction", grid, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
