"""The machine side of training: device and precision, seeding and RNG state, stop signals, torchrun.

Distributed training: run `torchrun --nproc_per_node N -m unetlab train ...` (add `--nnodes`, `--node_rank` and
`--rdzv_endpoint` for several machines). Each process trains on its share of every epoch's batches (DDP averages
the gradients); rank 0 evaluates, logs and writes checkpoints.
"""

import datetime
import os
import random
import signal
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from unetlab.device import resolve_amp, resolve_device


@dataclass
class Runtime:
    """Where this process trains: its device and autocast dtype, and its place among torchrun's processes."""

    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype, None = full precision
    rank: int = 0
    world_size: int = 1
    owns_group: bool = False  # this process started the process group, and ends it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_runtime(device: str, amp: str) -> Runtime:
    """Pick the device and autocast dtype; join the process group when started by torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        if world_size > 1:
            dev = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
        torch.cuda.set_device(dev)
    owns_group = world_size > 1 and not dist.is_initialized()
    if owns_group:
        # Rank 0 validates alone while the others wait: allow a long validation before timing out.
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=2))
    return Runtime(dev, resolve_amp(amp, dev), rank, world_size, owns_group)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python's, NumPy's and torch's global generators; with `deterministic`, use deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def keyed_generator(device: torch.device, *keys: int) -> torch.Generator:
    """A generator seeded from integer keys (seed, epoch, step, ...): the same keys give the same stream."""
    seed = 0
    for key in keys:
        seed = (seed * 1_000_003 + int(key)) % 2**63
    return torch.Generator(device=device).manual_seed(seed)


def rng_state() -> dict:
    """The global RNG states (dropout draws from torch's), as plain types a weights-only load accepts."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    """Restore the global generators from `rng_state()`'s dict."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


class StopSignal:
    """Turns the first Ctrl-C or SIGTERM into a request to stop after the current step; a second one aborts.

    `signum` is the signal received, or None.
    """

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\n{signal.Signals(signum).name}: saving a resumable checkpoint after this step (again to abort)")

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def any_rank(flag: bool, runtime: Runtime) -> bool:
    """True when `flag` is set on any process (all processes must call this together)."""
    if not runtime.distributed:
        return flag
    value = torch.tensor([float(flag)], device=runtime.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
