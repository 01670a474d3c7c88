"""What `unetlab predict` reads and writes: input files from paths, folders and globs; masks, probabilities, overlays;
and `predict_files`, the command's whole loop as a library function.

Layout of the output folder, for an input `NAME.ext`:

    OUT/NAME.png            the mask in the dataset's own values (NAME.tif when they do not fit in 8 bits), a
                            palette PNG with the masks' palette when the training masks were palette PNGs
    OUT/probs/NAME.tif      float32 probabilities, one channel per class, planar (K, H, W), min-is-black: viewers
                            show K grey channels, not colours (K = 1, the foreground's, for binary models)
    OUT/overlays/NAME.png   the image in 8-bit colour with every class but class 0 (the background) tinted

so OUT itself is a folder of masks named like the images, as datasets are laid out. Inputs of one folder that
share a stem (`y.png`, `y.tif`) are named `NAME_EXT` instead (`y_png`, `y_tif`); inputs of different folders that
share a name keep their folders under OUT (`OUT/p1/y.png`, `OUT/p2/y.png`). No output may be one of the inputs
(`--out` set to the input folder would otherwise overwrite `y.png` with its own mask).

Files are never lost (`check_outputs`, `write_prediction`): every file is written under a temporary name beside
its destination and renamed, so an interrupted or failed write (a full disk) leaves no half-written file, and a
symlink planted at a destination is replaced, never written through. A file that exists at a destination (masks
drawn by hand, an earlier run's outputs) is replaced only when asked (`overwrite`, `--overwrite`); without it,
`unetlab predict` refuses before predicting anything, naming the first files it would replace. Nothing but regular
files is ever replaced (a folder, a FIFO or a device at a destination is refused), and sub-folders of OUT must be
real folders, not symlinks.
"""

import glob
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from unetlab.data.io import IMAGE_SUFFIXES, is_image_file, read_image, write_image, write_planes
from unetlab.errors import UnetlabError, plural
from unetlab.files import atomic_write, check_destination
from unetlab.inference.predictor import Prediction, Predictor
from unetlab.settings import SettingError

# Tints of classes 1, 2, ... for masks without colours of their own (class 0 is left untinted).
PALETTE = np.array(
    [[255, 0, 0], [0, 200, 0], [0, 90, 255], [255, 200, 0], [220, 0, 220], [0, 220, 220], [255, 120, 0]],
    dtype=np.uint8,
)
OVERLAY_ALPHA = 0.45  # weight of the class colour over the image
DISPLAY_SAMPLE = 1_000_000  # pixels sampled for the display range of images that are not 8-bit
LISTED = 3  # existing files named when outputs would replace them


def make_output_folder(folder: str | Path, setting: str = "out") -> Path:
    """Create `folder` (and its parents) before any work is done, or raise a `SettingError` naming `setting` that says
    why not."""
    folder = Path(folder)
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        where = "is a file" if blocker == folder else f"cannot be made: {blocker} is a file, not a folder"
        raise SettingError(lambda n: f"{n(setting)} {folder} {where}; pass a folder", [setting])
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror
        raise SettingError(lambda n: f"{n(setting)} {folder} cannot be made ({reason}); pass another folder",
                           [setting]) from None  # fmt: skip
    return folder


def collect_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """The image files named by `inputs`: files as given, folders' image files (not recursive), glob matches.

    Duplicates are dropped, order kept (folders and globs sorted).

    Raises:
        UnetlabError: naming an input that is missing, an empty folder or a pattern that matches no image.
    """
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if is_image_file(p))
            if not found:
                raise UnetlabError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        elif path.exists():
            found = [path]  # named explicitly: read whatever its suffix, and say so if it is not an image
        elif any(c in str(item) for c in "*?["):
            found = sorted(p for p in map(Path, glob.glob(str(item), recursive=True)) if is_image_file(p))
            if not found:
                raise UnetlabError(f"no image matches {str(item)!r}; check the pattern (quote it for the shell)")
        else:
            raise UnetlabError(f"input {path} not found; pass image files, folders or glob patterns")
        paths += found
    return list(dict.fromkeys(p.resolve() for p in paths))


