"""Model options shared by the PyTorch models and the NumPy twin, and their checks; no torch here.

`check_unet_options` holds the U-Net's rules once (depth 1 to `MAX_DEPTH`, dropout in [0, 1), ...), so that every
NumPy twin can be rebuilt in PyTorch and back.

Each check raises a `UnetlabError` that names the option and its valid values, so the CLI can print it as one line.
"""

from unetlab.errors import UnetlabError

PADDINGS = ("same", "valid")
NORMS = ("batch", "group", "instance", None)
UPSAMPLINGS = ("transpose", "bilinear")
TWIN_NORMS = ("batch", None)  # what the NumPy twin implements: the configurations of unet-classic and unet
TWIN_UPSAMPLINGS = ("transpose",)
MAX_DEPTH = 8  # U-Net poolings: a depth-8 net needs 256-px windows, and base 64 reaches 16,384 bottleneck channels


def check_choice(option: str, value, choices) -> None:
    """Raise a `UnetlabError` naming the option and its valid values when `value` is not one of `choices`."""
    if value not in choices:
        valid = ", ".join("none" if c is None else repr(c) for c in choices)
        raise UnetlabError(f"{option}={value!r} is not valid; choose one of {valid}")


def check_positive_ints(**values) -> None:
    """Raise a `UnetlabError` naming the first option that is not a positive integer."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UnetlabError(f"{name}={value!r} is not valid; it must be a positive integer")


def parse_norm(norm):
    """Accept the spelled-out "none" (from a command line or YAML file) as `None`."""
    norm = None if norm in (None, "none", "None") else norm
    check_choice("norm", norm, NORMS)
    return norm


def check_depth(depth, most: int = MAX_DEPTH) -> None:
    """Raise a `UnetlabError` unless `depth` is an integer from 1 to `most` (U-Nets and the twin: `MAX_DEPTH`)."""
    if not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= most:
        raise UnetlabError(f"depth={depth!r} is not valid; choose an integer from 1 to {most}")


def check_dropout(dropout) -> None:
    """Raise a `UnetlabError` unless `dropout` is a probability in [0, 1)."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise UnetlabError(f"dropout={dropout!r} is not valid; it is a probability in [0, 1)")


def check_unet_options(in_channels, num_classes, base_channels, depth, padding, norm, upsample, dropout):
    """Check the options of a U-Net, the PyTorch `UNet` and the NumPy twin alike, naming the first invalid one.

    Returns:
        `norm`, with a spelled-out "none" read as None.
    """
    check_choice("padding", padding, PADDINGS)
    check_choice("upsample", upsample, UPSAMPLINGS)
    check_positive_ints(in_channels=in_channels, num_classes=num_classes, base_channels=base_channels)
    check_depth(depth)
    check_dropout(dropout)
    return parse_norm(norm)
