"""Validation during training: whole images, metrics on the device, and the binary decision threshold.

- Each validation image is predicted whole, through the same overlap-tile path as `unetlab predict`
  (`inference.predict_tiled`: bounded device memory, mirrored context for valid-convolution networks), so the
  metrics are those of the images a user will segment, not of patches.
- Multi-class models: per-image confusion counts of the argmax, summed on the device (`metrics.MetricAccumulator`)
  and read once at the end.
- Binary (1-logit) models: the foreground probabilities of all labelled pixels are binned into histograms of
  positives and negatives; every bin edge is a candidate threshold t, with tp(t), fp(t), fn(t), tn(t) read off the
  cumulative histograms. The t with the highest Dice over the validation set is kept (to 1 / THRESHOLD_BINS), and
  every reported metric is computed at it: the scores are those of the masks `unetlab predict` writes with the
  checkpoint's threshold (optimistic by the choice of t on the same images).
"""

import torch
from torch.utils.data import DataLoader

from unetlab.data.info import IGNORE_INDEX
from unetlab.evaluation.metrics import METRICS, MetricAccumulator
from unetlab.inference.tiling import predict_tiled
from unetlab.logits import decide, is_binary, num_labels, probabilities

THRESHOLD_BINS = 200


@torch.no_grad()
def evaluate(
    model, dataset, loss_fn, runtime, class_names=None, num_samples: int = 0, workers: int = 0, should_stop=None
):
    """Evaluate `model` on every item of `dataset` (whole images).

    Returns:
        (metrics, threshold, samples): metrics as {"loss": ..., "dice": ..., "dice/<class>": ..., ...} (see
        `metric_names`); the Dice-maximising threshold for 1-logit models (else None); up to `num_samples`
        (image, mask, prediction) CPU tensors for display (binary predictions at 0.5, before t is known).
    """
    was_training = model.training
    model.eval()
    binary = is_binary(model.num_classes)
    accumulator = MetricAccumulator(num_labels(model.num_classes), class_names)
    # bins 0..B-1: labelled background; B..2B-1: labelled foreground; 2B: unlabelled pixels, dropped
    histogram = torch.zeros(2 * THRESHOLD_BINS + 1, dtype=torch.int64, device=runtime.device)
    loss_sum = torch.zeros((), device=runtime.device)
    samples = []
    generator = torch.Generator().manual_seed(0)  # its own: leaves torch's global generator (dropout's) alone
    loader = DataLoader(dataset, batch_size=1, num_workers=workers, pin_memory=runtime.device.type == "cuda",
                        generator=generator)  # fmt: skip
    for item in loader:
        mask = item["mask"].to(runtime.device, non_blocking=True)  # (1, H, W)
        logits = predict_tiled(
            model, item["image"][0], device=runtime.device, amp=runtime.amp_dtype, should_stop=should_stop
        )
        logits = logits[None].to(runtime.device)  # (1, K, H, W)
        loss_sum += loss_fn(logits, mask)
        if binary:
            prob = probabilities(logits)[:, 0]  # (1, H, W)
            pred = decide(prob[:, None]).long()  # at the default threshold, before t is known
            bins = (prob * THRESHOLD_BINS).long().clamp_(max=THRESHOLD_BINS - 1) + THRESHOLD_BINS * mask.clamp(0, 1)
            bins = torch.where(mask == IGNORE_INDEX, 2 * THRESHOLD_BINS, bins)  # (1, H, W); no host sync
            histogram.scatter_add_(0, bins.flatten(), torch.ones_like(bins.flatten()))
        else:
            pred = decide(logits)  # (1, H, W)
            accumulator.update(pred, mask)
        if len(samples) < num_samples:
            samples.append((item["image"][0], item["mask"][0], pred[0].cpu()))
    threshold = None
    if binary:
        negatives, positives = histogram[:THRESHOLD_BINS], histogram[THRESHOLD_BINS : 2 * THRESHOLD_BINS]
        threshold, _ = choose_threshold(negatives, positives)
        accumulator.counts = counts_at(threshold, negatives, positives)  # the (4, K) sums update() would make
    metrics = {"loss": (loss_sum / max(len(dataset), 1)).item(), **accumulator.compute()}
    if binary:
        metrics["threshold"] = threshold
    model.train(was_training)
    return metrics, threshold, samples


def metric_names(class_names: list[str]) -> list[str]:
    """The keys of `evaluate`'s scores that can pick a best checkpoint: the loss, each metric's headline and each
    class's score (binary models also report their threshold, which is not a score)."""
    scores = list(METRICS)
    return ["loss", *scores, *(f"{m}/{c}" for m in scores for c in class_names)]


def counts_at(threshold: float, negatives: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Confusion counts (4, 2) = rows tp, fp, fn, tn of classes 0 and 1 when p >= `threshold` is foreground."""
    k = round(threshold * len(positives))
    tp, fn = positives[k:].sum(), positives[:k].sum()
    fp, tn = negatives[k:].sum(), negatives[:k].sum()
    foreground = torch.stack([tp, fp, fn, tn])
    background = torch.stack([tn, fn, fp, tp])  # the same pixels seen from class 0
    return torch.stack([background, foreground], dim=1)


def choose_threshold(negatives: torch.Tensor, positives: torch.Tensor) -> tuple[float, float]:
    """The threshold k / bins (predict foreground when p >= it) with the highest Dice, and that Dice.

    `negatives[k]`, `positives[k]`: labelled background / foreground pixels whose probability falls in bin k.
    """
    bins = len(positives)
    tp = positives.flip(0).cumsum(0).flip(0).double()  # tp[k]: positives with p >= k / bins
    fp = negatives.flip(0).cumsum(0).flip(0).double()
    fn = positives.sum() - tp
    dice = torch.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn).clamp(min=1), torch.ones_like(tp))
    best = int(dice.argmax())  # the lowest threshold among equals
    return best / bins, float(dice[best])
