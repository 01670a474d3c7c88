"""Export a unetlab model to ONNX or TorchScript with dynamic batch, height and width, and check it against PyTorch.

- One mechanism for both formats: `torch.jit.trace`. The models derive every crop and slice from tensor shapes, so
  the trace stays shape-dynamic. It does not keep the Python check that refuses sizes a valid-convolution model
  cannot take: feed such a model its valid sizes, `smallest + stride * k` (stored in the file's metadata).
- ONNX: torch's TorchScript-based exporter (`dynamo=False`), with named dynamic axes, opset `ONNX_OPSET`. torch
  2.9+ deprecates it for the `torch.export`-based exporter, which exports these models too (declaring a valid
  model's sides as `smallest + stride * k`) but takes 3-6 s per model instead of 0.1 s and needs onnxscript: switch
  to it when torch drops this one.
- TorchScript: the trace itself (also deprecated in torch 2.13, still loadable from C++ and Python).
- Both files carry `export_metadata` as JSON (ONNX `metadata_props["unetlab"]`, TorchScript extra file
  `unetlab.json`): the model, its input-size rule, and the data info and threshold needed to use its logits.
- `check_export` runs the file on a random input of another batch size and shape than the traced one (ONNX
  Runtime for ONNX) and returns the largest absolute difference from the PyTorch model.
"""

import io
import json
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from unetlab import __version__
from unetlab.errors import UnetlabError
from unetlab.files import check_destination, write_bytes_atomically
from unetlab.inference.tiling import pooling_stride
from unetlab.logits import activation
from unetlab.models.blocks import SegmentationModel
from unetlab.settings import SettingError, check_choice
from unetlab.training.checkpoint import Checkpoint, is_checkpoint, load_checkpoint

FORMATS = ("onnx", "torchscript")
# Largest |PyTorch - exported| accepted. Float32 kernels that sum in another order differ by ~1e-7 of the logits'
# size (logits are rarely above 100); a wrong graph differs by about the logits' size.
PARITY_TOLERANCE = 1e-3
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript")  # refused for ONNX files, as .onnx is for TorchScript
ONNX_OPSET = 17  # run by ONNX Runtime 1.13+ and most other runtimes
INPUT_NAME, OUTPUT_NAME = "image", "logits"


