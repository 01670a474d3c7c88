"""`DataConfig`: what to load and how to cut it into training patches, each setting declared once with its flag.

    data: {source: /data/cells, patch_size: 256, val_fraction: 0.2}     # in a YAML config; or just  data: DIR

A folder dataset's validation split is its `val/` folder if it has one, else the images named by `val_list`, else a
seeded random `val_fraction` of the pairs. The checks that involve several settings (`check_data_config`) run with
the others when the config is made.
"""

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

from unetlab.data.io import DEFAULT_MAX_IMAGE_BYTES
from unetlab.settings import SettingError, check_settings, invalid, setting

SYNTHETIC_SOURCES = ("synthetic-cells", "synthetic-shapes")


def mask_value(text: str) -> int | list[int]:
    """A flag's mask value: "255" -> 255; "255,0,0" -> [255, 0, 0] (a colour)."""
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 3) or min(parts) < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a mask value; write an integer like 255 or a colour like 255,0,0"
        )
    return parts[0] if len(parts) == 1 else parts


def ignore_value(text: str) -> int | list[int] | str:
    """A flag's unlabelled value: a mask value, or the name of a class such as "void"."""
    return text if text.isidentifier() else mask_value(text)


@dataclass
class DataConfig:
    """The data of a run; see the module docstring."""

    # What to load.
    # A resumed run may read its dataset from a new place: the engine checks it against the run's data info.
    source: str = setting(
        "synthetic-cells",
        "dataset folder, or synthetic-cells / synthetic-shapes",
        flag="--data",
        metavar="DIR",
        resumable=True,
        group="source",
    )
    image_dir: str = setting(
        "images", "image folder under DIR (or DIR/<split>), or an absolute path", metavar="NAME", group="layout"
    )
    mask_dir: str = setting("masks", "mask folder, like --image-dir", metavar="NAME", group="layout")
    # Validation split of a folder dataset.
    val_list: str | None = setting(
        None,
        "text file naming the validation images, one per line (relative: to the working folder, else DIR)",
        metavar="FILE",
        group="split",
    )
    val_fraction: float = setting(
        0.2, "seeded share of the pairs held out for validation; 0 = none", low=0, high=1, high_open=True, group="split"
    )
    # Mask encoding of a folder dataset.
    class_values: list | None = setting(
        None,
        "mask value of each class in order, e.g. 0 255, or colours 0,0,0 255,0,0; other values are refused",
        parse=mask_value,
        metavar="V",
        default_text="the values found",
        group="classes",
    )
    class_names: list[str] | None = setting(
        None, "one name per class, e.g. background cell", metavar="NAME", group="classes"
    )
    ignore_values: list = setting(
        help="unlabelled mask values, e.g. 255, or class names such as void",
        default_factory=list,
        parse=ignore_value,
        metavar="V",
        group="classes",
    )
    # Normalisation, per channel on the [0, 1] scale (8-bit / 255, 16-bit / 65535).
    mean: list[float] | None = setting(
        None,
        "fixed per-channel means on [0, 1] (one value: every channel)",
        metavar="M",
        default_text="the training split's",
        group="normalisation",
    )
    std: list[float] | None = setting(
        None,
        "fixed per-channel standard deviations, like --mean (--mean 0 --std 1: no normalisation)",
        low=0,
        low_open=True,
        metavar="S",
        default_text="the training split's",
        group="normalisation",
    )
    # Training patches.
    patch_size: int = setting(128, "side of the square training patches", unit="px", low=1, group="patches")
    patches_per_image: int = setting(1, "patches per image per epoch", low=1, group="patches")
    foreground_fraction: float = setting(
        0.33, "share of patches centred on a foreground pixel", low=0, high=1, group="patches"
    )
    # The paper's weight map (eq. 2), item["weight"], which weights the cross-entropy term.
    weight_map: bool = setting(
        False, "the U-Net paper's border weight map on the cross-entropy term", group="weight map"
    )
    weight_w0: float = setting(10.0, "weight-map border weight w0 (paper: 10)", low=0, flag="--w0", group="weight map")
    weight_sigma: float = setting(
        5.0,
        "weight-map border width sigma (paper: 5)",
        unit="px",
        low=0,
        low_open=True,
        flag="--sigma",
        group="weight map",
    )
    # Synthetic sources.
    num_train: int = setting(64, "synthetic training images", low=1, group="synthetic")
    num_val: int = setting(16, "synthetic validation images", low=0, group="synthetic")
    image_size: int = setting(128, "synthetic image side", unit="px", low=32, group="synthetic")
    # Other.
    cache: bool = setting(
        True, "read images when needed, not once into memory (huge datasets)", resumable=True, group="other"
    )
    seed: int | None = setting(
        None,
        "seeds the synthetic images, the random validation split and the patch positions",
        low=0,
        flag="--data-seed",
        default_text="the run's --seed, else 0",
        group="other",
    )

    def __post_init__(self):
        check_settings(self)
        check_data_config(self)

    @property
    def synthetic(self) -> bool:
        return self.source.startswith("synthetic-")

    def seeded(self, seed: int = 0) -> "DataConfig":
        """This config with `seed` in place of a seed left to the run (None)."""
        return self if self.seed is not None else replace(self, seed=seed)


@dataclass
class ReaderOptions:
    """How every image reader guards memory: the commands that read images take this flag (`unetlab.cli` applies
    it with `unetlab.data.io.set_max_image_bytes` before any file is read)."""

    max_image_gib: float = setting(
        DEFAULT_MAX_IMAGE_BYTES / 2**30,
        "largest image accepted, decoded (height x width x channels x bytes per sample); larger files are refused "
        "from their header, before decoding (decompression bombs)",
        unit="GiB",
        low=0,
        low_open=True,
        group="reading",
    )

    def __post_init__(self):
        check_settings(self)


def check_data_config(cfg: DataConfig) -> None:
    """The rules that involve several settings (single settings are checked by their `Spec`)."""
    if cfg.synthetic and cfg.source not in SYNTHETIC_SOURCES:
        raise SettingError(
            lambda n: f"{n('source')} {cfg.source!r} is unknown; use {' or '.join(SYNTHETIC_SOURCES)}, or a folder",
            ["source"],
        )
    for name in ("class_values", "ignore_values"):
        for value in getattr(cfg, name) or []:
            named = name == "ignore_values" and isinstance(value, str)  # a class name, such as "void"
            if not (named or _is_mask_value(value)):
                raise invalid(name, value, "a mask value: a whole number >= 0, or a colour [r, g, b] of 0-255")
    folder_only = [s for s in ("val_list", "class_values", "ignore_values") if getattr(cfg, s)]
    if cfg.synthetic and folder_only:
        raise SettingError(
            lambda n: f"{', '.join(map(n, folder_only))} apply to folder datasets, not to {cfg.source}", folder_only
        )


def _is_mask_value(value) -> bool:
    """A whole number >= 0, or three whole numbers from 0 to 255 (a colour); never a fraction."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value >= 0
    colour = isinstance(value, (list, tuple)) and len(value) == 3
    return colour and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)


def check_source_exists(cfg: DataConfig) -> None:
    """Raise a `SettingError` when the dataset folder is missing (checked when the data is read, not when the
    config is made, so that a run's saved config stays readable after its dataset moved)."""
    if not cfg.synthetic and not Path(cfg.source).exists():
        raise SettingError(
            lambda n: (
                f"{n('source')} {cfg.source!r} not found; give a dataset folder, or " + " or ".join(SYNTHETIC_SOURCES)
            ),
            ["source"],
        )
