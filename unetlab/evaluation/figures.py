"""The figures of an evaluation report, each returned as PNG bytes: confusion matrix, reliability diagram,
precision-recall and ROC curves, training curves from a run's `metrics.jsonl`, and per-image overlay thumbnails.

Charts use matplotlib's object-oriented API on the Agg canvas (no pyplot, no display, no change to the user's
backend), imported only when a chart is drawn: matplotlib is the optional `plot` extra. Thumbnails and their legend
need only Pillow. `write_atomic(path, data)` writes any of them to a file.

Thumbnail colours (the Okabe-Ito palette, told apart with the common colour-vision deficiencies): true positive
(a foreground class, predicted right) bluish green, false positive (foreground predicted on background) vermilion,
false negative (foreground predicted as background) blue, and, with several foreground classes, wrong class
(foreground predicted as another foreground class) orange. Background predicted right and unlabelled pixels are
left untinted.
"""

import io
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from unetlab.data.info import IGNORE_INDEX
from unetlab.errors import UnetlabError

OVERLAY_COLOURS = {  # RGB of each outcome in the thumbnails, in legend order
    "true positive": (0, 158, 115),
    "false positive": (213, 94, 0),
    "false negative": (0, 114, 178),
    "wrong class": (230, 159, 0),
}
OVERLAY_ALPHA = {"true positive": 0.35, "false positive": 0.75, "false negative": 0.75, "wrong class": 0.75}
# weight of each outcome's colour over the image: mistakes stand out from the (often much larger) true positives
DPI = 100


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write `data` to `path` through a temporary file in the same folder and `os.replace`, so that a reader (or a
    crash) never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes the file private; give it the usual mode
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def _figure(width: float, height: float):
    """A new matplotlib Figure on an Agg canvas (inches)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UnetlabError("the report's figures need matplotlib: pip install 'unetlab[plot]'") from None
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def confusion_figure(matrix: np.ndarray, class_names: list[str]) -> bytes:
    """Counts and row-normalised shares side by side (rows: truth, columns: prediction), with class names.

    Args:
        matrix: (K, K) counts, rows the true class.
    """
    matrix = np.asarray(matrix)
    k = len(class_names)
    rows = matrix.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(rows > 0, matrix / np.maximum(rows, 1), np.nan)
    side = 2.2 + 0.45 * k
    figure = _figure(2 * side + 1.2, side)
    panels = figure.subplots(1, 2)
    for axes, values, title, text in (
        (panels[0], matrix, "counts (pixels)", lambda v: f"{v:,.0f}"),
        (panels[1], shares, "row-normalised (recall on the diagonal)", lambda v: "-" if math.isnan(v) else f"{v:.3f}"),
    ):
        shown = np.log10(1 + values) if values is matrix else values  # counts span decades
        picture = axes.imshow(shown, cmap="Blues", vmin=0, vmax=None if values is matrix else 1)
        axes.set_title(title)
        axes.set_xticks(range(k), class_names, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
        axes.set_yticks(range(k), class_names)
        axes.set_xlabel("predicted class")
        axes.set_ylabel("true class")
        if k <= 12:
            top = np.nanmax(shown) if np.isfinite(shown).any() else 1
            for i in range(k):
                for j in range(k):
                    dark = np.isfinite(shown[i, j]) and shown[i, j] > 0.6 * top
                    axes.text(j, i, text(values[i, j]), ha="center", va="center", fontsize=8,
                              color="white" if dark else "black")  # fmt: skip
        if values is not matrix:
            figure.colorbar(picture, ax=axes, shrink=0.8)
    return _png(figure)


def reliability_figure(histograms, class_names: list[str]) -> bytes:
    """A reliability diagram per scored class (one against the rest), with pixel counts per bin below.

    Args:
        histograms: a `ProbabilityHistograms`.
    """
    classes = histograms.classes
    m = histograms.calibration_bins
    figure = _figure(3.3 * len(classes) + 0.4, 4.6)
    grid = figure.subplots(2, len(classes), squeeze=False, sharex=True, height_ratios=[3, 1])
    for column, c in enumerate(classes):
        bins = histograms.reliability(c)
        centres, width = (bins["lower"] + bins["upper"]) / 2, 1 / m
        top, bottom = grid[0, column], grid[1, column]
        top.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
        top.bar(centres, np.nan_to_num(bins["frequency"]), width=width * 0.9, color="#0072b2", alpha=0.8,
                label="observed frequency")  # fmt: skip
        top.plot(bins["mean_prob"], bins["frequency"], "o", color="#d55e00", ms=3, label="bin mean probability")
        top.set_title(f"{class_names[c]}: ECE {histograms.ece(c):.4f}", fontsize=10)
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_ylabel("fraction positive" if column == 0 else "")
        bottom.bar(centres, np.maximum(bins["count"], 0.5), width=width * 0.9, color="grey", log=True)
        bottom.yaxis.set_minor_formatter("")  # label the decades only
        bottom.set_xlabel(f"predicted probability ({m} bins)")
        bottom.set_ylabel("pixels" if column == 0 else "")
    grid[0, 0].legend(loc="upper left", fontsize=7)
    return _png(figure)


def pr_figure(histograms, class_names: list[str]) -> bytes:
    """Precision-recall curves of the scored classes, with average precision in the legend."""
    figure = _figure(5.2, 4.4)
    axes = figure.subplots()
    for c in histograms.classes:
        curve = histograms.pr_curve(c)
        ap = histograms.average_precision(c)[0]
        axes.plot(curve["recall"], curve["precision"], lw=1.5, label=f"{class_names[c]} (AP {ap:.3f})")
    axes.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
    axes.set_title(f"precision-recall ({len(histograms.edges) - 1} probability bins)", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize=8)
    return _png(figure)


def roc_figure(histograms, class_names: list[str], classes: list[int] | None = None) -> bytes:
    """ROC curves with their AUC in the legend (`classes`: the classes to draw, by default the scored ones)."""
    figure = _figure(5.2, 4.4)
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    for c in classes or histograms.classes:
        curve = histograms.roc_curve(c)
        auc = histograms.auc(c)[0]
        axes.plot(curve["fpr"], curve["tpr"], lw=1.5, label=f"{class_names[c]} (AUC {auc:.4f})")
    axes.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="false positive rate", ylabel="true positive rate")
    axes.set_title(f"ROC ({len(histograms.edges) - 1} probability bins)", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    return _png(figure)


def read_metrics_log(path: str | Path) -> list[dict]:
    """The records of a run's `metrics.jsonl` (one JSON object per line; null, an undefined score, becomes NaN).

    Raises:
        UnetlabError: naming the file and line for a line that is not a JSON object.
    """
    path, records = Path(path), []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UnetlabError(f"{path} cannot be read ({exc.strerror}); give a run folder with a metrics.jsonl") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            raise UnetlabError(f"{path} line {number} is not a JSON object; is it a unetlab run's metrics.jsonl?")
        records.append({k: math.nan if v is None else v for k, v in record.items()})
    return records


def training_figure(records: list[dict]) -> bytes:
    """Loss, validation scores and learning rate against the step (or the epoch when no step is recorded).

    Args:
        records: `read_metrics_log`'s records: keys such as "step", "epoch", "train/loss", "val/loss", "val/dice",
            "lr"; per-class keys ("val/dice/<class>") are left out.
    """
    if not records:
        raise UnetlabError("metrics.jsonl holds no records yet; train for at least one evaluation")
    axis = "step" if all("step" in r for r in records) else "epoch"
    x = np.array([r.get(axis, i) for i, r in enumerate(records)], dtype=np.float64)
    keys = list(dict.fromkeys(k for r in records for k in r))
    losses = [k for k in keys if k.endswith("loss")]
    scores = [k for k in keys if k.startswith("val/") and k.count("/") == 1 and not k.endswith("loss")]
    panels = [("loss", losses, False), ("validation scores", scores, False), ("learning rate", ["lr"], True)]
    panels = [p for p in panels if any(k in keys for k in p[1])]
    if not panels:
        raise UnetlabError("metrics.jsonl has no loss, validation score or lr to draw")
    figure = _figure(4.2 * len(panels), 3.6)
    for axes, (title, names, log) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        for name in names:
            y = np.array([_number(r.get(name)) for r in records], dtype=np.float64)
            axes.plot(x, y, marker="o" if len(x) < 30 else None, ms=3, lw=1.3, label=name)
        axes.set_title(title, fontsize=10)
        axes.set_xlabel(axis)
        axes.grid(alpha=0.3)
        if log and np.nanmin([_number(r.get("lr")) for r in records] + [math.inf]) > 0:
            axes.set_yscale("log")
        axes.legend(fontsize=7)
    return _png(figure)


def _number(value) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def _outcomes(truth: np.ndarray, pred: np.ndarray, ignore_index: int) -> np.ndarray:
    """(H, W) int8: 0 untinted, then 1.. in OVERLAY_COLOURS' order."""
    labelled = truth != ignore_index
    outcome = np.zeros(truth.shape, dtype=np.int8)
    outcome[labelled & (truth > 0) & (pred == truth)] = 1
    outcome[labelled & (truth == 0) & (pred > 0)] = 2
    outcome[labelled & (truth > 0) & (pred == 0)] = 3
    outcome[labelled & (truth > 0) & (pred > 0) & (pred != truth)] = 4
    return outcome


