"""Export of every registered model to ONNX and TorchScript: dynamic sizes, parity with PyTorch, metadata."""

import json
import warnings

import pytest
import torch
from conftest import tiny_model

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
