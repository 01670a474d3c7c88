"""Training on torchrun: two CPU processes (gloo) take the same steps as one process with their joint batch."""

import subprocess
import sys

import pytest
import torch

from unetlab.cli import main
from unetlab.training.checkpoint import load_checkpoint

# No BatchNorm (its statistics are per process), a per-pixel mean loss, no augmentation (drawn per process batch):
# then DDP's averaged gradient is the single-process gradient of the joint batch.
SETTINGS = ["--num-train", "8", "--num-val", "1", "--image-size", "32", "--patch-size", "32", "--base-channels", "4",
            "--depth", "2", "--norm", "none", "--loss", "ce", "--augment", "none", "--epochs", "2", "--workers", "0",
            "--no-progress", "--no-tensorboard", "--samples", "0", "--deterministic"]  # fmt: skip


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_joint_batch(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517"]
    done = subprocess.run([*torchrun, "-m", "unetlab", "train", *SETTINGS, "--batch-size", "2", "--out",
                           str(tmp_path / "ddp")], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert main(["train", *SETTINGS, "--batch-size", "4", "--out", str(tmp_path / "single")]) == 0
    ddp = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    single = load_checkpoint(tmp_path / "single" / "checkpoints" / "last.pt")
    assert ddp.training["state"]["step"] == single.training["state"]["step"] == 4
    for key, value in single.state_dict.items():
        # the all-reduce sums the two halves of the batch in another order than one process does: float rounding
        torch.testing.assert_close(ddp.state_dict[key], value, rtol=1e-4, atol=1e-6, msg=key)
