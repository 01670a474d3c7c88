"""Segmentation losses on logits and integer masks, binary (K = 1 output, sigmoid) and multi-class (K >= 2, softmax).

`build_loss(name, num_classes, ...)` returns a module called as `loss(logits, mask, weight=None)`: logits
(N, K, H, W); mask (N, H, W) int64 class indices with `ignore_index` for unlabelled pixels (binary: 0/1, the class
indices `build_datasets` gives, not 0/255); weight (N, H, W) optional per-pixel weights, such as the U-Net paper's
weight map (`unetlab.data.weight_map`, Ronneberger et al. 2015, eq. 2), which multiply the cross-entropy terms.
Losses take logits, never probabilities, so that the softmax (sigmoid) and the log stay fused and stable.

- "ce": cross-entropy (binary cross-entropy for K = 1), with optional class weights; the mean of the weighted
  per-pixel terms, divided by the class weights of the labelled pixels as `torch.nn.functional.cross_entropy`
  does (so that with class weights only it equals torch's, and with a weight map only it is the mean of w(x) * CE).
- "focal": (1 - p_t)^gamma * CE (Lin et al. 2017, eq. 4), gamma = 2; class weights play the role of alpha.
- "dice": 1 - soft Dice, per class over the whole batch ("batch Dice"), averaged over the classes, background
  left out by default (Milletari et al. 2016; Isensee et al. 2021). The weight map does not enter it.
- "tversky": 1 - Tversky index TP / (TP + alpha FP + beta FN) with alpha = 0.3, beta = 0.7 (Salehi et al. 2017);
  Dice is the case alpha = beta = 0.5.
- "dice_ce": "dice" + "ce" (nnU-Net's default).

`DeepSupervisionLoss` wraps any of them for models with auxiliary heads: the loss of every level's logits against
the target downsampled to its size, weighted as nnU-Net weights them.
"""

import torch
import torch.nn.functional as F
from torch import nn

from unetlab.data.info import IGNORE_INDEX
from unetlab.errors import UnetlabError, UnknownNameError
from unetlab.logits import is_binary, num_labels

LOSS_OPTIONS = {  # the options each loss takes, with their defaults
    "ce": {},
    "focal": {"gamma": 2.0},
    "dice": {"include_background": False, "smooth": 1e-5},
    "tversky": {"alpha": 0.3, "beta": 0.7, "include_background": False, "smooth": 1e-5},
    "dice_ce": {"include_background": False, "smooth": 1e-5},
}


def build_loss(
    name: str, num_classes: int, *, class_weights=None, ignore_index: int = IGNORE_INDEX, **options
) -> nn.Module:
    """The loss `name` for a model with `num_classes` outputs (1 = binary with a sigmoid).

    Args:
        name: one of `LOSS_OPTIONS`: "ce", "focal", "dice", "tversky", "dice_ce".
        num_classes: K, the model's output channels.
        class_weights: per-class weights for "ce", "focal" and "dice_ce"'s CE term: K values, or 2 for K = 1
            (background, foreground).
        ignore_index: mask value of unlabelled pixels, which no loss counts.
        **options: the loss's own options (see `LOSS_OPTIONS`).

    Raises:
        UnknownNameError: for an unknown loss; UnetlabError for an unknown option or invalid value.
    """
    if name not in LOSS_OPTIONS:
        raise UnknownNameError(f"loss {name!r} is unknown; use one of {', '.join(LOSS_OPTIONS)}")
    unknown = sorted(set(options) - set(LOSS_OPTIONS[name]))
    if unknown:
        valid = ", ".join(LOSS_OPTIONS[name]) or "none besides class_weights"
        raise UnetlabError(f"loss {name} has no option {', '.join(unknown)}; its options are {valid}")
    if num_classes < 1:
        raise UnetlabError(f"loss num_classes={num_classes} must be >= 1 (1 = binary with a sigmoid)")
    if class_weights is not None and name in ("dice", "tversky"):
        raise UnetlabError(f"class_weights apply to the ce, focal and dice_ce losses, not to {name}")
    opts = {**LOSS_OPTIONS[name], **options}
    if name in ("ce", "focal"):
        return PixelLoss(num_classes, class_weights, ignore_index, gamma=opts.get("gamma", 0.0))
    overlap = {k: v for k, v in opts.items() if k in ("alpha", "beta", "include_background", "smooth")}
    dice = OverlapLoss(num_classes, ignore_index, **overlap)
    if name == "dice_ce":
        return CombinedLoss([dice, PixelLoss(num_classes, class_weights, ignore_index)])
    return dice


class PixelLoss(nn.Module):
    """Per-pixel (binary) cross-entropy, focal when gamma > 0; see the module docstring for the normalisation."""

    def __init__(self, num_classes: int, class_weights=None, ignore_index: int = IGNORE_INDEX, gamma: float = 0.0):
        super().__init__()
        if gamma < 0:
            raise UnetlabError(f"focal loss gamma={gamma} must be >= 0")
        self.num_classes, self.ignore_index, self.gamma = num_classes, ignore_index, gamma
        if class_weights is not None:
            class_weights = torch.as_tensor(class_weights, dtype=torch.float32)
            expected = num_labels(num_classes)
            if class_weights.shape != (expected,) or (class_weights < 0).any():
                raise UnetlabError(
                    f"class_weights {class_weights.tolist()} must be {expected} values >= 0 "
                    "(one per class"
                    + ("; background and foreground for a binary model)" if is_binary(num_classes) else ")")
                )
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, logits: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        check_inputs(logits, mask, weight, self.num_classes)
        labelled = mask != self.ignore_index
        target = torch.where(labelled, mask, 0)  # (N, H, W), any class for unlabelled pixels; they weigh 0
        logits = logits.float()
        if is_binary(self.num_classes):
            nll = F.binary_cross_entropy_with_logits(logits[:, 0], target.float(), reduction="none")  # (N, H, W)
        else:
            nll = -F.log_softmax(logits, dim=1).gather(1, target[:, None])[:, 0]  # (N, H, W)
        loss = nll if self.gamma == 0 else (1 - torch.exp(-nll)) ** self.gamma * nll  # focal: p_t = exp(-CE)
        pixel = labelled.float() if self.class_weights is None else self.class_weights[target] * labelled
        total = pixel.sum()
        if weight is not None:
            pixel = pixel * weight
        return (loss * pixel).sum() / total.clamp_min(torch.finfo(total.dtype).tiny)


