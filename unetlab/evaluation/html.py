"""The evaluation report: one self-contained `report.html`, with `report.json`, `per_image.csv` and the figures as PNG.

`write_report(out, evaluation, facts, training)` writes into the folder `out`:

    report.html           opens from disk with no network at all: figures inline as data:image/png URIs, CSS inline,
                          no script, no web font; every text from outside (file names, class names) HTML-escaped
    report.json           the facts, the set's scores (`Evaluation.summary`), the confusion matrix, the calibration
                          bins and every image's scores; strict JSON (undefined scores are null)
    per_image.csv         one row per image in the order scored (undefined scores empty)
    confusion_matrix.png, reliability.png, precision_recall.png, roc.png (two classes), training_curves.png,
    overlay_legend.png    the figures

each written atomically (a temporary file in `out`, then os.replace). Sections of the page: summary (model,
checkpoint, data, which images from which split, the decision threshold and where it came from), per-class scores,
confusion matrix, calibration, ranking curves, boundary metrics, touching objects (two classes only), the images
worst first (by Dice) with their overlays, and the training curves when given. `write_report(out, None, facts,
training)` writes the training part alone (`unetlab report RUN`).
"""

import base64
import csv
import html
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from unetlab.errors import UnetlabError
from unetlab.evaluation import figures
from unetlab.evaluation.boundary import BOUNDARY_SCORES
from unetlab.evaluation.regions import REGION_SCORES
from unetlab.evaluation.scores import SCORES
from unetlab.evaluation.scoring import Evaluation, dice_order

LABELS = {  # column titles of the scores
    "dice": "Dice", "iou": "IoU", "precision": "precision", "recall": "recall", "specificity": "specificity",
    "hd95": "HD95 (px)", "assd": "ASSD (px)", "surface_dice": "surface Dice", "pixel_error": "pixel error",
    "rand_error": "adapted Rand error", "vi": "VI (bits)", "vi_split": "VI split (bits)", "vi_merge": "VI merge (bits)",
}  # fmt: skip
STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 0 24px 48px; color: #1d1d1f; background: #fff; }
h1 { font-size: 24px; margin: 24px 0 4px; } h2 { font-size: 18px; margin: 32px 0 8px; border-bottom: 1px solid #ddd;
     padding-bottom: 4px; }
