"""Where dataset items come from: synthetic images generated on demand, or image/mask files on disk.

A source has `len(source)`, `name(i)` (for error messages) and `load(i) -> (image, classes, instances)`: the image
as (H, W) or (H, W, C) in its stored dtype, the int64 class-index mask (H, W) with IGNORE_INDEX for unlabelled
pixels, and instance labels (H, W) for the weight map, or None when only the semantic mask is known; and `sizes`,
each image's (H, W).
`folder_sources` scans a dataset folder (`scan_folder`), splits it into training and validation (`split_pairs`)
and decides the classes (`class_table`); `unetlab data check` runs the same three steps, so that a folder it calls
usable is one `build_datasets` accepts.
"""

from collections import Counter
from pathlib import Path

import numpy as np

from unetlab.data import synthetic
from unetlab.data.folders import Scan, canonical, common_channels, find_layout, pair_files, prepare_mask, scan_pairs
from unetlab.data.info import DataInfo
from unetlab.data.io import read_image, read_mask, read_text
from unetlab.errors import UnetlabError, plural

MAX_LISTED = 5  # problems quoted in an error message; `unetlab data check` lists them all
MAX_FOUND_CLASSES = 64  # more distinct mask values than this, with no class_values given: not label masks


class SyntheticSource:
    """Images start .. start + count - 1 of a synthetic kind (see `unetlab.data.synthetic`)."""

    def __init__(self, kind: str, seed: int, size: int, start: int, count: int):
        self.kind, self.seed, self.size, self.start, self.count = kind, seed, size, start, count
        self.sizes = [(size, size)] * count

    def __len__(self) -> int:
        return self.count

    def name(self, i: int) -> str:
        return f"synthetic-{self.kind} image {self.start + i}"

    def load(self, i: int):
        if self.kind == "cells":
            image, instances = synthetic.generate_cell_instances(self.start + i, seed=self.seed, size=self.size)
            return image.transpose(1, 2, 0), (instances > 0).astype(np.int64), instances  # image (H, W, C)
        image, mask = synthetic.generate(self.kind, self.start + i, seed=self.seed, size=self.size)
        return image.transpose(1, 2, 0), mask, None


class FolderSource:
    """Image/mask file pairs; masks are turned into class indices with `info.mask_to_classes`.

    `arrays` ({pair index: (image, mask)}) hands over what the scan has read already: the first load of such a
    pair takes them (and lets them go), later loads read the files.
    """

    def __init__(self, pairs, info: DataInfo, arrays: dict | None = None, root=None, sizes=None):
        self.pairs, self.info, self.arrays = pairs, info, arrays or {}
        self.root = Path(root) if root is not None else None  # the dataset folder the pairs are from
        self.sizes = sizes  # (H, W) of each pair's image, from the scan

    def __len__(self) -> int:
        return len(self.pairs)

    def name(self, i: int) -> str:
        return str(self.pairs[i][0])

    def load(self, i: int):
        image, mask = self.arrays.pop(i, None) or (read_image(self.pairs[i][0]), read_mask(self.pairs[i][1]))
        mask = prepare_mask(mask, self.info.is_colour_mask)
        return image, self.info.mask_to_classes(mask, str(self.pairs[i][1])), None


def scan_folder(cfg) -> tuple[dict[str, list], Scan, list[str]]:
    """Pair and read the training and validation files of the folder dataset of `cfg` (a `DataConfig`).

    Returns:
        (pairs per split: "all", or "train" and "val"; the scan of all of them; the problems found, each a sentence).

    Raises:
        UnetlabError: when `cfg.source` is not a dataset folder (see `find_layout`).
    """
    layout = find_layout(cfg.source, cfg.image_dir, cfg.mask_dir)
    pairs, problems = {}, []
    for split in ("all", "train", "val"):
        if split in layout:
            pairs[split], found = pair_files(*layout[split])
            problems += found
    scan = scan_pairs([p for split in pairs for p in pairs[split]], keep_arrays=cfg.cache)
    return pairs, scan, problems + scan.problems


