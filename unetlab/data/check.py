"""`check_folder`: everything wrong with a dataset folder at once, for `unetlab data check DIR`.

`build_datasets` stops at the first problems; this reads every pair and lists all of them: unpaired files, image
and mask size mismatches, unreadable files, lossy (JPEG) masks, empty folders, and what the split and the class
table refuse (too few pairs to hold out validation, class values that are missing, repeated or unknown). The pairs
are read, split and turned into a class table by the very steps `build_datasets` takes (`sources.scan_folder`,
`split_pairs`, `class_table`), so a folder reported usable is one that training accepts. The report also summarises
what the dataset holds: pairs per split, image sizes, channels and dtypes, mask values with their pixel shares, the
class table, and masks with no foreground (a note, not a problem).
"""

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from unetlab.data.config import DataConfig, check_source_exists
from unetlab.data.folders import Scan, canonical, find_layout, pair_files
from unetlab.data.io import is_image_file
from unetlab.data.sources import class_table, scan_folder, split_pairs
from unetlab.errors import UnetlabError, plural


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


def check_folder(cfg: DataConfig) -> CheckReport:
    """Check the folder dataset `cfg.source` as `build_datasets(cfg)` would read it (layouts as in
    `unetlab.data.folders`; `class_values`, `class_names`, `ignore_values`, `val_list` and `val_fraction` as there).
    """
    report, cfg = CheckReport(Path(cfg.source)), cfg.seeded()
    try:
        check_source_exists(cfg)
        layout = find_layout(cfg.source, cfg.image_dir, cfg.mask_dir)
        pairs, scan, problems = scan_folder(replace(cfg, cache=False))
    except UnetlabError as exc:
        report.problems.append(str(exc))
        return report
    report.problems += problems
    for split, (images, masks) in layout.items():
        where = "" if split == "all" else f"{split}: "
        if split in pairs:
            report.lines.append(f"{where}{plural(len(pairs[split]), 'pair')} in {images} + {masks}")
        elif masks.is_dir():
            found = plural(len(pair_files(images, masks)[0]), "pair")
            report.lines.append(f"{where}{found} in {images} + {masks} (not used for training; not checked)")
        else:
            found = plural(sum(is_image_file(p) for p in images.iterdir()), "image")
            report.lines.append(f"{where}{found} without masks in {images} (not used for training)")
    if any(pairs.values()):  # with no pairs at all, the folders' problems say it already
        try:
            train, val = split_pairs(cfg, pairs)
            report.lines.append(f"training / validation: {len(train)} / {plural(len(val), 'pair')}")
        except UnetlabError as exc:
            report.problems.append(str(exc))
    if scan.records:
        _describe(report, scan, cfg)
    return report


def _describe(report: CheckReport, scan: Scan, cfg: DataConfig) -> None:
    records = scan.records
    sizes = Counter(f"{w} x {h}" for h, w in (r.size for r in records))
    report.lines.append(f"image sizes (width x height px): {_counts(sizes, len(records))}")
    report.lines.append(f"channels: {_counts(Counter(r.channels for r in records), len(records))}")
    report.lines.append(f"dtypes: {_counts(Counter(r.dtype for r in records), len(records))}")
    info, problems = class_table(cfg, scan)
    report.problems += problems
    colour = info.is_colour_mask if info else scan.colour
    values = scan.values(colour)
    total = sum(values.values())
    shares = ", ".join(f"{v} {100 * n / total:.1f}%" for v, n in sorted(values.items()))
    report.lines.append(f"mask values (pixel share): {shares}")
    if info is None:
        return
    classes = [canonical(v, colour) for v in info.class_values]
    names = info.class_names or [""] * len(classes)
    table = ", ".join(f"{k}{' ' + name if name else ''} = {v}" for k, (v, name) in enumerate(zip(classes, names)))
    ignore = {canonical(v, colour) for v in info.ignore_values}
    unlabelled = f"; unlabelled: {', '.join(map(str, sorted(ignore)))}" if ignore else ""
    report.lines.append(f"classes (index = mask value): {table}{unlabelled}")
    background = {classes[0]} | ignore
    empty = [r.mask.name for r in records if not {canonical(v, colour) for v in r.values} - background]
    listed = ", ".join(empty[:10]) + (f" and {len(empty) - 10} more" if len(empty) > 10 else "")
    report.lines.append(f"masks with background ({classes[0]}) only: {len(empty)}" + (f": {listed}" if empty else ""))


def _counts(counter: Counter, total: int) -> str:
    """ "512 x 512 (28), 256 x 256 (2)"; a value that every record shares is shown alone."""
    if len(counter) == 1 and next(iter(counter.values())) == total:
        return str(next(iter(counter)))
    return ", ".join(f"{k} ({n})" for k, n in counter.most_common())
