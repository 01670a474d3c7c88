"""Parity of the exported files with PyTorch, for every registered model at its registered size.

    python benchmarks/bench_export.py                    # ONNX and TorchScript, every model, default sizes
    python benchmarks/bench_export.py --models unet-classic --formats onnx

Each model (random weights, seed 0, eval mode) is exported by `unetlab.inference.export.export_model` with dynamic
batch, height and width, then run by `check_export` on a random input of another batch size and shape than the traced
one (ONNX Runtime for ONNX). The table gives that input, the largest absolute difference from PyTorch, the largest
logit (for scale), the file size and the export time.
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from unetlab import create_model, list_models
from unetlab.inference.export import FORMATS, check_export, export_model, export_shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list_models(), choices=list_models())
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    args = parser.parse_args()
    print(f"{'model':<16} {'format':<12} {'checked on':<16} {'max |diff|':>10} {'max |logit|':>11} {'MiB':>6} {'s':>5}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            torch.manual_seed(0)
            model = create_model(name).eval()
            shape = export_shapes(model)[1]
            with torch.inference_mode():
                scale = model(torch.randn(shape, generator=torch.Generator().manual_seed(0))).abs().max().item()
            for format in args.formats:
                start = time.perf_counter()
                path = export_model(model, Path(tmp) / f"{name}.{format}", format)
                seconds = time.perf_counter() - start
                difference = check_export(model, path, format)
                print(
                    f"{name:<16} {format:<12} {'x'.join(map(str, shape)):<16} {difference:>10.2e} {scale:>11.3f} "
                    f"{path.stat().st_size / 2**20:>6.1f} {seconds:>5.1f}"
                )


if __name__ == "__main__":
    main()
