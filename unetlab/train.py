"""The training engine: a plain loop written out, with no training framework.

Each optimiser step: learning rate -> forward (autocast) -> loss -> backward -> clip -> step -> log; at the end of
an epoch: evaluate every `eval_every` epochs, keep the best checkpoint, stop early after `patience` evaluations
without improvement, and write `checkpoints/last.pt`.

Exact resumption. Every random draw is keyed, not carried: the epoch's order from (seed, epoch), each patch from
(seed, epoch, index) inside the dataset, each batch's augmentation from (seed, step); dropout draws from torch's
global generator, whose state each checkpoint keeps. A checkpoint written mid-epoch (Ctrl-C, SIGTERM,
`max_steps`) records how many batches of the epoch are done, so `--resume` continues with the very next batch.
"""

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from unetlab.checkpoint import load_training_checkpoint, save_checkpoint
from unetlab.config import TrainConfig, save_config
from unetlab.data import build_datasets
from unetlab.data.transforms import build_augmentation
from unetlab.errors import UnetlabError
from unetlab.evaluate import evaluate, metric_names
from unetlab.losses import build_loss
from unetlab.models import create_model
from unetlab.models.blocks import center_crop
from unetlab.optim import Plateau, build_optimizer, get_lr
from unetlab.run_log import RunLogger
from unetlab.runtime import (
    StopSignal,
    any_rank,
    keyed_generator,
    rng_state,
    seed_everything,
    set_rng_state,
    setup_runtime,
)


