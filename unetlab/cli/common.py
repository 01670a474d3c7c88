"""Argument helpers shared by the commands: model options and small value parsers."""

import argparse

from unetlab.errors import UnetlabError


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The model knobs of `create_model`, as flags; a flag left out keeps the registered model's default."""
    group = parser.add_argument_group("model options (default: the registered model's own)")
    group.add_argument("--in-channels", type=int, help="image channels C")
    group.add_argument("--num-classes", type=int, help="output channels K: 1 = binary (sigmoid), >= 2 = softmax")
    group.add_argument("--base-channels", type=int, help="channels of the first stage (doubled at each level)")
    group.add_argument("--depth", type=int, help="number of down-sampling levels")
    group.add_argument("--padding", choices=["same", "valid"], help="U-Net convolutions: same (padded) or valid")
    group.add_argument("--norm", choices=["batch", "group", "instance", "none"], help="normalisation layer")
    group.add_argument("--upsample", choices=["transpose", "bilinear"], help="up-sampling in the decoder")
    group.add_argument("--dropout", type=float, help="dropout probability at the end of the contracting path")
    group.add_argument("--encoder-weights", metavar="PATH", help="torchvision ResNet state-dict file for the encoder")
    group.add_argument("--freeze-encoder", action="store_true", default=None, help="keep the ResNet encoder fixed")
    group.add_argument(
        "--checkpointing",
        action="store_true",
        default=None,
        help="gradient checkpointing: recompute activations in backward to save memory",
    )


MODEL_OPTIONS = (
    "in_channels",
    "num_classes",
    "base_channels",
    "depth",
    "padding",
    "norm",
    "upsample",
    "dropout",
    "encoder_weights",
    "freeze_encoder",
    "checkpointing",
)


def model_kwargs(args: argparse.Namespace) -> dict:
    """The model options given on the command line, as keyword arguments for `create_model`."""
    return {k: getattr(args, k) for k in MODEL_OPTIONS if getattr(args, k, None) is not None}


def parse_shape(text: str, option: str) -> tuple[int, ...]:
    """Parse "C,H,W" (or "H,W") into positive integers, naming `option` in the error."""
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise UnetlabError(f"{option} {text!r} is not valid; write positive integers like 3,256,256")
    return values
