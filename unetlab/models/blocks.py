"""Blocks shared by every U-Net in unetlab, and the base class of the models.

- `DoubleConv`: (3x3 conv -> norm -> ReLU) twice, the unit of each U-Net stage (Ronneberger et al. 2015, Fig. 1).
- `Down`: 2x2 max-pool, then `DoubleConv` (one step of the contracting path).
- `Up`: 2x upsampling, skip connection, `DoubleConv` (one step of the expanding path), optionally with an
  additive `AttentionGate` on the skip (Oktay et al. 2018, eq. 1).
- `SegmentationModel`: the seam every model shares (encoder -> decoder -> head), input-size rules, gradient
  checkpointing, named stages.

Sizes. With `padding="valid"` (the paper) every 3x3 conv trims 2 px, so the encoder map is wider than the
upsampled decoder map and is centre-cropped before concatenation (paper Fig. 1). With `padding="same"` the
max-pool rounds up (`ceil_mode`), so the upsampled map is the skip's size or one pixel larger; that extra row or
column lies past the image edge and is cropped. This works for every input size, odd or tiny, pads nothing, and
stays shape-dynamic under tracing and ONNX export.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


def make_norm(norm: str | None, channels: int) -> nn.Module:
    """The normalisation layer for `channels` feature maps; `None` gives an identity."""
    if norm is None:
        return nn.Identity()
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        # 32 groups as in Wu & He (2018), fewer when the channel count is not a multiple of 32.
        return nn.GroupNorm(math.gcd(32, channels), channels)
    return nn.InstanceNorm2d(channels, affine=True)


def center_crop(x: torch.Tensor, size) -> torch.Tensor:
    """Crop the last two dims of `x` to `size = (h, w)` around the centre (paper Fig. 1, the skip crop).

    When the margin is odd the extra pixel is cut at the bottom/right: top = (H - h) // 2.
    """
    top = (x.shape[-2] - size[0]) // 2
    left = (x.shape[-1] - size[1]) // 2
    return x[..., top : top + size[0], left : left + size[1]]  # (N, C, h, w)


class DoubleConv(nn.Module):
    """(3x3 conv -> norm -> ReLU) x 2. Convs carry a bias only when there is no normalisation after them."""

    def __init__(self, in_channels: int, out_channels: int, padding: str, norm: str | None):
        super().__init__()
        pad = 1 if padding == "same" else 0
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=pad, bias=norm is None)
        self.norm1 = make_norm(norm, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=pad, bias=norm is None)
        self.norm2 = make_norm(norm, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(self.conv1(x)))  # (N, C_out, H', W'); H' = H - 2 when valid
        return F.relu(self.norm2(self.conv2(x)))


class Down(nn.Module):
    """2x2 max-pool with stride 2, then `DoubleConv`: one step down the contracting path."""

    def __init__(self, in_channels: int, out_channels: int, padding: str, norm: str | None):
        super().__init__()
        # Valid nets are only fed sizes that pool evenly; padded nets round up so no pixel is dropped.
        self.pool = nn.MaxPool2d(2, ceil_mode=padding == "same")
        self.conv = DoubleConv(in_channels, out_channels, padding, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(x))  # (N, C_out, ceil(H/2) - margin, ...)


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018, "Attention U-Net", eq. 1).

        q = psi^T relu(W_x^T x + W_g^T g + b_g) + b_psi,    alpha = sigmoid(q),    out = alpha * x

    `x` is the encoder skip and `g` the gating signal. Here `g` is the decoder map after upsampling, so both have
    the same size and no resampling of alpha is needed (the paper gates with the coarser map and resamples).
    """

    def __init__(self, skip_channels: int, gate_channels: int, inter_channels: int):
        super().__init__()
        self.W_x = nn.Conv2d(skip_channels, inter_channels, 1, bias=False)
        self.W_g = nn.Conv2d(gate_channels, inter_channels, 1)  # its bias is b_g
        self.psi = nn.Conv2d(inter_channels, 1, 1)  # its bias is b_psi

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the gated skip (N, C_x, H, W) and the attention coefficients alpha (N, 1, H, W)."""
        alpha = torch.sigmoid(self.psi(F.relu(self.W_x(x) + self.W_g(g))))  # (N, 1, H, W)
        return x * alpha, alpha


class Up(nn.Module):
    """2x upsampling, concatenation with the skip, `DoubleConv`: one step up the expanding path.

    `in_channels` come from below, `skip_channels` from the encoder; the block upsamples to `out_channels`
    (the paper's 2x2 up-convolution halves the channels), concatenates [skip, x] and convolves to `out_channels`.
    """

    def __init__(self, in_channels, skip_channels, out_channels, padding, norm, upsample, gate=False):
        super().__init__()
        self.padding = padding
        if upsample == "transpose":
            self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        else:
            # A 1x1 conv commutes with bilinear interpolation (both linear, the weights of one sum to 1), so
            # convolving first gives the same result at a quarter of the cost.
            self.up = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1),
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            )
        self.gate = AttentionGate(skip_channels, out_channels, max(skip_channels // 2, 1)) if gate else None
        self.conv = DoubleConv(skip_channels + out_channels, out_channels, padding, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)  # (N, C_out, 2h, 2w)
        if self.padding == "valid":
            skip = center_crop(skip, x.shape[-2:])  # (N, C_skip, 2h, 2w): the paper's crop
        else:
            x = x[..., : skip.shape[-2], : skip.shape[-1]]  # (N, C_out, H, W): drop the ceil-mode overhang
        if self.gate is not None:
            skip, _ = self.gate(skip, x)
        return self.conv(torch.cat([skip, x], dim=1))  # (N, C_skip + C_out, H, W) -> (N, C_out, H', W')


def keep_running_stats(module: nn.Module):
    """Snapshot every BatchNorm buffer of `module` and return a function that puts the snapshot back.

    Gradient checkpointing runs a block's forward a second time during backward; without this, BatchNorm would
    update its running statistics (and `num_batches_tracked`) twice per step.
    """
    saved = [
        (buf, buf.clone())
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        for buf in m.buffers()
    ]

    def restore():
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)

    return restore


class SegmentationModel(nn.Module):
    """Base of every unetlab model: encoder -> decoder -> head, the input-size rules, and gradient checkpointing.

    The seam every model shares (so that deep supervision, a new decoder or another encoder is one change):
    - `encode(image)` returns feature maps from high to low resolution; the last one is the deepest, where the decoder
      starts, and each earlier one `features[i]` is the skip of decoder level i (a U-Net's encoder stages; a ResNet
      U-Net's input image, stem and layers);
    - `decoders[i]` (an `Up`) climbs to level i, at the resolution of `features[i]`; `decode` runs them deepest first
      and returns every level's output, full resolution first;
    - `head` (1x1 conv) turns level 0 into logits; with `deep_supervision`, `aux_heads[j]` does so on level j + 1
      (`make_aux_heads`), and `forward(image, all_levels=True)` returns those logits too, for training.
      Prediction, evaluation and export call `forward(image)`, which gives the full-resolution logits alone.
    Subclasses call `self.run(block, *inputs)` for each block, so that with `checkpointing` on (and gradients
    enabled) a block's activations are recomputed in backward instead of being stored.
    """

    checkpointing: bool = False
    padding: str = "same"  # "valid" for unpadded nets, whose output is smaller than the input
    deep_supervision: bool = False  # with it, the subclass sets `aux_heads` (a module, so no class attribute here)

    def encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps from high to low resolution: the skips of the decoder levels, then the deepest map."""
        raise NotImplementedError

    def decode(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Every decoder level's output, level 0 (full resolution) first."""
        x, levels = features[-1], []
        for decoder, skip in zip(reversed(self.decoders), reversed(features[:-1])):
            x = self.run(decoder, x, skip)  # (N, C_level, H_level, W_level)
            levels.append(x)
        return levels[::-1]

    def forward(self, image: torch.Tensor, all_levels: bool = False) -> torch.Tensor | list[torch.Tensor]:
        """Logits (N, num_classes, H', W'); with `all_levels` (deep supervision), a list: those logits, then each
        auxiliary head's, at 1/2, 1/4, ... of the resolution."""
        self.check_input(image)
        levels = self.decode(self.encode(image))
        logits = self.head(levels[0])  # (N, num_classes, H', W')
        if not all_levels:
            return logits
        heads = self.aux_heads if self.deep_supervision else []
        return [logits, *(head(x) for head, x in zip(heads, levels[1:]))]

    def check_input(self, image: torch.Tensor) -> None:
        """Raise a helpful error for an input the model cannot take (valid convolutions: sizes that do not fit)."""

    def output_size(self, size: int) -> int:
        """Output side length for an input side of `size` px (padded models keep the size)."""
        return size

    def valid_input_size(self, min_size: int) -> int:
        """The smallest input side >= `min_size` that the model accepts."""
        return max(min_size, 1)

    def valid_input_sizes(self, low: int, high: int) -> list[int]:
        """Every input side in [low, high] that the model accepts."""
        return list(range(max(low, 1), high + 1))

    @property
    def reduction(self) -> int:
        """The input side over the deepest feature map's (2**depth for a U-Net): the smallest window with context."""
        return 1

    def smallest_window(self) -> int:
        """The smallest input side (px) the model predicts in eval mode: `reduction + 1` when one of its normalisation
        layers needs more than one value per channel, else 1.

        Instance norm (without running statistics) normalises each channel of each image over its pixels, and group
        norm of one channel per group does the same: torch refuses a single value (a 1 x 1 map), which the deepest
        map is for inputs of `reduction` px or fewer. An input of `reduction + 1` px gives the deepest map 2 x 2
        (pooling rounds up) and every shallower map more. Batch norm in eval mode uses its running statistics and
        takes any size. A valid-convolution model's inputs are never that small (its deepest map is at least 3 x 3).
        """
        for module in self.modules():
            single = isinstance(module, nn.GroupNorm) and module.num_channels == module.num_groups
            instance = isinstance(module, nn.modules.instancenorm._InstanceNorm) and not module.track_running_stats
            if single or instance:
                return self.reduction + 1
        return 1

    def named_stages(self) -> list[tuple[str, nn.Module]]:
        """The stages in execution order, e.g. enc1 ... bottleneck ... dec1, head."""
        raise NotImplementedError

    def run(self, block: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
        if not (self.checkpointing and self.training and torch.is_grad_enabled()):
            return block(*inputs)
        calls = 0

        def forward(*args):
            nonlocal calls
            calls += 1
            if calls == 1:
                return block(*args)
            restore = keep_running_stats(block)  # the recomputation in backward
            try:
                return block(*args)
            finally:
                restore()

        return checkpoint(forward, *inputs, use_reentrant=False)


def make_aux_heads(widths: list[int], num_classes: int) -> nn.ModuleList:
    """Deep supervision's 1x1 heads on decoder levels 1 .. L - 2 of a decoder whose level i has `widths[i]` channels.

    As nnU-Net (Isensee et al. 2021), every level but the deepest is supervised: the loss weights halve per level and
    the deepest level's weight is 0 (`unetlab.training.losses.deep_supervision_weights`), so it gets no head.
    """
    return nn.ModuleList(nn.Conv2d(widths[i], num_classes, 1) for i in range(1, len(widths) - 1))


def state_dict_mismatch(own: dict, theirs: dict) -> str:
    """What keeps `theirs` from loading into a model whose state dict is `own`: "" when it loads strictly."""
    missing = sorted(set(own) - set(theirs))
    unexpected = sorted(set(theirs) - set(own))
    wrong = sorted(k for k in set(own) & set(theirs) if own[k].shape != theirs[k].shape)
    found = (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
    return "; ".join(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})" for label, keys in found if keys)
