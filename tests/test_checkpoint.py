"""Checkpoint files: round trip, atomic writes, and clear errors for files from elsewhere."""

import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from unetlab import UnetlabError, create_model
from unetlab.data.info import DataInfo
from unetlab.inference.export import export_model
from unetlab.training.checkpoint import FORMAT_VERSION, atomic_save, load_checkpoint, save_checkpoint
from unetlab.training.engine import train
from unetlab.training.resume import resume_config


def test_checkpoint_round_trip_rebuilds_the_same_model(tmp_path):
    model = create_model("unet", base_channels=4, depth=2, num_classes=1).eval()
    info = DataInfo(in_channels=1, class_values=[0, 255], class_names=["background", "cell"], mean=[0.5], std=[0.2])
    save_checkpoint(tmp_path / "a.pt", model, data=info, threshold=0.4, training={"epoch": 3})
    ckpt = load_checkpoint(tmp_path / "a.pt")
    assert (ckpt.model_name, ckpt.model_kwargs) == ("unet", {"base_channels": 4, "depth": 2, "num_classes": 1})
    assert ckpt.data == info and ckpt.threshold == 0.4 and ckpt.training == {"epoch": 3}
    image = torch.randn(1, 1, 20, 20)
    with torch.no_grad():
        assert torch.equal(ckpt.build_model()(image), model(image))
    # weights_only loading works on the raw file too
    assert torch.load(tmp_path / "a.pt", weights_only=True)["format_version"] == FORMAT_VERSION


def test_checkpoint_drops_the_encoder_weights_path(tmp_path):
    source = create_model("resnet18-unet", depth=2, base_channels=4)
    source.spec["kwargs"]["encoder_weights"] = "/somewhere/resnet18.pth"  # as if loaded from a file
    save_checkpoint(tmp_path / "r.pt", source)
    assert "encoder_weights" not in load_checkpoint(tmp_path / "r.pt").model_kwargs


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        (b"garbage", "could not be read"),
        ({"state_dict": {}}, "is not a unetlab checkpoint"),
        ({"format": "unetlab-checkpoint", "format_version": FORMAT_VERSION + 1}, "newer than this unetlab"),
    ],
)
def test_load_checkpoint_from_elsewhere_gets_a_clear_error(tmp_path, content, message):
    path = tmp_path / "x.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(UnetlabError, match=message):
        load_checkpoint(path)


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "last.pt"
    atomic_save({"a": torch.ones(2)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_save({"a": Unpicklable()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_load_checkpoint_names_an_exported_model(tmp_path):
    model = create_model("unet", base_channels=4, depth=2).eval()
    for format, name in (("torchscript", "model.pt"), ("onnx", "model.onnx")):
        export_model(model, tmp_path / name, format)  # what `unetlab export` writes
        with pytest.raises(UnetlabError, match="exported (TorchScript|ONNX) model.*the training checkpoint"):
            load_checkpoint(tmp_path / name)


def test_checkpoint_whose_weights_do_not_fit_its_model_is_refused(tmp_path):
    save_checkpoint(tmp_path / "a.pt", create_model("unet", base_channels=4, depth=2))
    payload = torch.load(tmp_path / "a.pt", weights_only=True)
    payload["model"]["kwargs"]["depth"] = 3
    torch.save(payload, tmp_path / "edited.pt")
    with pytest.raises(UnetlabError, match=r"do not fit the unet .* \(26 missing .*; 10 wrong shape"):
        load_checkpoint(tmp_path / "edited.pt").build_model()


def test_checkpoint_files_are_readable_like_other_new_files(tmp_path):
    save_checkpoint(tmp_path / "a.pt", create_model("unet", base_channels=4, depth=2))
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.pt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_checkpoint_of_format_version_1_still_loads(tmp_path):
    save_checkpoint(tmp_path / "a.pt", create_model("unet", base_channels=4, depth=2),
                    data=DataInfo(in_channels=1, class_values=[0, 255]))  # fmt: skip
    payload = torch.load(tmp_path / "a.pt", weights_only=True)
    payload["format_version"] = 1
    payload["data"].pop("palette", None)  # version 1 had no palette
    torch.save(payload, tmp_path / "v1.pt")
    assert load_checkpoint(tmp_path / "v1.pt").data.class_values == [0, 255]


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.pop("state_dict"),
        lambda p: p.update(model="unet"),
        lambda p: p.update(state_dict=[1, 2]),
        lambda p: p.update(data={"in_channels": 1, "colours": 3}),
    ],
)
def test_a_damaged_checkpoint_gets_a_clear_error(tmp_path, damage):
    path = tmp_path / "m.pt"
    save_checkpoint(path, create_model("unet", base_channels=4, depth=1), DataInfo(1, [0, 1]))
    payload = torch.load(path, weights_only=True)
    damage(payload)
    torch.save(payload, path)
    with pytest.raises(UnetlabError, match=f"checkpoint {path} is damaged .*; use a file as `unetlab train` wrote it"):
        load_checkpoint(path)


def test_a_checkpoints_folder_hint_names_a_file_inside_it(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(UnetlabError, match=r"such as \S*run/checkpoints/best\.pt$"):
        load_checkpoint(tmp_path / "run" / "checkpoints")


MAIN_V2 = Path(__file__).parent / "data" / "main_v2"  # written by unetlab before the package was laid out by stage


def test_checkpoints_written_before_the_house_plan_still_load_predict_and_resume(tmp_path):
    resnet = load_checkpoint(MAIN_V2 / "resnet18_unet.pt")
    model = resnet.build_model()
    assert model(torch.zeros(1, 3, 20, 28)).shape == (1, 3, 20, 28)
    run = tmp_path / "run"
    shutil.copytree(MAIN_V2 / "run", run)
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best.build_model()(torch.zeros(1, 1, 32, 32)).shape == (1, 1, 32, 32) and best.threshold is not None
    cfg = resume_config(load_checkpoint(run / "checkpoints" / "last.pt").training["config"], {"epochs": 2})
    result = train(replace(cfg, progress=False), resume=run)
    assert result.state.epoch == 2 and result.state.step == 4


def edited(tmp_path, edit):
    """A checkpoint of a small U-Net (depth 1, base 4, normalisation, threshold 0.5), edited by `edit(payload)`."""
    path = tmp_path / "m.pt"
    info = DataInfo(1, [0, 255], mean=[0.5], std=[0.25])
    save_checkpoint(path, create_model("unet", base_channels=4, depth=1, num_classes=1), info, threshold=0.5)
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)
    return path


def set_weight(key: str, value: float):
    return lambda p: p["state_dict"][key].view(-1)[-1].fill_(value)


def set_kwarg(key: str, value):
    return lambda p: p["model"]["kwargs"].update({key: value})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (set_weight("head.weight", float("nan")), "holds NaN or infinite weights, first in 'head.weight'"),
        (set_weight("encoders.0.norm1.running_var", float("inf")), "first in 'encoders.0.norm1.running_var'"),
        (lambda p: p["data"].update(mean=[float("nan")]), r"damaged \(mean=\[nan\] is not a valid normalisation"),
        (lambda p: p["data"].update(std=[float("inf")]), r"damaged \(std=\[inf\] is not a valid normalisation"),
        (lambda p: p["data"].update(class_values=[0, 255.7]), r"class_values entry 255\.7 is not a mask value"),
        (lambda p: p.update(threshold="high"), "threshold 'high' is not a probability in"),
        (lambda p: p.update(threshold=1.5), "threshold 1.5 is not a probability"),
        (lambda p: p.update(threshold=float("nan")), "threshold nan is not a probability"),
        (lambda p: p.update(threshold=True), "threshold True is not a probability"),
        (set_kwarg("base_channels", "64"), "base_channels '64' is not valid: it must be a whole number"),
        (set_kwarg("depth", 2.5), "depth 2.5 is not valid: it must be a whole number from 1 to 8"),
        (set_kwarg("norm", ["batch"]), r"norm \['batch'\] is not valid: it must be one of batch"),
        (set_kwarg("colour", True), "model 'unet' has no option colour"),
        (set_kwarg("encoder_weights", "/etc/passwd"), "it names encoder_weights, a file that training read"),
        (lambda p: p["model"].update(kwargs=[1, 2]), r"damaged \((TypeError|ValueError)"),
        (lambda p: p["model"].update(name="unet-xl"), "unknown model 'unet-xl'"),
        (lambda p: p["state_dict"].update({"head.weight": [1.0]}), "state_dict entries of the wrong type"),
    ],
)
def test_a_checkpoint_that_would_predict_wrongly_or_crash_is_refused_on_loading(tmp_path, edit, message):
    path = edited(tmp_path, edit)
    with pytest.raises(UnetlabError, match=message) as caught:
        load_checkpoint(path)
    assert str(caught.value).startswith(f"checkpoint {path}") and "\n" not in str(caught.value)


