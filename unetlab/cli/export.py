"""`unetlab export CHECKPOINT --format onnx|torchscript --out FILE`: a deployable file, checked against PyTorch."""

from unetlab.cli.common import record_flags
from unetlab.inference.export import FORMATS, export_checkpoint


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint's model to ONNX or TorchScript (dynamic batch, height, width) and check it",
        description="Export a checkpoint's model with dynamic batch, height and width, then run it on a random input "
        "of another shape (ONNX Runtime for ONNX) and print the largest absolute difference from PyTorch.",
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a .pt file written by `unetlab train`")
    parser.add_argument("--format", required=True, choices=FORMATS, help="onnx (ONNX Runtime, ...) or torchscript")
    parser.add_argument("--out", required=True, metavar="FILE", help="the file to write, e.g. model.onnx")
    record_flags(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    done = export_checkpoint(args.checkpoint, args.out, args.format)
    print(f"wrote {done.path} ({args.format}, {done.model_name}, {done.path.stat().st_size / 2**20:.1f} MiB)")
    shape = "x".join(map(str, done.check_shape))
    print(f"parity on a random {shape} input: max |PyTorch - {args.format}| = {done.difference:.3g}")
    return 0
