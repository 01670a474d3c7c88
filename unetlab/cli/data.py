"""`unetlab data check DIR`: pairs, sizes, channels, mask values and every problem of a dataset folder.

The flags are `unetlab train`'s dataset options (the same declarations in `DataConfig`), so that a folder reported
usable with them is one that `unetlab train --data DIR` with the same flags accepts.
"""

from unetlab.cli.common import LeafParser, add_folder_options, add_reader_options, folder_settings, record_flags
from unetlab.data.check import check_folder
from unetlab.data.config import DataConfig


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("data", help="inspect datasets", description="Inspect datasets on disk.")
    commands = parser.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND", parser_class=LeafParser)
    check = commands.add_parser(
        "check",
        help="pairs, sizes, channels, mask values and problems of a dataset folder",
        description="List the image/mask pairs of DIR, their sizes, channels and mask values, and every problem "
        "(unpaired, unreadable or lossy files, size mismatches, unknown or missing class values, too few pairs to "
        "split, empty folders). Exit status 0 when `unetlab train --data DIR` with the same options would accept "
        "the dataset, 2 otherwise.",
    )
    check.add_argument("dir", metavar="DIR", help="dataset folder: DIR/images + DIR/masks, or DIR/<split>/...")
    add_folder_options(check)
    add_reader_options(check)
    record_flags(check)
    check.set_defaults(func=run, command_name="data check")


def run(args) -> int:
    report = check_folder(DataConfig(source=args.dir, **folder_settings(args)))
    print(report.format())
    return 0 if report.usable else 2
