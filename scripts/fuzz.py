"""Fuzz the image readers and the prediction path: how many cases end in an unhandled exception.

    python scripts/fuzz.py --readers 5000 --predictions 2000        # the figures of the hardening issue
    python scripts/fuzz.py --readers 200 --predictions 0 --seed 3   # another draw
    python scripts/fuzz.py --only readers:1234                      # rerun one case, with its full traceback

A case ends well when it returns, or raises a `UnetlabError` (a clear message for the user). Anything else is an
unhandled exception: the summary counts them and shows each distinct one (exception type and innermost frame)
once, with the first case that raised it.

- Readers: a valid small file of one of the formats unetlab reads (PNG grey, 16-bit, RGB, RGBA, palette, bilevel;
  BMP; JPEG; TIFF grey, 16-bit, float, RGB, planar, alpha, tiled, deflate- and LZMA-compressed, big-endian,
  BigTIFF) is damaged in one way (truncated; random bytes after its magic number; random bytes overwritten; a
  random header: PNG IHDR fields with a valid CRC, TIFF tags, BMP and JPEG sizes; bytes inserted or cut; tiny
  files), written to disk, and read by `read_image`, `read_mask` and `read_palette` (three calls per case).
- Predictions: every registered model in a tiny configuration (base channels 2-4, depth 1-3, norm batch, group,
  instance or none, random padding and upsampling where the model has them), an image of random size (1 x 1 px
  up), channels and dtype (8- and 16-bit, signed, bool, float with the odd NaN), and random tile, overlap, blend,
  batch size and test-time augmentation, through `Predictor`. A prediction that returns must have the image's size
  and finite probabilities.

Each case draws from its own generator, seeded by (seed, case), so a case can be rerun alone. The process's
address space is limited (--memory-gib) so that a decompression bomb fails here instead of exhausting a shared
machine, and each case has a time limit (--case-seconds); either counts as unhandled.
"""

import argparse
import io
import logging
import resource
import signal
import struct
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

from unetlab.errors import UnetlabError

# ----------------------------------------------------------------------------------------------------------------
# Readers

SAMPLE_SETS = 16  # sets of valid files (each of its own sizes and pixels) that the reader cases damage


