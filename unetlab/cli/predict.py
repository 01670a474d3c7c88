"""`unetlab predict CHECKPOINT INPUTS... --out DIR`: segment images of any size with a trained model.

Each image is read, predicted by overlap-tile (`unetlab.prediction.Predictor`) and written at once, so an image
that fails (unreadable, wrong channels) is reported and skipped without losing the outputs already written; the
command then exits with status 2.
"""

import sys
from pathlib import Path

from tqdm import tqdm

from unetlab.data.io import read_image
from unetlab.errors import UnetlabError
from unetlab.inference import BLENDS
from unetlab.outputs import collect_inputs, write_prediction
from unetlab.prediction import Predictor


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
    # tiling
    tiling = parser.add_argument_group("tiling (default: 572 px without overlap for unet-classic, else 512 px)")
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
    # outputs
    outputs = parser.add_argument_group("outputs")
    outputs.add_argument(
        "--threshold", type=float, metavar="P", help="binary models: foreground probability cut (default: checkpoint's)"
    )
    outputs.add_argument("--probs", action="store_true", help="also write float32 probabilities to OUT/probs/")
    outputs.add_argument("--overlay", action="store_true", help="also write the mask over the image to OUT/overlays/")
    # device
    device = parser.add_argument_group("device")
    device.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    device.add_argument("--no-amp", action="store_true", help="full float32 on the GPU (default: bf16/fp16 autocast)")
    parser.set_defaults(func=run)


def run(args) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UnetlabError(f"--out {out} is a file; pass a folder")
    paths = collect_inputs(args.inputs)
    predictor = Predictor(
        args.checkpoint,
        device=args.device,
        amp=not args.no_amp,
        threshold=args.threshold,
        tta=args.tta,
        tile=args.tile,
        overlap=args.overlap,
        blend=args.blend,
        batch_size=args.batch_size,
    )
    model = predictor.model
    parameters = sum(p.numel() for p in model.parameters())
    print(
        f"predict: {args.checkpoint} ({model.spec['name']}, {parameters:,} parameters) on {predictor.device}; "
        f"tile {predictor.tile} px, overlap {predictor.overlap} px, batch {args.batch_size}"
        f"{', TTA' if args.tta else ''}; {len(paths)} image{'s' * (len(paths) != 1)} -> {out}"
    )
    bars = sys.stderr.isatty()
    failed = []
    for path in tqdm(paths, unit="image", disable=not bars):
        try:
            image = read_image(path)
            prediction = predictor(image, source=str(path), progress=bars)
            write_prediction(out, path.stem, prediction, probs=args.probs, overlay_of=image if args.overlay else None)
        except UnetlabError as exc:
            failed.append(path)
            tqdm.write(f"unetlab predict: error: {exc}", file=sys.stderr)
    print(f"wrote {len(paths) - len(failed)} of {len(paths)} masks to {out}")
    if failed:
        raise UnetlabError(f"{len(failed)} of {len(paths)} images failed (see above); the others are in {out}")
    return 0
