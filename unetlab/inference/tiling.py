"""Overlap-tile prediction: an image of any size through a U-Net, one batch of windows at a time.

Ronneberger, Fischer & Brox 2015, Sec. 2 and Fig. 2 (the overlap-tile strategy); blended windows as in nnU-Net
(Isensee et al. 2021, `compute_gaussian`) and MONAI's `sliding_window_inference`.

- Valid-convolution models (`padding == "valid"`, the paper's network) predict only the centre of a window, `border`
  px in from each side. As in Fig. 2, the missing context at the image edge is mirrored: windows read reflected
  indices, so no padded copy of the image is made. Each axis is taken as mirrored on to the next length that the
  network takes whole; output windows are placed side by side on it, `step` px apart, with `step` a multiple of the
  pooling stride, so every window pools on the grid of that whole. The tiled output therefore equals the output
  of the whole mirror-padded image in one pass, cropped to the image, for any image size.
- Padded models (`padding == "same"`) see zero padding at every window edge, so windows overlap by `overlap` px and
  their logits are averaged with a Gaussian (sigma = window / 8, as nnU-Net) or constant weight, never zero. The
  weight is separable and the windows form a grid, so the sum of weights is the outer product of two 1-D sums:
  each window is normalised as it is stitched and no image of summed weights is kept. An image side shorter than
  the model can take (`model.smallest_window()`: instance and group norms need more than one value per channel in the
  deepest maps) is mirrored on both sides up to that size, and the output cropped back: any image size predicts.
- Memory: `batch_size` windows at a time go to the device; logits are stitched into one preallocated (K, H, W)
  float32 tensor on the CPU. The whole image never goes to the device.
- `TestTimeAugmentation` wraps a model: the 8 flips and 90-degree rotations of each window, logits averaged.
"""

from dataclasses import dataclass

import torch
from tqdm import tqdm

from unetlab.errors import StopRequested, UnetlabError
from unetlab.inference.options import PredictOptions
from unetlab.models.blocks import SegmentationModel
from unetlab.settings import invalid

PAPER_TILE = 572  # the paper's input window (Fig. 2): 572 -> 388 px at depth 4
PADDED_TILE = 512  # padded models: a window of 512 px, overlapping by a quarter of it (MONAI's default overlap)


def tile_starts(length: int, tile: int, step: int) -> list[int]:
    """Start offsets of windows of `tile` px, `step` px apart, covering [0, length); the last one ends at `length`.

    Example: `tile_starts(10, 4, 3) == [0, 3, 6]`: windows [0, 4), [3, 7), [6, 10). With `step` 4,
    `tile_starts(10, 4, 4) == [0, 4, 6]`: a window at 8 would pass the end, so the last one moves back to end flush
    with the edge and overlaps its neighbour by 2 px. A length that fits in one window gives `[0]`.

    Raises:
        ValueError: when `step` is not in [1, tile] (the windows would leave gaps).
    """
    if not 1 <= step <= tile:
        raise ValueError(f"step={step} must be in [1, tile={tile}], or the windows would leave gaps")
    if length <= tile:
        return [0]
    return [*range(0, length - tile, step), length - tile]


def mirror_indices(start: int, size: int, length: int) -> torch.Tensor:
    """Indices `start` ... `start + size - 1` into an axis of `length` px, mirrored at both ends as often as needed.

    The mirror does not repeat the edge pixel (numpy's "reflect": ... 2 1 | 0 1 2 ... L-1 | L-2 L-3 ...); an axis of
    one pixel repeats it.
    """
    index = torch.arange(start, start + size)
    if length == 1:
        return torch.zeros_like(index)
    period = 2 * (length - 1)  # the reflected index is a triangle wave of this period
    index = index.abs() % period
    return torch.where(index < length, index, period - index)


def blend_weights(size: int, blend: str) -> torch.Tensor:
    """1-D window weight (size,): a Gaussian peaking at 1 in the centre with sigma = size / 8, or ones.

    Never zero: the window edge is less than 4 sigma from the centre, where the Gaussian is exp(-8) = 3.4e-4.
    """
    if blend == "constant":
        return torch.ones(size)
    distance = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    return torch.exp(-0.5 * (distance / (size / 8)) ** 2).float()


def pooling_stride(model: SegmentationModel) -> int:
    """The step between a valid-convolution model's input sides (2**depth for a U-Net): its total pooling factor."""
    smallest = model.valid_input_size(1)
    return model.valid_input_size(smallest + 1) - smallest


