"""`unetlab predict CHECKPOINT INPUTS... --out DIR`: segment images of any size with a trained model.

Each image is read, predicted by overlap-tile (`unetlab.inference.predictor.Predictor`) and written at once, so an image
that fails (unreadable or damaged, wrong channels) is reported and skipped without losing the outputs already
written; the command then exits with status 2. Files already in --out are replaced only with --overwrite: without
it, the command refuses before predicting, naming the first files it would replace.
"""

import sys

from tqdm import tqdm

from unetlab.data.io import read_image
from unetlab.device import AMP_DTYPES
from unetlab.errors import UnetlabError, plural
from unetlab.inference.outputs import (
    check_outputs,
    collect_inputs,
    make_output_folder,
    output_names,
    output_paths,
    refuse_overwriting_inputs,
    write_prediction,
)
from unetlab.inference.predictor import Predictor
from unetlab.inference.tiling import BLENDS, tiling_note


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
    # outputs
    outputs = parser.add_argument_group("outputs")
    outputs.add_argument("--probs", action="store_true", help="also write float32 probabilities to OUT/probs/")
    outputs.add_argument("--overlay", action="store_true", help="also write the mask over the image to OUT/overlays/")
    outputs.add_argument(
        "--overwrite", action="store_true", help="replace files already in --out (default: refuse before predicting)"
    )
    parser.set_defaults(func=run)


def add_predictor_options(parser) -> None:
    """The options of `Predictor` (tiling, TTA, threshold, device, AMP), shared by `predict` and `eval`."""
    tiling = parser.add_argument_group(
        "prediction (tiles by default: 572 px without overlap for unet-classic, else 512 px)"
    )
    tiling.add_argument("--tile", type=int, metavar="PX", help="side of the windows the network sees, px")
    tiling.add_argument(
        "--overlap",
        type=int,
        metavar="PX",
        help="px shared by neighbouring windows (default: tile / 4; 0 for unet-classic)",
    )
    tiling.add_argument("--blend", choices=BLENDS, default="gaussian", help="window weight of padded models")
    tiling.add_argument("--batch-size", type=int, default=4, metavar="N", help="windows per forward pass (memory)")
    tiling.add_argument("--tta", action="store_true", help="average 8 flips/rotations (8x slower)")
    tiling.add_argument(
        "--threshold", type=float, metavar="P", help="binary models: foreground probability cut (default: checkpoint's)"
    )
    device = parser.add_argument_group("device")
    device.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    device.add_argument(
        "--amp",
        choices=["auto", *AMP_DTYPES],
        default="auto",
        help="mixed precision, as for train: auto (bf16, or fp16 on older GPUs; none on the CPU), none, bf16, fp16",
    )


def make_predictor(args) -> Predictor:
    """The `Predictor` of `args.checkpoint` with the options of `add_predictor_options`; notes on settings that
    work but are probably not what was meant."""
    predictor = Predictor(
        args.checkpoint,
        device=args.device,
        amp=args.amp,
        threshold=args.threshold,
        tta=args.tta,
        tile=args.tile,
        overlap=args.overlap,
        blend=args.blend,
        batch_size=args.batch_size,
    )
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
    paths = collect_inputs(args.inputs)
    names = output_names(paths)
    predictor = make_predictor(args)
    out = make_output_folder(args.out)  # after the checkpoint loaded: a mistyped one leaves no empty folder
    mask_dtype = predictor.mask_values.dtype
    outputs = [output_paths(out, name, mask_dtype, args.probs, args.overlay) for name in names]
    refuse_overwriting_inputs(paths, [p for files in outputs for p in files], out)
    check_outputs([p for files in outputs for p in files], out, args.overwrite)
    model = predictor.model
    parameters = sum(p.numel() for p in model.parameters())
    amp = f", {str(predictor.amp).removeprefix('torch.')} autocast" if predictor.amp is not None else ""
    print(
        f"predict: {args.checkpoint} ({model.spec['name']}, {parameters:,} parameters) on {predictor.device}; "
        f"tile {predictor.tile} px, overlap {predictor.overlap} px, batch {args.batch_size}"
        f"{', TTA' if args.tta else ''}{amp}; {plural(len(paths), 'image')} -> {out}"
    )
    bars = sys.stderr.isatty()
    failed = []
    for path, name in tqdm(list(zip(paths, names)), unit="image", disable=not bars):
        try:
            image = read_image(path)
            prediction = predictor(image, source=str(path), progress=bars)
            overlay_of = image if args.overlay else None
            palette = predictor.data.palette
            write_prediction(out, name, prediction, args.probs, overlay_of, palette, overwrite=args.overwrite)
        except UnetlabError as exc:
            failed.append(path)
            tqdm.write(f"unetlab predict: error: {exc}", file=sys.stderr)
    print(f"wrote {len(paths) - len(failed)} of {plural(len(paths), 'mask')} to {out}")
    if failed:
        raise UnetlabError(
            f"{len(failed)} of {plural(len(paths), 'image')} failed (see above); the others are in {out}"
        )
    return 0
