"""`unetlab export CHECKPOINT --format onnx|torchscript --out FILE`: a deployable file, checked against PyTorch."""

from unetlab.errors import UnetlabError
from unetlab.inference.export import FORMATS, check_export, export_metadata, export_model, export_shapes
from unetlab.training.checkpoint import load_checkpoint

# Largest |PyTorch - exported| accepted. Float32 kernels that sum in another order differ by ~1e-7 of the logits'
# size (logits are rarely above 100); a wrong graph differs by about the logits' size.
PARITY_TOLERANCE = 1e-3


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
    parser.set_defaults(func=run)


def run(args) -> int:
    checkpoint = load_checkpoint(args.checkpoint)
    model = checkpoint.build_model()
    path = export_model(model, args.out, args.format, metadata=export_metadata(model, checkpoint))
    size_mb = path.stat().st_size / 2**20
    print(f"wrote {path} ({args.format}, {checkpoint.model_name}, {size_mb:.1f} MiB)")
    shape = "x".join(map(str, export_shapes(model)[1]))
    difference = check_export(model, path, args.format)
    print(f"parity on a random {shape} input: max |PyTorch - {args.format}| = {difference:.3g}")
    if difference > PARITY_TOLERANCE:
        raise UnetlabError(f"{path} differs from the PyTorch model by {difference:.3g}; do not use it, and report this")
    return 0