def sample_files(rng: np.random.Generator) -> dict[str, tuple[str, bytes]]:
    """Valid files of every kind unetlab reads, small and random: name -> (suffix, bytes)."""
    import tifffile
    from PIL import Image

    h, w = (int(v) for v in rng.integers(3, 40, 2))
    grey = rng.integers(0, 256, (h, w), dtype=np.uint8)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    files = {}

    def pillow(name, image, suffix, **options):
        buffer = io.BytesIO()
        image.save(buffer, format={".png": "PNG", ".bmp": "BMP", ".jpg": "JPEG"}[suffix], **options)
        files[name] = (suffix, buffer.getvalue())

    def tiff(name, array, **options):
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, array, **options)
        files[name] = (".tif", buffer.getvalue())

    pillow("png-grey", Image.fromarray(grey), ".png")
    pillow("png-16", Image.fromarray(grey.astype(np.uint16) * 257), ".png")
    pillow("png-rgb", Image.fromarray(rgb), ".png")
    pillow("png-rgba", Image.fromarray(np.dstack([rgb, grey])), ".png")
    palette = Image.fromarray(grey % 4, mode="L").convert("P")
    palette.putpalette(rng.integers(0, 256, 12).tolist())
    pillow("png-palette", palette, ".png")
    pillow("png-bilevel", Image.fromarray(grey > 127), ".png")
    pillow("bmp-rgb", Image.fromarray(rgb), ".bmp")
    pillow("bmp-grey", Image.fromarray(grey), ".bmp")
    pillow("jpeg-rgb", Image.fromarray(rgb), ".jpg")
    exif = Image.Exif()
    exif[0x0112] = int(rng.integers(2, 9))  # a camera's rotation
    pillow("jpeg-exif", Image.fromarray(grey), ".jpg", exif=exif)
    tiff("tiff-grey", grey)
    tiff("tiff-16", grey.astype(np.uint16) * 257)
    tiff("tiff-float", rng.random((h, w), dtype=np.float32))
    tiff("tiff-rgb", rgb, photometric="rgb")
    tiff("tiff-planar", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    tiff("tiff-alpha", np.dstack([rgb, grey]), photometric="rgb", extrasamples=["unassalpha"])
    tiff("tiff-tiled", np.pad(grey, ((0, 32 - h % 16), (0, 32 - w % 16))), tile=(16, 16))
    tiff("tiff-deflate", grey.astype(np.uint16), compression="zlib")
    tiff("tiff-lzma", grey, compression="lzma")
    tiff("tiff-big-endian", grey.astype(np.uint16), byteorder=">")
    tiff("bigtiff", grey, bigtiff=True)
    return files


def png_with_header(data: bytes, rng: np.random.Generator) -> bytes:
    """A PNG whose IHDR fields (size, bit depth, colour type, ...) are random, with the CRC made right again."""
    fields = [
        int(rng.choice([0, 1, 2, 7, 255, 65535, 100_000, 2**31 - 1, int(rng.integers(1, 2**31))])),
        int(rng.choice([0, 1, 3, 300, 65535, 100_000, int(rng.integers(1, 2**31))])),
        int(rng.choice([0, 1, 2, 4, 8, 16, 3])),
        int(rng.choice([0, 2, 3, 4, 6, 1, 7])),
        int(rng.choice([0, 0, 1])),
        int(rng.choice([0, 0, 5])),
        int(rng.choice([0, 1, 2])),
    ]
    rng.shuffle(fields[:2])
    body = b"IHDR" + struct.pack(">IIBBBBB", *fields)
    return data[:8] + struct.pack(">I", 13) + body + struct.pack(">I", zlib.crc32(body)) + data[33:]


def tiff_with_header(data: bytes, rng: np.random.Generator) -> bytes:
    """A classic TIFF with random values in a few of its first IFD's short and long tags (sizes, samples, ...)."""
    if data[:2] not in (b"II", b"MM") or data[2:4] not in (b"*\0", b"\0*"):
        return data  # BigTIFF: left for the other mutations
    end = "<" if data[:2] == b"II" else ">"
    out = bytearray(data)
    (ifd,) = struct.unpack(end + "I", data[4:8])
    (count,) = struct.unpack(end + "H", data[ifd : ifd + 2])
    for i in rng.choice(count, size=min(count, int(rng.integers(1, 4))), replace=False):
        at = ifd + 2 + 12 * int(i)
        tag, kind, n = struct.unpack(end + "HHI", data[at : at + 8])
        value = int(rng.choice([0, 1, 2, 3, 4, 5, 7, 8, 16, 32, 64, 255, 65535, int(rng.integers(0, 2**16))]))
        if kind == 3 and n <= 2:  # SHORT
            out[at + 8 : at + 10] = struct.pack(end + "H", value)
        elif kind == 4 and n == 1:  # LONG
            out[at + 8 : at + 12] = struct.pack(end + "I", value if rng.random() < 0.7 else int(rng.integers(2**32)))
    return bytes(out)


def sized_header(data: bytes, suffix: str, rng: np.random.Generator) -> bytes:
    """A BMP or JPEG that claims a random width and height."""
    side = lambda: int(rng.choice([0, 1, 2, 65535, 50_000, int(rng.integers(1, 70_000))]))  # noqa: E731
    out = bytearray(data)
    if suffix == ".bmp" and len(data) >= 26:
        out[18:26] = struct.pack("<ii", side(), side() * int(rng.choice([1, -1])))
    elif suffix == ".jpg":
        at = data.find(b"\xff\xc0")
        if at > 0:
            out[at + 5 : at + 9] = struct.pack(">HH", min(side(), 65535), min(side(), 65535))
    return bytes(out)


def damage(name: str, suffix: str, data: bytes, rng: np.random.Generator) -> tuple[str, str, bytes]:
    """One damaged version of a valid file: (what was done, suffix to write it with, bytes)."""
    how = str(rng.choice(["truncated", "random tail", "bytes overwritten", "random header", "inserted or cut", "tiny"]))
    if how == "truncated":
        return how, suffix, data[: int(rng.integers(0, len(data)))]
    if how == "random tail":
        magic = int(rng.integers(2, min(64, len(data))))
        return how, suffix, data[:magic] + rng.bytes(int(rng.integers(0, 512)))
    if how == "bytes overwritten":
        out = bytearray(data)
        for at in rng.integers(0, len(data), int(rng.integers(1, 12))):
            out[at] = int(rng.integers(256))
        return how, suffix, bytes(out)
    if how == "random header":
        if name.startswith("png"):
            return how, suffix, png_with_header(data, rng)
        if suffix == ".tif":
            return how, suffix, tiff_with_header(data, rng)
        return how, suffix, sized_header(data, suffix, rng)
    if how == "inserted or cut":
        at = int(rng.integers(0, len(data)))
        cut = int(rng.integers(0, 64)) if rng.random() < 0.5 else 0
        return how, suffix, data[:at] + rng.bytes(int(rng.integers(0, 64)) * (cut == 0)) + data[at + cut :]
    tiny = [b"", b"II*\0", b"II*\0\x08\0\0\0", b"MM\0*\0\0\0\x08", b"\x89PNG\r\n\x1a\n", b"BM", b"\xff\xd8\xff"]
    return how, str(rng.choice([".tif", ".png", ".bmp", ".jpg"])), tiny[int(rng.integers(len(tiny)))]


def reader_case(seed: int, case: int, folder: Path, pool: dict) -> list[tuple[str, BaseException | None]]:
    """One damaged file read three ways: [(call, its outcome: "returned", "refused" or the exception), ...].

    The valid files come from one of `SAMPLE_SETS` sets drawn once per seed and kept in `pool`.
    """
    from unetlab.data.io import read_image, read_mask, read_palette

    rng = np.random.default_rng([seed, 0, case])
    which = int(rng.integers(SAMPLE_SETS))
    if which not in pool:
        pool[which] = sample_files(np.random.default_rng([seed, 2, which]))
    files = pool[which]
    name = str(rng.choice(sorted(files)))
    how, suffix, data = damage(name, *files[name], rng)
    path = folder / f"case{case}{suffix}"
    path.write_bytes(data)
    results = []
    for reader in (read_image, read_mask, read_palette):
        results.append((f"{reader.__name__}({name}, {how})", _outcome(reader, path)))
    path.unlink()
    return results


# ----------------------------------------------------------------------------------------------------------------
# Predictions


def prediction_case(seed: int, case: int, models: dict) -> list[tuple[str, BaseException | None]]:
    """One random model, image and tiling through `Predictor`: [(description, its outcome, as `reader_case`)]."""
    import torch

    from unetlab.inference.predictor import Predictor
    from unetlab.models import create_model, list_models, model_options

    rng = np.random.default_rng([seed, 1, case])
    name = str(rng.choice(list_models()))
    kwargs = {
        "in_channels": int(rng.integers(1, 4)),
        "num_classes": int(rng.integers(1, 4)),
        "base_channels": int(rng.integers(2, 5)),
        "depth": int(rng.integers(1, 4)),
        "norm": str(rng.choice(["batch", "group", "instance", "none"])),
        "upsample": str(rng.choice(["transpose", "bilinear"])),
    }
    if "padding" in model_options(name) and rng.random() < 0.3:
        kwargs["padding"] = str(rng.choice(["same", "valid"]))
    if name == "unet-classic":
        kwargs["dropout"] = 0.5
    key = (name, tuple(sorted(kwargs.items())))
    if key not in models:
        torch.manual_seed(case)
        models.clear() if len(models) > 64 else None  # the resnet50 encoder is 90 MB: keep a few at a time
        models[key] = create_model(name, **kwargs).eval()
    side = lambda: int(rng.choice([1, 2, 3, int(rng.integers(1, 17)), int(rng.integers(1, 97))]))  # noqa: E731
    h, w = side(), side()
    channels = int(rng.choice([0, 1, 2, 3, 4, kwargs["in_channels"]]))
    dtype = str(rng.choice(["uint8", "uint16", "float32", "float64", "int16", "int32", "bool"]))
    shape = (h, w) if channels == 0 else (h, w, channels)
    scale = {"uint8": 255, "uint16": 65535, "int16": 40000, "int32": 70000}.get(dtype, 1)
    image = ((rng.random(shape) - (0.2 if dtype.startswith("int") else 0)) * scale).astype(dtype)
    if dtype.startswith("float") and rng.random() < 0.1:
        image.flat[int(rng.integers(image.size))] = rng.choice([np.nan, np.inf, -np.inf])
    options = {
        "tile": None if rng.random() < 0.3 else int(rng.choice([int(rng.integers(1, 9)), int(rng.integers(1, 129))])),
        "batch_size": int(rng.integers(1, 6)),
        "tta": bool(rng.random() < 0.15),
        "blend": str(rng.choice(["gaussian", "constant"])),
        "device": "cpu",
    }
    if rng.random() < 0.6 and options["tile"] is not None:
        options["overlap"] = int(rng.integers(0, options["tile"] + 1))
    what = f"{name} {kwargs} image {shape} {dtype} {options}"

    def run():
        result = Predictor(models[key], **options)(image)
        assert result.mask.shape[:2] == (h, w), f"mask {result.mask.shape} for an image {h} x {w}"
        assert result.probs.shape[1:] == (h, w), f"probs {result.probs.shape} for an image {h} x {w}"
        assert np.isfinite(result.probs).all(), "non-finite probabilities"

    return [(what, _outcome(run))]


# ----------------------------------------------------------------------------------------------------------------


class CaseTimeout(BaseException):
    """A case ran past --case-seconds (a BaseException: the `except Exception` of a library must not swallow it)."""


def _outcome(call, *args) -> BaseException | str:
    """ "returned", "refused" (a `UnetlabError`), or the unhandled exception."""
    try:
        call(*args)
    except UnetlabError:
        return "refused"
    except Exception as exc:  # noqa: BLE001 (counting every unhandled exception is the point)
        return exc
    return "returned"


def _where(exc: BaseException) -> str:
    """The innermost frame of `exc`'s traceback, as file:line function."""
    frames = traceback.extract_tb(exc.__traceback__)
    frame = frames[-1] if frames else None
    return f"{Path(frame.filename).name}:{frame.lineno} {frame.name}" if frame else "?"


def _on_alarm(signum, frame):
    raise CaseTimeout("the case ran past --case-seconds")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=5000, help="reader cases (three calls each)")
    parser.add_argument("--predictions", type=int, default=2000, help="prediction cases")
    parser.add_argument("--seed", type=int, default=0, help="seed of every case's generator")
    parser.add_argument(
        "--only", metavar="KIND:CASE", help="run one case (readers:12, predictions:7), traceback in full"
    )
    parser.add_argument("--memory-gib", type=float, default=8.0, help="address-space limit of this process, GiB")
    parser.add_argument("--case-seconds", type=int, default=30, help="time limit of one case, s")
    parser.add_argument("--shown", type=int, default=20, help="distinct failures shown per kind")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)  # tiny models: threads only contend on a shared machine
    logging.getLogger("tifffile").setLevel(logging.ERROR + 1)  # its notes on each damaged file it parses
    limit = int(args.memory_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.signal(signal.SIGALRM, _on_alarm)
    runs = {"readers": args.readers, "predictions": args.predictions}
    cases = {"readers": range(args.readers), "predictions": range(args.predictions)}
    if args.only:
        kind, case = args.only.split(":")
        runs, cases = {kind: 1}, {kind: [int(case)]}
    models: dict = {}
    pool: dict = {}
    status = 0
    with tempfile.TemporaryDirectory() as folder:
        for kind in runs:
            start, outcomes, failures, first = time.perf_counter(), Counter(), Counter(), {}
            for case in cases[kind]:
                signal.alarm(args.case_seconds)
                try:
                    if kind == "readers":
                        results = reader_case(args.seed, case, Path(folder), pool)
                    else:
                        results = prediction_case(args.seed, case, models)
                except CaseTimeout as exc:  # a case that never returned
                    results = [(f"case {case}", exc)]
                finally:
                    signal.alarm(0)
                for what, exc in results:
                    outcomes[exc if isinstance(exc, str) else "unhandled"] += 1
                    if isinstance(exc, str):
                        continue
                    key = f"{type(exc).__name__} at {_where(exc)}"
                    failures[key] += 1
                    first.setdefault(key, (case, what, exc))
                    if args.only:
                        traceback.print_exception(exc)
            seconds = time.perf_counter() - start
            total = sum(failures.values())
            print(
                f"{kind}: {len(cases[kind])} cases, {sum(outcomes.values())} calls: {outcomes['returned']} returned, "
                f"{outcomes['refused']} refused with a UnetlabError, {total} unhandled exceptions "
                f"({len(failures)} distinct); {seconds:.0f} s"
            )
            for key, count in failures.most_common(args.shown):
                case, what, exc = first[key]
                message = str(exc).splitlines()[0][:160] if str(exc) else ""
                print(f"  {count:5d} x {key}: {message}\n          first: {kind}:{case} {what[:300]}")
            status |= total > 0
    return status


if __name__ == "__main__":
    sys.exit(main())
