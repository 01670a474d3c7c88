"""Where dataset items come from: synthetic images generated on demand, or image/mask files on disk.

A source has `len(source)`, `name(i)` (for error messages) and `load(i) -> (image, classes, instances)`: the image
as (H, W) or (H, W, C) in its stored dtype, the int64 class-index mask (H, W) with IGNORE_INDEX for unlabelled
pixels, and instance labels (H, W) for the weight map, or None when only the semantic mask is known.
`folder_sources` scans a dataset folder, splits it into training and validation, and decides the classes.
"""

from pathlib import Path

import numpy as np

from unetlab.data import synthetic
from unetlab.data.folders import Scan, canonical, common_channels, find_layout, pair_files, prepare_mask, scan_pairs
from unetlab.data.info import DataInfo
from unetlab.data.io import read_image, read_mask
from unetlab.errors import UnetlabError

MAX_LISTED = 5  # problems quoted in an error message; `unetlab data check` lists them all


class SyntheticSource:
    """Images start .. start + count - 1 of a synthetic kind (see `unetlab.data.synthetic`)."""

    def __init__(self, kind: str, seed: int, size: int, start: int, count: int):
        self.kind, self.seed, self.size, self.start, self.count = kind, seed, size, start, count

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

    def __init__(self, pairs: list[tuple[Path, Path]], info: DataInfo, arrays: dict | None = None):
        self.pairs, self.info, self.arrays = pairs, info, arrays or {}

    def __len__(self) -> int:
        return len(self.pairs)

    def name(self, i: int) -> str:
        return str(self.pairs[i][0])

    def load(self, i: int):
        image, mask = self.arrays.pop(i, None) or (read_image(self.pairs[i][0]), read_mask(self.pairs[i][1]))
        mask = prepare_mask(mask, self.info.is_colour_mask)
        return image, self.info.mask_to_classes(mask, str(self.pairs[i][1])), None


def folder_sources(cfg) -> tuple[FolderSource, FolderSource, DataInfo]:
    """Scan the folder dataset of `cfg` (a `DataConfig`): (training source, validation source, info without mean/std).

    Raises:
        UnetlabError: listing the first problems (unpaired or unreadable files, size mismatches, ...).
    """
    root = Path(cfg.source)
    layout = find_layout(root, cfg.image_dir, cfg.mask_dir)
    pairs, problems = {}, []
    for split in ("all", "train", "val"):
        if split in layout:
            pairs[split], found = pair_files(*layout[split])
            problems += found
    scan = scan_pairs([p for split in pairs for p in pairs[split]], keep_arrays=cfg.cache)
    problems += scan.problems
    if problems:
        more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
        raise UnetlabError(
            f"{root}: {'; '.join(problems[:MAX_LISTED])}{more}; run `unetlab data check {root}` for the full list"
        )
    if "all" not in pairs and "train" not in pairs:
        raise UnetlabError(f"{root} has no train/ split; put the training pairs in {root}/train/{cfg.image_dir}")
    train, val = _split(cfg, pairs.get("all") or pairs["train"], pairs.get("val"))
    info = _data_info(cfg, scan)
    arrays = {r.image: r.arrays for r in scan.records}
    return (
        FolderSource(train, info, {i: arrays[p[0]] for i, p in enumerate(train)} if cfg.cache else None),
        FolderSource(val, info, {i: arrays[p[0]] for i, p in enumerate(val)} if cfg.cache else None),
        info,
    )


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
        if not path.is_file():
            raise UnetlabError(f"val_list {path} not found; give a text file with one image name per line")
        stems = {p[0].stem for p in pairs}
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        wanted = {name if name in stems else Path(name).stem for name in names}  # "a.png" or "a"
        if wanted - stems:
            raise UnetlabError(
                f"val_list {path} names images that are not in the dataset: "
                f"{', '.join(sorted(wanted - stems)[:MAX_LISTED])}; fix the names or remove those lines"
            )
        return [p for p in pairs if p[0].stem not in wanted], [p for p in pairs if p[0].stem in wanted]
    n_val = int(round(cfg.val_fraction * len(pairs)))
    n_val = max(n_val, 1) if cfg.val_fraction > 0 else 0
    if n_val >= len(pairs):
        raise UnetlabError(
            f"{cfg.source} has {len(pairs)} pairs, too few to hold out a validation fraction; add pairs, or set "
            "val_fraction to 0"
        )
    chosen = set(np.random.default_rng(cfg.seed).permutation(len(pairs))[:n_val].tolist())
    return [p for i, p in enumerate(pairs) if i not in chosen], [p for i, p in enumerate(pairs) if i in chosen]


def _data_info(cfg, scan: Scan) -> DataInfo:
    """Channels and the class table: the configured values and names, or the values found, sorted."""
    given = [*(cfg.class_values or []), *(v for v in cfg.ignore_values if not isinstance(v, str))]
    colour = scan.colour or any(isinstance(v, (list, tuple)) for v in given)
    found = scan.values(colour)
    values = [canonical(v, colour) for v in cfg.class_values] if cfg.class_values else sorted(found)
    names = list(cfg.class_names) if cfg.class_names else None
    ignore = []
    for v in cfg.ignore_values:
        if not isinstance(v, str):
            ignore.append(canonical(v, colour))
        elif cfg.class_values and names and v in names:  # a named class: its value becomes an ignore value
            ignore.append(values.pop(names.index(v)))
            names.remove(v)
        else:
            raise UnetlabError(f"ignore value {v!r} names no class; give class_values and class_names that include it")
    values = [v for v in values if v not in ignore]
    unknown = scan.unknown(set(values) | set(ignore), colour)
    if unknown:
        mask, extra = unknown[0]
        raise UnetlabError(
            f"{mask} has mask values {', '.join(map(str, extra[:10]))} that are not among class_values "
            f"{cfg.class_values} ({len(unknown)} masks have such values); add them to class_values or ignore_values"
        )
    if len(values) < 2:
        raise UnetlabError(
            f"the masks hold only the value(s) {', '.join(map(str, values)) or 'none'}; a segmentation needs two "
            "classes or more, so give class_values (e.g. [0, 255])"
        )
    if names is not None and len(names) != len(values):
        raise UnetlabError(
            f"class_names has {len(names)} names for {len(values)} classes ({', '.join(map(str, values))}); "
            "give one name per class"
        )
    plain = [list(v) if colour else v for v in values]  # DataInfo keeps plain lists and ints
    channels = common_channels({r.channels for r in scan.records})
    return DataInfo(channels, plain, names, [list(v) if colour else v for v in ignore])
