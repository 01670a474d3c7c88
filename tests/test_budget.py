"""Training to a time budget: durations, the deadline and its reserve, the schedule by time, validation's share."""

import json

import pytest

from unetlab.data.config import DataConfig
from unetlab.training.budget import TimeBudget, format_duration, parse_duration
from unetlab.training.config import TrainConfig
from unetlab.training.engine import train
from unetlab.training.optim import get_lr


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("20m", 1200), ("1.5h", 5400), ("1h30m", 5400), ("600", 600), ("2m 5s", 125)]
)
def test_durations_read_as_seconds(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "", "0m", "-5m", "5 minutes", "m"])
def test_what_is_not_a_duration_is_refused(text):
    assert parse_duration(text) is None
    with pytest.raises(ValueError, match="time_budget .* is not valid: it must be a duration such as 90s"):
        TrainConfig(time_budget=text)


def test_durations_print_readably():
    assert [format_duration(s) for s in (42, 750, 3900)] == ["42s", "12m 30s", "1h 05m"]


def test_the_deadline_keeps_a_reserve_for_the_final_evaluation():
    budget = TimeBudget(1000.0)
    assert budget.deadline(0.0) == 1000 - 20 - 5  # 2% of the budget, and 5 s for the checkpoints
    assert budget.deadline(60.0) == 1000 - 60 - 5  # a measured evaluation of a minute
    assert budget.progress(0.0, 60.0) == 0 and budget.progress(935.0, 60.0) == 1 and budget.progress(2000, 0) == 1


def test_validation_keeps_to_its_share_of_the_time():
    budget = TimeBudget(1000.0, val_share=0.1)
    assert not budget.should_validate(50.0, 0.0, None, final=False)  # before a tenth of the budget
    assert budget.should_validate(100.0, 0.0, None, final=False)  # the first one, to measure it
    assert not budget.should_validate(150.0, 10.0, 10.0, final=False)  # 20 s of 150 would be 13%
    assert budget.should_validate(200.0, 10.0, 10.0, final=False)  # 20 s of 200 is 10%
    assert budget.should_validate(101.0, 90.0, 90.0, final=True)  # the final evaluation always runs


def test_the_schedule_spans_the_time_not_the_steps():
    kwargs = dict(schedule="cosine", lr=1.0, total_steps=100, warmup_steps=10)
    assert get_lr(5, **kwargs, progress=0.9) == get_lr(5, **kwargs)  # the warm-up still counts steps
    assert get_lr(50, **kwargs, progress=0.5) == pytest.approx(0.5)  # half the time: half way down the cosine
    assert get_lr(11, **kwargs, progress=1.0) == pytest.approx(0.0)  # time is up, whatever the step


def test_a_run_with_a_time_budget_ends_on_time_with_a_final_evaluation(tmp_path):
    cfg = TrainConfig(
        model_kwargs={"base_channels": 4, "depth": 2}, data=DataConfig(num_train=8, num_val=2, image_size=40,
        patch_size=32), epochs=100_000, batch_size=2, progress=False, tensorboard=False, samples=0,
        time_budget="6s", out=str(tmp_path / "run"),
    )  # fmt: skip
    result = train(cfg)
    assert result.stopped == "time budget"
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    last = records[-1]
    assert "val/dice" in last and last["val_s"] > 0 and last["epoch"] == result.state.epoch  # the final evaluation
    # The budget holds the run, with slack for a machine busy with other work (the reserve is 5 s + 2% of it).
    assert last["elapsed_s"] < 6 + 10
    assert last["lr"] < 0.05 * cfg.lr  # the schedule reached its end with the time
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()
    assert sum(r.get("val_s", 0.0) for r in records) <= 0.1 * last["elapsed_s"] + last["val_s"]
