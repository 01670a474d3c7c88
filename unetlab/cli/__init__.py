"""The `unetlab` command: one subcommand per module of this package.

Each command module has `add_parser(subparsers)`, which registers its arguments and sets `func`, and a handler
that parses nothing more, calls the library and returns an exit code. A `UnetlabError` (a user's mistake) is
printed as one line without a traceback, with exit status 2 (a `SettingError` names the flags the user typed for the
settings it names); an `OSError` of the machine (a full disk, a permission
denied) that the library did not turn into one is printed the same way, with exit status 1.
"""

import argparse
import errno
import importlib
import sys

from unetlab import __version__
from unetlab.cli.common import LeafParser, apply_reader_options, setting_namer
from unetlab.errors import UnetlabError
from unetlab.settings import SettingError

# the machine's refusals (a full disk, no permission, a read-only or failing drive): one line, not a traceback
MACHINE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO, errno.EFBIG}
COMMANDS = (
    "train",
    "predict",
    "eval",
    "export",
    "data",
    "summary",
    "twin",
)  # modules of unetlab.cli, as --help lists them


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unetlab", description="U-Nets for image segmentation, built from scratch and built twice."
    )
    parser.add_argument("--version", action="version", version=f"unetlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=LeafParser)
    for name in COMMANDS:
        importlib.import_module(f"unetlab.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    name = getattr(args, "command_name", args.command)  # a nested command sets its full name, e.g. "data check"
    try:
        apply_reader_options(args)
        return args.func(args) or 0
    except SettingError as exc:  # the library names settings by path; here, by the flags the user typed
        print(f"unetlab {name}: error: {exc.message(setting_namer(args))}", file=sys.stderr)
        return 2
    except UnetlabError as exc:
        print(f"unetlab {name}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in MACHINE_ERRNOS:
            raise  # anything else may be a bug: its traceback is worth seeing
        print(f"unetlab {name}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"unetlab {name}: interrupted", file=sys.stderr)
        return 130
