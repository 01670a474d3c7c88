"""Optimisers and learning-rate schedules for the training engine.

- `build_optimizer`: Adam, AdamW, or SGD with Nesterov momentum (the paper trains with SGD, momentum 0.99).
- `get_lr(step, ...)`: the learning rate at an optimiser step, a pure function of the step for every schedule
  but reduce-on-plateau, so that it is unit-tested against hand-computed values and resumes exactly.
  - "cosine": linear warm-up, then half a cosine from `lr` to `min_lr` (Loshchilov & Hutter 2017, SGDR).
  - "poly": lr * (1 - step / total) ** 0.9, as nnU-Net (Isensee et al. 2021).
  - "step": lr * gamma ** (step // step_size).
  - "onecycle": warm-up from lr / 25 to lr for 30% of the steps, then cosine down to lr / 1e4 (Smith 2018).
  - "constant": lr throughout (after the warm-up, if any).
- `Plateau`: reduce-on-plateau, which depends on the validation metric and keeps state for resuming.
"""

import functools
import math
from dataclasses import dataclass

import torch

from unetlab.errors import UnetlabError
from unetlab.settings import check_choice

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "poly", "step", "plateau", "onecycle", "constant")


def build_optimizer(name: str, params, lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    """The optimiser `name` over `params`; `momentum` is SGD's (Nesterov) and Adam's beta1."""
    check_choice("optimizer", name, OPTIMIZERS)
    if lr <= 0:
        raise UnetlabError(f"lr={lr} is not valid; the learning rate must be positive, e.g. 1e-3")
    if name == "sgd":
        # Nesterov momentum; momentum 0 is plain SGD (torch refuses Nesterov without momentum)
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay)
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)


def get_lr(
    step: int,
    *,
    schedule: str,
    lr: float,
    total_steps: int,
    warmup_steps: int = 0,
    min_lr: float = 0.0,
    step_size: int = 1,
    gamma: float = 0.1,
    progress: float | None = None,
) -> float:
    """Learning rate for optimiser step `step` (0-based) of `total_steps`.

    Example (cosine, lr 1.0, total 10, warm-up 2, min_lr 0): steps 0, 1 -> 0.5, 1.0 (linear warm-up to lr);
    step 2 -> 1.0; step 6 -> 0.5 * (1 + cos(pi * 4 / 8)) = 0.5; step 10 -> 0.0.

    `progress` in [0, 1] (a run with a time budget: the share of its time spent) places cosine, poly and one-cycle
    by time instead of by step; the warm-up still counts steps, and "step" still decays every `step_size` steps.
    """
    if progress is not None and not (schedule != "onecycle" and step < warmup_steps):
        start = 0 if schedule == "onecycle" else warmup_steps
        step = step if schedule == "step" else start + progress * (total_steps - start)
    if schedule == "onecycle":
        peak = max(1, int(0.3 * total_steps))
        if step < peak:
            return lr / 25 + (lr - lr / 25) * step / peak
        return _cosine(step - peak, total_steps - peak, lr, lr / 1e4)
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "cosine":
        return _cosine(step - warmup_steps, total_steps - warmup_steps, lr, min_lr)
    if schedule == "poly":
        return lr * max(0.0, 1 - (step - warmup_steps) / max(1, total_steps - warmup_steps)) ** 0.9
    if schedule == "step":
        return lr * gamma ** ((step - warmup_steps) // step_size)
    return lr  # constant, and plateau's base rate (scaled by Plateau.factor)


def lr_schedule(cfg, steps_per_epoch: int):
    """The learning rate as a function of the optimiser step, for a `TrainConfig`'s schedule settings."""
    return functools.partial(
        get_lr,
        schedule=cfg.schedule,
        lr=cfg.lr,
        total_steps=cfg.epochs * steps_per_epoch,
        warmup_steps=round(cfg.warmup_epochs * steps_per_epoch),
        min_lr=cfg.min_lr,
        step_size=max(1, round(cfg.step_epochs * steps_per_epoch)),
        gamma=cfg.gamma,
    )


def _cosine(step: int, steps: int, lr: float, min_lr: float) -> float:
    progress = min(1.0, step / max(1, steps))
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class Plateau:
    """Reduce-on-plateau: multiply the rate by `gamma` after `patience` evaluations without improvement.

    `mode` is "max" for metrics such as Dice and "min" for losses. Its fields are its whole state.
    """

    mode: str = "max"
    patience: int = 3
    gamma: float = 0.1
    factor: float = 1.0
    best: float | None = None
    bad_evals: int = 0

    def update(self, value: float) -> None:
        better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
        if better:
            self.best, self.bad_evals = value, 0
            return
        self.bad_evals += 1
        if self.bad_evals > self.patience:
            self.factor *= self.gamma
            self.bad_evals = 0
