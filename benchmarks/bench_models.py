"""Parameters, GFLOPs and training-step speed of every registered model.

    python benchmarks/bench_models.py                           # 3 x 256 x 256, batch 2, CPU, 3 timed steps
    python benchmarks/bench_models.py --device cuda --batch 16 --steps 20 --channels-last --amp bf16
    python benchmarks/bench_models.py --no-time                 # parameters and GFLOPs only

GFLOPs come from `unetlab.models.summary` (convolutions, 2 per multiply-add, one image); the classic network is also
reported at the paper's 1 x 572 x 572. Time is the median of `--steps` forward + backward + SGD steps after two
warm-up steps; TFLOP/s counts forward + backward as 3x the forward FLOPs.
"""

import argparse
import statistics
import time

import torch

from unetlab import create_model, list_models
from unetlab.models.summary import summarize


def time_step(model, image, steps: int, amp: str | None) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    device_type = image.device.type
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    times = []
    for i in range(steps + 2):
        if device_type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
            loss = model(image).float().square().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device_type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list_models())
    parser.add_argument("--size", type=int, default=256, help="input side in px")
    parser.add_argument("--channels", type=int, default=3, help="input channels")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", choices=["bf16", "fp16"], help="autocast dtype (GPU)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--no-time", action="store_true", help="only parameters and GFLOPs")
    args = parser.parse_args()

    rows = [(name, (args.channels, args.size)) for name in args.models]
    if "unet-classic" in args.models:
        rows.append(("unet-classic", (1, 572)))
    print(f"device {args.device}, batch {args.batch}, amp {args.amp}, channels_last {args.channels_last}")
    print(
        f"{'model':<16}{'input':>14}{'params':>13}{'GFLOPs':>9}"
        + ("" if args.no_time else f"{'step s':>9}{'img/s':>8}{'TFLOP/s':>9}")
    )
    for name, (c, h) in rows:
        model = create_model(name, in_channels=c).to(args.device)
        side = model.valid_input_size(h)
        gflops = summarize(model, (c, side, side)).flops / 1e9
        params = sum(p.numel() for p in model.parameters())
        line = f"{name:<16}{f'{c}x{side}x{side}':>14}{params:>13,}{gflops:>9.1f}"
        if not args.no_time:
            memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
            model = model.to(memory_format=memory_format).train()
            image = torch.randn(args.batch, c, side, side, device=args.device).to(memory_format=memory_format)
            seconds = time_step(model, image, args.steps, args.amp)
            tflops = 3 * gflops * args.batch / seconds / 1e3
            line += f"{seconds:>9.3f}{args.batch / seconds:>8.1f}{tflops:>9.3f}"
        print(line)


if __name__ == "__main__":
    main()
