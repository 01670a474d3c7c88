"""One source for every setting: flags, help texts, checks and errors all come from each field's declaration."""

import argparse
import time
import typing
from dataclasses import fields, is_dataclass

import pytest

from unetlab.cli import build_parser, main
from unetlab.data.config import DataConfig, ReaderOptions
from unetlab.errors import UnetlabError
from unetlab.inference.options import PredictOptions
from unetlab.options import ModelOptions
from unetlab.settings import SettingError, flag_of, load_yaml, spec_of
from unetlab.training.config import TrainConfig
from unetlab.twin.train import TwinTrainConfig

CONFIGS = (TrainConfig, DataConfig, ModelOptions, PredictOptions, TwinTrainConfig, ReaderOptions)


def subparser(*names: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in names:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


# (command, config class, prefix of its dests, the fields it offers: None = every field with a flag)
COMMANDS = [
    (("train",), TrainConfig, "", None),
    (("train",), DataConfig, "data.", None),
    (("train",), ModelOptions, "model_kwargs.", None),
    (("data", "check"), DataConfig, "data.", ("image_dir", "mask_dir", "val_list", "val_fraction", "class_values",
                                              "class_names", "ignore_values")),
    (("predict",), PredictOptions, "predict.", None),
    (("eval",), PredictOptions, "predict.", None),
    (("eval",), DataConfig, "data.", ("image_dir", "mask_dir")),
    (("summary",), ModelOptions, "model_kwargs.", None),
    (("twin", "train"), TwinTrainConfig, "", None),
    (("train",), ReaderOptions, "reader.", None),
    (("predict",), ReaderOptions, "reader.", None),
    (("eval",), ReaderOptions, "reader.", None),
    (("data", "check"), ReaderOptions, "reader.", None),
    (("twin", "check"), ModelOptions, "model_kwargs.", ("in_channels", "num_classes", "base_channels", "depth",
                                                        "padding", "norm", "dropout")),
]  # fmt: skip


def test_every_config_field_is_declared_with_its_help():
    for cls in CONFIGS:
        for f in fields(cls):
            spec = spec_of(f)
            assert spec is not None and spec.help, f"{cls.__name__}.{f.name} has no declaration"


@pytest.mark.parametrize(("command", "cls", "prefix", "offered"), COMMANDS, ids=lambda v: getattr(v, "__name__", v))
def test_every_config_field_has_exactly_one_flag_and_one_help_both_from_its_metadata(command, cls, prefix, offered):
    parser = subparser(*command)
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        spec = spec_of(f)
        if not spec.cli or is_dataclass(hints[f.name]) or (offered is not None and f.name not in offered):
            continue
        actions = [a for a in parser._actions if a.dest == prefix + f.name]
        assert len(actions) == 1, f"{prefix}{f.name}: {len(actions)} flags in {' '.join(command)}"
        action = actions[0]
        assert action.option_strings == [flag_of(f)], (f.name, action.option_strings)
        assert action.help.startswith(spec.help), (f.name, action.help)
        assert action.help.count("(default:") <= 1, (f.name, action.help)
    flags = [s for a in parser._actions for s in a.option_strings]
    assert len(flags) == len(set(flags)), "a flag given twice"


def test_train_offers_no_flag_that_is_not_a_setting():
    parser = subparser("train")
    settings = {f"{p}{f.name}" for cmd, cls, p, _ in COMMANDS if cmd == ("train",) for f in fields(cls)}
    extra = {a.dest for a in parser._actions if a.option_strings} - settings - {"help", "config", "resume"}
    assert not extra, extra


@pytest.mark.parametrize(
    ("values", "library", "flag"),
    [
        ({"data": {"patch_size": 0}}, "data.patch_size 0 is not valid: it must be at least 1 px", "--patch-size 0"),
        ({"lr": -1.0}, "lr -1.0 is not valid: it must be more than 0", "--lr -1.0"),
        ({"data": {"weight_sigma": 0.0}}, "data.weight_sigma 0.0 is not valid: it must be more than 0 px",
         "--sigma 0.0"),
        ({"optimizer": "lamb"}, "optimizer 'lamb' is not valid: it must be one of adamw, adam, sgd", None),
    ],
)  # fmt: skip
def test_the_library_names_the_setting_and_the_cli_names_the_flag(values, library, flag, capsys):
    with pytest.raises(SettingError) as error:
        TrainConfig.from_dict(values)
    assert str(error.value) == library
    if flag is not None:
        argv = {"--patch-size 0": ["--patch-size", "0"], "--lr -1.0": ["--lr", "-1"], "--sigma 0.0": ["--sigma", "0"]}
        assert main(["train", *argv[flag]]) == 2
        err = capsys.readouterr().err
        assert f"error: {flag} is not valid" in err and "Traceback" not in err, err


def test_wrong_types_from_python_are_named():
    with pytest.raises(SettingError, match="batch_size 2.5 is not valid: it must be a whole number"):
        TrainConfig(batch_size=2.5)
    with pytest.raises(SettingError, match="tile '64' is not valid: it must be a whole number or null"):
        PredictOptions(tile="64")


def test_yaml_keys_given_twice_are_refused(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 3\nlr: 0.1\nepochs: 5\n")
    with pytest.raises(UnetlabError, match=r"run.yaml is not valid YAML.*the key 'epochs' at line 3 is given twice"):
        load_yaml(path)


def test_yaml_alias_bombs_and_huge_files_are_refused_quickly(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    lines = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(12)]
    bomb.write_text("\n".join(lines) + "\nclass_weights: *m\n")
    start = time.perf_counter()
    with pytest.raises(UnetlabError, match="more than 100 aliases"):
        load_yaml(bomb)
    assert time.perf_counter() - start < 5
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (1 << 21) + "\nepochs: 2\n")
    with pytest.raises(UnetlabError, match="more than a settings file holds"):
        load_yaml(big)


def test_a_huge_value_is_named_without_printing_it_all():
    nested = [1.0]
    for _ in range(30):
        nested = [nested] * 9  # 9**30 leaves, shared: printing it in full would never end
    start = time.perf_counter()
    with pytest.raises(UnetlabError, match="class_weights is") as error:
        TrainConfig.from_dict({"class_weights": nested})
    assert time.perf_counter() - start < 5 and len(str(error.value)) < 400
