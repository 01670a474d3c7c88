"""Training and validation datasets: `DataConfig` -> `build_datasets` -> (train_ds, val_ds, DataInfo).

- Training items are random square patches (`patch_size`), reflect-padded when the image is smaller, optionally
  centred on a foreground pixel (nnU-Net's oversampling, Isensee et al. 2021, "Patch sampling"). They are not
  augmented: augmentation runs on whole batches (`unetlab.data.transforms`). The patch position comes from a NumPy
  generator seeded with (seed, epoch, index), so DataLoader workers and resumed runs draw the same patches; the
  trainer calls `train_ds.set_epoch(epoch)` before each epoch (with `persistent_workers=False`, the default, so
  that the workers receive the new epoch).
- Validation items are whole images (sizes may differ between items), for full-image evaluation.
- Items are dicts: "image" float32 (C, H, W) normalised, "mask" int64 (H, W) class indices with IGNORE_INDEX for
  unlabelled pixels, and "weight" float32 (H, W), the U-Net paper's weight map (Ronneberger et al. 2015, eq. 2),
  when `DataConfig.weight_map` is set.
- Sources: the built-in synthetic data (`unetlab.data.synthetic`, generated on the fly) or a folder of images and
  masks (`unetlab.data.folders`). With `cache=True` every image, mask and weight map is prepared once in
  `build_datasets` and kept in memory; otherwise each item is read (or generated) when asked for.
"""

import numpy as np
import torch

from unetlab.data import synthetic
from unetlab.data.config import DataConfig, check_source_exists
from unetlab.data.info import DataInfo
from unetlab.data.sources import FolderSource, SyntheticSource, folder_sources
from unetlab.data.weight_map import border_weight_map
from unetlab.errors import UnetlabError, plural


def build_datasets(cfg: DataConfig) -> tuple["PatchDataset", "ImageDataset", DataInfo]:
    """The training patches, the validation images and the dataset's `DataInfo`.

    Raises:
        UnetlabError: naming the option or file at fault (missing folder, unpaired or unreadable files, unknown mask
            values, inconsistent class names, ...).
    """
    check_source_exists(cfg)
    cfg = cfg.seeded()
    if cfg.synthetic:
        kind = cfg.source.removeprefix("synthetic-")
        train_src = SyntheticSource(kind, cfg.seed, cfg.image_size, start=0, count=cfg.num_train)
        val_src = SyntheticSource(kind, cfg.seed, cfg.image_size, start=cfg.num_train, count=cfg.num_val)
        names = synthetic.CLASS_NAMES[kind]
        info = DataInfo(synthetic.CHANNELS[kind], list(range(len(names))), class_names=list(names))
    else:
        train_src, val_src, info = folder_sources(cfg)
    train_ds = PatchDataset(train_src, info, cfg)
    val_ds = ImageDataset(val_src, info, cfg)
    info.mean, info.std = _normalisation(cfg, train_ds, info.in_channels)
    return train_ds, val_ds, info


