"""One training at a time in a run folder: its lock, stale locks, and what a killed run leaves behind."""

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace

import pytest
from test_train import records, tiny_config

from unetlab import UnetlabError
from unetlab.training.engine import train
from unetlab.training.lock import LOCK_NAME, RunLock


def write_lock(run_dir, pid: int, host: str | None = None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    owner = {"pid": pid, "host": host or socket.gethostname(), "started": "2026-12-01 10:00:00"}
    (run_dir / LOCK_NAME).write_text(json.dumps(owner))


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_a_second_training_into_a_live_run_folder_names_the_live_one(tmp_path):
    run = tmp_path / "run"
    write_lock(run, os.getpid())  # this very process: alive
    with pytest.raises(UnetlabError, match=rf"is in use by another training \(process {os.getpid()}, started") as e:
        train(tiny_config(tmp_path, epochs=1))
    assert "delete" not in str(e.value)
    write_lock(run, 1, host="elsewhere")  # another machine's process cannot be checked: its lock holds
    with pytest.raises(UnetlabError, match="process 1 on host elsewhere"):
        train(tiny_config(tmp_path, epochs=1))


def test_a_resume_takes_the_lock_too_and_the_lock_goes_with_the_run(tmp_path):
    cfg = tiny_config(tmp_path, epochs=1)
    train(cfg)
    run = tmp_path / "run"
    assert not (run / LOCK_NAME).exists()  # given back at the end
    with RunLock(run):  # a live training of that run
        with pytest.raises(UnetlabError, match="is in use by another training"):
            train(replace(cfg, epochs=2), resume=run)
    assert train(replace(cfg, epochs=2), resume=run).state.epoch == 2


def test_a_stale_lock_is_taken_over(tmp_path):
    write_lock(tmp_path / "run", dead_pid())
    assert train(tiny_config(tmp_path, epochs=1)).stopped == "finished"


def test_a_failed_start_leaves_no_folder_and_no_lock(tmp_path):
    with pytest.raises(UnetlabError):
        train(tiny_config(tmp_path, best_metric="f1"))
    assert not (tmp_path / "run").exists()


def test_resume_removes_dead_writers_temporary_files_and_duplicate_records(tmp_path):
    cfg = tiny_config(tmp_path, epochs=1)
    train(cfg)
    run = tmp_path / "run"
    orphan = run / "checkpoints" / ".last.pt.abc123.tmp"
    orphan.write_bytes(b"\0" * 1000)  # what kill -9 during a checkpoint write leaves
    # A session that logged epoch 2 and died before writing its checkpoint:
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 2, "step": 8, "val/dice": 0.5}) + "\n")
    train(replace(cfg, epochs=2), resume=run)
    assert not orphan.exists()
    assert [(r["epoch"], r["step"]) for r in records(run)] == [(1, 4), (2, 8)]  # one record per evaluation
    assert records(run)[-1]["val/dice"] != 0.5
