"""Export of every registered model to ONNX and TorchScript: dynamic sizes, parity with PyTorch, metadata."""

import errno
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from conftest import tiny_model
from special_files import special_files

import unetlab
from unetlab import UnetlabError, list_models
from unetlab.cli import main
from unetlab.data.info import DataInfo
from unetlab.inference.export import check_export, export_metadata, export_model, export_shapes
from unetlab.training.checkpoint import save_checkpoint

# Float32 kernels that sum in another order (ONNX Runtime, TorchScript's fusions) differ by ~1e-7 here.
PARITY = 1e-5


def stored_metadata(path, format) -> dict:
    if format == "onnx":
        import onnx

        return json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["unetlab"])
    extra = {"unetlab.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load: the format is TorchScript
        torch.jit.load(str(path), _extra_files=extra)
    return json.loads(extra["unetlab.json"])


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_export_matches_pytorch_at_another_batch_and_size(tmp_path, name, format):
    if format == "onnx":
        pytest.importorskip("onnxruntime")
    model = tiny_model(name, num_classes=3).eval()
    traced, checked = export_shapes(model)
    assert traced[0] != checked[0] and traced[2:] != checked[2:] and checked[2] != checked[3]
    path = export_model(model, tmp_path / f"m.{format}", format)
    assert check_export(model, path, format) < PARITY
    assert stored_metadata(path, format)["model"]["name"] == name
    if format == "onnx":
        import onnx

        dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
        assert [d.dim_param or d.dim_value for d in dims] == ["batch", 2, "height", "width"]


def test_unknown_format_is_named(tmp_path):
    with pytest.raises(UnetlabError, match="format 'tflite' is not valid: it must be one of onnx, torchscript"):
        export_model(tiny_model("unet"), tmp_path / "m", "tflite")


def test_cli_export_prints_the_parity(tmp_path, capsys):
    model = tiny_model("unet", num_classes=1)
    save_checkpoint(tmp_path / "c.pt", model, DataInfo(2, [0, 255]), threshold=0.4)
    assert main(["export", str(tmp_path / "c.pt"), "--format", "torchscript", "--out", str(tmp_path / "m.ts")]) == 0
    out = capsys.readouterr().out
    assert "parity on a random 3x2x45x77 input: max |PyTorch - torchscript| = " in out
    metadata = stored_metadata(tmp_path / "m.ts", "torchscript")
    assert metadata["threshold"] == 0.4 and metadata["data"]["class_values"] == [0, 255]


def test_cli_export_of_a_missing_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["export", str(tmp_path / "no.pt"), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("unetlab export: error: checkpoint") and err.count("\n") == 1


@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_export_refuses_to_overwrite_a_checkpoint(tmp_path, capsys, format):
    if format == "onnx":
        pytest.importorskip("onnx")
    save_checkpoint(tmp_path / "c.pt", tiny_model("unet"), DataInfo(2, [0, 255]))
    (tmp_path / "other.pt").write_bytes((tmp_path / "c.pt").read_bytes())  # another run's checkpoint
    for out in ("c.pt", "./c.pt", "other.pt"):
        before = (tmp_path / out).read_bytes()
        assert main(["export", str(tmp_path / "c.pt"), "--format", format, "--out", str(tmp_path / out)]) == 2
        assert "is a unetlab checkpoint, which the export would overwrite" in capsys.readouterr().err
        assert (tmp_path / out).read_bytes() == before


def test_export_to_an_earlier_export_replaces_it(tmp_path):
    model = tiny_model("unet")
    (tmp_path / "m.ts").write_bytes(b"an earlier, broken export")
    export_model(model, tmp_path / "m.ts", "torchscript")
    assert check_export(model, tmp_path / "m.ts", "torchscript") < PARITY
    assert [p.name for p in tmp_path.iterdir()] == ["m.ts"], "no temporary file left behind"


def test_export_to_a_folder_or_under_a_file_is_one_line(tmp_path, capsys):
    save_checkpoint(tmp_path / "c.pt", tiny_model("unet"), DataInfo(2, [0, 255]))
    for out, message in (
        (tmp_path, f"{tmp_path} is a folder; pass a file to write, such as {tmp_path / 'model.onnx'}"),
        (tmp_path / "c.pt" / "m.ts", f"cannot be written: {tmp_path / 'c.pt'} is a file, not a folder"),
    ):
        assert main(["export", str(tmp_path / "c.pt"), "--format", "torchscript", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_metadata_says_how_pixels_are_scaled():
    text = export_metadata(tiny_model("unet"))["input"]
    assert "divided by 255 (8-bit) or 65535 (16-bit" in text and "(x - data.mean) / data.std" in text


@pytest.mark.parametrize(("format", "out", "right"), [("onnx", "m.ts", "m.onnx"), ("torchscript", "m.onnx", "m.pt")])
def test_export_refuses_the_other_formats_suffix(tmp_path, capsys, format, out, right):
    save_checkpoint(tmp_path / "c.pt", tiny_model("unet"), DataInfo(2, [0, 255]))
    assert main(["export", str(tmp_path / "c.pt"), "--format", format, "--out", str(tmp_path / out)]) == 2
    assert f"but --format is {format}; write {tmp_path / right}" in capsys.readouterr().err
    assert not (tmp_path / out).exists()


@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_a_deep_supervision_model_exports_its_full_resolution_head_alone(tmp_path, format):
    if format == "onnx":
        pytest.importorskip("onnxruntime")
    model = tiny_model("unet", depth=3, deep_supervision=True).eval()
    path = export_model(model, tmp_path / f"m.{format}", format)
    assert check_export(model, path, format) < PARITY  # one output, of the input's size (shape checked inside)


SPECIAL_KINDS = [
    "a FIFO (named pipe)",
    "a character device",
    "a socket",
    "a symlink to a FIFO (named pipe)",
    "a symlink to a character device",
    "a folder",
    "a symlink to a folder",
]


@pytest.mark.parametrize("kind", SPECIAL_KINDS)
def test_export_refuses_every_destination_that_is_not_a_regular_file(tmp_path, capsys, kind):
    save_checkpoint(tmp_path / "c.pt", tiny_model("unet"), DataInfo(2, [0, 255]))
    (tmp_path / "out").mkdir()
    paths = special_files(tmp_path / "out")
    if kind not in paths:
        pytest.skip(f"this machine cannot make {kind}")
    path, mode = paths[kind], os.lstat(paths[kind]).st_mode
    assert main(["export", str(tmp_path / "c.pt"), "--format", "torchscript", "--out", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err
    assert f"is {kind}, which unetlab never replaces" in err or f"{path} is a folder; pass a file" in err
    assert os.lstat(path).st_mode == mode, f"{kind} was replaced"


def test_export_replaces_a_symlink_to_a_file_without_writing_through_it(tmp_path):
    model = tiny_model("unet")
    (tmp_path / "target.ts").write_bytes(b"someone else's file")
    (tmp_path / "m.ts").symlink_to(tmp_path / "target.ts")
    export_model(model, tmp_path / "m.ts", "torchscript")
    assert not (tmp_path / "m.ts").is_symlink() and check_export(model, tmp_path / "m.ts", "torchscript") < PARITY
    assert (tmp_path / "target.ts").read_bytes() == b"someone else's file"


def filling_open(room: int):
    """`open` for a disk with `room` bytes free: files opened for writing take that much, then raise ENOSPC."""

    class Filling:
        def __init__(self, file):
            self.file = file

        def write(self, data):
            if self.file.tell() + len(data) > room:
                self.file.write(bytes(data)[: max(room - self.file.tell(), 0)])
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.file.write(data)

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    def fake_open(file, mode="r", *args, **kwargs):
        opened = open(file, mode, *args, **kwargs)
        return Filling(opened) if "w" in mode else opened

    return fake_open


@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_export_to_a_full_disk_is_one_line_and_keeps_the_earlier_file(tmp_path, capsys, monkeypatch, format):
    if format == "onnx":
        pytest.importorskip("onnx")
    save_checkpoint(tmp_path / "c.pt", tiny_model("unet"), DataInfo(2, [0, 255]))
    out = tmp_path / f"m.{format}"
    out.write_bytes(b"an earlier export")
    monkeypatch.setattr("unetlab.files.open", filling_open(1000), raising=False)
    assert main(["export", str(tmp_path / "c.pt"), "--format", format, "--out", str(out)]) == 1
    assert capsys.readouterr().err == "unetlab export: error: [Errno 28] No space left on device\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", out.name], "no temporary file left"
    assert out.read_bytes() == b"an earlier export"


@pytest.mark.slow  # a fresh process (torch's abort would end the test session): 4 s of imports
def test_torchscript_export_survives_a_real_write_failure(tmp_path):
    """The kernel refuses the write (a file-size limit: EFBIG, as ENOSPC for a full disk): torch's own file writer
    aborted the process there (exit 134) and left its temporary file; now the OSError comes back."""
    child = f"""
import errno, os, resource
from unetlab import create_model
from unetlab.inference.export import export_model
model = create_model("unet", base_channels=4, depth=2)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    export_model(model, {str(tmp_path / "m.ts")!r}, "torchscript")
except OSError as exc:
    print("refused", errno.errorcode[exc.errno])
"""
    root = Path(unetlab.__file__).parents[1]  # this unetlab, not an installed one
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120, cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "refused EFBIG"
    assert list(tmp_path.iterdir()) == [], "no temporary file left"
