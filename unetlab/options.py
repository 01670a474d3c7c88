"""The model options: `create_model`'s keyword arguments, declared once with their help and ranges; no torch here.

`ModelOptions` is the one source of the options' rules (depth 1 to `MAX_DEPTH`, dropout in [0, 1), ...): the PyTorch
models and the NumPy twin check their arguments with `check_model_options`, and the commands that build models
(`unetlab train`, `summary`, `twin`) take their flags from it. A field left at None keeps the registered model's own
default.

Each check raises a `SettingError` that names the option and its valid values, so the CLI can print it as one line.
"""

from dataclasses import dataclass, fields

from unetlab.settings import SettingError, check_value, invalid, setting, spec_of

PADDINGS = ("same", "valid")
NORMS = ("batch", "group", "instance", None)
UPSAMPLINGS = ("transpose", "bilinear")
TWIN_NORMS = ("batch", None)  # what the NumPy twin implements: the configurations of unet-classic and unet
TWIN_UPSAMPLINGS = ("transpose",)
MAX_DEPTH = 8  # U-Net poolings: a depth-8 net needs 256-px windows, and base 64 reaches 16,384 bottleneck channels


def _norm(text: str) -> str | None:
    return None if text in ("none", "None") else text


@dataclass
class ModelOptions:
    """The options a model may take; None = the registered model's own (see `unetlab.models.model_options`)."""

    in_channels: int | None = setting(None, "image channels C", low=1)
    num_classes: int | None = setting(None, "output channels K: 1 = binary (sigmoid), >= 2 = softmax", low=1)
    base_channels: int | None = setting(None, "channels of the first stage (doubled at each level)", low=1)
    depth: int | None = setting(None, "number of down-sampling levels", low=1, high=MAX_DEPTH)
    padding: str | None = setting(None, "U-Net convolutions: same (padded) or valid (the paper)", choices=PADDINGS)
    norm: str | None = setting(
        None, "normalisation after every 3x3 convolution", choices=NORMS
    )  # "none" is read as None
    upsample: str | None = setting(None, "up-sampling in the decoder", choices=UPSAMPLINGS)
    dropout: float | None = setting(
        None, "dropout probability at the end of the contracting path", low=0, high=1, high_open=True
    )
    deep_supervision: bool | None = setting(
        None, "auxiliary heads on the lower decoder levels, trained with downsampled masks (padded models)"
    )
    encoder_weights: str | None = setting(None, "torchvision ResNet state-dict file for the encoder", metavar="PATH")
    freeze_encoder: bool | None = setting(None, "keep the ResNet encoder fixed (weights and batch-norm statistics)")
    checkpointing: bool | None = setting(None, "gradient checkpointing: recompute activations in backward")


MODEL_OPTION_NAMES = tuple(f.name for f in fields(ModelOptions))
_SPECS = {f.name: spec_of(f) for f in fields(ModelOptions)}


def check_model_options(**values):
    """Check model options by their `ModelOptions` rules (integers where whole numbers are due), naming the first
    invalid one.

    Returns:
        `values` with a spelled-out "none" norm (from a command line or YAML file) read as None.
    """
    if "norm" in values:
        values["norm"] = _norm(values["norm"]) if isinstance(values["norm"], str) else values["norm"]
    for name, value in values.items():
        whole = name in ("in_channels", "num_classes", "base_channels", "depth")
        if whole and (not isinstance(value, int) or isinstance(value, bool)):
            raise invalid(name, value, f"a whole number {_SPECS[name].rule()}")
        if name == "dropout" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise invalid(name, value, f"a number {_SPECS[name].rule()}")
        check_value(name, value, _SPECS[name])
    return values


def check_depth_at_most(depth: int, most: int, why: str) -> None:
    """A model whose depth is bounded by more than `MAX_DEPTH` (a ResNet encoder has 5 levels)."""
    if depth > most:
        raise invalid("depth", depth, f"from 1 to {most} ({why})")


def refuse_option(name: str, value, why: str) -> SettingError:
    """An option a model (or the twin) does not implement: the value, why, and what it takes instead."""
    return SettingError(lambda n: f"{n(name)} {value!r} is not supported {why}", [name])
