"""Joint data augmentation on batches of torch tensors, on any device.

`build_augmentation(name, **options)` returns an `Augmentation`; calling it as `augment(batch, generator)`
transforms a batch dict:
- "image" (N, C, H, W) float: geometric transforms (bilinear or bicubic) and intensity transforms;
- "mask" (N, H, W) int64: the same geometric transforms with nearest-neighbour sampling, so the set of labels
  never changes and IGNORE_INDEX stays IGNORE_INDEX;
- "weight" (N, H, W) float, when present: the same geometric transforms, bilinear;
- any other key is passed through.
Random parameters are drawn once per sample from `generator` and applied to every key. All the geometric
transforms of a sample compose into one sampling grid, so the image is resampled once: flips, 90-degree rotations,
an affine map (rotation, scale, shift), and the U-Net paper's elastic deformation (Ronneberger et al. 2015,
Sec. 3.1: random displacements on a coarse 3 x 3 grid drawn with a 10 px standard deviation, interpolated
bicubically to every pixel). Pixels brought in from outside the image are mirrored (`outside="reflect"`, the
paper's choice), or, with `outside="ignore"`, become IGNORE_INDEX in the mask and 0 in the weight (the image is
still mirrored). Intensity transforms (brightness, contrast, gamma, blur, noise) touch the image only.

Every strength is 0 (off) by default; with all strengths 0 the batch is returned unchanged. The same generator
state gives the same output. A generator on the batch's device is fastest; a CPU generator works for any device.
"""

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from unetlab.data.info import IGNORE_INDEX
from unetlab.errors import UnetlabError, UnknownNameError

PIPELINES = {
    "none": {},
    "light": {"flip": True, "rot90": True, "brightness": 0.1, "contrast": 0.1},
    "default": {
        "flip": True,
        "rot90": True,
        "rotate": 15.0,
        "scale": 0.1,
        "shift": 0.05,
        "elastic": 10.0,
        "brightness": 0.1,
        "contrast": 0.2,
        "gamma": 0.2,
        "noise": 0.05,
        "blur": 1.0,
    },
    # Sec. 3.1: shift and rotation invariance, elastic deformations, grey-value variations; bicubic resampling.
    "paper": {
        "rotate": 180.0,
        "shift": 0.1,
        "elastic": 10.0,
        "interpolation": "bicubic",
        "brightness": 0.1,
        "contrast": 0.1,
    },
}