def resolve_tiling(model: SegmentationModel, tile: int | None, overlap: int | None) -> tuple[int, int]:
    """The `(tile, overlap)` in effect: defaults filled in, checked against the model, a valid model's tile rounded
    up (each option alone is checked by `PredictOptions`).

    Defaults: valid-convolution models take the paper's 572-px window (rounded up to a size they take) without
    overlap; padded models a 512-px window overlapping its neighbours by a quarter of the window. A padded model's tile
    must be at least its downsampling factor (`model.reduction`, 2**depth for a U-Net); images smaller than the tile
    are still predicted whole, in one window of their own size.

    Raises:
        SettingError: naming the option that does not fit the model.
    """
    valid = model.padding == "valid"
    tile = (model.valid_input_size(PAPER_TILE) if valid else PADDED_TILE) if tile is None else tile
    if not valid and tile < model.reduction:
        raise invalid(
            "tile",
            tile,
            f"at least {model.reduction} px (this model downsamples by {model.reduction}; a smaller window leaves its "
            "deepest maps without context)",
        )
    if not valid and tile < model.smallest_window():
        raise invalid(
            "tile",
            tile,
            f"at least {model.smallest_window()} px (this model's instance or group norm needs more than one value "
            "per channel in its deepest maps, which smaller windows reduce to 1 x 1)",
        )
    overlap = (0 if valid else tile // 4) if overlap is None else overlap
    if overlap >= tile:
        raise invalid("overlap", overlap, f"less than the tile, {tile} px")
    return (model.valid_input_size(tile) if valid else tile), overlap


def tiling_note(model: SegmentationModel, tile: int, overlap: int) -> str | None:
    """A sentence when windows of `tile` px with `overlap` would spend most of their work on px that other windows
    compute too (a new area under a tenth of the window's), else None: such tiling is correct, only slow."""
    new = (model.output_size(tile) if model.padding == "valid" else tile) - overlap  # px a window adds per side
    if new**2 >= 0.1 * tile**2:
        return None
    return (
        f"each {tile}-px window adds only {new} x {new} new px ({100 * new**2 / tile**2:.2g}% of its work); a larger "
        "tile or a smaller overlap predicts much faster"
    )


@dataclass
class _Axis:
    """The windows along one axis: what each reads and where it writes."""

    windows: list[torch.Tensor]  # per window, the image indices it reads (mirrored past the edges)
    starts: list[int]  # per window, the first output index it writes
    size: int  # output px of each window (the last ones are cropped where they pass the image)
    weights: list[torch.Tensor] | None  # per window, 1-D weight / sum of weights; None where outputs just meet
    offset: int = 0  # output px of each window before the first one it writes (mirrored margin of a short axis)


def _valid_axis(model: SegmentationModel, length: int, tile: int, overlap: int) -> _Axis:
    out_tile = model.output_size(tile)
    border = (tile - out_tile) // 2  # the context the network consumes on each side
    assert tile - out_tile == 2 * border, f"valid model output {out_tile} is not centred in its input {tile}"
    # The axis mirrored on to the next length the network takes whole; outputs past `length` are dropped.
    reach = model.valid_input_size(length + 2 * border) - 2 * border  # >= length
    if reach <= out_tile:  # one window, the smallest that covers the image
        return _Axis([mirror_indices(-border, reach + 2 * border, length)], [0], reach, None)
    stride = pooling_stride(model)
    step = (out_tile - overlap) // stride * stride
    if step < stride:
        smallest = model.valid_input_size(2 * border + overlap + stride)
        raise UnetlabError(
            f"tile={tile} with overlap={overlap} is too small for this model: its windows would advance by less "
            f"than its pooling stride ({stride} px); use a tile of at least {smallest} px"
        )
    starts = tile_starts(reach, out_tile, step)  # all multiples of `stride`, as `reach - out_tile` is
    return _Axis([mirror_indices(s - border, tile, length) for s in starts], starts, out_tile, None)


def _padded_axis(length: int, tile: int, overlap: int, blend: str, smallest: int) -> _Axis:
    if length < smallest:  # too short for the model: one window mirrored on both sides, its output cropped back
        before = (smallest - length) // 2
        return _Axis([mirror_indices(-before, smallest, length)], [0], length, [torch.ones(length)], before)
    tile = min(tile, length)
    starts = tile_starts(length, tile, tile - overlap if length > tile else tile)
    weight = blend_weights(tile, blend)  # (tile,)
    total = torch.zeros(length)  # the sum of the weights of every window over each pixel, (length,)
    for s in starts:
        total[s : s + tile] += weight
    weights = [weight / total[s : s + tile] for s in starts]  # exactly 1 where a single window covers the axis
    return _Axis([torch.arange(s, s + tile) for s in starts], starts, tile, weights)


def _window(image: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(C, H, W) image -> (C, len(rows), len(cols)) window, reading only the rectangle the indices span."""
    r0, c0 = int(rows.min()), int(cols.min())
    span = image[:, r0 : int(rows.max()) + 1, c0 : int(cols.max()) + 1]
    return span.index_select(1, rows - r0).index_select(2, cols - c0)


def predict_tiled(
    model: SegmentationModel,
    image: torch.Tensor,
    tile: int | None = None,
    overlap: int | None = None,
    blend: str = "gaussian",
    batch_size: int = 4,
    device: str | torch.device | None = None,
    amp: torch.dtype | None = None,
    progress: bool = False,
    should_stop=None,
) -> torch.Tensor:
    """The logits of `model` (in eval mode) for one image of any size, computed window by window.

    Args:
        model: a unetlab model, or a `TestTimeAugmentation` of one.
        image: (C, H, W) float tensor on the CPU, normalised as the model expects; any H, W >= 1.
        tile: side in px of the windows the network sees; rounded up to a size a valid-convolution model takes.
            Images smaller than a window are predicted in one smaller window. None: see `resolve_tiling`.
        overlap: px shared by neighbouring windows. Padded models blend them (None: a quarter of the tile);
            valid-convolution models need none (their outputs meet exactly; None: 0) and round the step down to a
            multiple of their pooling stride.
        blend: window weight for padded models, "gaussian" or "constant".
        batch_size: windows per forward pass; with the tile it bounds the device memory.
        device: where the network runs; None: where the model's parameters are.
        amp: the autocast dtype of the forward passes (torch.bfloat16, torch.float16), exactly as given; None: full
            precision. `unetlab.device.resolve_amp` turns "auto" | "none" | "bf16" | "fp16" into it. The stitched
            logits are float32 either way.
        progress: show a progress bar over the windows.
        should_stop: asked before each batch of windows; when it answers True, `StopRequested` is raised (a training
            stopped by SIGTERM during validation ends within a batch, not after the whole image).

    Returns:
        Logits (K, H, W), float32, on the CPU.

    Raises:
        UnetlabError: for an invalid tile, overlap, blend or batch size.
    """
    if amp is not None and not isinstance(amp, torch.dtype):
        raise TypeError(f"amp={amp!r}: give an autocast dtype such as torch.bfloat16, or None for full precision")
    PredictOptions(tile=tile, overlap=overlap, blend=blend, batch_size=batch_size)  # each checked alone
    tile, overlap = resolve_tiling(model, tile, overlap)
    _, height, width = image.shape
    if model.padding == "valid":
        rows, cols = _valid_axis(model, height, tile, overlap), _valid_axis(model, width, tile, overlap)
    else:
        smallest = model.smallest_window()
        rows = _padded_axis(height, tile, overlap, blend, smallest)
        cols = _padded_axis(width, tile, overlap, blend, smallest)
    grid = [(i, j) for i in range(len(rows.starts)) for j in range(len(cols.starts))]
    device = next(model.parameters()).device if device is None else torch.device(device)
    logits = None
    with torch.no_grad(), tqdm(total=len(grid), unit="tile", disable=not progress, leave=False) as bar:
        for first in range(0, len(grid), batch_size):
            if should_stop is not None and should_stop():
                raise StopRequested("stopped while predicting")
            chunk = grid[first : first + batch_size]
            batch = torch.stack([_window(image, rows.windows[i], cols.windows[j]) for i, j in chunk])  # (B, C, h, w)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                out = model(batch.to(device))  # (B, K, h', w')
            out = out[..., rows.offset : rows.offset + rows.size, cols.offset : cols.offset + cols.size]
            out = out.float().cpu()  # (B, K, size_h, size_w)
            if logits is None:
                logits = torch.zeros(out.shape[1], height, width)  # (K, H, W): the only image-sized tensor
            for (i, j), window in zip(chunk, out):
                top, left = rows.starts[i], cols.starts[j]
                h, w = min(rows.size, height - top), min(cols.size, width - left)  # cropped at the image edge
                target = logits[:, top : top + h, left : left + w]
                if rows.weights is None:
                    target.copy_(window[:, :h, :w])  # valid model: windows meet (or overlap with equal values)
                else:
                    target.add_(window * (rows.weights[i][:, None] * cols.weights[j][None, :]))  # (K, h, w)
            bar.update(len(chunk))
    return logits


class TestTimeAugmentation(SegmentationModel):
    """`model` averaged over the 8 flips and 90-degree rotations of its input (the dihedral group of the square).

    Each transformed input goes through the model and its logits are transformed back before averaging, so a model
    that commutes with flips and rotations gives its own output. Input-size rules are the wrapped model's: a
    rotated window of valid sides still has valid sides, and a valid model's output stays centred.
    """

    __test__ = False  # a model, not a pytest test class

    def __init__(self, model: SegmentationModel):
        super().__init__()
        self.model = model
        self.padding = model.padding

    def output_size(self, size: int) -> int:
        return self.model.output_size(size)

    def valid_input_size(self, min_size: int) -> int:
        return self.model.valid_input_size(min_size)

    @property
    def reduction(self) -> int:
        return self.model.reduction

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        total = None
        for k in range(4):
            for flip in (False, True):
                x = torch.rot90(image, k, dims=(-2, -1))  # (N, C, h, w), or (N, C, w, h) for odd k
                x = x.flip(-1) if flip else x
                y = self.model(x).float()  # (N, K, ...) in the transformed frame
                y = y.flip(-1) if flip else y
                y = torch.rot90(y, -k, dims=(-2, -1))  # (N, K, h', w'): back to the input's frame
                total = y if total is None else total + y
        return total / 8
