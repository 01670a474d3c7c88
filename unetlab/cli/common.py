"""Argument helpers shared by the commands: model options and small value parsers."""

import argparse
import functools

from unetlab.errors import UnetlabError
from unetlab.options import NORMS, PADDINGS, UPSAMPLINGS


class LeafParser(argparse.ArgumentParser):
    """A (sub-)subcommand's parser that reports an unknown flag with its own usage line and states defaults.

    argparse hands the arguments a subparser does not know up to the top-level parser, whose error shows the usage
    of `unetlab` itself; this one shows the usage of the (sub)command that was mistyped, e.g. `unetlab data check`.
    """

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras

    def format_help(self) -> str:
        """The help, each option's default stated where its text does not state it already."""
        for action in self._actions:
            value = action.default
            unset = value is None or value is False or value is argparse.SUPPRESS or value == []
            if action.help and not unset and "default" not in action.help:
                action.help += f" (default: {value})"
        return super().format_help()


def add_folder_options(parser, defaults: dict | None = None, classes: bool = True) -> None:
    """The options that read a dataset folder, named and explained alike for train, data check and eval.

    Args:
        parser: the parser or argument group to add them to.
        defaults: dest -> default; an option left out takes the parser's own `argument_default`.
        classes: also the class table and the validation split (train, data check); eval reads only the layout.
    """

    def add(flag: str, **kwargs) -> None:
        dest = flag.removeprefix("--").replace("-", "_")
        parser.add_argument(flag, **kwargs, **({"default": defaults[dest]} if dest in (defaults or {}) else {}))

    add("--image-dir", metavar="NAME", help="image folder under DIR (or DIR/<split>), or an absolute path")
    add("--mask-dir", metavar="NAME", help="mask folder, like --image-dir")
    if not classes:
        return
    add("--val-list", metavar="FILE", help="text file naming the validation images, one per line")
    add("--val-fraction", type=float, help="seeded share of the pairs held out")
    add(
        "--class-values",
        nargs="+",
        type=mask_value,
        metavar="V",
        help="mask value of each class in order, e.g. 0 255, or colours 0,0,0 255,0,0; other values are refused",
    )
    add("--class-names", nargs="+", metavar="NAME", help="one name per class")
    add(
        "--ignore-values",
        nargs="+",
        type=ignore_value,
        metavar="V",
        help="unlabelled mask values, or class names such as void",
    )


def add_model_options(parser: argparse.ArgumentParser, default=None, title: str | None = None) -> None:
    """The model knobs of `create_model`, as flags; a flag left out keeps the registered model's default.

    A flag not given gets `default` (None, or `argparse.SUPPRESS` to leave it out of the namespace).
    """
    group = parser.add_argument_group(title or "model options (default: the registered model's own)")
    add = functools.partial(group.add_argument, default=default)
    add("--in-channels", type=int, help="image channels C")
    add("--num-classes", type=int, help="output channels K: 1 = binary (sigmoid), >= 2 = softmax")
    add("--base-channels", type=int, help="channels of the first stage (doubled at each level)")
    add("--depth", type=int, help="number of down-sampling levels")
    add("--padding", choices=PADDINGS, help="U-Net convolutions: same (padded) or valid")
    add("--norm", choices=[n or "none" for n in NORMS], help="normalisation layer")
    add("--upsample", choices=UPSAMPLINGS, help="up-sampling in the decoder")
    add("--dropout", type=float, help="dropout probability at the end of the contracting path")
    add("--encoder-weights", metavar="PATH", help="torchvision ResNet state-dict file for the encoder")
    add("--freeze-encoder", action="store_true", help="keep the ResNet encoder fixed")
    add("--checkpointing", action="store_true", help="gradient checkpointing: recompute activations in backward")


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


def mask_value(text: str) -> int | list[int]:
    """An argparse type for a mask value: "255" -> 255; "255,0,0" -> [255, 0, 0] (a colour)."""
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
    """An argparse type for an unlabelled value: a mask value, or the name of a class such as "void"."""
    return text if text.isidentifier() else mask_value(text)


def parse_shape(text: str, option: str) -> tuple[int, ...]:
    """Parse "C,H,W" (or "H,W") into positive integers, naming `option` in the error."""
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise UnetlabError(f"{option} {text!r} is not valid; write positive integers like 3,256,256")
    return values