@dataclass
class TrainState:
    """What changes while training; saved in every checkpoint."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # batches done in the current epoch (non-zero only in a mid-epoch checkpoint)
    step: int = 0  # optimiser steps done
    best: float | None = None  # best value of cfg.best_metric so far
    best_epoch: int = -1
    bad_evals: int = 0  # evaluations since the best one (early stopping)
    threshold: float | None = None  # binary models: the validation-chosen decision threshold
    elapsed: float = 0.0  # seconds of training in earlier sessions


@dataclass
class TrainResult:
    run_dir: Path
    state: TrainState
    metrics: dict  # the last evaluation's record
    stopped: str  # "finished", "early stopping", "interrupted" or "max_steps"
    is_main: bool = True  # rank 0 (the process that logs and writes checkpoints)


def train(cfg: TrainConfig, resume: str | Path | None = None, on_step=None) -> TrainResult:
    """Train `cfg.model` on `cfg.data`, writing the run folder; continue a run when `resume` names one.

    `on_step(state, model)` is called after each optimiser step (tests use it to interrupt a run).
    """
    runtime = setup_runtime(cfg.device, cfg.amp)
    ckpt = load_training_checkpoint(resume) if resume else None
    run_dir = ckpt.path.parent.parent if ckpt else Path(cfg.out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}")
    seed_everything(cfg.seed, cfg.deterministic)
    data_cfg = cfg.data
    if ckpt and ckpt.data is not None:  # the normalisation the weights were trained with, not a recomputed one
        data_cfg = replace(data_cfg, mean=ckpt.data.mean, std=ckpt.data.std)
    train_ds, val_ds, info = build_datasets(data_cfg)
    model_kwargs = _model_kwargs(cfg, info)
    model = create_model(cfg.model, **model_kwargs)
    names = metric_names(info.class_names or [str(k) for k in range(info.num_classes)], model.num_classes == 1)
    if cfg.best_metric not in names:
        raise UnetlabError(
            f"--best-metric {cfg.best_metric!r} is not a validation metric; choose one of {', '.join(names)}"
        )
    if model.padding == "valid" and model.valid_input_size(cfg.data.patch_size) != cfg.data.patch_size:
        try:
            model.output_size(cfg.data.patch_size)
        except UnetlabError as exc:
            raise UnetlabError(f"--patch-size {cfg.data.patch_size} does not fit {cfg.model}: {exc}") from None
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(runtime.device, memory_format=memory_format)
    loss_fn = build_loss(cfg.loss, model.num_classes, class_weights=cfg.class_weights)
    augment = build_augmentation(cfg.augment)
    optimizer = build_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay, cfg.momentum)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)
    steps_per_epoch = _batches_per_epoch(len(train_ds), cfg, runtime) // cfg.accumulate
    if steps_per_epoch < 1:
        raise UnetlabError(
            f"the training set has {len(train_ds)} items, too few for one step of --batch-size {cfg.batch_size} "
            f"x --accumulate {cfg.accumulate} x {runtime.world_size} process(es); lower them or add data"
        )
    lr_args = dict(
        schedule=cfg.schedule,
        lr=cfg.lr,
        total_steps=cfg.epochs * steps_per_epoch,
        warmup_steps=round(cfg.warmup_epochs * steps_per_epoch),
        min_lr=cfg.min_lr,
        step_size=max(1, round(cfg.step_epochs * steps_per_epoch)),
        gamma=cfg.gamma,
    )
    plateau = Plateau("min" if cfg.best_metric == "loss" else "max", round(cfg.step_epochs), cfg.gamma)
    state = TrainState()
    if ckpt:
        model.load_state_dict(ckpt.state_dict)
        optimizer.load_state_dict(ckpt.training["optimizer"])
        scaler.load_state_dict(ckpt.training["scaler"])
        plateau = Plateau(**ckpt.training["plateau"])
        state = TrainState(**ckpt.training["state"])
    net = model
    if runtime.distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[runtime.device] if runtime.device.type == "cuda" else None
        )
    if cfg.compile:
        net = torch.compile(net)

    logger = None
    if runtime.is_main:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        logger = RunLogger(run_dir, cfg.tensorboard)
        params = sum(p.numel() for p in model.parameters())
        print(
            f"unetlab train: {cfg.model} {model_kwargs} ({params:,} parameters) on {runtime.device}"
            f"{f' x {runtime.world_size}' if runtime.distributed else ''}, amp {runtime.amp_dtype}, run {run_dir}",
            flush=True,  # seen at once when the output goes to a log file
        )

    def save(path_name: str, with_optimizer: bool = True) -> None:
        training = {"config": cfg.to_dict(), "state": asdict(state), "plateau": asdict(plateau)}
        if with_optimizer:
            training |= {"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "rng": rng_state()}
        save_checkpoint(run_dir / "checkpoints" / path_name, model, info, state.threshold, training)

    if ckpt:
        set_rng_state(ckpt.training["rng"])  # last: building the model and loaders above drew from it
    record, stopped, session_start, images_seen, train_time = {}, "finished", time.time(), 0, 0.0
    loss_sum, loss_count = torch.zeros((), device=runtime.device), 0
    with StopSignal() as stop:
        while state.epoch < cfg.epochs:
            train_ds.set_epoch(state.epoch)
            loader = _loader(train_ds, cfg, runtime, state.epoch, state.batch)
            net.train()
            bar = tqdm(
                total=steps_per_epoch,
                initial=state.batch // cfg.accumulate,
                leave=False,
                dynamic_ncols=True,
                desc=f"epoch {state.epoch + 1}/{cfg.epochs}",
                disable=not (cfg.progress and runtime.is_main),
            )
            tic = time.time()
            for i, batch in enumerate(loader, start=state.batch):
                batch = {k: v.to(runtime.device, non_blocking=True) for k, v in batch.items()}
                batch = augment(batch, keyed_generator(runtime.device, cfg.seed, state.step, i % cfg.accumulate))
                image = batch["image"].contiguous(memory_format=memory_format)
                with torch.autocast(
                    runtime.device.type, dtype=runtime.amp_dtype, enabled=runtime.amp_dtype is not None
                ):
                    logits = net(image)
                size = logits.shape[-2:]  # smaller than the patch for valid-convolution models
                mask, weight = center_crop(batch["mask"], size), batch.get("weight")
                loss = loss_fn(logits.float(), mask, None if weight is None else center_crop(weight, size))
                if not torch.isfinite(loss) and not scaler.is_enabled():
                    raise UnetlabError(_diverged_message(loss, state, run_dir))
                scaler.scale(loss / cfg.accumulate).backward()
                loss_sum += loss.detach()
                loss_count += 1
                images_seen += image.shape[0] * runtime.world_size
                if (i + 1) % cfg.accumulate:
                    continue
                lr = get_lr(state.step, **lr_args) * plateau.factor
                for group in optimizer.param_groups:
                    group["lr"] = lr
                if cfg.clip_grad > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                state.batch = i + 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}")
                if on_step is not None:
                    on_step(state, model)
                budget_spent = cfg.max_steps >= 0 and state.step >= cfg.max_steps
                if any_rank(stop.requested or budget_spent, runtime):
                    stopped = "interrupted" if stop.requested else "max_steps"
                    break
            bar.close()
            train_time += time.time() - tic
            if stopped != "finished":
                break
            state.epoch, state.batch = state.epoch + 1, 0
            if state.epoch % cfg.eval_every == 0 or state.epoch == cfg.epochs:
                record = _evaluate_and_log(model, val_ds, info, loss_fn, cfg, runtime, state, plateau, logger, save)
                record |= {
                    "train/loss": (loss_sum / max(loss_count, 1)).item(),
                    "lr": lr,
                    "images_per_s": images_seen / max(train_time, 1e-9),
                    "elapsed_s": state.elapsed + time.time() - session_start,
                }
                loss_sum.zero_()
                loss_count = 0
                if runtime.is_main:
                    logger.log(record)
                    print(_format_record(record), flush=True)
                if any_rank(0 <= cfg.patience <= state.bad_evals, runtime):
                    stopped = "early stopping"
            if runtime.is_main:
                save("last.pt")
            if stopped != "finished" or stop.requested:
                stopped = "interrupted" if stop.requested else stopped
                break
    state.elapsed += time.time() - session_start
    if runtime.is_main:
        if stopped in ("interrupted", "max_steps"):
            save("last.pt")
            print(
                f"{stopped}: saved {run_dir / 'checkpoints' / 'last.pt'}; continue with "
                f"`unetlab train --resume {run_dir}`",
                flush=True,
            )
        logger.close()
    return TrainResult(run_dir, state, record, stopped, runtime.is_main)


def _evaluate_and_log(model, val_ds, info, loss_fn, cfg, runtime, state, plateau, logger, save) -> dict:
    """Validate (rank 0), update best / early-stopping / plateau state, write best.pt and the sample grid."""
    record = {"epoch": state.epoch, "step": state.step}
    if runtime.is_main:
        metrics, threshold, samples = evaluate(
            model, val_ds, loss_fn, runtime, info.class_names, cfg.samples, cfg.workers
        )
        record |= {f"val/{k}": v for k, v in metrics.items()}
        if threshold is not None:
            state.threshold = threshold
        value = metrics[cfg.best_metric]  # NaN when no image has the class, nor a prediction of it: no information
        if not math.isnan(value):
            plateau.update(value)
        better = not math.isnan(value) and (
            state.best is None or (value < state.best if cfg.best_metric == "loss" else value > state.best)
        )
        if better:
            state.best, state.best_epoch, state.bad_evals = value, state.epoch, 0
            save("best.pt", with_optimizer=False)
        else:
            state.bad_evals += 1
        logger.samples(samples, state.epoch, state.step)
    if runtime.distributed:  # every process follows rank 0's early-stopping and plateau decisions
        shared = [state.bad_evals, state.best, state.best_epoch, plateau.factor, state.threshold]
        torch.distributed.broadcast_object_list(shared, src=0)
        state.bad_evals, state.best, state.best_epoch, plateau.factor, state.threshold = shared
    return record


def _model_kwargs(cfg: TrainConfig, info) -> dict:
    """The model options: the config's, with channels and classes taken from the data where not given."""
    kwargs = dict(cfg.model_kwargs)
    kwargs.setdefault("in_channels", info.in_channels)
    kwargs.setdefault("num_classes", 1 if info.num_classes == 2 else info.num_classes)
    expected = (1, 2) if info.num_classes == 2 else (info.num_classes,)
    if kwargs["num_classes"] not in expected:
        raise UnetlabError(
            f"the data has {info.num_classes} classes but the model is set to num_classes="
            f"{kwargs['num_classes']}; use {' or '.join(map(str, expected))}, or leave it out"
        )
    if kwargs["in_channels"] != info.in_channels:
        raise UnetlabError(
            f"the images have {info.in_channels} channels but the model is set to in_channels="
            f"{kwargs['in_channels']}; leave it out to follow the data"
        )
    return kwargs


