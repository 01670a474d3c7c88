"""The NumPy twin's forward + backward time against PyTorch's, on the CPU, same network and weights, float32.

    python benchmarks/bench_numpy_vs_torch.py                     # unet, base 16, depth 4, batch 4 x 1 x 128 x 128
    python benchmarks/bench_numpy_vs_torch.py --model unet-classic --base-channels 64 --size 572 --batch 1

One step is forward, then backward from a fixed random gradient at the logits (no loss, no optimizer), in training
mode for both (batch statistics; dropout on, the twin drawing its own mask). The two take turns, step by step,
after one warm-up step each; the median and the minimum over `--steps` are printed (the minimum is the least
disturbed by other jobs on a shared machine). The goal for the twin is within 3x of PyTorch. NumPy's BLAS
and PyTorch use the threads they choose by default; the header prints PyTorch's count.
"""

import argparse
import statistics
import time

import numpy as np
import torch

from unetlab import create_model
from unetlab.twin import NumpyUNet


def time_steps(steps: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each step function; the functions take turns, so that a change in the machine's load
    (other jobs on a shared CPU) hits them alike. One untimed warm-up call each."""
    times = {name: [] for name in steps}
    for i in range(repeats + 1):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            if i:
                times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["unet", "unet-classic"], default="unet")
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--size", type=int, default=128, help="input side in px (valid nets: the next valid side)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=7, help="timed steps of each")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = create_model(args.model, base_channels=args.base_channels, depth=args.depth).train()
    twin = NumpyUNet.from_torch(model)
    side = model.valid_input_size(args.size)
    rng = np.random.default_rng(0)
    image = rng.standard_normal((args.batch, model.in_channels, side, side)).astype(np.float32)
    out = model.output_size(side)
    dlogits = rng.standard_normal((args.batch, model.num_classes, out, out)).astype(np.float32)
    image_t, dlogits_t = torch.from_numpy(image), torch.from_numpy(dlogits)

    def torch_step():
        model.zero_grad(set_to_none=True)
        model(image_t).backward(dlogits_t)

    def twin_step():
        twin.forward(image)
        twin.backward(dlogits)

    params = sum(p.numel() for p in model.parameters())
    print(
        f"{args.model}: base {args.base_channels}, depth {args.depth}, {params:,} parameters; input "
        f"{args.batch}x{model.in_channels}x{side}x{side} float32; CPU, torch threads {torch.get_num_threads()}"
    )
    times = time_steps({"torch": torch_step, "twin": twin_step}, args.steps)
    for stat in (statistics.median, min):
        torch_s, twin_s = stat(times["torch"]), stat(times["twin"])
        print(
            f"forward + backward, {stat.__name__} of {args.steps}: torch {torch_s * 1e3:.0f} ms, "
            f"twin {twin_s * 1e3:.0f} ms, ratio twin / torch {twin_s / torch_s:.2f}x"
        )
    print("goal: within 3x")


if __name__ == "__main__":
    main()