def folder_sources(cfg) -> tuple[FolderSource, FolderSource, DataInfo]:
    """Scan the folder dataset of `cfg` (a `DataConfig`): (training source, validation source, info without mean/std).

    Raises:
        UnetlabError: listing the first problems (unpaired or unreadable files, size mismatches, ...).
    """
    pairs, scan, problems = scan_folder(cfg)
    _refuse(cfg.source, problems)
    train, val = split_pairs(cfg, pairs)
    info, problems = class_table(cfg, scan)
    _refuse(cfg.source, problems)
    arrays, sizes = {r.image: r.arrays for r in scan.records}, {r.image: r.size for r in scan.records}

    def source(pairs):
        kept = {i: arrays[p[0]] for i, p in enumerate(pairs)} if cfg.cache else None
        return FolderSource(pairs, info, kept, cfg.source, [sizes[p[0]] for p in pairs])

    return source(train), source(val), info


def _refuse(root, problems: list[str]) -> None:
    if problems:
        more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
        raise UnetlabError(
            f"{root}: {'; '.join(problems[:MAX_LISTED])}{more}; run `unetlab data check {root}` for the full list"
        )


def split_pairs(cfg, pairs: dict[str, list]) -> tuple[list, list]:
    """(training pairs, validation pairs) from the pairs per split of `scan_folder`: the val/ folder, else the
    list file `cfg.val_list`, else a seeded random fraction `cfg.val_fraction`.

    Raises:
        UnetlabError: for a dataset without training pairs, too few pairs to hold out a fraction, or a list file
            that is missing or names images that are not there.
    """
    if "all" not in pairs and "train" not in pairs:
        raise UnetlabError(
            f"{cfg.source} has no train/ split; put the training pairs in {cfg.source}/train/{cfg.image_dir}"
        )
    return _split(cfg, pairs["all"] if "all" in pairs else pairs["train"], pairs.get("val"))


def _split(cfg, pairs: list, val_pairs: list | None) -> tuple[list, list]:
    """(training pairs, validation pairs): the val folder, else the list file, else a seeded random fraction."""
    if val_pairs is not None:
        if cfg.val_list:
            raise UnetlabError(f"{cfg.source} has a val/ folder and val_list is set too; use one of them")
        return pairs, val_pairs
    if cfg.val_list:
        path = Path(cfg.val_list)
        if not path.is_file() and (Path(cfg.source) / path).is_file():
            path = Path(cfg.source) / path
        stems = {p[0].stem for p in pairs}
        text = read_text(path, "val_list", "a text file with one image name per line")
        names = [line.strip() for line in text.splitlines() if line.strip()]
        if not names:
            raise UnetlabError(f"val_list {path} names no images; list the validation images, one per line")
        wanted = {name if name in stems else Path(name).stem for name in names}  # "a.png" or "a"
        if wanted - stems:
            raise UnetlabError(
                f"val_list {path} names images that are not in the dataset: "
                f"{', '.join(sorted(wanted - stems)[:MAX_LISTED])}; fix the names or remove those lines"
            )
        if not stems - wanted:
            raise UnetlabError(
                f"val_list {path} names every image of the dataset ({plural(len(stems), 'image')}), so none is left to "
                "train on; list only the validation images"
            )
        return [p for p in pairs if p[0].stem not in wanted], [p for p in pairs if p[0].stem in wanted]
    n_val = int(round(cfg.val_fraction * len(pairs)))
    n_val = max(n_val, 1) if cfg.val_fraction > 0 else 0
    if n_val >= len(pairs):
        raise UnetlabError(
            f"{cfg.source} has {plural(len(pairs), 'pair')}, too few to hold out a validation fraction; add pairs, "
            "or set val_fraction to 0"
        )
    chosen = set(np.random.default_rng(cfg.seed).permutation(len(pairs))[:n_val].tolist())
    return [p for i, p in enumerate(pairs) if i not in chosen], [p for i, p in enumerate(pairs) if i in chosen]