def export_shapes(model: SegmentationModel) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The (N, C, H, W) input shapes to trace with and to check with: other batch sizes and other, non-square sides."""
    c = model.in_channels
    if model.padding == "valid":
        smallest, stride = model.valid_input_size(1), pooling_stride(model)
        return (2, c, smallest + stride, smallest + stride), (3, c, smallest + 2 * stride, smallest + 3 * stride)
    return (2, c, 64, 64), (3, c, 45, 77)  # odd sides exercise the ceil-mode pooling and its crop


def export_metadata(model: SegmentationModel, checkpoint: Checkpoint | None = None) -> dict:
    """What a user of the exported file needs besides the graph: model, input-size rule, data info, threshold."""
    if model.padding == "valid":
        sizes = {"smallest": model.valid_input_size(1), "step": pooling_stride(model)}
        inputs = f"height and width in {sizes['smallest']} + {sizes['step']} k; output smaller by the border"
    else:
        inputs = "any height and width; output the same size"
    return {
        "unetlab_version": __version__,
        "model": getattr(model, "spec", None),
        "input": f"{INPUT_NAME} (N, {model.in_channels}, H, W) float32: pixels divided by 255 (8-bit) or 65535 "
        "(16-bit; float images as they are), then normalised per channel, (x - data.mean) / data.std",
        "input_sizes": inputs,
        "output": f"{OUTPUT_NAME} (N, {model.num_classes}, H', W'): {activation(model.num_classes)}",
        "data": checkpoint.data.to_dict() if checkpoint and checkpoint.data else None,
        "threshold": checkpoint.threshold if checkpoint else None,
    }


def export_model(model: SegmentationModel, path: str | Path, format: str, metadata: dict | None = None) -> Path:
    """Write `model` (moved to the CPU, in eval mode) to `path` as ONNX or TorchScript, with dynamic N, H and W.

    Args:
        model: a unetlab model.
        path: the file to write (its folder is created).
        format: "onnx" or "torchscript".
        metadata: JSON-serialisable facts stored in the file; None: `export_metadata(model)`.

    The file is made in memory, then written under a temporary name beside `path` and renamed, so a failed export
    (a full disk included) leaves whatever was at `path` as it was, and no temporary file.

    Raises:
        UnetlabError: for an unknown format, ONNX asked for without the `export` extra installed, or a `path` that
            is a folder, a FIFO, a device, a socket (or a symlink to one), a unetlab checkpoint (which the export
            would destroy) or not writable.
        OSError: when the machine refuses the write (a full disk, a quota, a failing drive).
    """
    check_choice("format", format, FORMATS)
    path = Path(path)
    _check_destination(path, format)
    model = model.cpu().eval()
    metadata = json.dumps(export_metadata(model) if metadata is None else metadata)
    example = torch.randn(export_shapes(model)[0])
    onnx = _require("onnx", "ONNX export") if format == "onnx" else None
    try:  # before the work: can a file be made beside `path`?
        tempfile.TemporaryFile(dir=path.parent).close()
    except OSError as exc:
        raise UnetlabError(f"{path} cannot be written ({exc.strerror}); pass a file in a writable folder") from None
    # Serialised to memory: torch writes files from C++, which aborts the process when the disk is full.
    buffer = io.BytesIO()
    with _quiet_tracing():
        if format == "torchscript":
            torch.jit.save(torch.jit.trace(model, example), buffer, _extra_files={"unetlab.json": metadata})
        else:
            dynamic = {0: "batch", 2: "height", 3: "width"}
            torch.onnx.export(
                model,
                (example,),
                buffer,
                dynamo=False,
                opset_version=ONNX_OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: dynamic, OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"}},
            )
    data = buffer.getvalue()
    if onnx is not None:
        graph = onnx.load_from_string(data)
        graph.metadata_props.add(key="unetlab", value=metadata)
        data = graph.SerializeToString()
    return write_bytes_atomically(path, data, option="--out")


def _check_destination(path: Path, format: str) -> None:
    """Refuse a folder or any other file that is not a regular file, a unetlab checkpoint, the other format's
    suffix, or a path whose folder cannot be made, before anything is traced."""
    if path.is_dir():
        raise UnetlabError(f"{path} is a folder; pass a file to write, such as {path / 'model.onnx'}")
    check_destination(path, "--out", f"pass a file to write, such as {path.with_name('model.onnx')}")
    if path.is_file() and is_checkpoint(path):  # an earlier export, or any other file, may be replaced
        raise UnetlabError(
            f"{path} is a unetlab checkpoint, which the export would overwrite; pass another file, such as "
            f"{path.with_suffix('.onnx')}"
        )
    suffix = path.suffix.lower()
    if suffix in TORCHSCRIPT_SUFFIXES if format == "onnx" else suffix == ".onnx":
        other, right = ("TorchScript", ".onnx") if format == "onnx" else ("ONNX", ".pt")
        raise SettingError(
            lambda n: (
                f"{path} has the suffix of {other} files, but {n('format')} is {format}; write "
                f"{path.with_suffix(right)}, or choose the other {n('format')}"
            ),
            ["format"],
        )
    blocker = next((p for p in path.parents if p.is_file()), None)
    if blocker is not None:
        raise UnetlabError(f"{path} cannot be written: {blocker} is a file, not a folder; pass another path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UnetlabError(
            f"{path} cannot be written: no folder {path.parent} ({exc.strerror}); pass another path"
        ) from None


def check_export(model: SegmentationModel, path: str | Path, format: str) -> float:
    """Max |PyTorch - exported| over the logits of a random input of the check shape (`export_shapes`).

    Raises:
        UnetlabError: when the exported model's output has another shape (its sizes did not stay dynamic).
    """
    check_choice("format", format, FORMATS)
    model = model.cpu().eval()
    image = torch.randn(export_shapes(model)[1], generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model(image)  # (N, K, H', W')
        if format == "onnx":
            onnxruntime = _require("onnxruntime", "checking an ONNX export")
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            got = torch.from_numpy(session.run(None, {INPUT_NAME: image.numpy()})[0])
        else:
            with _quiet_tracing():
                got = torch.jit.load(str(path))(image)
    if got.shape != expected.shape:
        raise UnetlabError(
            f"{path} gives {tuple(got.shape)} for an input of {tuple(image.shape)}, PyTorch {tuple(expected.shape)}"
        )
    return float((got - expected).abs().max())


@dataclass
class Export:
    """What `export_checkpoint` wrote and how close it is to PyTorch."""

    path: Path
    model_name: str
    check_shape: tuple[int, ...]  # the (N, C, H, W) input of the parity check
    difference: float  # max |PyTorch - exported| on that input


def export_checkpoint(checkpoint: str | Path, path: str | Path, format: str) -> Export:
    """Export the model of a checkpoint file with its metadata, then check the file against PyTorch (`check_export`).

    Raises:
        UnetlabError: as `export_model`, or when the file differs from PyTorch by more than `PARITY_TOLERANCE` (it is
            left in place for inspection, and the message says not to use it).
    """
    saved = load_checkpoint(checkpoint)
    model = saved.build_model()
    path = export_model(model, path, format, metadata=export_metadata(model, saved))
    difference = check_export(model, path, format)
    if difference > PARITY_TOLERANCE:
        raise UnetlabError(f"{path} differs from the PyTorch model by {difference:.3g}; do not use it, and report this")
    return Export(path, saved.model_name, export_shapes(model)[1], difference)


def _require(module: str, purpose: str):
    try:
        return __import__(module)
    except ImportError:
        raise UnetlabError(f"{purpose} needs {module}; install the extra: pip install 'unetlab[export]'") from None


@contextmanager
def _quiet_tracing():
    """Silence the tracer's notes that do not concern these models."""
    with warnings.catch_warnings():
        # The only shape read as a Python int is the valid model's size check, which computes nothing.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # torch deprecates tracing and this ONNX exporter; the module docstring says why they are used all the same.
        warnings.simplefilter("ignore", DeprecationWarning)
        yield
