"""What the commands share: the parser class, the flags of settings declared elsewhere, and small value parsers.

Every flag of a setting comes from its declaration (`unetlab.settings.add_flags`): the model options from
`unetlab.options.ModelOptions`, the dataset options from `unetlab.data.config.DataConfig`, the training settings from
`unetlab.training.config.TrainConfig`. A command records which flag stands for which setting (`record_flags`), so
that a `SettingError` from the library is printed with the flag the user typed.
"""

import argparse
from dataclasses import fields

from unetlab.data.config import DataConfig, ReaderOptions
from unetlab.data.io import set_max_image_bytes
from unetlab.errors import UnetlabError
from unetlab.options import ModelOptions
from unetlab.settings import add_flags, spec_of

MODEL_TITLE = "model options (default: the registered model's own)"


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


def record_flags(parser: argparse.ArgumentParser) -> None:
    """Remember each flag's dest (a setting's path, e.g. "data.patch_size"), for the CLI's error messages."""
    flags = {a.dest: max(a.option_strings, key=len) for a in parser._actions if a.option_strings}
    parser.set_defaults(setting_flags=flags)


def setting_namer(args: argparse.Namespace):
    """name(path) -> the command's flag for that setting. A path the command knows under a prefix maps too (a model's
    "depth" is `model_kwargs.depth`, a predictor's "device" `predict.device`); one without a flag keeps its path."""
    flags = getattr(args, "setting_flags", {})

    def name(path: str) -> str:
        if path in flags:
            return flags[path]
        nested = [flag for dest, flag in flags.items() if dest.endswith("." + path)]
        return nested[0] if len(nested) == 1 else path

    return name


def data_groups(*groups: str) -> list[str]:
    """The `DataConfig` fields of some groups: "layout" (image and mask folders), "split", "classes", ..."""
    return [f.name for f in fields(DataConfig) if spec_of(f).group in groups]


def add_reader_options(parser) -> None:
    """The readers' memory guard (`ReaderOptions`), for every command that reads images; `apply_reader_options`."""
    add_flags(parser, ReaderOptions, prefix="reader.")


def apply_reader_options(args: argparse.Namespace) -> None:
    """Set the readers' limit from `args` (commands without the flag keep the default)."""
    gib = vars(args).get("reader.max_image_gib")
    if gib is not None:
        set_max_image_bytes(int(ReaderOptions(max_image_gib=gib).max_image_gib * 2**30))


def add_folder_options(parser, groups=("layout", "split", "classes"), argparse_default=None) -> list[str]:
    """The options that read a dataset folder, from `DataConfig`, named and explained alike in every command.

    Their dests are `data.<field>`; `argparse_default` is the value of an option not given (None: the dataclass's
    default is applied when the `DataConfig` is made).
    """
    kwargs = {} if argparse_default is None else {"default": argparse_default}
    return add_flags(parser, DataConfig, prefix="data.", only=data_groups(*groups), **kwargs)


def add_model_options(parser, title: str = MODEL_TITLE, only=None, choices=None, default=None) -> list[str]:
    """The model knobs of `create_model` (`ModelOptions`), under `title`; their dests are `model_kwargs.<option>`.

    A flag not given is `default` (None: the registered model's own; `argparse.SUPPRESS`: absent from the namespace).
    """
    group = parser.add_argument_group(title)
    return add_flags(group, ModelOptions, prefix="model_kwargs.", only=only, choices=choices, default=default)


def model_kwargs(args: argparse.Namespace) -> dict:
    """The model options given on the command line, as keyword arguments for `create_model`."""
    prefix = "model_kwargs."
    given = {k.removeprefix(prefix): v for k, v in vars(args).items() if k.startswith(prefix)}
    return {k: v for k, v in given.items() if v is not None}


def folder_settings(args: argparse.Namespace) -> dict:
    """The dataset options in `args` (dests `data.<field>`) that have a value, as `DataConfig` keyword arguments."""
    given = {k.removeprefix("data."): v for k, v in vars(args).items() if k.startswith("data.")}
    return {k: v for k, v in given.items() if v is not None}


def parse_shape(text: str, option: str) -> tuple[int, ...]:
    """Parse "C,H,W" (or "H,W") into positive integers, naming `option` in the error."""
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise UnetlabError(f"{option} {text!r} is not valid; write positive integers like 3,256,256")
    return values
