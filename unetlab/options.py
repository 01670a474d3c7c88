"""Model options shared by the PyTorch models and the NumPy twin, and their checks; no torch here.

Each check raises a `UnetlabError` that names the option and its valid values, so the CLI can print it as one line.
"""

from unetlab.errors import UnetlabError

PADDINGS = ("same", "valid")
NORMS = ("batch", "group", "instance", None)
UPSAMPLINGS = ("transpose", "bilinear")


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
