"""Prediction with a trained model: one image of any size -> probabilities, class indices and the mask.

    >>> from unetlab import predict
    >>> result = predict("runs/isbi/checkpoints/best.pt", "slice.png")   # a checkpoint file, or a model
    >>> result.mask      # (H, W) in the dataset's own mask values, e.g. 0 / 255
    >>> result.probs     # (K, H, W) float32 probabilities

- A checkpoint brings its `DataInfo` (channels, normalisation, class values) and the decision threshold of binary
  models; a model straight from the registry predicts with no normalisation (integer images are only scaled to
  [0, 1]) and gives class indices as its mask.
- Output convention (`unetlab.logits`): `num_classes == 1` is one logit per pixel, sigmoid, class = probability >=
  threshold (the rule validation chooses the threshold under); `num_classes >= 2` are softmax logits, class = argmax.
- Overlap-tile and test-time augmentation come from `unetlab.inference.tiling`; `Predictor` keeps the model on its
  device for many images, and `predict` is the one-image shortcut.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from unetlab.data.info import DataInfo
from unetlab.data.io import read_image
from unetlab.device import resolve_amp, resolve_device
from unetlab.errors import UnetlabError, plural
from unetlab.inference.options import PredictOptions
from unetlab.inference.tiling import TestTimeAugmentation, predict_tiled, resolve_tiling
from unetlab.logits import DEFAULT_THRESHOLD, decide, is_binary, num_labels, probabilities
from unetlab.models.blocks import SegmentationModel
from unetlab.settings import SettingError, check_value
from unetlab.training.checkpoint import Checkpoint, load_checkpoint

ROWS_PER_BAND = 1024  # rows converted at a time from logits to classes: no (H, W) int64 array is ever made


@dataclass
class Prediction:
    """One image's prediction, as NumPy arrays.

    Attributes:
        probs: (K, H, W) float32: the sigmoid probability of the foreground (K = 1) or the softmax over K classes.
        classes: (H, W) class indices, uint8 (int32 past 256 classes).
        mask: the classes in the original mask values, (H, W) uint8/uint16 or (H, W, 3) uint8 for colour masks;
            equal to `classes` when there is no `DataInfo`.
    """

    probs: np.ndarray
    classes: np.ndarray
    mask: np.ndarray


class Predictor:
    """A model ready to predict many images: weights on the device, data info, threshold and tiling options.

    Args:
        model: a unetlab model (e.g. from `create_model`), a `Checkpoint`, or the path of a checkpoint file.
        **options: the fields of `unetlab.inference.options.PredictOptions`:
            device: "auto" (CUDA when available; for a model passed in, the device it is on), "cpu", "cuda",
                "cuda:1", ... A model passed in is moved there, and is otherwise left as it was: each call switches
                it to eval mode and back.
            amp: mixed precision, as `unetlab train --amp`: "auto" (bf16 on GPUs that support it, else fp16; full
                precision on the CPU), "none", "bf16" or "fp16" (CUDA only); see `unetlab.device.resolve_amp`.
            threshold: probability from which a pixel is foreground (p >= threshold), for binary (1-logit) models
                only. None: the checkpoint's, else 0.5.
            tta: average over the 8 flips and 90-degree rotations (8 times the compute).
            tile, overlap, blend, batch_size: the window size and overlap in px, the blend of padded models, and
                windows per forward pass (see `unetlab.inference.tiling.predict_tiled`); None: `resolve_tiling`'s
                defaults.

    Attributes:
        model: the network, on `device`. data: the `DataInfo` images are read with. dtype: its parameters' dtype,
            the dtype images are given to it in. options: the `PredictOptions`.
        tile, overlap: the tiling in effect (a valid-convolution model's tile rounded up to a size it takes).
        amp: the autocast dtype in effect, None for full precision.

    Raises:
        UnetlabError: for an unreadable checkpoint, an invalid option, or a threshold given to a multi-class model.
    """

    def __init__(self, model: nn.Module | Checkpoint | str | Path, **options):
        unknown = sorted(set(options) - set(PredictOptions.__dataclass_fields__))
        if unknown:
            raise UnetlabError(
                f"Predictor has no option {', '.join(unknown)}; its options are those of PredictOptions: "
                f"{', '.join(PredictOptions.__dataclass_fields__)}"
            )
        self.options = opts = PredictOptions(**options)
        checkpoint = load_checkpoint(model) if isinstance(model, (str, Path)) else model
        network = checkpoint.build_model() if isinstance(checkpoint, Checkpoint) else checkpoint
        if not isinstance(network, SegmentationModel):
            raise UnetlabError(f"cannot predict with a {type(network).__name__}; pass a unetlab model or checkpoint")
        owned = isinstance(checkpoint, Checkpoint)  # a model the caller passed is theirs: see `device`
        self.device = _own_device(network) if opts.device == "auto" and not owned else resolve_device(opts.device)
        self.model = network.to(self.device)
        if owned:
            self.model.eval()
        self.dtype = next((p.dtype for p in network.parameters() if p.is_floating_point()), torch.float32)
        self.num_classes = network.num_classes
        known = checkpoint if isinstance(checkpoint, Checkpoint) else None
        self.threshold = _resolve_threshold(opts.threshold, known.threshold if known else None, self.num_classes)
        labels = num_labels(self.num_classes)
        self.data = known.data if known and known.data else DataInfo(network.in_channels, list(range(labels)))
        if self.data.num_classes != labels or self.data.in_channels != network.in_channels:
            raise UnetlabError(
                f"the checkpoint's data info ({plural(self.data.in_channels, 'channel')}, "
                f"{plural(self.data.num_classes, 'class', 'classes')}) does not match its model "
                f"({plural(network.in_channels, 'channel')}, {labels} classes); re-save the checkpoint"
            )
        self.mask_values = np.asarray(self.data.classes_to_mask(np.arange(labels)))  # (labels,) or (labels, 3)
        self.tile, self.overlap = resolve_tiling(network, opts.tile, opts.overlap)
        self.amp = resolve_amp(opts.amp, self.device)  # the autocast dtype, None = full precision
        self.tta, self.blend, self.batch_size = opts.tta, opts.blend, opts.batch_size
        self._forward = TestTimeAugmentation(self.model) if opts.tta else self.model

    def __call__(self, image: np.ndarray | str | Path, source: str | None = None, progress: bool = False) -> Prediction:
        """Predict one image.

        Args:
            image: an (H, W) or (H, W, C) array (scaled to [0, 1] by bit depth, floats taken as they are; see
                `unetlab.data.info.unit_range`), or the path of an image file. Any size, from 1 x 1 px up. Grey and
                colour are converted to the model's channels where that is unambiguous.
            source: the name used in error messages (default: the path, or "image").
            progress: show a progress bar over the windows.

        Raises:
            UnetlabError: for an unreadable file, pixels that cannot be scaled, or channels that cannot be converted
                to the model's.
        """
        if isinstance(image, (str, Path)):
            source = source or str(image)
            image = read_image(image)
        image, source = np.asarray(image), source or "image"
        if image.ndim not in (2, 3) or 0 in image.shape:
            raise UnetlabError(f"{source} has shape {image.shape}; pass an (H, W) or (H, W, C) image")
        if image.ndim == 3 and image.shape[0] <= 4 < image.shape[2] != self.data.in_channels:
            raise UnetlabError(
                f"{source} has shape {image.shape}, which looks channels-first (C, H, W); pass (H, W, C), e.g. "
                "numpy.moveaxis(image, 0, -1)"
            )
        tensor = self.data.image_to_tensor(image, source).to(self.dtype)  # (C, H, W), normalised
        modes = [(module, module.training) for module in self.model.modules()]  # a caller's model, restored below
        try:
            self.model.eval()
            logits = predict_tiled(
                self._forward,
                tensor,
                tile=self.tile,
                overlap=self.overlap,
                blend=self.blend,
                batch_size=self.batch_size,
                device=self.device,
                amp=self.amp,
                progress=progress,
            )
        finally:
            for module, training in modes:
                module.training = training
        probs, classes = self._probs_and_classes(logits)
        return Prediction(probs=probs.numpy(), classes=classes, mask=self.mask_values[classes])

    def _probs_and_classes(self, logits: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        """Logits (K, H, W) -> probabilities (in place) and class indices (H, W), a band of rows at a time."""
        classes = np.empty(logits.shape[1:], dtype=np.uint8 if self.num_classes <= 256 else np.int32)
        for top in range(0, logits.shape[1], ROWS_PER_BAND):
            band = logits[:, top : top + ROWS_PER_BAND]  # a view: (K, rows, W)
            band.copy_(probabilities(band, dim=0))
            classes[top : top + ROWS_PER_BAND] = decide(band, self.threshold, dim=0).numpy()
        return logits, classes


def predict(model: nn.Module | Checkpoint | str | Path, image: np.ndarray | str | Path, **options) -> Prediction:
    """Segment one image of any size with a model or checkpoint: `Predictor(model, **options)(image)`.

    Args:
        model: a unetlab model, a `Checkpoint`, or a checkpoint path.
        image: an (H, W) or (H, W, C) array, or an image file's path (see `Predictor.__call__`).
        **options: the options of `Predictor` (`PredictOptions`): device, amp, threshold, tta, tile, overlap, blend,
            batch_size.

    Returns:
        A `Prediction`: `probs` (K, H, W), `classes` (H, W) and `mask` in the dataset's own values.

    To predict many images, build one `Predictor` and call it on each, so the model is loaded only once.
    """
    return Predictor(model, **options)(image)


def _own_device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _resolve_threshold(given: float | None, stored: float | None, num_classes: int) -> float | None:
    if not is_binary(num_classes):
        if given is not None:
            raise SettingError(
                lambda n: (
                    f"{n('threshold')} {given} applies to binary (1-logit) models; this one has {num_classes} "
                    "classes and takes the most probable one"
                ),
                ["threshold"],
            )
        return None
    threshold = given if given is not None else stored if stored is not None else DEFAULT_THRESHOLD
    check_value("threshold", threshold, PredictOptions.__dataclass_fields__["threshold"].metadata["setting"])
    return float(threshold)
