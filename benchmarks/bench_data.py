"""Data-loading throughput: 512 x 512 training images per second, loaded, cropped and augmented on the CPU.

    python benchmarks/bench_data.py                                   # ISBI 2012 if ../shared has it, else synthetic
    python benchmarks/bench_data.py --source synthetic-cells --workers 0 2 --batch 8 --augmentation default

For each worker count, a DataLoader over `build_datasets` (patch 512, cached) feeds batches that the main process
augments with `build_augmentation(name)` (batched, as the trainer does). Three figures per row: loading alone,
augmentation alone (on an already loaded batch), and the two together, which is what training sees. Timings depend
on the machine and its load: each is the best of a few repeats; quote them with the machine and its load.
"""

import argparse
import time
from pathlib import Path

import torch

from unetlab.data import DataConfig, build_datasets
from unetlab.data.transforms import build_augmentation

ISBI = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2012-membrane"


def images_per_second(batches, count: int, batch_size: int, repeats: int, work=lambda batch: batch) -> float:
    """The best of `repeats` timings of `count` batches drawn from the iterator `batches`, each passed through
    `work`, after one warm-up batch (the best, since a shared machine only ever slows a run down)."""
    work(next(batches))
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(count):
            work(next(batches))
        best = max(best, count * batch_size / (time.perf_counter() - start))
    return best


def endless(loader, train_ds):
    epoch = 0
    while True:
        train_ds.set_epoch(epoch)
        yield from loader
        epoch += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(ISBI) if ISBI.is_dir() else "synthetic-cells", help="DataConfig.source")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts to try")
    parser.add_argument("--batch", type=int, default=8, help="images per batch")
    parser.add_argument("--batches", type=int, default=10, help="batches timed per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per figure; the best is shown")
    parser.add_argument("--augmentation", default="default", help="pipeline name: none, light, default, paper")
    parser.add_argument("--weight-map", action="store_true", help="also load and warp the paper's weight map")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (main process)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = DataConfig(source=args.source, patch_size=512, image_size=512, num_train=16, weight_map=args.weight_map)
    start = time.perf_counter()
    train_ds, _, info = build_datasets(cfg)
    built = time.perf_counter() - start
    print(
        f"source {args.source}: {len(train_ds)} training images, {info.in_channels} channel(s), built in {built:.1f} s"
    )
    print(f"batch {args.batch}, augmentation {args.augmentation!r}, {args.threads} torch threads in the main process")
    augment = build_augmentation(args.augmentation)
    generator = torch.Generator().manual_seed(0)

    loaded = next(iter(torch.utils.data.DataLoader(train_ds, batch_size=args.batch)))
    timing = {"count": args.batches, "batch_size": args.batch, "repeats": args.repeats}
    augment_only = images_per_second(iter(lambda: loaded, None), **timing, work=lambda b: augment(b, generator))
    print(f"{'workers':>8} {'load img/s':>11} {'augment img/s':>14} {'load+augment img/s':>19}")
    for workers in args.workers:
        options = {"batch_size": args.batch, "shuffle": True, "num_workers": workers, "drop_last": True}
        loader = torch.utils.data.DataLoader(train_ds, **options)
        load = images_per_second(endless(loader, train_ds), **timing)
        both = images_per_second(endless(loader, train_ds), **timing, work=lambda b: augment(b, generator))
        print(f"{workers:>8} {load:>11.1f} {augment_only:>14.1f} {both:>19.1f}")


if __name__ == "__main__":
    main()