def overlay_thumbnail(image, truth, pred, max_side: int = 160, ignore_index: int = IGNORE_INDEX) -> bytes:
    """The image with each pixel tinted by its outcome (see the module docstring), shrunk to `max_side` px.

    Args:
        image: (H, W) or (H, W, C) image of any dtype (stretched for display as `unetlab predict --overlay`
            does), or None for a black background.
        truth, pred: (H, W) class indices (truth may hold `ignore_index`).

    Returns:
        PNG bytes of an RGB image whose longest side is min(max_side, the image's).
    """
    from unetlab.inference.outputs import display_rgb  # a light import, but it pulls torch: only when drawing

    truth, pred = np.asarray(truth), np.asarray(pred)
    h, w = truth.shape
    step = max(1, max(h, w) // (4 * max_side))  # subsample huge images before any full-size RGB array is made
    truth, pred = truth[::step, ::step], pred[::step, ::step]
    if image is None:
        rgb = np.zeros((*truth.shape, 3), dtype=np.uint8)
    else:
        rgb = display_rgb(np.asarray(image)[::step, ::step])
    tints = np.array([(0, 0, 0), *OVERLAY_COLOURS.values()], dtype=np.float32)  # (5, 3)
    weights = np.array([0.0, *(OVERLAY_ALPHA[n] for n in OVERLAY_COLOURS)], dtype=np.float32)  # (5,)
    outcome = _outcomes(truth, pred, ignore_index)
    alpha = weights[outcome][..., None]  # (h, w, 1)
    blended = rgb * (1 - alpha) + tints[outcome] * alpha
    picture = Image.fromarray(np.round(blended).astype(np.uint8))
    scale = min(1.0, max_side / max(picture.size))
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    buffer = io.BytesIO()
    picture.resize(size, Image.Resampling.BOX).save(buffer, format="PNG")
    return buffer.getvalue()


def overlay_legend(wrong_class: bool = False) -> bytes:
    """PNG bytes of the thumbnails' legend: a swatch and a label per outcome ("wrong class" only when asked)."""
    names = [n for n in OVERLAY_COLOURS if wrong_class or n != "wrong class"]
    font = ImageFont.load_default(size=13)
    picture = Image.new("RGB", (140 * len(names), 24), "white")
    draw = ImageDraw.Draw(picture)
    for i, name in enumerate(names):
        x = 140 * i + 4
        draw.rectangle([x, 5, x + 14, 19], fill=OVERLAY_COLOURS[name], outline=(60, 60, 60))
        draw.text((x + 20, 4), name, fill=(20, 20, 20), font=font)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
