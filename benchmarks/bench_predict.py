"""Time and peak memory of predicting one large image with overlap-tile, as `unetlab predict` does.

    python benchmarks/bench_predict.py                          # 4096 x 4096 8-bit grey, default model, CPU
    python benchmarks/bench_predict.py --sizes 2048 4096 8192   # how memory grows with the image
    python benchmarks/bench_predict.py --tile 1024 --batch-size 1 --tta --device cuda

The model is `create_model("unet", base_channels=16, depth=4, in_channels=1, num_classes=1)` with random weights,
saved as a checkpoint with `save_checkpoint` (timing does not depend on the weights). Each size runs in a fresh
process: it reads the image file, predicts it with a `Predictor` and writes the mask, as the command does. Time is
wall-clock for read + predict + write. Memory is the process's peak resident set (VmHWM), in total and as the rise
during the prediction over the resident memory before it (VmHWM reset through /proc/self/clear_refs).
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, sys, time
from pathlib import Path
import torch
from unetlab.data.io import read_image
from unetlab.inference.outputs import write_prediction
from unetlab.inference.predictor import Predictor

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

ckpt, image_path, out, options = sys.argv[1], sys.argv[2], Path(sys.argv[3]), json.loads(sys.argv[4])
predictor = Predictor(ckpt, **options)
before = status("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")  # reset VmHWM to the current RSS
start = time.perf_counter()
image = read_image(image_path)
prediction = predictor(image)
write_prediction(out, "image", prediction)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak": status("VmHWM:"), "rise": status("VmHWM:") - before,
                  "tile": predictor.tile, "overlap": predictor.overlap, "device": str(predictor.device),
                  "threads": torch.get_num_threads(), "foreground": float(prediction.classes.mean())}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096], help="image sides to run, px")
    parser.add_argument("--tile", type=int, help="window side, px (default: the model's)")
    parser.add_argument("--overlap", type=int, help="window overlap, px (default: tile / 4)")
    parser.add_argument("--batch-size", type=int, default=4, help="windows per forward pass")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation (8x the compute)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    args = parser.parse_args()

    import torch

    from unetlab import create_model
    from unetlab.data.info import DataInfo
    from unetlab.data.io import write_image
    from unetlab.training.checkpoint import save_checkpoint

    options = {"tile": args.tile, "overlap": args.overlap, "batch_size": args.batch_size, "tta": args.tta}
    options["device"] = args.device
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        model = create_model("unet", base_channels=16, depth=4, in_channels=1, num_classes=1)
        save_checkpoint(tmp / "model.pt", model, DataInfo(1, [0, 255], mean=[0.5], std=[0.25]), threshold=0.5)
        print(
            f"{'size':>6} {'tile':>5} {'overlap':>7} {'device':>6} {'threads':>7} {'seconds':>8} {'Mpx/s':>6} "
            f"{'peak RSS MiB':>12} {'rise MiB':>8}"
        )
        for size in args.sizes:
            image = np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)
            write_image(tmp / "image.png", image)
            del image
            result = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    str(tmp / "model.pt"),
                    str(tmp / "image.png"),
                    str(tmp / "out"),
                    json.dumps(options),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(result.stdout.strip().splitlines()[-1])
            print(
                f"{size:>6} {r['tile']:>5} {r['overlap']:>7} {r['device']:>6} {r['threads']:>7} "
                f"{r['seconds']:>8.1f} {size * size / r['seconds'] / 1e6:>6.2f} {r['peak'] / 2**20:>12.0f} "
                f"{r['rise'] / 2**20:>8.0f}"
            )


if __name__ == "__main__":
    main()
