"""`unetlab data check DIR`: pairs, sizes, channels, mask values and every problem of a dataset folder.

The flags name the dataset options as `unetlab train` does, so that a folder reported usable with them is one that
`unetlab train --data DIR` with the same flags accepts.
"""

from unetlab.cli.common import LeafParser, add_folder_options
from unetlab.data import DataConfig
from unetlab.data.check import check_folder


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
    config = DataConfig()  # the defaults train reads a folder with
    fields = ("image_dir", "mask_dir", "ignore_values", "val_fraction")
    add_folder_options(check, {field: getattr(config, field) for field in fields})
    check.set_defaults(func=run, command_name="data check")


def run(args) -> int:
    cfg = DataConfig(
        source=args.dir,
        image_dir=args.image_dir,
        mask_dir=args.mask_dir,
        class_values=args.class_values,
        class_names=args.class_names,
        ignore_values=args.ignore_values,
        val_list=args.val_list,
        val_fraction=args.val_fraction,
    )
    report = check_folder(cfg)
    print(report.format())
    return 0 if report.usable else 2