@dataclass(frozen=True)
class Augmentation:
    """A joint augmentation pipeline (see the module docstring); `build_augmentation` makes the named ones."""

    flip: bool = False  # random horizontal and vertical flips, each with probability 1/2
    rot90: bool = False  # a random multiple of 90 degrees (non-square images: 0 or 180)
    rotate: float = 0.0  # rotation angle ~ U(-rotate, rotate) degrees (typical 15; 180 = any angle)
    scale: float = 0.0  # zoom ~ U(1 - scale, 1 + scale) (typical 0.1)
    shift: float = 0.0  # translation ~ U(-shift, shift) * side, per axis (typical 0.05)
    elastic: float = 0.0  # std in pixels of the coarse-grid displacements (paper: 10)
    elastic_grid: int = 3  # coarse grid points per side (paper: 3)
    interpolation: str = "bilinear"  # image resampling: "bilinear" or "bicubic" (paper)
    outside: str = "reflect"  # pixels from outside the image: "reflect" or "ignore" (mask IGNORE_INDEX, weight 0)
    brightness: float = 0.0  # add ~ U(-b, b), in normalised units (about one dataset std per unit)
    contrast: float = 0.0  # scale the deviation from the image mean by ~ U(1 - c, 1 + c)
    gamma: float = 0.0  # gamma ~ exp(U(-g, g)), applied to the image rescaled to [0, 1]
    noise: float = 0.0  # add Gaussian noise with std ~ U(0, noise), in normalised units
    blur: float = 0.0  # Gaussian blur with sigma ~ U(0, blur) pixels

    def __post_init__(self):
        numbers = ("rotate", "scale", "shift", "elastic", "brightness", "contrast", "gamma", "noise", "blur")
        for name in numbers:
            if not getattr(self, name) >= 0:
                raise UnetlabError(f"augmentation option {name}={getattr(self, name)} must be >= 0 (0 = off)")
        if self.scale >= 1 or self.contrast >= 1:
            raise UnetlabError("augmentation options scale and contrast must be < 1")
        if self.interpolation not in ("bilinear", "bicubic"):
            raise UnetlabError(f"augmentation interpolation={self.interpolation!r}: use bilinear or bicubic")
        if self.outside not in ("reflect", "ignore"):
            raise UnetlabError(f"augmentation outside={self.outside!r}: use reflect or ignore")
        if self.elastic_grid < 2:
            raise UnetlabError(f"augmentation elastic_grid={self.elastic_grid} must be >= 2")

    @property
    def geometric(self) -> bool:
        """Whether any geometric transform is on (then the batch is resampled once)."""
        return bool(self.flip or self.rot90 or self.rotate or self.scale or self.shift or self.elastic)

    def __call__(self, batch: dict, generator: torch.Generator) -> dict:
        """Augment `batch` ({"image" (N, C, H, W), "mask" (N, H, W), "weight" (N, H, W), ...}); a new dict."""
        image = batch["image"]
        if image.ndim != 4:
            raise UnetlabError(f"augmentation takes a batch of images (N, C, H, W), got shape {tuple(image.shape)}")
        out = dict(batch)
        if self.geometric:
            grid = self.sampling_grid(image.shape[0], image.shape[2], image.shape[3], generator, image.device)
            out.update(warp(batch, grid, self.interpolation, self.outside))
        out["image"] = self._intensity(out["image"], generator)
        return out

    def sampling_grid(self, n: int, h: int, w: int, generator: torch.Generator, device) -> torch.Tensor:
        """Where each output pixel samples its input, for `F.grid_sample` (align_corners=False): (n, h, w, 2)."""
        rand = _uniform(generator, device)
        matrix = torch.eye(2, device=device).repeat(n, 1, 1)  # (n, 2, 2), acting on (x, y) pixel offsets
        if self.flip:
            signs = torch.where(rand(n, 2) < 0.5, -1.0, 1.0)  # (n, 2): x and y
            matrix = matrix * signs[:, None, :]
        if self.rot90:
            quarter = (rand(n) * 4).floor() if h == w else (rand(n) * 2).floor() * 2  # multiples of 90 degrees
            matrix = _rotation(quarter * (math.pi / 2)).round() @ matrix  # exact integers
        if self.rotate or self.scale:
            angle = (rand(n) * 2 - 1) * math.radians(self.rotate)
            zoom = 1 + (rand(n) * 2 - 1) * self.scale
            matrix = _rotation(angle) / zoom[:, None, None] @ matrix
        yy, xx = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        centre = torch.tensor([(w - 1) / 2, (h - 1) / 2], device=device)
        offsets = torch.stack([xx, yy], dim=-1).float() - centre  # (h, w, 2) pixel offsets from the centre
        source = torch.einsum("nij,hwj->nhwi", matrix, offsets) + centre  # (n, h, w, 2)
        if self.shift:
            source = source + (rand(n, 2) * 2 - 1)[:, None, None, :] * self.shift * torch.tensor([w, h], device=device)
        if self.elastic:
            source = source + elastic_field(n, h, w, self.elastic, self.elastic_grid, generator, device)
        return (2 * source + 1) / torch.tensor([w, h], device=device) - 1  # pixel centres -> [-1, 1]

    def _intensity(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = image.shape[0]
        rand = _uniform(generator, image.device)

        def per_sample(low, high):  # (n, 1, 1, 1) ~ U(low, high)
            return (low + (high - low) * rand(n)).to(image.dtype)[:, None, None, None]

        if self.brightness:
            image = image + per_sample(-self.brightness, self.brightness)
        if self.contrast:
            mean = image.mean(dim=(1, 2, 3), keepdim=True)
            image = (image - mean) * per_sample(1 - self.contrast, 1 + self.contrast) + mean
        if self.gamma:
            low = image.amin(dim=(1, 2, 3), keepdim=True)
            span = image.amax(dim=(1, 2, 3), keepdim=True) - low + 1e-7
            image = ((image - low) / span) ** per_sample(-self.gamma, self.gamma).exp() * span + low
        if self.blur:
            image = gaussian_blur(image, per_sample(0, self.blur).flatten(), radius=math.ceil(3 * self.blur))
        if self.noise:
            noise = torch.randn(image.shape, generator=generator, device=generator.device).to(image)
            image = image + noise * per_sample(0, self.noise)
        return image


def build_augmentation(name: str = "default", **options) -> Augmentation:
    """The named pipeline ("none", "light", "default", "paper"; see `PIPELINES`) with `options` overriding it.

    Raises:
        UnknownNameError: for an unknown pipeline name.
        UnetlabError: for an unknown option or an invalid value.
    """
    if name not in PIPELINES:
        raise UnknownNameError(f"augmentation {name!r} is unknown; use one of {', '.join(PIPELINES)}")
    valid = [f.name for f in fields(Augmentation)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UnetlabError(f"augmentation has no option {', '.join(unknown)}; its options are {', '.join(valid)}")
    return Augmentation(**{**PIPELINES[name], **options})


def warp(batch: dict, grid: torch.Tensor, interpolation: str = "bilinear", outside: str = "reflect") -> dict:
    """Resample "image", "mask" and "weight" (those present) of `batch` at `grid` (N, H, W, 2) in [-1, 1]."""

    def sample(x, mode):  # x (N, C, H, W)
        return F.grid_sample(x, grid.to(x.dtype), mode=mode, padding_mode="reflection", align_corners=False)

    out = {"image": sample(batch["image"], interpolation)}
    beyond = (grid.abs() > 1).any(dim=-1) if outside == "ignore" else None  # (N, H, W): sampled outside the image
    if "mask" in batch:
        mask = sample(batch["mask"][:, None].float(), "nearest")[:, 0].round().long()  # labels are exact in float32
        out["mask"] = mask if beyond is None else mask.masked_fill(beyond, IGNORE_INDEX)
    if "weight" in batch:
        weight = sample(batch["weight"][:, None], "bilinear")[:, 0]
        out["weight"] = weight if beyond is None else weight.masked_fill(beyond, 0)
    return out


def elastic_field(n: int, h: int, w: int, sigma: float, grid: int, generator: torch.Generator, device) -> torch.Tensor:
    """Smooth displacements (n, h, w, 2) in pixels (x, y): N(0, sigma^2) on a grid x grid lattice spanning the
    image corner to corner, interpolated bicubically (paper Sec. 3.1: 3 x 3 grid, sigma = 10 px)."""
    coarse = torch.randn(n, 2, grid, grid, generator=generator, device=generator.device).to(device) * sigma
    # Bicubic interpolation is separable: rows @ coarse @ columns^T, with the 1-D weights taken from F.interpolate
    # of the unit vectors. Much faster than interpolating the (n, 2, h, w) field itself.
    rows, columns = (_cubic_weights(grid, size, device) for size in (h, w))  # (h, grid), (w, grid)
    dense = rows @ coarse @ columns.T  # (n, 2, h, w)
    return dense.permute(0, 2, 3, 1)  # (n, h, w, 2)


def _cubic_weights(grid: int, size: int, device) -> torch.Tensor:
    """(size, grid): row i holds the bicubic weights (align_corners=True) of the grid values at output pixel i."""
    unit = torch.eye(grid, device=device)[:, None, None, :]  # (grid, 1, 1, grid): one unit vector per batch item
    return F.interpolate(unit, size=(1, size), mode="bicubic", align_corners=True)[:, 0, 0].T


def gaussian_blur(image: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Blur each sample of `image` (N, C, H, W) with its own Gaussian `sigma` (N,) in pixels (0 = unchanged),
    truncated at `radius` pixels (3 sigma keeps 99.7% of the kernel)."""
    n, c, h, w = image.shape
    taps = torch.arange(-radius, radius + 1, device=image.device, dtype=image.dtype)
    kernel = torch.exp(-(taps**2) / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))  # (N, 2r + 1)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (N * C, 2r + 1)
    mode = "reflect" if min(h, w) > radius else "replicate"
    x = F.pad(image.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode=mode)  # (1, NC, H + 2r, W + 2r)
    x = F.conv2d(x, kernel[:, None, :, None], groups=n * c)  # vertical: (1, NC, H, W + 2r)
    x = F.conv2d(x, kernel[:, None, None, :], groups=n * c)  # horizontal: (1, NC, H, W)
    return x.reshape(n, c, h, w)


def _rotation(angle: torch.Tensor) -> torch.Tensor:
    """(n,) angles in radians -> (n, 2, 2) rotation matrices acting on (x, y)."""
    cos, sin = angle.cos(), angle.sin()
    return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)


def _uniform(generator: torch.Generator, device):
    """rand(*shape) ~ U(0, 1) drawn from `generator` on its own device, returned on `device`."""
    return lambda *shape: torch.rand(shape, generator=generator, device=generator.device).to(device)