def test_an_absurd_model_is_refused_with_its_size_before_anything_is_allocated(tmp_path):
    path = edited(tmp_path, set_kwarg("base_channels", 200_000))
    c = 200_000  # a depth-1 U-Net with batch norm, 1 channel in, 1 class out: by hand, 98 c^2 + 27 c + 1 parameters
    params = 98 * c**2 + 27 * c + 1
    assert sum(p.numel() for p in create_model("unet", base_channels=4, depth=1, num_classes=1).parameters()) == (
        98 * 4**2 + 27 * 4 + 1
    ), "the formula, at a size that can be built"
    with pytest.raises(UnetlabError) as caught:
        load_checkpoint(path)  # torch would otherwise try to allocate 14 TiB: a RuntimeError, or the OOM killer
    message = str(caught.value)
    assert f"has {params:,} parameters, whose weights alone would take 14," in message, message
    assert "GiB, and this machine has" in message and "is damaged" in message


def test_cli_predict_with_a_nan_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    from unetlab.cli import main
    from unetlab.data.io import write_image

    path = edited(tmp_path, set_weight("head.weight", float("nan")))
    write_image(tmp_path / "a.png", torch.zeros(8, 8, dtype=torch.uint8).numpy())
    assert main(["predict", str(path), str(tmp_path / "a.png"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NaN or infinite weights" in err and not (tmp_path / "out").exists()


def test_a_full_disk_keeps_the_previous_checkpoint_and_raises_the_os_error(tmp_path, monkeypatch):
    import errno

    save_checkpoint(tmp_path / "last.pt", create_model("unet", base_channels=4, depth=1))
    before = (tmp_path / "last.pt").read_bytes()
    real_open = open

    class Full:
        """A file on a full disk: the first write takes 100 bytes and reports that short count, the next fails."""

        def __init__(self, file):
            self.file, self.room = file, 100

        def write(self, data):
            if not self.room:
                raise OSError(errno.ENOSPC, "No space left on device")
            taken, self.room = min(self.room, len(bytes(data))), 0
            return self.file.write(bytes(data)[:taken])

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    monkeypatch.setattr("unetlab.training.checkpoint.open", lambda *a, **k: Full(real_open(*a, **k)), raising=False)
    with pytest.raises(OSError) as caught:  # torch itself raised RuntimeError("unexpected pos ..."), no one line
        save_checkpoint(tmp_path / "last.pt", create_model("unet", base_channels=8, depth=2))
    assert caught.value.errno == errno.ENOSPC
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"] and (tmp_path / "last.pt").read_bytes() == before
