"""`unetlab data check DIR`: pairs, sizes, channels, mask values and every problem of a dataset folder."""

from unetlab.data.check import check_folder
from unetlab.errors import UnetlabError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("data", help="inspect datasets", description="Inspect datasets on disk.")
    commands = parser.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    check = commands.add_parser(
        "check",
        help="pairs, sizes, channels, mask values and problems of a dataset folder",
        description="List the image/mask pairs of DIR, their sizes, channels and mask values, and every problem "
        "(unpaired or unreadable files, size mismatches, unknown mask values, empty folders). Exit status 0 when "
        "the dataset is usable, 2 otherwise.",
    )
    check.add_argument("dir", metavar="DIR", help="dataset folder: DIR/images + DIR/masks, or DIR/<split>/...")
    check.add_argument("--images", default="images", metavar="NAME", help="image folder name (or path); default images")
    check.add_argument("--masks", default="masks", metavar="NAME", help="mask folder name (or path); default masks")
    check.add_argument(
        "--class-values",
        nargs="+",
        metavar="V",
        help="the expected mask values, e.g. 0 255, or colours 0,0,0 255,0,0; other values are problems",
    )
    check.add_argument("--ignore-values", nargs="+", default=[], metavar="V", help="mask values meaning unlabelled")
    check.set_defaults(func=run)


def run(args) -> int:
    class_values = [parse_value(v, "--class-values") for v in args.class_values] if args.class_values else None
    ignore_values = [parse_value(v, "--ignore-values") for v in args.ignore_values]
    report = check_folder(args.dir, args.images, args.masks, class_values, ignore_values)
    print(report.format())
    return 0 if report.usable else 2


def parse_value(text: str, option: str) -> int | list[int]:
    """ "255" -> 255; "255,0,0" -> [255, 0, 0]."""
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 3) or min(parts) < 0:
        raise UnetlabError(f"{option} {text!r} is not a mask value; write an integer like 255 or a colour like 255,0,0")
    return parts[0] if len(parts) == 1 else parts
