"""`unetlab eval CHECKPOINT DIR`: score a trained model on a labelled folder, per image and over the set."""

import sys

from unetlab.cli.common import add_folder_options, add_reader_options, folder_settings, record_flags
from unetlab.cli.predict import add_predictor_options, make_predictor
from unetlab.data.config import DataConfig, mask_value
from unetlab.errors import plural
from unetlab.evaluation.report import evaluate_pairs, folder_pairs
from unetlab.inference.outputs import make_output_folder


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="score a checkpoint on a labelled folder (per-image CSV, summary JSON)",
        description="Predict every image of a labelled dataset folder as `unetlab predict` does and score it "
        "against its mask: Dice, IoU, precision, recall and accuracy per class, over the set and per image.",
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a .pt file written by `unetlab train`")
    parser.add_argument("data", metavar="DIR", help="dataset folder: DIR/images + DIR/masks, or DIR/<split>/...")
    parser.add_argument("--split", help="split of a split layout to score (default: test if it has masks, else val)")
    add_folder_options(parser, groups=("layout",))
    parser.add_argument(
        "--ignore-values",
        nargs="+",
        type=mask_value,
        default=[],
        metavar="V",
        help="mask values left out of the scores, besides the checkpoint's own (e.g. 128, or a colour 0,0,255)",
    )
    parser.add_argument("--out", metavar="DIR", help="write DIR/report.csv (per image) and DIR/report.json")
    add_predictor_options(parser)
    add_reader_options(parser)
    record_flags(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    folders = DataConfig(**folder_settings(args))
    pairs, split = folder_pairs(args.data, args.split, folders.image_dir, folders.mask_dir)
    predictor = make_predictor(args)
    out = make_output_folder(args.out) if args.out else None  # before any image is predicted
    print(f"eval: {args.checkpoint} on {plural(len(pairs), 'image')} of {pairs[0][0].parent} ({split})")
    report = evaluate_pairs(predictor, pairs, args.ignore_values, progress=sys.stderr.isatty())
    print(report.format())
    if out:
        written = report.write(out)
        print(f"wrote {', '.join(map(str, written))}")
    return 0