p.note, .note { color: #555; font-size: 13px; }
table { border-collapse: collapse; margin: 8px 0; } th, td { padding: 3px 10px; border-bottom: 1px solid #e5e5e5;
        text-align: right; vertical-align: middle; } th { background: #f5f5f7; }
td.name, th.name { text-align: left; min-width: 5em; max-width: 320px; overflow-wrap: break-word; }
table.facts td, table.facts th { text-align: left; } table.facts th { width: 190px; }
tr.mean td { font-weight: 600; background: #fafafa; }
img.figure { max-width: 100%; height: auto; display: block; margin: 8px 0; }
img.thumb { display: block; transition: transform 0.1s; transform-origin: left center; }
img.thumb:hover { transform: scale(2.5); position: relative; z-index: 2; box-shadow: 0 2px 12px #0006; }
nav a { margin-right: 12px; }
"""


@dataclass
class ReportFacts:
    """What the caller knows about the evaluation, shown first in the report (plain text; escaped when written).

    Attributes:
        model: the model, e.g. "unet, 1 input channel, 1 output (sigmoid), 7,765,441 parameters".
        checkpoint: the checkpoint file.
        data: the data folder.
        images: which images were scored and from which split, e.g. "the 6 validation images that the run recorded".
        threshold_source: where the binary decision threshold came from: "chosen on the validation images of the
            run", "0.5 (the default)", "given by --threshold".
        extra: more (label, text) rows, e.g. {"device": "cuda", "time": "12.3 s"}.
        title: the page title.
    """

    model: str = ""
    checkpoint: str = ""
    data: str = ""
    images: str = ""
    threshold_source: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    title: str = "unetlab evaluation report"


def write_report(
    out: str | Path, evaluation: Evaluation | None, facts: ReportFacts, training: list[dict] | None = None
) -> list[Path]:
    """Write the report files into `out` (created if needed; files of an earlier report are replaced).

    Args:
        evaluation: from `evaluate_stream`; None for a report of the training curves alone.
        facts: the summary's facts.
        training: the run's records (`figures.read_metrics_log`), or None.

    Returns:
        The paths written, report.html first.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UnetlabError(f"--out {out} is a file; give a folder for the report")
    if evaluation is None and not training:
        raise UnetlabError("nothing to report: no scored images and no training records")
    pictures = {}  # file name -> PNG bytes
    sections = [_summary(evaluation, facts)]
    if evaluation is not None:
        sections += _evaluation_sections(evaluation, pictures)
    if training:
        pictures["training_curves.png"] = figures.training_figure(training)
        sections.append(_section("training", "Training curves", _img(pictures["training_curves.png"], "training")))
    written = [figures.write_atomic(out / "report.html", _page(facts.title, sections))]
    if evaluation is not None:
        written.append(figures.write_atomic(out / "report.json", _json(evaluation, facts)))
        written.append(figures.write_atomic(out / "per_image.csv", _csv(evaluation)))
    written += [figures.write_atomic(out / name, data) for name, data in pictures.items()]
    return written


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _num(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '<span title="undefined (0 / 0)">&ndash;</span>'
    return f"{value:.{digits}f}"


def _img(data: bytes, alt: str, css: str = "figure") -> str:
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return f'<img class="{css}" alt="{_e(alt)}" src="{uri}">'


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>\n{body}\n</section>'


def _table(header: list[str], rows: list[list[str]], css: str = "", mean_rows: int = 0) -> str:
    """Cells are HTML already (escape text before); the first column is left-aligned; the last `mean_rows` bold."""
    head = "".join(f'<th class="name">{h}</th>' if i == 0 else f"<th>{h}</th>" for i, h in enumerate(header))
    body = []
    for n, row in enumerate(rows):
        cells = "".join(f'<td class="name">{c}</td>' if i == 0 else f"<td>{c}</td>" for i, c in enumerate(row))
        body.append(f'<tr class="mean">{cells}</tr>' if n >= len(rows) - mean_rows else f"<tr>{cells}</tr>")
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _summary(evaluation: Evaluation | None, facts: ReportFacts) -> str:
    rows = [("model", facts.model), ("checkpoint", facts.checkpoint), ("data", facts.data), ("images", facts.images)]
    rows = [(label, _e(text)) for label, text in rows if text]  # (label, HTML)
    if evaluation is not None:
        rows.append(("classes", _e(", ".join(f"{i} {n}" for i, n in enumerate(evaluation.class_names)))))
        if evaluation.threshold is not None:
            source = _e(facts.threshold_source or "source not given")
            rows.append(("decision threshold", f"foreground where p &ge; {evaluation.threshold:.4g} ({source})"))
        else:
            rows.append(("decision rule", "the most probable class (softmax)"))
        rows.append(("images scored", str(len(evaluation.rows))))
    rows += [(label, _e(text)) for label, text in facts.extra.items()]
    body = "".join(f"<tr><th>{_e(label)}</th><td>{value}</td></tr>" for label, value in rows)
    return _section("summary", "Summary", f'<table class="facts">{body}</table>')


def _evaluation_sections(evaluation: Evaluation, pictures: dict) -> list[str]:
    names, summary, hist = evaluation.class_names, evaluation.summary(), evaluation.histograms
    sections = []
    header = ["class", "Dice", "IoU", "precision", "recall", "specificity", "AP", "AUC", "ECE"]
    rows = []
    for c, name in enumerate(names):
        scored = c in hist.classes
        rows.append([_e(name)] + [_num(summary[f"{s}/{name}"]) for s in SCORES]
                    + [_num(summary[f"{s}/{name}"]) if scored else "" for s in ("ap", "auc", "ece")])  # fmt: skip
    rows.append(["foreground mean"] + [_num(summary[s]) for s in (*SCORES, "ap", "auc", "ece")])
    note = (
        f"Scores from the confusion matrix summed over all {len(evaluation.rows)} images; the headline is the mean "
        "over the foreground classes (1 and up). Empty-mask convention: a score whose denominator is 0 (e.g. the "
        "Dice of a class in neither the truth nor the prediction) is undefined, shown as &ndash; and left out of "
        f"every mean. Pixel accuracy (all classes): {_num(summary['pixel_accuracy'])}; image-wise mean Dice: "
        f"{_num(summary['imagewise/dice'])}."
    )
    others = ""
    if evaluation.other_thresholds:
        other_rows = [[f"p &ge; {evaluation.threshold:.4g} (used)"] + [_num(summary[s]) for s in SCORES]]
        other_rows += [[f"p &ge; {t:g}"] + [_num(summary[f"at_{t:g}/{s}"]) for s in SCORES]
                       for t in evaluation.other_thresholds]  # fmt: skip
        other_header = ["threshold"] + [LABELS[s] for s in SCORES]
        others = "<p>The foreground scores at other thresholds:</p>" + _table(other_header, other_rows)
    sections.append(_section("classes", "Per-class scores", _table(header, rows, mean_rows=1) +
                             f'<p class="note">{note}</p>' + others))  # fmt: skip

    pictures["confusion_matrix.png"] = figures.confusion_figure(evaluation.confusion.matrix, names)
    sections.append(_section("confusion", "Confusion matrix", _img(pictures["confusion_matrix.png"], "confusion")))

    pictures["reliability.png"] = figures.reliability_figure(hist, names)
    calibration = (
        f'<p class="note">Each class against the rest, with its own probability; {hist.calibration_bins} '
        f"equal-width bins on [0, 1]. ECE = sum over bins of (pixels in bin / all pixels) |mean probability - "
        f"observed frequency|. Top-label ECE (the most probable class's confidence against its being right): "
        f"{_num(summary['ece_top'])}.</p>"
    )
    sections.append(_section("calibration", "Calibration", _img(pictures["reliability.png"], "reliability")
                             + calibration))  # fmt: skip

    pictures["precision_recall.png"] = figures.pr_figure(hist, names)
    ranking = _img(pictures["precision_recall.png"], "precision-recall curves")
    if evaluation.binary:
        pictures["roc.png"] = figures.roc_figure(hist, names, [1] if 1 in hist.classes else None)
        ranking += _img(pictures["roc.png"], "ROC curve")
    bounds = {k: max([0.0] + [v for c in hist.classes if not math.isnan(v := summary[f"{k}_bound/{names[c]}"])])
              for k in ("ap", "auc")}  # fmt: skip
    ranking += (
        f'<p class="note">From histograms of {len(hist.edges) - 1} probability bins ({hist.bins} equal-width bins, '
        f"the first and the last split into log-spaced bins from {hist.edges[1]:.0e} to 1/{hist.bins} and their "
        "mirror images near 1), streamed image by image: each curve point is exact at its threshold (a bin edge). "
        "Whatever the order of the pixels inside each bin, the AP shown is within "
        f"{bounds['ap']:.1e} of the exact (unbinned) AP, and the "
        f"AUC within {bounds['auc']:.1e} of the exact AUC.</p>"
    )
    sections.append(_section("ranking", "Ranking: precision-recall" + (" and ROC" if evaluation.binary else ""),
                             ranking))  # fmt: skip

    boundary_rows = [
        [_e(names[c])] + [_num(summary[f"{s}/{names[c]}"], 3) for s in BOUNDARY_SCORES]
        + [str(summary[f"undefined_hd95/{names[c]}"])]
        for c in range(1, len(names))
    ]  # fmt: skip
    boundary_rows.append(["foreground mean"] + [_num(summary[s], 3) for s in BOUNDARY_SCORES] + [""])
    tolerance = f"{evaluation.tolerance:g} px"
    header = ["class", "HD95 (px)", "ASSD (px)", f"surface Dice at {tolerance}", "images with one side empty"]
    boundary_note = (
        "Means over the images of each image's score. Surfaces are the mask pixels with a 4-neighbour outside the "
        "mask (MONAI's definition); distances are exact Euclidean distances in px. HD95 is the larger of the two "
        "directed 95th percentiles, ASSD the mean of both directions' distances, surface Dice the share of "
        f"surface pixels within {tolerance} of the other surface. When only one of truth and prediction holds "
        "the class, HD95 and ASSD are undefined (left out, counted in the last column) and surface Dice is 0."
    )
    sections.append(_section("boundary", "Boundary metrics", _table(header, boundary_rows, mean_rows=1)
                             + f'<p class="note">{boundary_note}</p>'))  # fmt: skip

    if evaluation.cell_class is not None:
        cells = names[evaluation.cell_class]
        region_rows = [[LABELS[s], _num(summary[s])] for s in REGION_SCORES]
        region_note = (
            f"As the ISBI 2012 challenge scored them: the objects are the 4-connected regions of class "
            f"{_e(cells)}, separated by the other class. Adapted Rand error and variation of information (bits; "
            "split = H(prediction | truth), merge = H(truth | prediction)) are restricted to the true objects' "
            "pixels; pixel error is 1 - pixel accuracy. Means over the images."
        )
        sections.append(_section("regions", "Touching objects", _table(["score", "mean"], region_rows)
                                 + f'<p class="note">{region_note}</p>'))  # fmt: skip

    sections.append(_images_section(evaluation, pictures))
    return sections


def _images_section(evaluation: Evaluation, pictures: dict) -> str:
    names = evaluation.class_names
    wrong = len(names) > 2
    pictures["overlay_legend.png"] = figures.overlay_legend(wrong_class=wrong)
    columns = ["dice", "iou", "precision", "recall", "hd95", "assd", "surface_dice"]
    if evaluation.cell_class is not None:
        columns += ["pixel_error", "rand_error", "vi"]
    order = sorted(evaluation.rows, key=dice_order)  # worst first
    rows = []
    for row in order:
        thumb = _img(row.thumbnail, f"overlay of {row.name}", "thumb") if row.thumbnail else ""
        rows.append([_e(row.name), thumb] + [_num(row.scores[c], 3) for c in columns])
    header = ["image", "overlay"] + [LABELS[c] for c in columns]
    legend = _img(pictures["overlay_legend.png"], "legend: " + ", ".join(figures.OVERLAY_COLOURS), "legend")
    note = (
        '<p class="note">Sorted by Dice (foreground mean), worst first; images without any foreground in truth '
        "or prediction (Dice undefined) last. Overlays: each foreground pixel of truth or prediction tinted by "
        "its outcome (hover to enlarge).</p>"
    )
    return _section("images", "Images, worst first", legend + note + _table(header, rows))


def _page(title: str, sections: list[str]) -> str:
    links = [("summary", "summary"), ("classes", "classes"), ("confusion", "confusion"), ("calibration",
             "calibration"), ("ranking", "ranking"), ("boundary", "boundary"), ("regions", "touching objects"),
             ("images", "images"), ("training", "training")]  # fmt: skip
    present = [(a, t) for a, t in links if any(f'<section id="{a}">' in s for s in sections)]
    nav = "<nav>" + "".join(f'<a href="#{a}">{t}</a>' for a, t in present) + "</nav>"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        # No script, no connection of any kind: the page must render offline from the file alone.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'\">\n"
        '<link rel="icon" href="data:,">\n'  # or the browser asks for /favicon.ico
        f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{_e(title)}</h1>\n{nav}\n"
        + "\n".join(sections)
        + "\n</body>\n</html>\n"
    )


def _strict(value):
    """NaN and infinities -> None, recursively, for strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    if hasattr(value, "tolist"):  # NumPy arrays and scalars
        return _strict(value.tolist())
    return value


def _json(evaluation: Evaluation, facts: ReportFacts) -> str:
    hist, names = evaluation.histograms, evaluation.class_names
    report = {
        "facts": asdict(facts),
        "class_names": names,
        "threshold": evaluation.threshold,
        "surface_dice_tolerance_px": evaluation.tolerance,
        "ranking_bins": {"equal_width": hist.bins, "edges": hist.edges},
        "calibration_bins": hist.calibration_bins,
        "summary": evaluation.summary(),
        "confusion_matrix": evaluation.confusion.matrix,  # rows: true class, columns: predicted class
        "calibration": {names[c]: hist.reliability(c) for c in hist.classes} | {"top-label": hist.reliability(None)},
        "images": [{"image": row.name, **row.scores} for row in evaluation.rows],
    }
    return json.dumps(_strict(report), indent=1, allow_nan=False) + "\n"


def _csv(evaluation: Evaluation) -> str:
    buffer = io.StringIO()
    keys = list(dict.fromkeys(k for row in evaluation.rows for k in row.scores))
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", *keys])
    for row in evaluation.rows:
        values = [row.scores.get(k, math.nan) for k in keys]
        writer.writerow([row.name] + ["" if isinstance(v, float) and math.isnan(v) else repr(v) for v in values])
    return buffer.getvalue()
