"""The U-Net, as one class covering the 2015 paper's network and the modern padded network.

Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation", MICCAI 2015.

- `padding="valid"` is the paper's network (registered as `unet-classic`): unpadded 3x3 convs, each stage trims
  4 px, encoder maps are centre-cropped onto the decoder maps (Fig. 1), dropout ends the contracting path
  (Sec. 3.1). At depth 4 it maps 572x572 to 388x388; only sizes 16k + 124 fit (see `valid_input_size`).
- `padding="same"` is the modern network (registered as `unet`): padded convs with normalisation, output the size
  of the input for any input size.
- Stage i (0-based) has `base_channels * 2**i` channels; `depth` is the number of 2x2 poolings.
"""

import torch
from torch import nn

from unetlab.errors import UnetlabError
from unetlab.models.blocks import DoubleConv, Down, SegmentationModel, Up, make_aux_heads
from unetlab.options import check_model_options, refuse_option


def valid_output_size(size: int, depth: int) -> int | None:
    """Output side of the valid-padding U-Net for an input side `size`, or None when `size` does not fit.

    Each stage's two 3x3 convs trim 4 px; every pooled map must have an even side, and no map may vanish.
    Example (depth 4): 572 -> 568 /2 284 -> 280 /2 140 -> 136 /2 68 -> 64 /2 32 -> 28 (bottleneck)
    -> x2 56 -> 52 -> x2 104 -> 100 -> x2 200 -> 196 -> x2 392 -> 388.
    """
    for _ in range(depth):  # contracting path
        size -= 4
        if size <= 0 or size % 2:
            return None
        size //= 2
    size -= 4  # bottleneck
    for _ in range(depth):  # expanding path
        if size <= 0:
            return None
        size = 2 * size - 4
    return size if size > 0 else None


def valid_input_sizes(depth: int, lo: int, hi: int) -> list[int]:
    """All input sides in [lo, hi] that the valid-padding U-Net of this depth accepts (a step of 2**depth)."""
    return [s for s in range(max(lo, 1), hi + 1) if valid_output_size(s, depth) is not None]


class UNet(SegmentationModel):
    """The U-Net of Ronneberger et al. (2015), with padding, normalisation, upsampling and size as knobs.

    Args:
        in_channels: channels C of the input image (N, C, H, W).
        num_classes: output channels K: 1 gives one logit per pixel for a sigmoid, K >= 2 gives logits for a
            softmax over K classes.
        base_channels: channels of the first stage; stage i has `base_channels * 2**i`.
        depth: number of 2x2 poolings (the paper: 4), 1 to `options.MAX_DEPTH` (8).
        padding: "same" (output size = input size, any size) or "valid" (the paper: unpadded convs, output
            smaller than the input; only some sizes fit, see `valid_input_size`).
        norm: "batch", "group", "instance" or None, after every 3x3 conv.
        upsample: "transpose" (the paper's 2x2 up-convolution) or "bilinear" (interpolation and a 1x1 conv).
        dropout: dropout probability at the end of the contracting path (the paper: 0.5).
        deep_supervision: auxiliary heads on the lower decoder levels (`blocks.make_aux_heads`); padded nets only.
        checkpointing: recompute each stage's activations in backward instead of storing them.

    Input and output: `forward` maps (N, in_channels, H, W) to logits (N, num_classes, H', W'), with H' = H for
    "same" padding and H' = `output_size(H)` for "valid" padding.

    Raises:
        SettingError: on an invalid option, or (in forward) an input size that a valid-padding net cannot take.
    """

    architecture = "unet"  # what the NumPy twin mirrors (AttentionUNet, with its gates, says otherwise)
    gated = False  # AttentionUNet puts an attention gate on every skip

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        base_channels: int = 64,
        depth: int = 4,
        padding: str = "same",
        norm: str | None = "batch",
        upsample: str = "transpose",
        dropout: float = 0.0,
        deep_supervision: bool = False,
        checkpointing: bool = False,
    ):
        super().__init__()
        options = dict(in_channels=in_channels, num_classes=num_classes, base_channels=base_channels, depth=depth,
                       padding=padding, norm=norm, upsample=upsample, dropout=dropout)  # fmt: skip
        norm = check_model_options(**options)["norm"]
        if deep_supervision and padding == "valid":
            raise refuse_option("deep_supervision", True, "with valid padding: its levels are cropped unevenly")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.base_channels, self.depth = base_channels, depth
        self.padding, self.norm, self.upsample, self.dropout_p = padding, norm, upsample, dropout
        self.deep_supervision, self.checkpointing = deep_supervision, checkpointing

        channels = [base_channels * 2**i for i in range(depth + 1)]  # e.g. 64, 128, 256, 512, 1024
        self.encoders = nn.ModuleList([DoubleConv(in_channels, channels[0], padding, norm)])
        self.encoders.extend(Down(channels[i - 1], channels[i], padding, norm) for i in range(1, depth))
        self.bottleneck = Down(channels[depth - 1], channels[depth], padding, norm)
        self.dropout = nn.Dropout(dropout)
        # decoders[i] climbs from level i + 1 to level i; `decode` runs them from the deepest (i = depth - 1) up.
        self.decoders = nn.ModuleList(
            Up(channels[i + 1], channels[i], channels[i], padding, norm, upsample, gate=self.gated)
            for i in range(depth)
        )
        self.head = nn.Conv2d(channels[0], num_classes, 1)
        self.aux_heads = make_aux_heads(channels[:depth], num_classes) if deep_supervision else None

    def encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        features, x = [], image
        for encoder in self.encoders:
            x = self.run(encoder, x)  # enc1: (N, C0, H', W'); enc2: (N, 2 C0, ...); ...
            features.append(x)
        return features + [self.dropout(self.run(self.bottleneck, x))]  # ..., (N, C0 * 2**depth, H / 2**depth, ..)

    def check_input(self, image: torch.Tensor) -> None:
        if self.padding == "valid":
            for side in image.shape[-2:]:
                self.output_size(int(side))  # raises a helpful error for a size that does not fit

    def output_size(self, size: int) -> int:
        if self.padding == "same":
            return size
        out = valid_output_size(size, self.depth)
        if out is None:
            lower = max(valid_input_sizes(self.depth, size - 2**self.depth, size - 1), default=None)
            upper = self.valid_input_size(size + 1)
            choices = f"{lower} or {upper}" if lower else f"{upper}"
            raise UnetlabError(
                f"input side {size} px does not fit the valid-padding U-Net of depth {self.depth} "
                f"(every pooled map must be even and no map may vanish); use {choices} px "
                f"(valid sides start at {self.valid_input_size(1)} and go up in steps of {2**self.depth})"
            )
        return out

    def valid_input_size(self, min_size: int) -> int:
        if self.padding == "same":
            return max(min_size, 1)
        size = max(min_size, 1)
        while valid_output_size(size, self.depth) is None:
            size += 1
        return size

    def valid_input_sizes(self, low: int, high: int) -> list[int]:
        if self.padding == "same":
            return super().valid_input_sizes(low, high)
        return valid_input_sizes(self.depth, low, high)

    @property
    def reduction(self) -> int:
        return 2**self.depth

    def named_stages(self) -> list[tuple[str, nn.Module]]:
        stages = [(f"enc{i + 1}", m) for i, m in enumerate(self.encoders)]
        stages.append(("bottleneck", self.bottleneck))
        stages += [(f"dec{i + 1}", self.decoders[i]) for i in reversed(range(self.depth))]
        return stages + [("head", self.head)]