class ImageDataset(torch.utils.data.Dataset):
    """Whole images: item i is {"image" (C, H, W), "mask" (H, W)[, "weight" (H, W)]} of source image i."""

    def __init__(self, source: SyntheticSource | FolderSource, info: DataInfo, cfg: DataConfig):
        self.source, self.info = source, info
        self.weight = (cfg.weight_w0, cfg.weight_sigma) if cfg.weight_map else None
        self._items = [self._prepare(i) for i in range(len(source))] if cfg.cache else None

    def __len__(self) -> int:
        return len(self.source)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Image i as (H, W, C) array in its stored dtype, int16 class mask (H, W), float32 weight map or None."""
        return self._items[i] if self._items is not None else self._prepare(i)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        self._check_index(i)
        return self._to_item(*self.load(i), self.source.name(i))

    def _check_index(self, i: int) -> None:
        if not 0 <= i < len(self):  # also ends `for item in dataset` on sources that could generate any index
            raise IndexError(f"item {i} out of range for {len(self)} items")

    def _prepare(self, i: int):
        image, classes, instances = self.source.load(i)
        weight = None
        if self.weight is not None:
            w0, sigma = self.weight
            weight = border_weight_map(classes, instances, w0=w0, sigma=sigma)
        return image, classes.astype(np.int16), weight  # int16 holds K <= 256 classes and IGNORE_INDEX

    def _to_item(self, image, classes, weight, name: str) -> dict[str, torch.Tensor]:
        item = {"image": self.info.image_to_tensor(image, name), "mask": torch.from_numpy(classes.astype(np.int64))}
        if weight is not None:
            item["weight"] = torch.from_numpy(np.ascontiguousarray(weight))
        return item


class PatchDataset(ImageDataset):
    """Random training patches: item i is a `patch_size` patch of image i % images, drawn afresh each epoch."""

    def __init__(self, source: SyntheticSource | FolderSource, info: DataInfo, cfg: DataConfig):
        super().__init__(source, info, cfg)
        self.patch_size, self.patches_per_image = cfg.patch_size, cfg.patches_per_image
        self.foreground_fraction, self.seed, self.epoch = cfg.foreground_fraction, cfg.seed, 0

    def __len__(self) -> int:
        return len(self.source) * self.patches_per_image

    def set_epoch(self, epoch: int) -> None:
        """Draw the patches of `epoch` (>= 0) from now on; call it before iterating the DataLoader each epoch."""
        self.epoch = epoch

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        self._check_index(i)
        rng = np.random.default_rng([self.seed, self.epoch, i])
        image, classes, weight = self.load(i % len(self.source))
        centre = None
        if rng.random() < self.foreground_fraction:
            present = np.unique(classes[classes > 0])
            if len(present):  # a class first, then one of its pixels, so that rare classes are seen too
                pixels = np.flatnonzero(classes == rng.choice(present))
                centre = np.unravel_index(rng.choice(pixels), classes.shape)
        windows = [_window(n, self.patch_size, c, rng) for n, c in zip(classes.shape, centre or (None, None))]
        image, classes = _crop(image, windows), _crop(classes, windows)
        weight = _crop(weight, windows) if weight is not None else None
        return self._to_item(image, classes, weight, self.source.name(i % len(self.source)))


def _window(length: int, patch: int, centre: int | None, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(start, stop, pad_before, pad_after) of a patch along one axis of `length` pixels."""
    if length < patch:  # the whole axis, at a random place in the patch; the rest is reflected
        before = int(rng.integers(0, patch - length + 1))
        return 0, length, before, patch - length - before
    if centre is None:
        start = int(rng.integers(0, length - patch + 1))
    else:  # centred on the chosen pixel, moved inside the image near the borders
        start = int(np.clip(centre - patch // 2, 0, length - patch))
    return start, start + patch, 0, 0


def _crop(array: np.ndarray, windows) -> np.ndarray:
    """Crop the first two axes of `array` to `windows` and reflect-pad them to the patch size."""
    (y0, y1, top, bottom), (x0, x1, left, right) = windows
    crop = array[y0:y1, x0:x1]  # (h, w[, C])
    pad = [(top, bottom), (left, right)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(crop, pad, mode="reflect") if top or bottom or left or right else crop  # (P, P[, C])


def _normalisation(cfg: DataConfig, train_ds: ImageDataset, channels: int) -> tuple[list[float], list[float]]:
    """(mean, std) per channel: the fixed values of `cfg`, or those of every training pixel, computed once."""
    mean, std = cfg.mean, cfg.std
    if mean is None or std is None:
        if len(train_ds.source) == 0:
            raise UnetlabError("no training images to compute the normalisation from; give mean and std")
        sums, squares, count = np.zeros(channels), np.zeros(channels), 0  # of x and x^2, on the [0, 1] scale
        for i in range(len(train_ds.source)):
            image = train_ds.info.image_to_tensor(train_ds.load(i)[0], train_ds.source.name(i)).double()  # (C, H, W)
            sums += image.sum((1, 2)).numpy()
            squares += image.square().sum((1, 2)).numpy()
            count += image[0].numel()
        mean = (sums / count).tolist() if mean is None else mean
        std = np.sqrt(np.maximum(squares / count - (sums / count) ** 2, 1e-12)).tolist() if std is None else std
    return _per_channel(mean, channels, "mean"), _per_channel(std, channels, "std")


def _per_channel(values: list[float], channels: int, option: str) -> list[float]:
    values = [float(v) for v in values]
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        raise UnetlabError(
            f"{option} has {plural(len(values), 'value')} but the images have {plural(channels, 'channel')}; give "
            + ("1 value" if channels == 1 else f"1 value (for all) or {channels}")
        )
    return values