class OverlapLoss(nn.Module):
    """1 - Tversky index per class over the batch, averaged over the classes (Dice: alpha = beta = 0.5)."""

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = IGNORE_INDEX,
        alpha: float = 0.5,
        beta: float = 0.5,
        include_background: bool = False,
        smooth: float = 1e-5,
    ):
        super().__init__()
        if min(alpha, beta, smooth) < 0:
            raise UnetlabError(f"alpha={alpha}, beta={beta} and smooth={smooth} must be >= 0")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.alpha, self.beta, self.include_background, self.smooth = alpha, beta, include_background, smooth

    def forward(self, logits: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """`weight` is accepted for a uniform call and not used."""
        check_inputs(logits, mask, weight, self.num_classes)
        labelled = (mask != self.ignore_index)[:, None].float()  # (N, 1, H, W)
        target = torch.where(mask != self.ignore_index, mask, 0)
        logits = logits.float()
        if is_binary(self.num_classes):
            p = torch.sigmoid(logits)
            probs, truth = (
                torch.cat([1 - p, p], dim=1),
                torch.stack([1 - target, target], dim=1).float(),
            )  # (N, 2, H, W)
        else:
            probs = F.softmax(logits, dim=1)
            truth = F.one_hot(target, self.num_classes).permute(0, 3, 1, 2).float()  # (N, K, H, W)
        if not self.include_background:
            probs, truth = probs[:, 1:], truth[:, 1:]
        probs, truth = probs * labelled, truth * labelled
        dims = (0, 2, 3)  # sums over the batch and the pixels: one index per class
        tp = (probs * truth).sum(dims)
        fp = (probs * (1 - truth)).sum(dims)
        fn = ((1 - probs) * truth).sum(dims)
        index = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth).clamp_min(1e-12)
        return 1 - index.mean()


class CombinedLoss(nn.Module):
    """The sum of several losses, each called with (logits, mask, weight)."""

    def __init__(self, terms: list[nn.Module]):
        super().__init__()
        self.terms = nn.ModuleList(terms)

    def forward(self, logits: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        return sum(term(logits, mask, weight) for term in self.terms)


def check_inputs(logits: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None, num_classes: int) -> None:
    """Raise a `UnetlabError` describing the mismatch when the shapes or dtypes cannot go together."""
    if logits.ndim != 4 or not logits.is_floating_point():
        raise UnetlabError(f"loss: logits must be float (N, K, H, W), got {logits.dtype} {tuple(logits.shape)}")
    if logits.shape[1] != num_classes:
        raise UnetlabError(f"loss: logits have {logits.shape[1]} channels but the loss was built for {num_classes}")
    if mask.ndim != 3 or mask.dtype.is_floating_point or mask.dtype == torch.bool:
        raise UnetlabError(f"loss: mask must be integer class indices (N, H, W), got {mask.dtype} {tuple(mask.shape)}")
    n, _, h, w = logits.shape
    if mask.shape != (n, h, w):
        raise UnetlabError(
            f"loss: mask {tuple(mask.shape)} does not match logits {tuple(logits.shape)}; valid-convolution models "
            f"give a smaller output than their input, so centre-crop the mask to ({h}, {w})"
        )
    if weight is not None and weight.shape != (n, h, w):
        raise UnetlabError(f"loss: weight {tuple(weight.shape)} must have the mask's shape {(n, h, w)}")


def deep_supervision_weights(outputs: int) -> list[float]:
    """The loss weights of deep supervision's `outputs` logits, full resolution first: halving per level, normalised to
    sum to 1 (nnU-Net, Isensee et al. 2021, which also gives the deepest decoder level weight 0: it has no head here).

    Example: 3 outputs (a depth-4 U-Net: levels 0, 1, 2) -> 4/7, 2/7, 1/7.
    """
    weights = [0.5**i for i in range(outputs)]
    return [w / sum(weights) for w in weights]


def downsample_target(target: torch.Tensor, size) -> torch.Tensor:
    """An (N, H, W) mask or weight map at `size` = (h, w), by nearest-neighbour sampling, as nnU-Net downsamples its
    segmentation targets for deep supervision (values are never mixed: class indices and IGNORE_INDEX stay)."""
    if tuple(target.shape[-2:]) == tuple(size):
        return target
    resized = F.interpolate(target[:, None].float(), size=tuple(size), mode="nearest-exact")[:, 0]  # (N, h, w)
    return resized.to(target.dtype)


class DeepSupervisionLoss(nn.Module):
    """`loss` on each level's logits against the target downsampled to that level, weighted by
    `deep_supervision_weights`; called with the list a model returns for `forward(image, all_levels=True)`."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, outputs: list[torch.Tensor], mask: torch.Tensor, weight: torch.Tensor | None = None):
        total = 0.0
        for w, logits in zip(deep_supervision_weights(len(outputs)), outputs):
            size = logits.shape[-2:]
            level_weight = None if weight is None else downsample_target(weight, size)
            total = total + w * self.loss(logits, downsample_target(mask, size), level_weight)
        return total