def output_names(paths: list[Path]) -> list[str]:
    """The output name (a relative path without suffix) of each input.

    - An input's stem, or `STEM_EXT` for the stems that several inputs of one folder share (`y.png`, `y.tif` ->
      `y_png`, `y_tif`).
    - When inputs from different folders would still share a name (`p1/slide.png`, `p2/slide.png`, as a `**` glob
      finds them), every name keeps its folder below the inputs' common folder (`p1/slide`, `p2/slide`), so the
      output mirrors the input tree.

    Raises:
        UnetlabError: for inputs that would still share a name (`y.png` and `y.tif` beside a `y_png.png`).
    """
    stems = Counter((p.parent, p.stem) for p in paths)
    names = [p.stem if stems[p.parent, p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}" for p in paths]
    if len(set(names)) < len(names):
        try:
            root = Path(os.path.commonpath([p.parent for p in paths]))
        except ValueError:  # no common folder (another drive): the clash is named below
            root = None
        if root is not None:
            names = [(p.parent.relative_to(root) / name).as_posix() for p, name in zip(paths, names)]
    first: dict[str, Path] = {}
    for path, name in zip(paths, names):
        other = first.setdefault(name, path)
        if other != path:  # e.g. y.png and y.tif beside a y_png.png
            raise UnetlabError(f"{other} and {path} would both be written as {name}; rename one of them")
    return names


def output_paths(out_dir: Path, name: str, mask_dtype: np.dtype, probs: bool, overlay: bool) -> list[Path]:
    """The files `write_prediction` writes for one input, mask first: .png for 8-bit masks, else .tif."""
    out_dir = Path(out_dir)
    paths = [out_dir / f"{name}{'.png' if mask_dtype == np.uint8 else '.tif'}"]
    paths += [out_dir / "probs" / f"{name}.tif"] if probs else []
    return paths + ([out_dir / "overlays" / f"{name}.png"] if overlay else [])


def refuse_overwriting_inputs(inputs: list[Path], outputs: list[Path], out_dir: Path) -> None:
    """Raise a `UnetlabError` when one of the `outputs` is one of the `inputs` (paths compared once resolved)."""
    resolved = {p.resolve() for p in inputs}
    clash = next((p for p in outputs if p.resolve() in resolved), None)
    if clash is not None:
        raise SettingError(
            lambda n: (
                f"{n('out')} {out_dir} would overwrite the input {clash} with a prediction; pass another "
                f"{n('out')} folder"
            ),
            ["out"],
        )


def check_outputs(outputs: list[Path], out_dir: Path, overwrite: bool) -> None:
    """Refuse, before any work, outputs that cannot or may not be written.

    Args:
        outputs: every file the run will write (`output_paths` of each input).
        out_dir: the output folder, as the user gave it.
        overwrite: whether existing regular files may be replaced.

    Raises:
        UnetlabError: for an output that is a folder, a FIFO, a device or a socket (never replaced); a sub-folder
            of `out_dir` on the way to an output that is a file or a symlink; or, without `overwrite`, outputs that
            exist already (the first `LISTED` are named, with the count and the fix).
    """
    out_dir = Path(out_dir)
    fix = "remove it, or pass another output folder"
    for path in outputs:
        check_destination(path, "the output", fix)
        for folder in reversed(path.parents):
            if folder == out_dir or out_dir not in folder.parents:
                continue  # only the sub-folders that this run makes
            if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
                kind = "a symlink" if folder.is_symlink() else "a file"
                raise UnetlabError(f"{folder} is {kind}, but unetlab writes outputs into real folders there; {fix}")
    if overwrite:
        return
    existing = [p for p in outputs if os.path.lexists(p)]
    if existing:
        shown = ", ".join(str(p) for p in existing[:LISTED]) + (", ..." if len(existing) > LISTED else "")
        raise SettingError(
            lambda n: (
                f"{n('out')} {out_dir} holds {plural(len(existing), 'file')} that this run would replace "
                f"({shown}); pass {n('overwrite')} to replace them, or pass another {n('out')} folder"
            ),
            ["out", "overwrite"],
        )


def write_prediction(
    out_dir: Path,
    name: str,
    prediction: Prediction,
    probs: bool = False,
    overlay_of: np.ndarray | None = None,
    palette: list[int] | None = None,
    overwrite: bool = True,
) -> list[Path]:
    """Write the mask of `prediction` as OUT/NAME.png (or .tif), and optionally its probabilities and an overlay.

    Each file is written under a temporary name beside its destination and renamed (a symlink at the destination
    is replaced, never written through).

    Args:
        out_dir: the output folder (created if needed).
        name: the file name without suffix, usually the input's stem.
        prediction: what `Predictor` returned.
        probs: also write the probabilities, a float32 TIFF of K planes, to OUT/probs/NAME.tif.
        overlay_of: the image that was predicted; when given, also write OUT/overlays/NAME.png.
        palette: the training masks' PNG palette (`DataInfo.palette`): the mask is written as a palette PNG.
        overwrite: replace files that exist at the destinations; False refuses them (`unetlab predict` without
            `--overwrite`), even one that appeared while the prediction ran.

    Returns:
        The paths written, mask first.

    Raises:
        UnetlabError: for a destination that is not a regular file, or that exists when `overwrite` is False.
        OSError: when the machine refuses a write (a full disk, no permission); no partial file is left.
    """
    mask = prediction.mask
    written = output_paths(out_dir, name, mask.dtype, probs, overlay_of is not None)
    for path in written:
        path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(written[0], overwrite) as tmp:
        write_image(tmp, mask, palette)
    if probs:
        with atomic_write(written[1], overwrite) as tmp:
            write_planes(tmp, prediction.probs)  # (K, H, W)
    if overlay_of is not None:
        colours = mask if mask.ndim == 3 else None  # a colour mask tints with its own colours
        with atomic_write(written[-1], overwrite) as tmp:
            write_image(tmp, overlay(overlay_of, prediction.classes, colours))
    return written


def overlay(image: np.ndarray, classes: np.ndarray, colours: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8: `image` shown in 8 bits with every pixel of a class > 0 tinted.

    Args:
        image: (H, W) or (H, W, C) of any dtype; 8-bit images are shown as they are, others stretched from their
            0.5th to 99.5th percentile.
        classes: (H, W) class indices.
        colours: (H, W, 3) uint8 tint of each pixel (a colour mask); None: `PALETTE` by class (1 red, 2 green, ...).
    """
    rgb = display_rgb(image)  # (H, W, 3) uint8
    tinted = classes > 0
    tint = colours[tinted] if colours is not None else PALETTE[(classes[tinted] - 1) % len(PALETTE)]  # (n, 3)
    rgb[tinted] = np.round((1 - OVERLAY_ALPHA) * rgb[tinted] + OVERLAY_ALPHA * tint).astype(np.uint8)
    return rgb


def display_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W[, C]) image of any dtype -> (H, W, 3) uint8 for display (a new array)."""
    if image.ndim == 3:
        image = image[..., :3] if image.shape[2] >= 3 else image[..., 0]  # RGB(A) -> RGB; 2 channels -> the first
    if image.dtype != np.uint8:
        step = max(1, int(np.sqrt(image.shape[0] * image.shape[1] / DISPLAY_SAMPLE)))
        lo, hi = np.percentile(image[::step, ::step], (0.5, 99.5))
        scaled = (image.astype(np.float32) - lo) / max(hi - lo, 1e-12)
        image = np.round(np.clip(scaled, 0, 1) * 255).astype(np.uint8)
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image.copy()


@dataclass
class FolderPrediction:
    """What `predict_files` did: the files written per input, and the inputs that failed with their errors."""

    out: Path
    written: dict[Path, list[Path]] = field(default_factory=dict)  # input -> its files, mask first
    failed: dict[Path, str] = field(default_factory=dict)  # input -> the error, one line


def predict_files(
    predictor: Predictor,
    inputs: Iterable[str | Path],
    out: str | Path,
    probs: bool = False,
    overlay: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    on_start=None,
    on_error=None,
) -> FolderPrediction:
    """Predict image files, folders and globs into the folder `out`, as `unetlab predict` does (see the module
    docstring for the layout): each image is read, predicted and written at once, so an image that fails (unreadable,
    wrong channels) is recorded and skipped without losing the outputs already written.

    Args:
        predictor: the `Predictor` to use.
        inputs: image files, folders of images (not recursive), glob patterns.
        out: the output folder, made (before any image is predicted) if needed.
        probs, overlay: also write the probabilities and the overlays.
        overwrite: replace files already at the outputs' places; without it, such files are refused before any
            image is predicted (`check_outputs`).
        progress: progress bars over the images and each image's windows.
        on_start: called as `on_start(count)` once every check has passed, before the first image is predicted.
        on_error: called as `on_error(path, message)` when an image fails (the CLI prints it at once).

    Raises:
        UnetlabError: before any work, for inputs that are missing or would share a name, an `out` that cannot be
            made, or outputs that would overwrite an input.
    """
    paths = collect_inputs(inputs)
    names = output_names(paths)
    out = make_output_folder(out)
    mask_dtype = predictor.mask_values.dtype
    files = [output_paths(out, name, mask_dtype, probs, overlay) for name in names]
    refuse_overwriting_inputs(paths, [p for group in files for p in group], out)
    check_outputs([p for group in files for p in group], out, overwrite)
    if on_start is not None:
        on_start(len(paths))
    result = FolderPrediction(out)
    for path, name in tqdm(list(zip(paths, names)), unit="image", disable=not progress):
        try:
            image = read_image(path)
            prediction = predictor(image, source=str(path), progress=progress)
            overlay_of = image if overlay else None
            palette = predictor.data.palette
            result.written[path] = write_prediction(out, name, prediction, probs, overlay_of, palette, overwrite)
        except UnetlabError as exc:
            result.failed[path] = str(exc)
            if on_error is not None:
                on_error(path, str(exc))
    return result
