"""Training settings: layers, types and ranges checked with the setting named, paths made absolute."""

from pathlib import Path

import pytest
import yaml

from unetlab import UnetlabError
from unetlab.settings import load_yaml
from unetlab.training.config import DEFAULT_MODEL_KWARGS, TrainConfig, resolve_config


def layer(settings: dict, folder: Path = Path("/tmp"), name: str = "test") -> tuple[dict, Path, str]:
    return settings, folder, name


def test_resolve_config_another_model_starts_from_its_own_defaults():
    assert resolve_config(layer({"model": "resnet18-unet"})).model_kwargs == {}
    assert resolve_config(layer({"model": "unet-classic", "model_kwargs": {"dropout": 0.1}})).model_kwargs == {
        "dropout": 0.1
    }
    # the same model: given options layer over the default model's training defaults
    assert resolve_config(layer({"model_kwargs": {"depth": 3}})).model_kwargs == {**DEFAULT_MODEL_KWARGS, "depth": 3}


def test_resolve_config_later_layers_win_and_nested_settings_merge():
    cfg = resolve_config(layer({"epochs": 5, "data": {"patch_size": 64, "val_fraction": 0.1}}),
                         layer({"epochs": 7, "data": {"patch_size": 96}}))  # fmt: skip
    assert cfg.epochs == 7 and cfg.data.patch_size == 96 and cfg.data.val_fraction == 0.1


def test_yaml_values_are_typed_and_yaml_number_quirks_accepted(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-3\nepochs: 3\nclass_weights: [1, 2.5]\ndata: images\n")  # YAML reads 1e-3 as text
    cfg = resolve_config(layer(load_yaml(path), tmp_path, str(path)))
    assert cfg.lr == 0.001 and cfg.epochs == 3 and cfg.class_weights == [1.0, 2.5]
    assert cfg.data.source == str(tmp_path / "images")  # `data: PATH` is short for data: {source: PATH}


@pytest.mark.parametrize(("settings", "message"), [
    ({"epochs": "three"}, "epochs is 'three', which is not a whole number"),
    ({"batch_size": 2.5}, "batch_size is 2.5, which is not a whole number"),
    ({"deterministic": "no"}, "deterministic is 'no', which is not true or false"),
    ({"model_kwargs": 4}, "model_kwargs is 4, which is not a mapping"),
    ({"data": {"val_fraction": "0.2.5"}}, "val_fraction is '0.2.5', which is not a number"),
    ({"learning_rate": 0.1}, "unknown setting learning_rate"),
    ({"batch_size": 0}, "batch_size 0 is not valid: it must be at least 1"),
    ({"momentum": 2.0}, "momentum 2.0 is not valid: it must be in \\[0, 1\\)"),
    ({"lr": float("inf")}, "lr inf is not valid: it must be more than 0"),
    ({"eval_every": 0}, "eval_every 0 is not valid"),
    ({"workers": -1}, "workers -1 is not valid: it must be at least 0"),
    ({"schedule": "linear"}, "schedule 'linear' is not valid: it must be one of cosine"),
    ({"data": {"patch_size": 0}}, "data.patch_size 0 is not valid: it must be at least 1 px"),
    ({"data": {"source": "synthetic-cells", "val_list": "v.txt"}}, "data.val_list apply to folder datasets"),
])  # fmt: skip
def test_invalid_settings_are_named(settings, message):
    with pytest.raises(UnetlabError, match=message):
        resolve_config(layer(settings))


def test_relative_paths_start_at_the_config_files_folder(tmp_path):
    (tmp_path / "val.txt").write_text("a\n")
    cfg = resolve_config(layer({"data": {"source": "../data", "val_list": "val.txt"}, "out": "runs/a",
                                "model_kwargs": {"encoder_weights": "r18.pth"}}, tmp_path))  # fmt: skip
    assert cfg.data.source == str((tmp_path / "../data").resolve()) and cfg.out == str(tmp_path / "runs" / "a")
    assert cfg.data.val_list == str(tmp_path / "val.txt")
    assert cfg.model_kwargs["encoder_weights"] == str(tmp_path / "r18.pth")
    # a list not found beside the file is left for the data module, which also looks in the dataset folder
    in_dir = layer({"data": {"source": str(tmp_path), "val_list": "in_dir.txt"}}, tmp_path)
    assert resolve_config(in_dir).data.val_list == "in_dir.txt"
    assert resolve_config(layer({"data": "synthetic-shapes"})).data.source == "synthetic-shapes"


def test_load_yaml_errors_name_the_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("epochs: [1,\n")
    with pytest.raises(UnetlabError, match=r"bad.yaml is not valid YAML at line \d"):
        load_yaml(tmp_path / "bad.yaml")
    with pytest.raises(UnetlabError, match="is a folder"):
        load_yaml(tmp_path)
    (tmp_path / "list.yaml").write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(UnetlabError, match="must hold a mapping"):
        load_yaml(tmp_path / "list.yaml")
    (tmp_path / "latin1.yaml").write_bytes("# r\xe9glages\nepochs: 2\n".encode("latin-1"))
    with pytest.raises(UnetlabError, match=r"latin1.yaml is not UTF-8 text \(byte 3\); save it as UTF-8"):
        load_yaml(tmp_path / "latin1.yaml")


def test_train_config_round_trips_through_its_dict():
    cfg = TrainConfig(epochs=3, lr=0.01)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
