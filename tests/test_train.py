"""The training engine end to end on tiny synthetic data: run folder, exact resume, signals, the NaN guard, and
the engine's options (accumulation, clipping, early stopping, schedules, no validation set, bf16)."""

import json
import os
import signal
from dataclasses import replace

import pytest
import torch

from unetlab import UnetlabError
from unetlab.data import DataConfig
from unetlab.evaluation.validation import metric_names
from unetlab.settings import SettingError
from unetlab.training.checkpoint import load_checkpoint
from unetlab.training.config import TrainConfig
from unetlab.training.engine import train
from unetlab.training.optim import get_lr
from unetlab.training.run_log import recorded_split


def tiny_config(tmp_path, **overrides) -> TrainConfig:
    data = DataConfig(num_train=8, num_val=2, image_size=40, patch_size=32)
    values = dict(
        model_kwargs={"base_channels": 4, "depth": 2}, data=data, epochs=2, batch_size=2, workers=0, progress=False,
        tensorboard=False, samples=1, warmup_epochs=0.5, out=str(tmp_path / "run"),
    )  # fmt: skip
    return TrainConfig(**{**values, **overrides})


def records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def weights(run_dir, name: str = "last.pt") -> dict:
    return load_checkpoint(run_dir / "checkpoints" / name).state_dict


def test_train_tiny_run_writes_the_run_folder(tmp_path):
    result = train(tiny_config(tmp_path, tensorboard=True))
    run = tmp_path / "run"
    assert result.stopped == "finished" and result.state.epoch == 2 and result.state.step == 8
    assert (run / "config.yaml").is_file() and (run / "samples" / "epoch_0002.png").is_file()
    assert any((run / "tensorboard").iterdir())
    logged = records(run)
    assert [r["epoch"] for r in logged] == [1, 2]
    for key in ("train/loss", "val/loss", "val/dice", "val/iou", "val/threshold", "lr", "images_per_s", "elapsed_s"):
        assert isinstance(logged[-1][key], float), key
    assert {k.removeprefix("val/") for k in logged[-1] if k.startswith("val/")} == {
        *metric_names(["background", "cell"]),
        "threshold",
    }  # what --best-metric may name, and the binary model's threshold
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best.training["state"]["best_epoch"] in (1, 2) and "optimizer" not in best.training
    assert 0.0 <= best.threshold <= 1.0 and best.model_kwargs["num_classes"] == 1
    assert best.data.class_names == ["background", "cell"]
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last.training["state"]["epoch"] == 2 and last.training["state"]["elapsed"] > 0


