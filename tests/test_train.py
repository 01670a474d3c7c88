"""The training engine end to end on tiny synthetic data: run folder, exact resume, signals, the NaN guard."""

import json
import os
import signal

import pytest
import torch

from unetlab import UnetlabError
from unetlab.checkpoint import load_checkpoint
from unetlab.config import TrainConfig, resolve_config
from unetlab.data import DataConfig
from unetlab.evaluate import metric_names
from unetlab.train import train


def tiny_config(tmp_path, **overrides) -> TrainConfig:
    data = DataConfig(num_train=8, num_val=2, image_size=40, patch_size=32)
    values = dict(
        model_kwargs={"base_channels": 4, "depth": 2},
        data=data,
        epochs=2,
        batch_size=2,
        workers=0,
        progress=False,
        tensorboard=False,
        samples=1,
        warmup_epochs=0.5,
        out=str(tmp_path / "run"),
    )
    return TrainConfig(**{**values, **overrides})


def test_train_tiny_run_writes_the_run_folder(tmp_path):
    cfg = tiny_config(tmp_path, tensorboard=True)
    result = train(cfg)
    run = tmp_path / "run"
    assert result.stopped == "finished" and result.state.epoch == 2 and result.state.step == 8
    assert (run / "config.yaml").is_file() and (run / "samples" / "epoch_0002.png").is_file()
    assert any((run / "tensorboard").iterdir())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for key in ("train/loss", "val/loss", "val/dice", "val/iou", "val/threshold", "lr", "images_per_s", "elapsed_s"):
        assert isinstance(records[-1][key], float), key
    logged = {k.removeprefix("val/") for k in records[-1] if k.startswith("val/")}
    assert logged == set(metric_names(["background", "cell"], binary=True))  # what --best-metric may name
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best.training["state"]["best_epoch"] in (1, 2) and "optimizer" not in best.training
    assert 0.0 <= best.threshold <= 1.0 and best.model_kwargs["num_classes"] == 1
    assert best.data.class_names == ["background", "cell"]
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last.training["state"]["epoch"] == 2 and last.training["config"]["epochs"] == 2


def test_train_interrupted_and_resumed_ends_with_the_same_weights(tmp_path):
    """On CPU with deterministic algorithms, stopping mid-epoch and resuming changes nothing."""
    whole = train(
        tiny_config(tmp_path / "a", deterministic=True, model_kwargs={"base_channels": 4, "depth": 2, "dropout": 0.3})
    )
    cut = tiny_config(
        tmp_path / "b", deterministic=True, max_steps=3, model_kwargs={"base_channels": 4, "depth": 2, "dropout": 0.3}
    )
    first = train(cut)
    assert first.stopped == "max_steps" and first.state.step == 3 and first.state.batch == 3
    second = train(resolve_config(first_config(first.run_dir), {"max_steps": -1}), resume=first.run_dir)
    assert second.stopped == "finished" and second.state.step == whole.state.step
    a = load_checkpoint(whole.run_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(second.run_dir / "checkpoints" / "last.pt")
    for key, value in a.state_dict.items():
        assert torch.equal(value, b.state_dict[key]), key
    assert a.training["optimizer"]["state"].keys() == b.training["optimizer"]["state"].keys()
    for index, moments in a.training["optimizer"]["state"].items():
        assert torch.equal(moments["exp_avg_sq"], b.training["optimizer"]["state"][index]["exp_avg_sq"])


def first_config(run_dir) -> dict:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt").training["config"]


def test_train_sigterm_saves_a_resumable_checkpoint(tmp_path):
    def send_sigterm(state, _model):
        if state.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    result = train(tiny_config(tmp_path), on_step=send_sigterm)
    assert result.stopped == "interrupted"
    saved = load_checkpoint(result.run_dir / "checkpoints" / "last.pt").training
    assert saved["state"]["step"] == 2 and saved["state"]["batch"] == 2 and "optimizer" in saved
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone again


def test_train_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    def poison(state, model):
        if state.step == 5:  # in the second epoch: last.pt holds the first
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))

    with pytest.raises(UnetlabError, match="the loss became nan at epoch 2.*last good checkpoint"):
        train(tiny_config(tmp_path), on_step=poison)
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert last.training["state"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in last.state_dict.values() if v.is_floating_point())


def test_train_classic_valid_model_crops_the_mask_to_its_output(tmp_path):
    cfg = tiny_config(tmp_path, model="unet-classic", model_kwargs={"base_channels": 2, "depth": 1}, epochs=1,
                      data=DataConfig(num_train=4, num_val=1, image_size=40, patch_size=36))  # fmt: skip
    result = train(cfg)
    assert result.stopped == "finished" and 0.0 <= result.metrics["val/dice"] <= 1.0


def test_train_multiclass_shapes_uses_softmax_and_reports_per_class_dice(tmp_path):
    cfg = tiny_config(tmp_path, epochs=1, data=DataConfig(source="synthetic-shapes", num_train=4, num_val=1,
                                                          image_size=40, patch_size=32))  # fmt: skip
    result = train(cfg)
    ckpt = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    assert ckpt.model_kwargs["num_classes"] == ckpt.data.num_classes > 2 and ckpt.threshold is None
    assert sum(key.startswith("val/dice/") for key in result.metrics) == ckpt.data.num_classes


def test_train_rejects_a_class_count_that_does_not_fit_the_data(tmp_path):
    with pytest.raises(UnetlabError, match="the data has 2 classes but the model is set to num_classes=3"):
        train(tiny_config(tmp_path, model_kwargs={"base_channels": 4, "depth": 2, "num_classes": 3}))


def test_train_rejects_an_unknown_best_metric_before_training(tmp_path):
    with pytest.raises(UnetlabError, match="--best-metric 'f1' is not a validation metric; choose one of loss, dice"):
        train(tiny_config(tmp_path, best_metric="f1"))
    assert not (tmp_path / "run" / "checkpoints").exists()
