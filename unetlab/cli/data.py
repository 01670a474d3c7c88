"""`unetlab data check DIR`: pairs, sizes, channels, mask values and every problem of a dataset folder.

The flags name the dataset options as `unetlab train` does, so that a folder reported usable with them is one that
`unetlab train --data DIR` with the same flags accepts.
"""

from unetlab.cli.common import LeafParser, ignore_value, mask_value
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
    check.add_argument(
        "--image-dir",
        default="images",
        metavar="NAME",
        help="image folder under DIR (or DIR/<split>), or an absolute path",
    )
    check.add_argument("--mask-dir", default="masks", metavar="NAME", help="mask folder, like --image-dir")
    check.add_argument(
        "--class-values",
        nargs="+",
        type=mask_value,
        metavar="V",
        help="mask value of each class in order, e.g. 0 255, or colours 0,0,0 255,0,0; other values are problems",
    )
    check.add_argument("--class-names", nargs="+", metavar="NAME", help="one name per class")
    check.add_argument(
        "--ignore-values",
        nargs="+",
        type=ignore_value,
        default=[],
        metavar="V",
        help="unlabelled mask values, or class names such as void",
    )
    check.add_argument("--val-list", metavar="FILE", help="text file naming the validation images, one per line")
    check.add_argument(
        "--val-fraction", type=float, default=DataConfig.val_fraction, help="seeded share of the pairs held out"
    )
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