def _batches_per_epoch(items: int, cfg: TrainConfig, runtime) -> int:
    return items // (cfg.batch_size * runtime.world_size)


def _loader(dataset, cfg: TrainConfig, runtime, epoch: int, start: int) -> DataLoader:
    """This process's batches of `epoch`, from batch `start` on: a keyed permutation, split across processes."""
    order = torch.randperm(len(dataset), generator=keyed_generator(torch.device("cpu"), cfg.seed, epoch))
    per_step = cfg.batch_size * runtime.world_size
    usable = _batches_per_epoch(len(dataset), cfg, runtime) // cfg.accumulate * cfg.accumulate
    batches = [
        order[b * per_step : (b + 1) * per_step][runtime.rank :: runtime.world_size].tolist() for b in range(usable)
    ]
    # An own generator: without one, each DataLoader draws its workers' base seed from torch's global generator,
    # which dropout uses too, and a resumed run (which makes an extra loader mid-epoch) would drift from the
    # uninterrupted one.
    generator = keyed_generator(torch.device("cpu"), cfg.seed, epoch, start)
    pin = runtime.device.type == "cuda"
    return DataLoader(
        dataset, batch_sampler=batches[start:], num_workers=cfg.workers, generator=generator, pin_memory=pin
    )


def _diverged_message(loss, state: TrainState, run_dir: Path) -> str:
    return (
        f"the loss became {loss.item()} at epoch {state.epoch + 1}, step {state.step + 1}; training stopped "
        f"without saving these weights (the last good checkpoint is {run_dir / 'checkpoints' / 'last.pt'}). "
        "Lower --lr, set --clip-grad, or check the images for NaN/inf values"
    )


def _format_record(record: dict) -> str:
    keys = ["train/loss", "val/loss", "val/dice", "val/iou", "val/threshold", "lr", "images_per_s"]
    parts = [
        f"{k} {record[k]:.4g}" for k in keys if isinstance(record.get(k), float | int) and not math.isnan(record[k])
    ]
    return f"epoch {record['epoch']} step {record['step']}: " + ", ".join(parts)
