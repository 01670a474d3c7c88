"""`check_folder`: everything wrong with a dataset folder at once, for `unetlab data check DIR`.

`build_datasets` stops at the first problems; this reads every pair and lists all of them: unpaired files, image
and mask size mismatches, unreadable files, mask values outside the declared classes, empty folders. It also
summarises what a usable dataset holds: pairs per split, image sizes, channels and dtypes, mask values with their
pixel shares, and masks with no foreground (a note, not a problem).
"""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from unetlab.data.folders import MAX_CLASSES, Scan, canonical, common_channels, find_layout, pair_files, scan_pairs
from unetlab.data.io import is_image_file
from unetlab.errors import UnetlabError


@dataclass
class CheckReport:
    root: Path
    lines: list[str] = field(default_factory=list)  # the summary, one line per fact
    problems: list[str] = field(default_factory=list)  # each makes the dataset unusable

    @property
    def usable(self) -> bool:
        return not self.problems

    def format(self) -> str:
        lines = [f"dataset {self.root}", *(f"  {line}" for line in self.lines)]
        if self.problems:
            lines += [f"problems ({len(self.problems)}):", *(f"  - {p}" for p in self.problems)]
            lines.append("not usable: fix the problems above")
        else:
            lines.append("usable: yes")
        return "\n".join(lines)


def check_folder(
    root: str | Path,
    image_dir: str = "images",
    mask_dir: str = "masks",
    class_values: list | None = None,
    ignore_values: list = (),
) -> CheckReport:
    """Check the dataset folder `root` (layouts as in `unetlab.data.folders`).

    Args:
        class_values: the expected mask values (ints, or [r, g, b] lists); None = accept the values found.
        ignore_values: mask values that mean "unlabelled".
    """
    report = CheckReport(Path(root))
    try:
        layout = find_layout(root, image_dir, mask_dir)
    except UnetlabError as exc:
        report.problems.append(str(exc))
        return report
    pairs = []
    for split, (images, masks) in layout.items():
        where = "" if split == "all" else f"{split}: "
        if split == "test" and not masks.is_dir():
            count = sum(is_image_file(p) for p in images.iterdir())
            report.lines.append(f"{where}{count} images without masks in {images} (not used for training)")
            continue
        found, problems = pair_files(images, masks)
        report.problems += problems
        report.lines.append(f"{where}{len(found)} pairs in {images} + {masks}")
        pairs += found
    scan = scan_pairs(pairs)
    report.problems += scan.problems
    if scan.records:
        _describe(report, scan, class_values, ignore_values)
    return report


def _describe(report: CheckReport, scan: Scan, class_values, ignore_values) -> None:
    records = scan.records
    sizes = Counter(f"{h} x {w}" for h, w in (r.size for r in records))
    report.lines.append(f"image sizes: {_counts(sizes, len(records))}")
    report.lines.append(f"channels: {_counts(Counter(r.channels for r in records), len(records))}")
    report.lines.append(f"dtypes: {_counts(Counter(r.dtype for r in records), len(records))}")
    try:
        common_channels({r.channels for r in records})
    except UnetlabError as exc:
        report.problems.append(str(exc))
    colour = scan.colour or any(isinstance(v, (list, tuple)) for v in [*(class_values or []), *ignore_values])
    values = scan.values(colour)
    total = sum(values.values())
    shares = ", ".join(f"{v} {100 * n / total:.1f}%" for v, n in sorted(values.items()))
    report.lines.append(f"mask values (pixel share): {shares}")
    ignore = {canonical(v, colour) for v in ignore_values}
    if class_values is not None:
        classes = [canonical(v, colour) for v in class_values]
        for mask, unknown in scan.unknown(set(classes) | ignore, colour):
            report.problems.append(
                f"{mask} has values {', '.join(map(str, unknown))} outside the classes "
                f"{', '.join(map(str, classes))}; relabel it, or declare them as class or ignore values"
            )
    else:
        classes = sorted(set(values) - ignore)
    if len(classes) > MAX_CLASSES:
        report.problems.append(f"the masks hold {len(classes)} distinct values; are they label masks?")
    elif len(classes) < 2:
        report.problems.append(f"the masks hold only {classes}; a segmentation needs two classes or more")
        return
    background = {classes[0]} | ignore
    empty = [r.mask.name for r in records if not {canonical(v, colour) for v in r.values} - background]
    listed = ", ".join(empty[:10]) + (f" and {len(empty) - 10} more" if len(empty) > 10 else "")
    report.lines.append(f"masks with background ({classes[0]}) only: {len(empty)}" + (f": {listed}" if empty else ""))


def _counts(counter: Counter, total: int) -> str:
    """ "512 x 512 (28), 256 x 256 (2)"; a value that every record shares is shown alone."""
    if len(counter) == 1 and next(iter(counter.values())) == total:
        return str(next(iter(counter)))
    return ", ".join(f"{k} ({n})" for k, n in counter.most_common())
