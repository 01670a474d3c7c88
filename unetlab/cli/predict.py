"""`unetlab predict CHECKPOINT INPUTS... --out DIR`: segment images of any size with a trained model.

The library does the work (`unetlab.inference.outputs.predict_files`): each image is read, predicted by overlap-tile
and written at once, so an image that fails (unreadable or damaged, wrong channels) is reported and skipped without
losing the outputs already written; the command then exits with status 2. Files already in --out are replaced only
with --overwrite: without it, the command refuses before predicting, naming the first files it would replace.
"""

import sys

from tqdm import tqdm

from unetlab.cli.common import add_reader_options, record_flags
from unetlab.errors import UnetlabError, plural
from unetlab.inference.options import PredictOptions
from unetlab.inference.outputs import predict_files
from unetlab.inference.predictor import Predictor
from unetlab.inference.tiling import tiling_note
from unetlab.settings import add_flags

TITLES = {"prediction": "prediction (tiles: 572 px without overlap for unet-classic, else 512 px)", "device": "device"}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="segment images of any size with a trained checkpoint (overlap-tile)",
        description="Segment images of any size with a checkpoint: masks in the dataset's own values, optionally "
        "probabilities and overlays. OUT/NAME.png (or .tif) per image; OUT/probs/, OUT/overlays/.",
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a .pt file written by `unetlab train`")
    parser.add_argument("inputs", nargs="+", metavar="INPUTS", help="image files, folders of images, glob patterns")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    add_predictor_options(parser)
    outputs = parser.add_argument_group("outputs")
    outputs.add_argument("--probs", action="store_true", help="also write float32 probabilities to OUT/probs/")
    outputs.add_argument("--overlay", action="store_true", help="also write the mask over the image to OUT/overlays/")
    outputs.add_argument(
        "--overwrite", action="store_true", help="replace files already in --out (default: refuse before predicting)"
    )
    add_reader_options(parser)
    record_flags(parser)
    parser.set_defaults(func=run)


def add_predictor_options(parser) -> None:
    """The options of `Predictor` (`PredictOptions`), shared by `predict` and `eval`; dests `predict.<option>`."""
    add_flags(parser, PredictOptions, prefix="predict.", titles=TITLES)


def make_predictor(args) -> Predictor:
    """The `Predictor` of `args.checkpoint` with the options of `add_predictor_options`; notes on settings that
    work but are probably not what was meant."""
    options = {k.removeprefix("predict."): v for k, v in vars(args).items() if k.startswith("predict.")}
    predictor = Predictor(args.checkpoint, **options)
    notes = [tiling_note(predictor.model, predictor.tile, predictor.overlap)]
    if predictor.threshold is not None and not 0 < predictor.threshold < 1:
        every = "every" if predictor.threshold <= 0 else "almost no"
        notes.append(
            f"threshold {predictor.threshold:g} marks {every} pixel as foreground; the model may be undertrained "
            "(train longer), or pass --threshold"
        )
    for note in filter(None, notes):
        print(f"note: {note}", file=sys.stderr)
    return predictor


def run(args) -> int:
    predictor = make_predictor(args)  # before the output folder is made: a mistyped checkpoint leaves no folder
    model, amp = predictor.model, predictor.amp
    parameters = sum(p.numel() for p in model.parameters())
    precision = f", {str(amp).removeprefix('torch.')} autocast" if amp is not None else ""

    def start(count: int) -> None:
        print(
            f"predict: {args.checkpoint} ({model.spec['name']}, {parameters:,} parameters) on {predictor.device}; "
            f"tile {predictor.tile} px, overlap {predictor.overlap} px, batch {predictor.batch_size}"
            f"{', TTA' if predictor.tta else ''}{precision}; {plural(count, 'image')} -> {args.out}"
        )

    def failed(_path, message: str) -> None:
        tqdm.write(f"unetlab predict: error: {message}", file=sys.stderr)

    bars = sys.stderr.isatty()
    result = predict_files(
        predictor, args.inputs, args.out, args.probs, args.overlay, args.overwrite, bars, start, failed
    )
    total = len(result.written) + len(result.failed)
    print(f"wrote {len(result.written)} of {plural(total, 'mask')} to {result.out}")
    if result.failed:
        raise UnetlabError(
            f"{len(result.failed)} of {plural(total, 'image')} failed (see above); the others are in {result.out}"
        )
    return 0
