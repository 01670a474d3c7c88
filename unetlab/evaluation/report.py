"""Evaluation reports: a trained model scored on a labelled folder, image by image and over the whole set.

`evaluate_pairs(predictor, pairs)` predicts each image exactly as `unetlab predict` does (overlap-tile, the
checkpoint's normalisation and threshold) and compares the classes with its mask, mapped to classes by the
checkpoint's `DataInfo`. Scores follow `unetlab.evaluation.metrics` (and the keys of `unetlab train`'s validation):
- per image: Dice, IoU, precision, recall and accuracy, the headline (mean over the foreground classes) and each
  class's, NaN where a class is in neither the mask nor the prediction of that image;
- over the set: the same from the counts summed over all images, and `imagewise/<metric>`, the mean over images
  of the per-image headline.
"""

import csv
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from unetlab.data.folders import canonical, find_layout, pair_files, prepare_mask
from unetlab.data.info import DataInfo
from unetlab.data.io import read_image, read_mask
from unetlab.errors import UnetlabError
from unetlab.evaluation.metrics import METRICS, MetricAccumulator
from unetlab.inference.predictor import Predictor
from unetlab.logits import num_labels
from unetlab.settings import SettingError


@dataclass
class Report:
    """Scores per image (`rows`, in the order of the pairs) and over the set (`summary`)."""

    class_names: list[str]
    rows: list[dict]  # {"image": file name, "dice": ..., "dice/<class>": ..., ...}
    summary: dict  # {"images": n, "dice": ..., "dice/<class>": ..., "imagewise/dice": ..., ...}

    def write(self, out: Path) -> list[Path]:
        """`out/report.csv` (one row per image) and `out/report.json` (the summary); returns their paths."""
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "report.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(self.rows[0]))
            writer.writeheader()
            writer.writerows({k: "" if _nan(v) else v for k, v in row.items()} for row in self.rows)
        summary = {k: None if _nan(v) else v for k, v in self.summary.items()}  # strict JSON: NaN -> null
        (out / "report.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
        return [out / "report.csv", out / "report.json"]

    def format(self) -> str:
        """The set's scores as a table: one row per class, then the headline and the image-wise means."""
        lines = [f"{'':<16}" + "".join(f"{m:>11}" for m in METRICS)]
        for name in self.class_names:
            lines.append(f"{name:<16}" + "".join(_cell(self.summary.get(f"{m}/{name}")) for m in METRICS))
        lines.append(f"{'foreground mean':<16}" + "".join(_cell(self.summary.get(m)) for m in METRICS))
        lines.append(f"{'image-wise mean':<16}" + "".join(_cell(self.summary.get(f"imagewise/{m}")) for m in METRICS))
        return "\n".join(lines)


def evaluate_pairs(
    predictor: Predictor, pairs: list[tuple[Path, Path]], ignore_values: list = (), progress: bool = False
) -> Report:
    """Score `predictor` on (image, mask) file pairs.

    Args:
        ignore_values: mask values left out of the scores, besides the checkpoint's own ignore values (e.g. a
            "difficult" label that only the evaluation masks have).

    Raises:
        UnetlabError: naming the file, for an unreadable image or mask, a mask of another size than its image, or
            mask values that are not among the checkpoint's classes; naming the value, for an ignore value that is
            one of the classes.
    """
    if not pairs:
        raise UnetlabError("no image/mask pairs to evaluate")
    info, k = with_ignored(predictor.data, ignore_values), num_labels(predictor.num_classes)
    names = info.class_names or [str(c) for c in range(k)]
    total, rows = MetricAccumulator(k, names), []
    for image_path, mask_path in tqdm(pairs, unit="image", disable=not progress):
        image = read_image(image_path)
        truth = info.mask_to_classes(prepare_mask(read_mask(mask_path), info.is_colour_mask), str(mask_path))
        if truth.shape != image.shape[:2]:
            raise UnetlabError(
                f"{mask_path} is {truth.shape[1]} x {truth.shape[0]} px but its image {image_path} "
                f"is {image.shape[1]} x {image.shape[0]}; give each image a mask of its size"
            )
        pred = torch.from_numpy(predictor(image, source=str(image_path)).classes.astype(np.int64))[None]  # (1, H, W)
        truth = torch.from_numpy(truth)[None]  # (1, H, W)
        one = MetricAccumulator(k, names)
        one.update(pred, truth)
        total.update(pred, truth)
        rows.append({"image": image_path.name, **one.compute()})
    summary = {"images": len(rows), **total.compute()}
    for metric in METRICS:
        values = [r[metric] for r in rows if not _nan(r[metric])]
        summary[f"imagewise/{metric}"] = sum(values) / len(values) if values else math.nan
    return Report(names, rows, summary)


def folder_pairs(data: str | Path, split: str | None = None, image_dir: str = "images", mask_dir: str = "masks"):
    """The (image, mask) pairs of a labelled dataset folder to score, and the split they are from.

    The default split is the first with masks of test, val, all (the flat layout) and train: a `test/` of images
    only is skipped for `val/`.

    Raises:
        UnetlabError: for a folder without that split, or unpaired files (naming them and `unetlab data check`).
    """
    layout = find_layout(data, image_dir, mask_dir)
    labelled = [s for s in ("test", "val", "all", "train") if s in layout and layout[s][1].is_dir()]
    split = split or (labelled or list(layout))[0]
    if split not in layout:
        raise SettingError(lambda n: f"{n('split')} {split}: {data} has {', '.join(layout)}; choose one of them",
                           ["split"])  # fmt: skip
    pairs, problems = pair_files(*layout[split])
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise UnetlabError(f"{shown}; fix these (`unetlab data check {data}` lists them) and run again")
    return pairs, split


def with_ignored(info: DataInfo, values: list) -> DataInfo:
    """`info` with `values` (ints, or [r, g, b] colours) added to its ignore values."""
    colour = info.is_colour_mask
    extra = [canonical(v, colour) for v in values]
    classes = [canonical(v, colour) for v in info.class_values]
    for value in extra:
        if not colour and isinstance(value, tuple):
            raise SettingError(
                lambda n, value=value: (
                    f"{n('ignore_values')} {value}: a colour, but the checkpoint's masks are grey values"
                ),
                ["ignore_values"],
            )
        if value in classes:
            raise SettingError(
                lambda n, value=value: (
                    f"{n('ignore_values')} {value} is class {classes.index(value)} of the checkpoint; ignore "
                    "only values that are not classes"
                ),
                ["ignore_values"],
            )
    return replace(info, ignore_values=[*info.ignore_values, *extra])


def _nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _cell(value) -> str:
    return f"{'-':>11}" if value is None or _nan(value) else f"{value:>11.4f}"