@pytest.mark.parametrize("cut", [3, 4])  # mid-epoch, and at the end of the first epoch (4 steps per epoch)
def test_train_interrupted_and_resumed_ends_with_the_same_weights(tmp_path, cut):
    """On CPU with deterministic algorithms, stopping anywhere and resuming changes nothing."""
    kwargs = {"base_channels": 4, "depth": 2, "dropout": 0.3}
    whole = train(tiny_config(tmp_path / "a", deterministic=True, model_kwargs=kwargs))
    first = train(tiny_config(tmp_path / "b", deterministic=True, model_kwargs=kwargs, max_steps=cut))
    assert first.stopped == "max_steps" and first.state.step == cut
    cfg = TrainConfig.from_dict(load_checkpoint(first.run_dir / "checkpoints" / "last.pt").training["config"])
    second = train(replace(cfg, max_steps=-1), resume=first.run_dir)
    assert second.stopped == "finished" and second.state.step == whole.state.step == 8
    a = load_checkpoint(whole.run_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(second.run_dir / "checkpoints" / "last.pt")
    for key, value in a.state_dict.items():
        assert torch.equal(value, b.state_dict[key]), key
    for index, moments in a.training["optimizer"]["state"].items():
        assert torch.equal(moments["exp_avg_sq"], b.training["optimizer"]["state"][index]["exp_avg_sq"])
    # what was logged for the epochs after the cut agrees too, the training loss of the cut epoch included
    for whole_record, resumed_record in zip(records(whole.run_dir)[cut // 4 :], records(second.run_dir)[cut // 4 :]):
        for key in ("epoch", "step", "train/loss", "val/loss", "val/dice", "lr"):
            assert whole_record[key] == resumed_record[key], key


def test_train_max_steps_counts_the_steps_of_this_session(tmp_path):
    first = train(tiny_config(tmp_path, max_steps=3))
    again = train(tiny_config(tmp_path, max_steps=3), resume=first.run_dir)
    assert again.stopped == "max_steps" and again.state.step == 6


def test_train_accumulated_batches_equal_one_joint_batch(tmp_path):
    # No BatchNorm, a per-pixel mean loss and no augmentation: then two batches of 2 make the gradient of 4.
    same = dict(model_kwargs={"base_channels": 4, "depth": 2, "norm": "none"}, loss="ce", augment="none")
    joint = train(tiny_config(tmp_path / "joint", batch_size=4, **same))
    split = train(tiny_config(tmp_path / "split", batch_size=2, accumulate=2, **same))
    assert joint.state.step == split.state.step == 4
    for key, value in weights(joint.run_dir).items():
        # the two halves are summed in another order than one batch: float rounding
        torch.testing.assert_close(weights(split.run_dir)[key], value, rtol=1e-5, atol=1e-7, msg=key)


def test_train_clip_grad_bounds_each_update(tmp_path):
    start = {}

    def snapshot(state, model):
        if state.step == 1:
            start.update({k: v.clone() for k, v in model.state_dict().items()})

    cfg = tiny_config(tmp_path, optimizer="sgd", momentum=0.0, weight_decay=0.0, lr=1.0, schedule="constant",
                      warmup_epochs=0.0, clip_grad=1e-3, epochs=1, max_steps=2, eval_every=1)  # fmt: skip
    result = train(cfg, on_step=snapshot)
    end = weights(result.run_dir)
    moved = torch.cat([(end[k] - start[k]).flatten() for k, v in start.items() if v.is_floating_point()
                       and "running" not in k])  # fmt: skip
    assert 0 < moved.norm() <= 1e-3 * (1 + 1e-4)  # plain SGD: the step is lr x the clipped gradient


@pytest.mark.parametrize(("patience", "last_epoch"), [(0, 2), (1, 2), (2, 3)])
def test_train_stops_early_after_patience_evaluations_without_improvement(tmp_path, patience, last_epoch):
    cfg = tiny_config(tmp_path, epochs=6, lr=1e-12, schedule="constant", warmup_epochs=0.0, patience=patience,
                      best_metric="loss")  # fmt: skip
    result = train(cfg)  # lr 1e-12: the loss cannot improve after the first evaluation (epoch 1, always "best")
    # patience 0 or 1: the first evaluation without improvement (epoch 2) ends the run; 2: the second
    assert result.stopped == "early stopping" and result.state.epoch == last_epoch and result.state.best_epoch == 1


def test_train_logs_the_scheduled_learning_rate_and_only_plateau_reduces_it(tmp_path):
    cfg = tiny_config(tmp_path, epochs=4, lr=1e-12, schedule="constant", warmup_epochs=0.0, step_epochs=0.5,
                      gamma=0.5, best_metric="loss")  # fmt: skip
    assert [r["lr"] for r in records(train(cfg).run_dir)] == [1e-12] * 4  # no plateau factor on "constant"
    cfg = replace(cfg, schedule="cosine", out=str(tmp_path / "cosine"))
    logged = records(train(cfg).run_dir)
    assert [r["lr"] for r in logged] == [get_lr(r["step"], schedule="cosine", lr=1e-12, total_steps=16) for r in logged]


def test_train_without_validation_set_trains_and_writes_no_best(tmp_path, capsys):
    result = train(tiny_config(tmp_path, data=DataConfig(num_train=8, num_val=0, image_size=40, patch_size=32)))
    assert result.stopped == "finished" and "val/dice" not in result.metrics and "train/loss" in result.metrics
    assert not (tmp_path / "run" / "checkpoints" / "best.pt").exists()
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt").threshold is None
    assert "no validation set" in capsys.readouterr().out
    with pytest.raises(UnetlabError, match="schedule plateau and patience need a validation set"):
        train(tiny_config(tmp_path / "p", patience=2, data=DataConfig(num_train=8, num_val=0, image_size=40)))


def test_train_bf16_autocast_runs_on_cpu(tmp_path):
    result = train(tiny_config(tmp_path, amp="bf16", epochs=1))
    assert result.stopped == "finished" and 0.0 <= result.metrics["val/dice"] <= 1.0


def test_train_sigterm_saves_a_resumable_checkpoint(tmp_path):
    def send_sigterm(state, _model):
        if state.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    result = train(tiny_config(tmp_path), on_step=send_sigterm)
    assert result.stopped == "interrupted" and result.signal == signal.SIGTERM
    saved = load_checkpoint(result.run_dir / "checkpoints" / "last.pt").training
    assert saved["state"]["step"] == 2 and saved["state"]["batch"] == 2 and "optimizer" in saved
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone again


def test_train_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    def poison(state, model):
        if state.step == 5:  # in the second epoch: last.pt holds the first
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))

    with pytest.raises(UnetlabError, match="NaN or inf in epoch 2, between steps 5 and 8.*last good checkpoint"):
        train(tiny_config(tmp_path), on_step=poison)
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert last.training["state"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in last.state_dict.values() if v.is_floating_point())


def test_train_refuses_a_run_folder_that_is_not_empty(tmp_path):
    first = train(tiny_config(tmp_path, epochs=1))
    with pytest.raises(UnetlabError, match="is not empty; continue that run with `unetlab train --resume"):
        train(tiny_config(tmp_path, epochs=1))
    assert records(first.run_dir)[0]["epoch"] == 1 and len(records(first.run_dir)) == 1  # untouched
    (tmp_path / "file").write_text("x")
    with pytest.raises(UnetlabError, match="is a file"):
        train(tiny_config(tmp_path, out=str(tmp_path / "file")))


def test_a_run_folder_without_checkpoints_is_refused_with_a_hint_and_kept(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)  # as a run that failed before its first checkpoint leaves it
    (run_dir / "config.yaml").write_text("epochs: 99\n")
    with pytest.raises(UnetlabError, match="looks like a run that stopped before its first checkpoint: delete it"):
        train(tiny_config(tmp_path, epochs=1))
    assert (run_dir / "config.yaml").read_text() == "epochs: 99\n"  # never cleared for the user
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(UnetlabError, match="is not empty; choose a new folder"):
        train(tiny_config(tmp_path, out=str(tmp_path / "mine")))


def test_train_classic_valid_model_crops_the_mask_to_its_output(tmp_path):
    cfg = tiny_config(tmp_path, model="unet-classic", model_kwargs={"base_channels": 4, "depth": 1}, epochs=3,
                      lr=0.01, data=DataConfig(num_train=8, num_val=1, image_size=40, patch_size=36))  # fmt: skip
    result = train(cfg)
    assert result.stopped == "finished"
    assert records(result.run_dir)[-1]["train/loss"] < records(result.run_dir)[0]["train/loss"]  # it learns


def test_train_multiclass_shapes_uses_softmax_and_reports_per_class_dice(tmp_path):
    data = DataConfig(source="synthetic-shapes", num_train=4, num_val=1, image_size=40, patch_size=32)
    result = train(tiny_config(tmp_path, epochs=1, data=data))
    ckpt = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    assert ckpt.model_kwargs["num_classes"] == ckpt.data.num_classes > 2 and ckpt.threshold is None
    assert sum(key.startswith("val/dice/") for key in result.metrics) == ckpt.data.num_classes


@pytest.mark.parametrize(("overrides", "message"), [
    ({"model_kwargs": {"base_channels": 4, "depth": 2, "num_classes": 3}},
     "the data has 2 classes but model_kwargs.num_classes is 3; use 1 or 2"),
    ({"best_metric": "f1"}, "best_metric 'f1' is not a validation score; choose one of loss, dice"),
    ({"model": "unet-classic", "model_kwargs": {"base_channels": 2}}, "data.patch_size 32 does not fit unet-classic"),
])  # fmt: skip
def test_train_rejects_settings_that_do_not_fit_before_training(tmp_path, overrides, message):
    with pytest.raises(UnetlabError, match=message):
        train(tiny_config(tmp_path, **overrides))
    assert not (tmp_path / "run").exists()


def test_train_from_python_keeps_the_resume_rules(tmp_path):
    cfg = tiny_config(tmp_path, epochs=1)
    train(cfg)
    with pytest.raises(SettingError, match=r"lr, model_kwargs.base_channels cannot change on resume \(only "):
        train(replace(cfg, epochs=2, lr=0.1, model_kwargs={"base_channels": 8, "depth": 2}), resume=tmp_path / "run")
    assert train(replace(cfg, epochs=2), resume=tmp_path / "run").state.epoch == 2  # epochs may change


def test_best_checkpoint_follows_the_metric_direction(tmp_path):
    result = train(tiny_config(tmp_path, epochs=3, best_metric="loss"))
    losses = [r["val/loss"] for r in records(tmp_path / "run")]
    assert result.state.best == min(losses) and result.state.best_epoch == 1 + losses.index(min(losses))


def test_deep_supervision_trains_the_auxiliary_heads(tmp_path):
    snapshots = []

    def keep(state, model):
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith("aux_heads.")})

    cfg = tiny_config(tmp_path, epochs=1, model_kwargs={"base_channels": 4, "depth": 4, "deep_supervision": True})
    assert train(cfg, on_step=keep).stopped == "finished"
    assert sorted(snapshots[0]) == [f"aux_heads.{i}.{p}" for i in (0, 1) for p in ("bias", "weight")]  # levels 1, 2
    assert all(not torch.equal(snapshots[0][k], snapshots[-1][k]) for k in snapshots[0]), "an auxiliary head was idle"


