"""Validation during training: whole images, metrics on the device, and the binary decision threshold.

- Each validation image goes through the model whole (`forward_whole`: mirror-padded by the border a
  valid-convolution network consumes), so metrics are those of the images a user will segment, not of patches.
- Metrics come from `metrics.MetricAccumulator` (per-image confusion counts on the device; one host sync at the
  end).
- Binary (1-logit) models: the foreground probabilities of all labelled pixels are binned into histograms of
  positives and negatives; every bin edge is a candidate threshold t, with tp(t), fp(t), fn(t) read off the
  cumulative histograms, and the t with the highest Dice over the validation set is kept (to 1 / THRESHOLD_BINS).
"""

import torch
from torch.utils.data import DataLoader

from unetlab.data.info import IGNORE_INDEX
from unetlab.metrics import MetricAccumulator

THRESHOLD_BINS = 200


@torch.no_grad()
def evaluate(model, dataset, loss_fn, runtime, class_names=None, num_samples: int = 0, workers: int = 0):
    """Evaluate `model` on every item of `dataset` (whole images).

    Returns:
        (metrics, threshold, samples): metrics as {"loss": ..., "dice": ..., "threshold": ..., ...}; the
        Dice-maximising threshold for 1-logit models (else None); up to `num_samples` (image, mask, prediction)
        CPU tensors for display.
    """
    was_training = model.training
    model.eval()
    binary = model.num_classes == 1
    accumulator = MetricAccumulator(2 if binary else model.num_classes, class_names)
    histogram = torch.zeros(2 * THRESHOLD_BINS, dtype=torch.int64, device=runtime.device)
    loss_sum = torch.zeros((), device=runtime.device)
    samples = []
    generator = torch.Generator().manual_seed(0)  # its own: leaves torch's global generator (dropout's) alone
    loader = DataLoader(dataset, batch_size=1, num_workers=workers, pin_memory=runtime.device.type == "cuda",
                        generator=generator)  # fmt: skip
    for item in loader:
        image = item["image"].to(runtime.device, non_blocking=True)  # (1, C, H, W)
        mask = item["mask"].to(runtime.device, non_blocking=True)  # (1, H, W)
        with torch.autocast(runtime.device.type, dtype=runtime.amp_dtype, enabled=runtime.amp_dtype is not None):
            logits = forward_whole(model, image).float()  # (1, K, H, W)
        loss_sum += loss_fn(logits, mask)
        if binary:
            prob = torch.sigmoid(logits[:, 0])  # (1, H, W)
            pred = (prob >= 0.5).long()
            labelled = mask != IGNORE_INDEX
            bins = (prob[labelled] * THRESHOLD_BINS).long().clamp_(max=THRESHOLD_BINS - 1)
            histogram += torch.bincount(bins + THRESHOLD_BINS * mask[labelled], minlength=2 * THRESHOLD_BINS)
        else:
            pred = logits.argmax(dim=1)  # (1, H, W)
        accumulator.update(pred, mask)
        if len(samples) < num_samples:
            samples.append((item["image"][0], item["mask"][0], pred[0].cpu()))
    metrics = {"loss": (loss_sum / max(len(dataset), 1)).item(), **accumulator.compute()}
    threshold = None
    if binary:
        threshold, dice = choose_threshold(histogram[:THRESHOLD_BINS], histogram[THRESHOLD_BINS:])
        metrics |= {"threshold": threshold, "dice_at_threshold": dice}
    model.train(was_training)
    return metrics, threshold, samples


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


def forward_whole(model, image: torch.Tensor) -> torch.Tensor:
    """Logits (N, K, H, W) for a whole image batch (N, C, H, W), the output aligned with the input.

    Valid-convolution networks see the image mirrored outwards by the border they consume (paper Fig. 2), and on
    to a valid input size; the extra output is cropped off.
    """
    if model.padding == "same":
        return model(image)
    h, w = image.shape[-2:]
    side = model.valid_input_size(1)
    margin = (side - model.output_size(side)) // 2  # px consumed on each side
    rows = mirror_indices(-margin, model.valid_input_size(h + 2 * margin) - margin, h, image.device)
    cols = mirror_indices(-margin, model.valid_input_size(w + 2 * margin) - margin, w, image.device)
    return model(image[..., rows[:, None], cols])[..., :h, :w]  # (N, K, h, w)


def mirror_indices(start: int, stop: int, n: int, device=None) -> torch.Tensor:
    """Indices start .. stop - 1 into a length-n axis mirrored at its ends without repeating the edge
    (as `numpy.pad(mode="reflect")`, but for any distance): n = 3 gives -2..4 -> 2 1 0 1 2 1 0."""
    i = torch.arange(start, stop, device=device)
    if n == 1:
        return torch.zeros_like(i)
    i = i.remainder(2 * (n - 1))
    return torch.where(i < n, i, 2 * (n - 1) - i)