def class_table(cfg, scan: Scan) -> tuple[DataInfo | None, list[str]]:
    """The `DataInfo` (without mean and std) of a scanned folder dataset, or None and the problems that prevent it.

    The classes come from `cfg.class_values` / `class_names` / `ignore_values` (a `DataConfig`) or, without class
    values, from the mask values found (sorted) less the ignore values. Problems: a class value given twice, given
    as an ignore value too, or found in no mask; names that do not match the classes; masks with values outside
    the table (one problem per mask); more than `MAX_FOUND_CLASSES` values found without class values; fewer than
    two classes; a mix of channel counts that cannot be converted. Masks that are all palette PNGs with one palette
    give the info that palette.
    """
    given = [*(cfg.class_values or []), *(v for v in cfg.ignore_values if not isinstance(v, str))]
    colour = scan.colour or any(isinstance(v, (list, tuple)) for v in given)
    found = scan.values(colour)
    values = [canonical(v, colour) for v in cfg.class_values] if cfg.class_values else sorted(found)
    repeated = [v for v, n in Counter(values).items() if n > 1]
    if repeated:
        return None, [f"class_values lists {repeated[0]} more than once; give each class's mask value once"]
    names = list(cfg.class_names) if cfg.class_names else None
    if cfg.class_values and _names_problem(names, values):  # before a named ignore value leaves both lists
        return None, [_names_problem(names, values)]
    ignore = []
    for v in dict.fromkeys(v if isinstance(v, str) else canonical(v, colour) for v in cfg.ignore_values):
        if not isinstance(v, str):
            ignore.append(v)
            if cfg.class_values and ignore[-1] in values:
                return None, [
                    f"{ignore[-1]} is in class_values and in ignore_values; a mask value is a class or unlabelled, "
                    "so remove it from one of them (to ignore a named class, give its name as the ignore value)"
                ]
        elif cfg.class_values and names and v in names:  # a named class: its value becomes an ignore value
            ignore.append(values.pop(names.index(v)))
            names.remove(v)
        else:
            return None, [f"ignore value {v!r} names no class; give class_values and class_names that include it"]
    values = [v for v in values if v not in ignore]
    if _names_problem(names, values):
        return None, [_names_problem(names, values)]
    absent = [v for v in values if v not in found]
    if absent:
        return None, [
            f"class value {absent[0]} occurs in no mask (the masks hold {_listed(sorted(found))}); remove it from "
            "class_values, or check the mask folder and the values' spelling"
        ]
    unknown = scan.unknown(set(values) | set(ignore), colour)
    if unknown:
        return None, [
            f"{mask} has values {_listed(extra)} outside the classes {_listed(values)}; relabel it, or declare them "
            "as class or ignore values"
            for mask, extra in unknown
        ]
    if not cfg.class_values and len(values) > MAX_FOUND_CLASSES:
        return None, [
            f"the masks hold {len(values)} distinct values ({_listed(values)}), more than {MAX_FOUND_CLASSES} "
            f"classes; check that {cfg.mask_dir} holds label masks (one class value per pixel, not images), or give "
            "class_values if there really are that many classes"
        ]
    if len(values) < 2:
        held = f"only the value {values[0]}" if values else "no value outside ignore_values"
        return None, [
            f"the masks hold {held}; a segmentation needs two classes or more, so give class_values (e.g. [0, 255])"
        ]
    try:
        channels = common_channels({r.channels for r in scan.records})
    except UnetlabError as exc:
        return None, [str(exc)]
    plain = [list(v) if colour else v for v in values]  # DataInfo keeps plain lists and ints
    palettes = {tuple(r.palette) if r.palette else None for r in scan.records}
    palette = list(palettes.pop()) if len(palettes) == 1 and None not in palettes and not colour else None
    return DataInfo(channels, plain, names, [list(v) if colour else v for v in ignore], palette=palette), []


def _names_problem(names: list[str] | None, values: list) -> str | None:
    if names is not None and len(names) != len(values):
        return (
            f"class_names has {plural(len(names), 'name')} for {plural(len(values), 'class', 'classes')} "
            f"({_listed(values)}); give one name per class"
        )
    return None


def _listed(values: list, limit: int = 10) -> str:
    """ "0, 1, 2" or "0, 1, 2, ... (300 in all)": values for a message."""
    shown = ", ".join(map(str, values[:limit]))
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")