def test_the_run_folder_records_its_split(tmp_path):
    from folder_data import box_mask, write_pairs

    data = write_pairs(tmp_path / "data", {str(i): box_mask(32, 32, (4, 4, 20, 20 + i)) for i in range(5)})
    cfg = tiny_config(tmp_path, epochs=1, data=DataConfig(source=str(data), patch_size=32, val_fraction=0.4))
    train(cfg)
    split = recorded_split(tmp_path / "run")
    assert split["source"] == str(data) and len(split["train"]) == 3 and len(split["val"]) == 2
    names = sorted(image.stem for image, _ in split["train"] + split["val"])
    assert names == ["0", "1", "2", "3", "4"]
    assert all(image.is_file() and mask.is_file() for image, mask in split["val"])
    moved = recorded_split(tmp_path / "run", source=tmp_path / "elsewhere")  # a moved dataset: the same names there
    assert moved["val"][0][0] == tmp_path / "elsewhere" / split["val"][0][0].relative_to(data)
    train(tiny_config(tmp_path, epochs=1, out=str(tmp_path / "synthetic")))
    assert recorded_split(tmp_path / "synthetic") == {"source": "synthetic-cells", "train": list(range(8)),
                                                      "val": [8, 9]}  # fmt: skip


def test_sigterm_during_validation_stops_within_a_window_batch_and_the_resume_evaluates_first(tmp_path, monkeypatch):
    import unetlab.evaluation.validation as validation

    windows = []
    real = validation.predict_tiled

    def stopping(model, image, **options):
        stop = options["should_stop"]
        windows.append(stop())
        if len(windows) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # the first validation image of epoch 1
        return real(model, image, **options)

    cfg = tiny_config(tmp_path, deterministic=True)
    monkeypatch.setattr(validation, "predict_tiled", stopping)
    result = train(cfg)
    assert result.stopped == "interrupted" and windows == [False]  # the predictor stopped before its first batch
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt").training["state"]
    assert saved["epoch"] == 1 and saved["eval_pending"] and not (tmp_path / "run" / "metrics.jsonl").exists()
    monkeypatch.setattr(validation, "predict_tiled", real)
    train(cfg, resume=tmp_path / "run")
    assert [r["epoch"] for r in records(tmp_path / "run")] == [1, 2]
    train(replace(cfg, out=str(tmp_path / "straight")))
    straight = records(tmp_path / "straight")
    for key in ("val/dice", "val/loss", "train/loss"):
        assert [r[key] for r in records(tmp_path / "run")] == [r[key] for r in straight], key
    for key, value in weights(tmp_path / "straight").items():
        assert torch.equal(weights(tmp_path / "run")[key], value), key
