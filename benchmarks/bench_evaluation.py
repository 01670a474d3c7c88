"""The cost of the evaluation itself (no model): per 512 x 512 slice, each metric's time; the peak memory of a
streamed evaluation of 3 and of 12 slices (bounded: it should not grow with the slices); the time of all slices.

    python benchmarks/bench_evaluation.py                  # the ISBI 2012 masks if ../shared has them, else synthetic
    python benchmarks/bench_evaluation.py --slices 30 --out /tmp/report

The probabilities imitate a model: the truth (membrane = class 1, as configs/isbi.yaml maps it), blurred, with
noise, through a sigmoid. Timings are the best of `--repeats` on the first slice, then one streamed pass over
all slices and the report written from it; they depend on the machine and its load: quote them with both.
"""

import argparse
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image

from unetlab.evaluation.boundary import image_boundary_scores
from unetlab.evaluation.figures import overlay_thumbnail
from unetlab.evaluation.histograms import ProbabilityHistograms
from unetlab.evaluation.html import ReportFacts, write_report
from unetlab.evaluation.regions import image_region_scores
from unetlab.evaluation.scores import ConfusionMatrix
from unetlab.evaluation.scoring import evaluate_stream

ISBI = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2012-membrane"


def masks(count: int) -> list[np.ndarray]:
    """(512, 512) int64 truth: class 1 = membrane (ISBI's 0), class 0 = cell; synthetic rings when ISBI is absent."""
    if (ISBI / "masks").is_dir():
        files = sorted((ISBI / "masks").glob("*.png"), key=lambda p: int(p.stem))[:count]
        return [(np.asarray(Image.open(f)) == 0).astype(np.int64) for f in files]
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:512, :512]
    return [(np.sin(x / 9 + rng.random() * 6) * np.sin(y / 11) > 0.9).astype(np.int64) for _ in range(count)]


def imitate(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(1, H, W) float32 sigmoid probabilities that look like a decent model's."""
    logit = 6.0 * (2 * truth - 1.0)
    for axis in (0, 1):  # a 5-px box blur: soft, slightly wrong borders
        logit = sum(np.roll(logit, s, axis=axis) for s in range(-2, 3)) / 5
    logit += 2.5 * rng.normal(size=truth.shape)
    return (1 / (1 + np.exp(-logit))).astype(np.float32)[None]


def best_time(work, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="also write the report there")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    truths = masks(args.slices)
    print(f"{len(truths)} slices of {truths[0].shape[1]} x {truths[0].shape[0]} px "
          f"({'ISBI 2012 masks' if (ISBI / 'masks').is_dir() else 'synthetic'})")  # fmt: skip
    truth = truths[0]
    probs = imitate(truth, rng)
    pred = (probs[0] >= 0.5).astype(np.int64)
    image = (probs[0] * 255).astype(np.uint8)
    stages = {
        "confusion matrix": lambda: ConfusionMatrix(2).update(pred, truth),
        "histograms (1200 + 15 bins)": lambda: ProbabilityHistograms(1).update(probs, truth),
        "boundary (HD95, ASSD, NSD)": lambda: image_boundary_scores(pred, truth, 2, 2.0),
        "regions (Rand, VI)": lambda: image_region_scores(pred, truth),
        "thumbnail": lambda: overlay_thumbnail(image, truth, pred),
    }
    for name, work in stages.items():
        print(f"  {name:<30} {1000 * best_time(work, args.repeats):8.1f} ms per slice")

    def stream(count):
        generator = np.random.default_rng(1)
        for i, t in enumerate(truths[:count]):
            p = imitate(t, generator)
            yield f"{i}.png", (p[0] * 255).astype(np.uint8), p, t

    for count in sorted({min(3, len(truths)), min(12, len(truths))}):  # memory, traced (which slows it down)
        tracemalloc.start()
        evaluate_stream(stream(count), ["cell", "membrane"], threshold=0.5)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"evaluate_stream over {count} slices: peak traced memory {peak / 2**20:.1f} MiB")
    start = time.perf_counter()
    evaluation = evaluate_stream(stream(len(truths)), ["cell", "membrane"], threshold=0.5, other_thresholds=(0.4,))
    seconds = time.perf_counter() - start
    print(f"evaluate_stream over {len(truths)} slices: {seconds:.2f} s, {seconds / len(truths):.2f} s per slice "
          "(with making the imitation probabilities)")  # fmt: skip
    if args.out:
        start = time.perf_counter()
        write_report(args.out, evaluation, ReportFacts(model="imitation (no model)", data=str(ISBI)))
        print(f"write_report: {time.perf_counter() - start:.2f} s -> {args.out}/report.html")
    summary = evaluation.summary()
    print("scores of the imitation: " + ", ".join(f"{k} {summary[k]:.4f}" for k in
          ("dice", "pixel_error", "rand_error", "vi", "hd95", "surface_dice", "ap", "ece")))  # fmt: skip


if __name__ == "__main__":
    main()
