"""`unetlab train` from the command line: settings layers, resume rules and one-line errors."""

import yaml

from unetlab.cli import main
from unetlab.training.checkpoint import load_checkpoint

TINY = [
    "--num-train",
    "4",
    "--num-val",
    "1",
    "--image-size",
    "32",
    "--patch-size",
    "32",
    "--base-channels",
    "4",
    "--depth",
    "2",
    "--batch-size",
    "2",
    "--workers",
    "0",
    "--no-progress",
    "--no-tensorboard",
    "--samples",
    "0",
]


def test_cli_train_flags_override_the_config_file(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"epochs": 5, "lr": 0.01, "data": {"image_size": 48, "foreground_fraction": 0.5}}))
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--epochs", "1", "--out", str(out), *TINY]) == 0
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["epochs"] == 1 and resolved["lr"] == 0.01  # flag over file, file over default
    assert resolved["data"]["image_size"] == 32 and resolved["data"]["foreground_fraction"] == 0.5
    assert resolved["model_kwargs"] == {"base_channels": 4, "depth": 2}
    assert "finished: best val/dice" in capsys.readouterr().out


def test_cli_train_resume_continues_to_the_new_total(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), *TINY]) == 0
    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
    state = load_checkpoint(out / "checkpoints" / "last.pt").training["state"]
    assert state["epoch"] == 2 and state["step"] == 4
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_cli_train_resume_refuses_to_change_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--lr", "0.1", "--base-channels", "8"]) == 2
    assert "--lr, --base-channels cannot change on resume (only --no-cache, --data" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--out", str(tmp_path / "elsewhere")]) == 2
    assert (
        "--out cannot be combined with resuming: a resumed run continues in its own folder; leave --out out"
        in capsys.readouterr().err
    )
    assert main(["train", "--resume", str(tmp_path / "nothing"), "--batch-size", "2"]) == 2
    assert "nothing not found" in capsys.readouterr().err  # the missing run is the problem, not the flag
    assert main(["train", "--resume", str(out / "checkpoints" / "best.pt")]) == 2
    assert "holds weights only" in capsys.readouterr().err


def test_cli_train_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("epochs: 3\nlearning_rate: 0.1\n")
    cases = [
        (["--config", str(bad_yaml)], "unknown setting learning_rate"),
        (["--config", str(tmp_path / "none.yaml")], "none.yaml not found"),
        (["--data", str(tmp_path / "nowhere")], "nowhere"),
        (["--resume", str(tmp_path / "nowhere")], "not found"),
        (["--model", "unet-classic", "--epochs", "1"], "--patch-size 128 does not fit unet-classic"),
    ]
    for argv, message in cases:
        assert main(["train", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)


def test_cli_train_exit_status_tells_an_interrupted_run(monkeypatch, tmp_path):
    import signal

    import unetlab.training.engine
    from unetlab.training.engine import TrainResult, TrainState

    result = TrainResult(tmp_path, TrainState(), {}, "interrupted", signal=signal.SIGTERM)
    monkeypatch.setattr(unetlab.training.engine, "train", lambda cfg, resume=None: result)
    assert main(["train", "--out", str(tmp_path / "r")]) == 128 + signal.SIGTERM


def test_cli_train_weight_map_needs_a_cross_entropy_term(capsys):
    assert main(["train", "--weight-map", "--loss", "dice", *TINY]) == 2
    assert "--weight-map weights the cross-entropy term, and --loss dice has none" in capsys.readouterr().err


def test_help_states_each_default_once_and_truly():
    from unetlab.cli import build_parser
    from unetlab.training.config import TrainConfig

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    helps = {action.dest: action.help for action in train._actions if action.help}
    assert all(text.count("default") <= 1 for dest, text in helps.items() if dest != "augment"), helps
    defaults = TrainConfig().to_dict()
    assert helps["data.patch_size"].endswith(f"(default: {defaults['data']['patch_size']} px)")
    assert helps["epochs"].endswith(f"(default: {defaults['epochs']})")


def test_cli_train_resume_follows_a_moved_dataset_but_not_another_one(tmp_path, capsys, monkeypatch):
    from folder_data import box_mask, write_pairs

    data = write_pairs(tmp_path / "data", {str(i): box_mask(32, 32, (4, 4, 20, 20 + i)) for i in range(4)})
    out, small = tmp_path / "run", TINY[6:]  # TINY without its synthetic-data flags
    assert main(["train", "--data", str(data), "--epochs", "1", "--out", str(out), *small]) == 0
    data.rename(tmp_path / "moved")
    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 2
    assert "is not there any more; if it moved, resume with --data FOLDER" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)  # a relative --data, saved absolute
    assert main(["train", "--resume", str(out), "--epochs", "2", "--data", "moved", "--no-progress", "--no-cache"]) == 0
    last = load_checkpoint(out / "checkpoints" / "last.pt").training
    assert last["state"]["epoch"] == 2 and last["config"]["data"]["source"] == str(tmp_path / "moved")
    other = write_pairs(tmp_path / "other", {str(i): box_mask(32, 32, (4, 4, 20, 20), 7 * i) for i in range(4)})
    assert main(["train", "--resume", str(out), "--epochs", "3", "--data", str(other), "--no-progress"]) == 2
    assert "is not the run's: class_values [0, 7, 14, 21] (the run's: [0, 255])" in capsys.readouterr().err


def test_careless_settings_get_one_line_each(tmp_path, capsys):
    from folder_data import box_mask, write_pairs

    data = write_pairs(tmp_path / "data", {str(i): box_mask(32, 32, (4, 4, 20, 20 + i)) for i in range(3)})
    (data / "all.txt").write_text("0\n1\n2\n")
    small = TINY[6:]  # TINY without its synthetic-data flags
    cases = [
        (["--val-list", str(data / "all.txt")], "names every image of the dataset (3 images), so none is left"),
        (["--class-values", "0", "255", "--patch-size", "100000", "--batch-size", "2"], "needs about"),
    ]
    for argv, message in cases:
        assert main(["train", "--data", str(data), "--out", str(tmp_path / "r"), *small, *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    for values, message in [("[0, 'x']", "--class-values 'x' is not valid: it must be a mask value"),
                            ("[0, 255.7]", "--class-values 255.7 is not valid"),
                            ("[0, [1, 2]]", "--class-values [1, 2] is not valid")]:  # fmt: skip
        config = tmp_path / "c.yaml"
        config.write_text(f"data: {{source: {data}, class_values: {values}}}\n")
        assert main(["train", "--config", str(config), "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert main(["data", "check", str(data), "--val-list", str(data / "all.txt")]) == 2
    assert "so none is left to train on" in capsys.readouterr().out


def test_a_patch_larger_than_every_image_gets_a_note(tmp_path, capsys):
    args = ["train", "--epochs", "1", "--out", str(tmp_path / "r"), *TINY]
    assert main([*args[: -len(TINY)], *TINY[:6], "--patch-size", "48", *TINY[8:]]) == 0
    assert "note: patches of 48 px are larger than every training image (the largest side is 32 px)" in (
        capsys.readouterr().out
    )
