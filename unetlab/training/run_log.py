"""What a training run writes besides checkpoints: `metrics.jsonl`, TensorBoard events, sample prediction grids.

- `metrics.jsonl`: one JSON object per evaluation, with keys such as `epoch`, `step`, `lr`, `train/loss`,
  `val/loss`, `val/dice`, `val/dice/<class>`, `images_per_s`, `elapsed_s`; a score that is undefined (NaN, e.g.
  the Dice of a class absent from every image and prediction) is written as null.
- TensorBoard (when `tensorboard` is installed): the same scalars, and an image grid per evaluation.
- `samples/epoch_NNNN.png`: rows of input | truth | prediction for a few validation images, in the colours of
  `unetlab predict --overlay`.
"""

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from unetlab.data.io import write_image
from unetlab.errors import UnetlabError
from unetlab.inference.outputs import PALETTE, display_rgb
from unetlab.settings import SettingError
from unetlab.training.lock import LOCK_NAME, in_use, live_owner

RUN_ENTRIES = {"config.yaml", "split.json", "checkpoints", "metrics.jsonl", "tensorboard", "samples", LOCK_NAME}
IGNORE_COLOUR = np.array([128, 128, 128], dtype=np.uint8)  # unlabelled pixels in the truth column


def new_run_dir(out: str | None, main: bool = True) -> Path:
    """The folder of a new run: `out`, which must be empty or absent (never another run's), or runs/<timestamp>.

    Only the main process (`main`) checks the folder; the others, which write nothing there, get the path alone (so
    no process sees files that the main one has just written).
    """
    run_dir = Path(out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}")
    if not main:
        return run_dir
    if run_dir.exists() and not run_dir.is_dir():
        raise SettingError(lambda n: f"{n('out')} {run_dir} is a file; give a folder for the run", ["out"])
    owner = live_owner(run_dir) if run_dir.is_dir() else None
    if owner is not None:
        raise UnetlabError(in_use(run_dir, owner))
    if run_dir.is_dir() and any(p.name != LOCK_NAME for p in run_dir.iterdir()):  # a dead run's lock: stale
        if (run_dir / "checkpoints" / "last.pt").is_file():
            hint = f"continue that run with `unetlab train --resume {run_dir}`, or choose a new folder"
        elif _looks_unsaved(run_dir):
            hint = f"it looks like a run that stopped before its first checkpoint: delete it ({run_dir}), or choose"
            hint += " a new folder"
        else:
            hint = "choose a new folder"
        raise SettingError(
            lambda n: f"{n('out')} {run_dir} is not empty; {hint}, so that nothing in it is overwritten", ["out"]
        )
    return run_dir


def save_split(run_dir: Path, train_ds, val_ds) -> None:
    """Record which images trained and which validated in `RUN/split.json`, so that the held-out images can be scored
    later (`recorded_split`): {"source": the dataset, "train": [[image, mask], ...], "val": [...]}, folder files
    relative to the source folder (a moved dataset still matches) and synthetic images by index."""
    split = {"source": None, "train": [], "val": []}
    for name, dataset in (("train", train_ds), ("val", val_ds)):
        source = dataset.source
        if hasattr(source, "pairs"):  # a folder dataset
            split["source"] = str(source.root)
            split[name] = [[_relative(p, source.root) for p in pair] for pair in source.pairs]
        else:
            split["source"] = f"synthetic-{source.kind}"
            split[name] = list(range(source.start, source.start + source.count))
    (run_dir / "split.json").write_text(json.dumps(split, indent=1) + "\n")


def recorded_split(run_dir: Path, source: str | Path | None = None) -> dict | None:
    """The split a run recorded (`save_split`), folder files as absolute (image, mask) paths under `source` (default:
    the recorded folder); None when the run recorded none (runs of unetlab before it did)."""
    path = Path(run_dir) / "split.json"
    if not path.is_file():
        return None
    split = json.loads(path.read_text())
    if split["source"] and not split["source"].startswith("synthetic-"):
        root = Path(source or split["source"])
        for name in ("train", "val"):
            split[name] = [tuple(root / p for p in pair) for pair in split[name]]
    return split


def _relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(Path(path).resolve())  # outside the dataset folder (absolute image folders): kept absolute


def remove_orphans(run_dir: Path) -> None:
    """Remove the temporary files of checkpoint writers that died (kill -9 while writing): the caller holds the run's
    lock, so no writer of this run is alive."""
    for tmp in (Path(run_dir) / "checkpoints").glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def _looks_unsaved(run_dir: Path) -> bool:
    """True for a folder holding only what a run writes before its first checkpoint (it is never cleared for the
    user: it might be a run still in its first epoch, or hold the user's own files under those names)."""
    entries = {p.name for p in run_dir.iterdir()}
    checkpoints = run_dir / "checkpoints"
    return entries <= RUN_ENTRIES and not (checkpoints.is_dir() and any(checkpoints.iterdir()))


def colourise(classes: np.ndarray) -> np.ndarray:
    """int class indices (H, W), negative = ignore -> RGB uint8 (H, W, 3): class 0 black, 1 red, 2 green, ..."""
    rgb = np.zeros((*classes.shape, 3), dtype=np.uint8)
    foreground = classes > 0
    rgb[foreground] = PALETTE[(classes[foreground] - 1) % len(PALETTE)]
    rgb[classes < 0] = IGNORE_COLOUR
    return rgb


def sample_grid(samples: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> np.ndarray:
    """Rows of [input | truth | prediction] (each (C, H, W) / (H, W) / (H, W)), padded to a common width."""
    rows = []
    for image, mask, pred in samples:
        gap = np.full((pred.shape[0], 4, 3), 64, np.uint8)
        picture = display_rgb(image.float().numpy().transpose(1, 2, 0))  # (H, W, 3) uint8, stretched
        rows.append(np.concatenate([picture, gap, colourise(mask.numpy()), gap, colourise(pred.numpy())], axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=64) for r in rows]
    return np.concatenate(rows, axis=0)


def format_record(record: dict) -> str:
    """One evaluation as a line for the terminal."""
    keys = ["train/loss", "val/loss", "val/dice", "val/iou", "val/threshold", "lr", "images_per_s"]
    shown = [f"{k} {record[k]:.4g}" for k in keys if isinstance(record.get(k), float | int)]
    return f"epoch {record['epoch']} step {record['step']}: " + ", ".join(shown)


class RunLogger:
    """Writes the run folder's logs; only the main process (rank 0) should create one."""

    def __init__(self, run_dir: Path, tensorboard: bool, resumed_at: int | None = None):
        """`resumed_at`: the step of the checkpoint a resumed run continues from; records logged after it (by a
        session that died before its next checkpoint) are dropped, so that each evaluation has exactly one record."""
        self.run_dir = Path(run_dir)
        self.writer = None
        if resumed_at is not None:
            self._drop_records_after(resumed_at)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional extra
                SummaryWriter = None
            if SummaryWriter is not None:
                purge = None if resumed_at is None else resumed_at + 1  # TensorBoard drops its own later events
                self.writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"), purge_step=purge)

    def _drop_records_after(self, step: int) -> None:
        path = self.run_dir / "metrics.jsonl"
        if not path.is_file():
            return
        lines = path.read_text().splitlines()
        kept = [line for line in lines if json.loads(line).get("step", 0) <= step]
        if len(kept) < len(lines):
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            os.replace(tmp, path)

    def log(self, record: dict) -> None:
        strict = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in record.items()}
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(strict, allow_nan=False) + "\n")
        if self.writer is not None:
            for key, value in strict.items():
                if key not in ("epoch", "step") and isinstance(value, int | float):
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
