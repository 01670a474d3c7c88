"""The batches of each epoch: a keyed order, resumable mid-epoch and split across processes.

The order of epoch e is the permutation drawn from (seed, e), so it needs no saved state: a run resumed after
batch b of epoch e takes the same permutation and starts at batch b. Under torchrun each optimiser step takes
`batch_size * world_size` items and process r takes every world_size-th of them from r on, so the processes
together see the batch one process would see with the joint batch size.
"""

import signal

import torch
from torch.utils.data import DataLoader

from unetlab.settings import SettingError
from unetlab.training.runtime import keyed_generator


def steps_per_epoch(items: int, cfg, runtime) -> int:
    """Optimiser steps in an epoch of `items` (incomplete batches and accumulations are dropped); at least 1.

    Raises:
        UnetlabError: when the items do not fill one step, with the settings to change.
    """
    steps = items // (cfg.batch_size * runtime.world_size) // cfg.accumulate
    if steps < 1:
        raise SettingError(
            lambda n: (
                f"the training set has {items} patch(es), too few for one step of {n('batch_size')} "
                f"{cfg.batch_size} x {n('accumulate')} {cfg.accumulate} x {runtime.world_size} process(es); lower "
                f"them, or raise {n('data.patches_per_image')}"
            ),
            ["batch_size", "accumulate", "data.patches_per_image"],
        )
    return steps


def epoch_loader(dataset, cfg, runtime, epoch: int, start: int) -> DataLoader:
    """This process's batches of `epoch`, from batch `start` on (`cfg`: a TrainConfig, `runtime`: a Runtime)."""
    order = torch.randperm(len(dataset), generator=keyed_generator(torch.device("cpu"), cfg.seed, epoch))
    per_step = cfg.batch_size * runtime.world_size
    usable = steps_per_epoch(len(dataset), cfg, runtime) * cfg.accumulate
    batches = [order[b * per_step : (b + 1) * per_step][runtime.rank :: runtime.world_size].tolist()
               for b in range(usable)]  # fmt: skip
    # An own generator: without one, each DataLoader draws its workers' base seed from torch's global generator,
    # which dropout uses too, and a resumed run (which makes an extra loader mid-epoch) would drift from the
    # uninterrupted one.
    generator = keyed_generator(torch.device("cpu"), cfg.seed, epoch, start)
    pin = runtime.device.type == "cuda"
    return DataLoader(dataset, batch_sampler=batches[start:], num_workers=cfg.workers, generator=generator,
                      pin_memory=pin, worker_init_fn=_ignore_sigint)  # fmt: skip


def _ignore_sigint(_worker_id: int) -> None:
    """Workers leave Ctrl-C to the main process, which saves the checkpoint."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
