"""`PredictOptions`: how a `Predictor` predicts (device, precision, decision threshold, test-time augmentation and
tiling), each option declared once; `unetlab predict` and `unetlab eval` take their flags from here.

The tiling options are checked against the model too when the predictor is made (`tiling.resolve_tiling`): a padded
model's tile must be at least its downsampling factor, and the overlap smaller than the tile.
"""

from dataclasses import dataclass

from unetlab.device import AMP_DTYPES
from unetlab.settings import check_settings, setting

BLENDS = ("gaussian", "constant")


@dataclass
class PredictOptions:
    """The options of `Predictor`; see the module docstring."""

    device: str = setting(
        "auto", "auto (CUDA when available; a model passed in: where it is), cpu, cuda, cuda:N", group="device"
    )
    amp: str = setting(
        "auto",
        "mixed precision, as for train: auto (bf16, or fp16 on older GPUs; none on the CPU), none, bf16, fp16",
        choices=("auto", *AMP_DTYPES),
        group="device",
    )
    threshold: float | None = setting(
        None,
        "binary models: a pixel is foreground where its probability is at least this",
        low=0,
        high=1,
        metavar="P",
        group="prediction",
        default_text="the checkpoint's, else 0.5",
    )
    tta: bool = setting(False, "average the 8 flips and 90-degree rotations (8x slower)", group="prediction")
    tile: int | None = setting(
        None,
        "side of the windows the network sees",
        unit="px",
        low=1,
        metavar="PX",
        group="prediction",
        default_text="572 px for unet-classic, else 512 px",
    )
    overlap: int | None = setting(
        None,
        "px shared by neighbouring windows",
        unit="px",
        low=0,
        metavar="PX",
        group="prediction",
        default_text="a quarter of the tile; 0 for unet-classic",
    )
    blend: str = setting("gaussian", "window weight of padded models", choices=BLENDS, group="prediction")
    batch_size: int = setting(4, "windows per forward pass (memory)", low=1, metavar="N", group="prediction")

    def __post_init__(self):
        check_settings(self)
