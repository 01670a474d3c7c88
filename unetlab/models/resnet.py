"""ResNet encoders written here, weight-compatible with torchvision's ImageNet files.

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (Table 1: ResNet-18/34/50).

- Module names and tensor shapes equal torchvision's `resnet18/34/50` (`conv1`, `bn1`, `layer1.0.conv1`, ...,
  `downsample.0`/`.1`), so that `state_dict` keys match one for one; only the classifier `fc` is absent.
- Bottleneck blocks put the stride on the 3x3 conv, as torchvision does ("ResNet v1.5").
- `ResNetEncoder(x)` returns feature maps from high to low resolution: the stem (conv1 -> bn1 -> relu, stride 2)
  and layer1 ... layer4 (strides 4 ... 32), as many as `depth` asks for. `out_channels` and `reductions` describe
  them, so that a decoder is built from these numbers and not from literals.
"""

from pathlib import Path

import torch
from torch import nn

from unetlab.errors import UnetlabError
from unetlab.models.blocks import state_dict_mismatch

ARCHS = {  # name: (block type, blocks per layer)
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)  # (N, C_out, H/s, W/s)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4, with a residual connection (ResNet-50)."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, channels * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)  # (N, 4 C, H/s, W/s)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetEncoder(nn.Module):
    """A torchvision-compatible ResNet trunk that returns its intermediate feature maps.

    Args:
        arch: "resnet18", "resnet34" or "resnet50".
        in_channels: channels of the input image (3 for ImageNet weights; see `load_torchvision_weights`).
        depth: how many feature maps to compute, 1 (the stem only) to 5 (stem and layer1 ... layer4). Stages
            beyond `depth` are not built.
    """

    def __init__(self, arch: str = "resnet34", in_channels: int = 3, depth: int = 5):
        super().__init__()
        block_type, layers = ARCHS[arch]
        block = BasicBlock if block_type == "basic" else Bottleneck
        self.arch, self.depth = arch, depth
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.out_channels = [64]
        self.reductions = [2]
        in_ch = 64
        for i in range(depth - 1):  # layer1 ... layer4
            channels, stride = 64 * 2**i, 1 if i == 0 else 2
            blocks = [block(in_ch, channels, stride, self._downsample(in_ch, channels * block.expansion, stride))]
            in_ch = channels * block.expansion
            blocks += [block(in_ch, channels) for _ in range(1, layers[i])]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.out_channels.append(in_ch)
            self.reductions.append(self.reductions[-1] * 2)
        # A plain list wraps the registered layers without registering them again: state_dict keys stay torchvision's.
        self._stages = [nn.Sequential(self.conv1, self.bn1, self.relu)]
        if depth > 1:
            self._stages.append(nn.Sequential(self.maxpool, self.layer1))
        self._stages += [getattr(self, f"layer{i}") for i in range(2, depth)]
        self._init_weights()

    @staticmethod
    def _downsample(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
        if stride == 1 and in_channels == out_channels:
            return None
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
        )

    def _init_weights(self):
        # As torchvision: He initialisation for convs, BatchNorm as the identity.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def stages(self) -> list[nn.Module]:
        """The modules that produce each feature map: the stem, layer1 (behind the max-pool), layer2, ..."""
        return self._stages

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(N, C, H, W) -> [stem (N, 64, H/2, W/2), layer1 (N, 64 or 256, H/4, W/4), ..., layer4 (H/32)]."""
        features = []
        for stage in self._stages:
            x = stage(x)
            features.append(x)
        return features


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Turn a (64, 3, 7, 7) RGB first-conv weight into one for `in_channels` input channels.

    One channel gets the sum over RGB (a grey image x gives the response an RGB image (x, x, x) would). More
    channels cycle through R, G, B, scaled by 3 / in_channels so that the response keeps its magnitude.
    """
    if in_channels == weight.shape[1]:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)  # (64, 1, 7, 7)
    index = torch.arange(in_channels) % weight.shape[1]
    return weight[:, index] * (weight.shape[1] / in_channels)  # (64, in_channels, 7, 7)


def load_torchvision_weights(encoder: ResNetEncoder, path: str | Path) -> None:
    """Load a torchvision ResNet state-dict file (e.g. ImageNet weights) into `encoder` with strict key checking.

    The classifier (`fc.*`) and the layers the encoder did not build (depth < 5) are dropped; the first conv is
    adapted when `in_channels != 3`; half-precision files are converted to float32.

    Raises:
        UnetlabError: when the file is missing, a folder, not a PyTorch file, unreadable, or not a state dict of the
            same architecture.
    """
    path = Path(path)
    hint = f"pass the path of torchvision's {encoder.arch} state-dict file (.pth), e.g. its ImageNet weights"
    if path.is_dir():
        raise UnetlabError(f"encoder weights {path} is a folder; {hint}")
    if not path.is_file():
        raise UnetlabError(f"encoder weights file {path} not found; {hint}")
    with open(path, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive (PK 03 04); torch before 1.6 wrote a pickle (protocol opcode 0x80)
    if not (head == b"PK\x03\x04" or head[:1] == b"\x80"):
        raise UnetlabError(
            f"encoder weights file {path} is not a PyTorch file (torch.save writes a zip archive); {hint}"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt or foreign file
        reason = str(exc).strip().splitlines()[0].split(". ")[0] if str(exc).strip() else type(exc).__name__
        raise UnetlabError(f"encoder weights file {path} could not be read by torch.load ({reason}); {hint}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UnetlabError(f"encoder weights file {path} does not hold a state dict of tensors; {hint}")
    built = {f"layer{i}." for i in range(1, encoder.depth)}
    state = {
        k: v.float() if v.is_floating_point() else v
        for k, v in state.items()
        if not k.startswith("fc.") and (not k.startswith("layer") or k[: k.index(".") + 1] in built)
    }
    if "conv1.weight" in state:
        state["conv1.weight"] = adapt_first_conv(state["conv1.weight"], encoder.conv1.in_channels)
    mismatch = state_dict_mismatch(encoder.state_dict(), state)
    if mismatch:
        raise UnetlabError(f"encoder weights file {path} does not fit {encoder.arch}: {mismatch}; {hint}")
    encoder.load_state_dict(state, strict=True)
