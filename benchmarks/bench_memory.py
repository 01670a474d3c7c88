"""Peak memory of one training step (forward + backward), with and without gradient checkpointing.

    python benchmarks/bench_memory.py                      # every registered model, 2 x C x 256 x 256, CPU
    python benchmarks/bench_memory.py --models unet --batch 4 --size 512 --device cuda

Each measurement runs in a fresh process. On CPU the figure is the rise of the process's peak resident memory
(VmHWM, reset through /proc/self/clear_refs) over its resident memory before the step, with large allocations
served by mmap so that freed memory really leaves the process; on CUDA it is `torch.cuda.max_memory_allocated`
over the memory allocated before the step.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, torch
from unetlab import create_model
name, batch, size, device = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[5]
checkpointing = sys.argv[4] == "1"

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

model = create_model(name, checkpointing=checkpointing).to(device).train()
side = model.valid_input_size(size)
image = torch.randn(batch, model.in_channels, side, side, device=device)

def step():
    model(image).float().square().mean().backward()

step()  # warm-up: gradients allocated, kernels chosen
if device == "cuda":
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
    step(); torch.cuda.synchronize(); peak = torch.cuda.max_memory_allocated() - base
else:
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak resident size to the current one
    base = rss("VmRSS:"); step(); peak = rss("VmHWM:") - base
print(json.dumps({"side": side, "peak": peak}))
"""


def measure(name: str, batch: int, size: int, checkpointing: bool, device: str) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, name, str(batch), str(size), "1" if checkpointing else "0", device],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from unetlab import list_models

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list_models())
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=256, help="input side in px (valid nets: the next valid side)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"peak memory of one forward + backward, batch {args.batch}, device {args.device}")
    print(f"{'model':<16}{'input':>10}{'plain MiB':>12}{'checkpointed MiB':>18}{'saving':>9}")
    for name in args.models:
        plain = measure(name, args.batch, args.size, False, args.device)
        ckpt = measure(name, args.batch, args.size, True, args.device)
        saving = 1 - ckpt["peak"] / plain["peak"]
        print(f"{name:<16}{plain['side']:>10}{plain['peak'] / 2**20:>12.0f}{ckpt['peak'] / 2**20:>18.0f}{saving:>9.0%}")


if __name__ == "__main__":
    main()
