"""U-Net on a ResNet encoder: a pretrained-capable contracting path with the U-Net's expanding path.

- Encoder: `resnet.ResNetEncoder` (ResNet-18/34/50, torchvision-compatible weights via `encoder_weights=PATH`).
- Decoder: one `blocks.Up` per encoder level, built from `encoder.out_channels`. Level 0 (full resolution) takes
  the input image itself as its skip (`encode` returns it as the first feature map), so the output is full
  resolution for any input size and thin structures can draw on the raw pixels.
- Decoder level i has `base_channels * 2**i` channels (e.g. 16, 32, 64, 128, 256 at base 16, depth 5).
"""

from pathlib import Path

import torch
from torch import nn

from unetlab.models.blocks import SegmentationModel, Up, make_aux_heads
from unetlab.models.resnet import ARCHS, ResNetEncoder, load_torchvision_weights
from unetlab.options import check_depth_at_most, check_model_options
from unetlab.settings import SettingError


class ResNetUNet(SegmentationModel):
    """U-Net whose contracting path is a ResNet.

    Args:
        encoder: "resnet18", "resnet34" or "resnet50".
        in_channels: channels C of the input image (N, C, H, W).
        num_classes: output channels K (1 = one sigmoid logit, K >= 2 = softmax logits).
        base_channels: decoder channels at full resolution; level i has `base_channels * 2**i`.
        depth: number of encoder feature levels used, 1 (stem only, stride 2) to 5 (down to layer4, stride 32).
        norm: normalisation in the decoder: "batch", "group", "instance" or None (the encoder keeps its BatchNorm).
        upsample: "transpose" or "bilinear".
        encoder_weights: path of a torchvision ResNet state-dict file to load into the encoder (e.g. ImageNet
            weights, downloaded by the user); None for random initialisation.
        freeze_encoder: keep the encoder fixed: no gradients, and its BatchNorm statistics frozen in train mode.
        deep_supervision: auxiliary heads on the lower decoder levels (`blocks.make_aux_heads`).
        checkpointing: recompute each stage's activations in backward instead of storing them.

    `forward` maps (N, in_channels, H, W) to logits (N, num_classes, H, W) for any H, W >= 1.
    """

    architecture = "resnet-unet"

    def __init__(
        self,
        encoder: str = "resnet34",
        in_channels: int = 3,
        num_classes: int = 2,
        base_channels: int = 16,
        depth: int = 5,
        norm: str | None = "batch",
        upsample: str = "transpose",
        encoder_weights: str | Path | None = None,
        freeze_encoder: bool = False,
        deep_supervision: bool = False,
        checkpointing: bool = False,
    ):
        super().__init__()
        if encoder not in ARCHS:
            raise SettingError(lambda n: f"{n('encoder')} {encoder!r} is unknown; choose one of {', '.join(ARCHS)}",
                               ["encoder"])  # fmt: skip
        norm = check_model_options(in_channels=in_channels, num_classes=num_classes, base_channels=base_channels,
                                   depth=depth, norm=norm, upsample=upsample)["norm"]  # fmt: skip
        check_depth_at_most(depth, len(ARCHS[encoder][1]) + 1, f"{encoder} has a stem and 4 layers")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.base_channels, self.depth = base_channels, depth
        self.norm, self.upsample, self.freeze_encoder = norm, upsample, freeze_encoder
        self.deep_supervision, self.checkpointing = deep_supervision, checkpointing

        self.encoder = ResNetEncoder(encoder, in_channels, depth)
        if encoder_weights is not None:
            load_torchvision_weights(self.encoder, encoder_weights)
        skip_channels = [in_channels, *self.encoder.out_channels[:-1]]  # level i is joined with skip_channels[i]
        widths = [base_channels * 2**i for i in range(depth)]
        below = [*widths[1:], self.encoder.out_channels[-1]]  # what arrives at level i from level i + 1
        # decoders[i] climbs to level i (resolution 1 / 2**i); `decode` runs them from the deepest up.
        self.decoders = nn.ModuleList(
            Up(below[i], skip_channels[i], widths[i], "same", norm, upsample) for i in range(depth)
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        self.aux_heads = make_aux_heads(widths, num_classes) if deep_supervision else None
        if freeze_encoder:
            self.encoder.requires_grad_(False)

    @property
    def reduction(self) -> int:
        return self.encoder.reductions[-1]  # the encoder's stride at its deepest map

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()  # frozen BatchNorm statistics too, not only frozen weights
        return self

    def encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        features, x = [image], image  # the image is level 0's skip
        for stage in self.encoder.stages():
            x = self.run(stage, x)  # (N, out_channels[i], ceil(H / 2**(i+1)), ...)
            features.append(x)
        return features

    def named_stages(self) -> list[tuple[str, nn.Module]]:
        names = ["stem", *(f"layer{i}" for i in range(1, self.depth))]
        stages = list(zip(names, self.encoder.stages()))
        stages += [(f"dec{i + 1}", self.decoders[i]) for i in reversed(range(self.depth))]
        return stages + [("head", self.head)]
