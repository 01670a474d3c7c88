"""The training engine: a plain loop written out, with no training framework.

Each optimiser step: learning rate -> forward (autocast) -> loss -> backward -> clip -> step -> log; at the end of
an epoch: evaluate every `eval_every` epochs, keep the best checkpoint, stop early after `patience` evaluations
without improvement, and write `checkpoints/last.pt`.

- Exact resumption. Every random draw is keyed, not carried: the epoch's order from (seed, epoch), each patch from
  (seed, epoch, index) inside the dataset, each batch's augmentation from (seed, step, rank); dropout draws from
  torch's global generator, whose state each checkpoint keeps. A checkpoint written mid-epoch (Ctrl-C, SIGTERM,
  `max_steps`) records how many batches of the epoch are done, so `--resume` continues with the very next batch.
- Few host synchronisations: the loss is checked for NaN/inf on the device and read back every `SYNC_EVERY`
  steps, at the end of an epoch and before any checkpoint is written, so non-finite weights are never saved.
"""

import contextlib
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset
from tqdm import tqdm

from unetlab.data import build_datasets
from unetlab.data.transforms import build_augmentation
from unetlab.device import available_memory
from unetlab.errors import StopRequested, UnetlabError
from unetlab.evaluation.metrics import is_better, metric_of
from unetlab.evaluation.validation import evaluate, metric_names
from unetlab.models import create_model
from unetlab.models.blocks import center_crop
from unetlab.models.summary import training_step_bytes
from unetlab.settings import SettingError, settings_under
from unetlab.training.batches import epoch_loader, steps_per_epoch
from unetlab.training.budget import TimeBudget, parse_duration
from unetlab.training.checkpoint import load_training_checkpoint, save_checkpoint
from unetlab.training.config import TrainConfig, model_kwargs_for_data, save_config
from unetlab.training.lock import RunLock
from unetlab.training.losses import DeepSupervisionLoss, build_loss
from unetlab.training.optim import Plateau, build_optimizer, lr_schedule
from unetlab.training.resume import check_resume
from unetlab.training.run_log import RunLogger, format_record, new_run_dir, remove_orphans, save_split
from unetlab.training.runtime import (
    StopSignal,
    any_rank,
    keyed_generator,
    rng_state,
    seed_everything,
    set_rng_state,
    setup_runtime,
)

SYNC_EVERY = 10  # optimiser steps between reads of the loss on the host (NaN check, progress bar, DDP stop vote)


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
    elapsed: float = 0.0  # seconds of training, all sessions
    loss_sum: float = 0.0  # training losses since the last evaluation (summed; kept so a resume logs the same mean)
    loss_count: int = 0
    val_seconds: float = 0.0  # spent validating, all sessions
    eval_pending: bool = False  # a stop came during the evaluation that closes `epoch`: a resume runs it first
    last_val_cost: float | None = None  # seconds the last evaluation took


@dataclass
class TrainResult:
    run_dir: Path
    state: TrainState
    metrics: dict  # the last evaluation's record
    stopped: str  # "finished", "time budget", "early stopping", "interrupted" or "max_steps"
    signal: int | None = None  # the signal that interrupted the run (SIGINT, SIGTERM)
    is_main: bool = True  # rank 0 (the process that logs and writes checkpoints)


def train(cfg: TrainConfig, resume: str | Path | None = None, on_step=None) -> TrainResult:
    """Train `cfg.model` on `cfg.data`, writing the run folder, or continue the run that `resume` names.

    Args:
        cfg: the resolved settings (for a resumed run: the run's own, with `epochs` perhaps raised).
        resume: a run folder or a `last.pt` to continue from.
        on_step: called as `on_step(state, model)` after each optimiser step (tests use it to interrupt a run).

    Returns:
        The run folder, the final `TrainState`, the last evaluation's record and why training stopped.

    Raises:
        UnetlabError: for settings that do not fit the data or model, an unusable run folder, or a loss that
            became NaN/inf (the last good checkpoint stays).
    """
    run = _Session(cfg, resume)
    try:
        with StopSignal() as stop:
            if run.state.eval_pending:  # the evaluation a stop interrupted, before any new step
                run.close_epoch(stop, due=True)
            while run.state.epoch < cfg.epochs and run.stopped == "finished" and stop.signum is None:
                run.train_epoch(stop, on_step)
                if run.stopped in ("finished", "time budget"):
                    run.end_epoch(stop)
            if stop.signum is not None:
                run.stopped = "interrupted"
        return run.finish(stop.signum)
    finally:
        run.release()


class _Session:
    """One training session: everything `train` builds, then its epochs and checkpoints."""

    def __init__(self, cfg: TrainConfig, resume):
        self.cfg, self.runtime = cfg, setup_runtime(cfg.device, cfg.amp)
        ckpt = load_training_checkpoint(resume) if resume else None
        if ckpt:
            check_resume(cfg, ckpt.training["config"])  # the same rule from Python as from `--resume`
        self.run_dir = ckpt.path.parent.parent if ckpt else new_run_dir(cfg.out, self.runtime.is_main)
        self.lock, made = None, not self.run_dir.exists()
        if self.runtime.is_main:  # the run folder is made and locked first, so that no second run can start in it
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.lock = RunLock(self.run_dir).acquire()
            remove_orphans(self.run_dir)
        try:
            self._build(cfg, ckpt)
        except BaseException:
            self.release(remove_if_empty=made)
            raise

    def _build(self, cfg: TrainConfig, ckpt) -> None:
        # Each process draws its own dropout masks (DDP copies rank 0's initial weights to the others).
        seed_everything(cfg.seed + 1_000_003 * self.runtime.rank, cfg.deterministic)
        data_cfg = cfg.data.seeded(cfg.seed)  # a data seed left to the run follows --seed
        if ckpt and ckpt.data is not None:  # the normalisation the weights were trained with, not a recomputed one
            data_cfg = replace(data_cfg, mean=ckpt.data.mean, std=ckpt.data.std)
        if ckpt and not data_cfg.synthetic and not Path(data_cfg.source).exists():
            raise SettingError(
                lambda n: (
                    f"the run's dataset {data_cfg.source} is not there any more; if it moved, resume with "
                    f"{n('data.source')} FOLDER"
                ),
                ["data.source"],
            )
        self.train_ds, self.val_ds, self.info = build_datasets(data_cfg)
        if ckpt and ckpt.data is not None and self.info.to_dict() != ckpt.data.to_dict():  # e.g. --data moved
            now, then = self.info.to_dict(), ckpt.data.to_dict()
            differ = "; ".join(
                f"{k} {now.get(k)} (the run's: {then.get(k)})" for k in now | then if now.get(k) != then.get(k)
            )
            raise UnetlabError(
                f"the data at {data_cfg.source} is not the run's: {differ}; resume with the data the run was trained on"
            )
        self.validate = len(self.val_ds) > 0
        self.eval_ds = self.val_ds  # what each evaluation scores: all validation images, or a fixed subset of them
        if 0 < cfg.val_subset < len(self.val_ds):
            chosen = np.random.default_rng([data_cfg.seed, len(self.val_ds)]).permutation(len(self.val_ds))
            self.eval_ds = Subset(self.val_ds, sorted(chosen[: cfg.val_subset].tolist()))
        self.model_kwargs = model_kwargs_for_data(cfg, self.info, resuming=ckpt is not None)
        with settings_under("model_kwargs"):
            model = create_model(cfg.model, **self.model_kwargs)
        self._check_settings(model)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model = model.to(self.runtime.device, memory_format=self.memory_format)
        self.loss_fn = build_loss(cfg.loss, model.num_classes, class_weights=cfg.class_weights)  # validation's
        self.train_loss = DeepSupervisionLoss(self.loss_fn) if model.deep_supervision else self.loss_fn
        self.augment = build_augmentation(cfg.augment)
        self.optimizer = build_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay, cfg.momentum)
        self.scaler = torch.amp.GradScaler(self.runtime.device.type, enabled=self.runtime.amp_dtype == torch.float16)
        self.steps_per_epoch = steps_per_epoch(len(self.train_ds), cfg, self.runtime)
        self.schedule = lr_schedule(cfg, self.steps_per_epoch)
        self.budget = TimeBudget(parse_duration(cfg.time_budget), cfg.val_share) if cfg.time_budget else None
        direction = "max" if metric_of(cfg.best_metric).higher_is_better else "min"
        self.plateau = Plateau(direction, round(cfg.step_epochs), cfg.gamma)
        self.state = TrainState()
        if ckpt:
            self.model.load_state_dict(ckpt.state_dict)
            self.optimizer.load_state_dict(ckpt.training["optimizer"])
            self.scaler.load_state_dict(ckpt.training["scaler"])
            self.plateau = Plateau(**ckpt.training["plateau"])
            self.state = TrainState(**ckpt.training["state"])
        self.net = self.model
        if self.runtime.distributed:
            ids = [self.runtime.device] if self.runtime.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:
            self.net = torch.compile(self.net)
        self.logger = self._start_logging(ckpt) if self.runtime.is_main else None
        self.stopped, self.record, self.session_steps = "finished", {}, 0
        self.session_start, self.elapsed_before = time.time(), self.state.elapsed
        self.images_seen, self.train_time = 0, 0.0
        self.loss_sum = torch.tensor(self.state.loss_sum, device=self.runtime.device)  # float32, as the losses
        self.loss_count = self.state.loss_count
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=self.runtime.device)  # a NaN/inf loss since...
        self.checked_step = self.state.step  # ...this step
        if ckpt:
            set_rng_state(ckpt.training["rng"])  # last: building the model and data above drew from it

    def _check_settings(self, model) -> None:
        cfg = self.cfg
        if not self.validate and (cfg.schedule == "plateau" or cfg.patience >= 0):
            raise SettingError(
                lambda n: (
                    f"{n('schedule')} plateau and {n('patience')} need a validation set, and this data has none; "
                    f"give validation images ({n('data.val_fraction')}, {n('data.val_list')}, a val/ folder, or "
                    f"{n('data.num_val')} for synthetic data)"
                ),
                ["schedule", "patience", "data.val_fraction", "data.val_list", "data.num_val"],
            )
        if cfg.data.weight_map and cfg.loss in ("dice", "tversky"):
            raise SettingError(
                lambda n: (
                    f"{n('data.weight_map')} weights the cross-entropy term, and {n('loss')} {cfg.loss} has "
                    "none; use dice_ce, ce or focal"
                ),
                ["data.weight_map", "loss"],
            )
        names = metric_names(self.info.class_names or [str(k) for k in range(self.info.num_classes)])
        if cfg.best_metric not in names:
            raise SettingError(
                lambda n: (
                    f"{n('best_metric')} {cfg.best_metric!r} is not a validation score; choose one of "
                    f"{', '.join(names)}"
                ),
                ["best_metric"],
            )
        if model.padding == "valid":
            try:
                model.output_size(cfg.data.patch_size)
            except UnetlabError as exc:
                reason = str(exc)
                raise SettingError(
                    lambda n: f"{n('data.patch_size')} {cfg.data.patch_size} does not fit {cfg.model}: {reason}",
                    ["data.patch_size"],
                ) from None
        self._check_memory(model)

    def _check_memory(self, model) -> None:
        """Refuse a patch size or batch that cannot fit the device, before anything is allocated for it."""
        cfg, size = self.cfg, self.cfg.data.patch_size
        available = available_memory(self.runtime.device)
        needed = training_step_bytes(model, (model.in_channels, size, size), cfg.batch_size)
        # The estimate (float32 activations, no allocator overhead) is refused only when it cannot fit twice over:
        # a step that might fit is left to try.
        if available is not None and needed > 2 * available:
            raise SettingError(
                lambda n: (
                    f"{n('data.patch_size')} {size} with {n('batch_size')} {cfg.batch_size} needs about "
                    f"{needed / 2**30:,.1f} GiB for one training step, and {self.runtime.device} has "
                    f"{available / 2**30:,.1f} GiB free; lower them"
                ),
                ["data.patch_size", "batch_size"],
            )

    def _start_logging(self, ckpt) -> RunLogger:
        cfg, run_dir = self.cfg, self.run_dir
        try:
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            save_config(cfg, run_dir / "config.yaml")
            save_split(run_dir, self.train_ds, self.val_ds)
        except OSError as exc:
            raise UnetlabError(
                f"cannot write the run folder {run_dir} ({exc.strerror}); choose another run folder (out)"
            ) from None
        params = sum(p.numel() for p in self.model.parameters())
        processes = f" x {self.runtime.world_size}" if self.runtime.distributed else ""
        print(
            f"unetlab train: {cfg.model} {self.model_kwargs} ({params:,} parameters) on {self.runtime.device}"
            f"{processes}, amp {self.runtime.amp_dtype}, run {run_dir}",
            flush=True,
        )
        if not self.validate:
            print("note: no validation set, so no best.pt and no chosen threshold (binary models use 0.5)", flush=True)
        side = max((max(size) for size in self.train_ds.source.sizes), default=0)
        if cfg.data.patch_size > side:
            print(
                f"note: patches of {cfg.data.patch_size} px are larger than every training image (the largest side is "
                f"{side} px): they are mirror-padded, which costs time; a patch size of {side} covers the images",
                flush=True,
            )
        if ckpt and self.state.epoch >= cfg.epochs:
            print(f"note: the run has done {self.state.epoch} of its {cfg.epochs} epochs; raise epochs to go on")
        return RunLogger(run_dir, cfg.tensorboard, resumed_at=self.state.step if ckpt else None)

    def lr(self) -> float:
        factor = self.plateau.factor if self.cfg.schedule == "plateau" else 1.0
        if self.budget is None:
            return self.schedule(self.state.step) * factor
        progress = self.budget.progress(self.elapsed(), self.state.last_val_cost or 0.0)
        return self.schedule(self.state.step, progress=progress) * factor

    def out_of_time(self) -> bool:
        """A run with a time budget has reached the time to stop taking steps (the same answer on every rank)."""
        if self.budget is None:
            return False
        late = self.elapsed() >= self.budget.deadline(self.state.last_val_cost or 0.0)
        return any_rank(late, self.runtime) if self.runtime.distributed else late

    def train_epoch(self, stop: StopSignal, on_step) -> None:
        """The epoch's remaining batches; sets `self.stopped` when a signal or `max_steps` ends the session."""
        cfg, runtime, state = self.cfg, self.runtime, self.state
        self.train_ds.set_epoch(state.epoch)
        self.net.train()
        show = cfg.progress and runtime.is_main
        bar = tqdm(
            total=self.steps_per_epoch,
            initial=state.batch // cfg.accumulate,
            leave=False,
            dynamic_ncols=True,
            desc=f"epoch {state.epoch + 1}/{cfg.epochs}",
            disable=not show,
        )
        tic = time.time()
        for i, batch in enumerate(
            epoch_loader(self.train_ds, cfg, runtime, state.epoch, state.batch), start=state.batch
        ):
            last_micro = (i + 1) % cfg.accumulate == 0
            # DDP: gradients of all but the last micro-batch of a step stay local (one all-reduce per step)
            sync = contextlib.nullcontext() if last_micro or not runtime.distributed else self.net.no_sync()
            with sync:
                loss = self._forward_backward(batch, i)
            if not last_micro:
                continue
            lr = self.lr()
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            if cfg.clip_grad > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            state.step, state.batch, self.session_steps = state.step + 1, i + 1, self.session_steps + 1
            bar.update(1)
            if state.step % SYNC_EVERY == 0:
                self.check_finite()
                if show:
                    bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}")
            if on_step is not None:
                on_step(state, self.model)
            vote = not runtime.distributed or state.step % SYNC_EVERY == 0  # all ranks vote at the same steps
            if vote and any_rank(stop.signum is not None, runtime):
                self.stopped = "interrupted"
            elif 0 <= cfg.max_steps <= self.session_steps:  # the same step on every rank
                self.stopped = "max_steps"
            elif vote and self.out_of_time():
                self.stopped = "time budget"
            if self.stopped != "finished":
                break
        bar.close()
        self.train_time += time.time() - tic

    def _forward_backward(self, batch: dict, i: int) -> torch.Tensor:
        cfg, runtime = self.cfg, self.runtime
        batch = {k: v.to(runtime.device, non_blocking=True) for k, v in batch.items()}
        key = (cfg.seed, self.state.step, i % cfg.accumulate, runtime.rank)
        batch = self.augment(batch, keyed_generator(runtime.device, *key))
        image = batch["image"].contiguous(memory_format=self.memory_format)
        with torch.autocast(runtime.device.type, dtype=runtime.amp_dtype, enabled=runtime.amp_dtype is not None):
            outputs = self.net(image, all_levels=True) if self.model.deep_supervision else self.net(image)
        logits = [o.float() for o in outputs] if isinstance(outputs, list) else outputs.float()
        size = image.shape[-2:] if isinstance(logits, list) else logits.shape[-2:]  # valid models: smaller output
        weight = batch.get("weight")
        weight = None if weight is None else center_crop(weight, size)
        loss = self.train_loss(logits, center_crop(batch["mask"], size), weight)
        if not self.scaler.is_enabled():  # fp16's scaler skips non-finite steps by itself
            self.nonfinite |= ~torch.isfinite(loss)
        self.scaler.scale(loss / cfg.accumulate).backward()
        self.loss_sum += loss.detach()
        self.loss_count += 1
        self.images_seen += image.shape[0] * runtime.world_size
        return loss

    def check_finite(self) -> None:
        """Raise (without saving anything) when a loss since the last check was NaN or inf."""
        if self.nonfinite.item():
            last = self.run_dir / "checkpoints" / "last.pt"
            kept = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint had been saved yet"
            raise UnetlabError(
                f"the loss became NaN or inf in epoch {self.state.epoch + 1}, between steps {self.checked_step + 1} "
                f"and {self.state.step}; training stopped without saving these weights ({kept}). Lower the learning "
                "rate (lr), clip the gradient (clip_grad), or check the images for NaN/inf values"
            )
        self.checked_step = self.state.step

    def end_epoch(self, stop: StopSignal) -> None:
        """Close a finished epoch: evaluate when due, write last.pt, decide on early stopping."""
        cfg, state = self.cfg, self.state
        self.check_finite()
        state.epoch, state.batch = state.epoch + 1, 0
        final = state.epoch == cfg.epochs or self.stopped == "time budget"
        if self.budget is not None:
            due = self.budget.should_validate(self.elapsed(), state.val_seconds, state.last_val_cost, final)
        else:
            due = state.epoch % cfg.eval_every == 0 or final
        self.close_epoch(stop, due)

    def close_epoch(self, stop: StopSignal, due: bool) -> None:
        """The evaluation of the epoch just ended (when due), its record and last.pt; a stop during the evaluation
        saves last.pt with the evaluation pending."""
        cfg, state = self.cfg, self.state
        state.eval_pending = False
        if due:
            self.record = {"epoch": state.epoch, "step": state.step}
            if self.validate:
                try:
                    self._evaluate(stop)
                except StopRequested:  # `finish` saves last.pt, which keeps the evaluation pending
                    state.eval_pending, self.stopped = True, "interrupted"
                    return
            if self.loss_count:
                self.record["train/loss"] = (self.loss_sum / self.loss_count).item()
            self.record |= {
                "lr": self.lr(),
                "images_per_s": self.images_seen / max(self.train_time, 1e-9),
                "elapsed_s": self.elapsed(),
            }
            self.loss_sum.zero_()
            self.loss_count = 0
            if self.runtime.is_main:
                self.logger.log(self.record)
                print(format_record(self.record), flush=True)
            patience_out = cfg.patience >= 0 and state.bad_evals >= max(cfg.patience, 1)  # 0: the first bad one
            if self.validate and any_rank(patience_out, self.runtime):
                self.stopped = "early stopping"
        if self.runtime.is_main:
            self.save("last.pt")

    def _evaluate(self, stop: StopSignal) -> None:
        """Validate (rank 0), update best / early-stopping / plateau state, write best.pt and the sample grid.

        Raises:
            StopRequested: on every rank, when a stop came during rank 0's evaluation (between images or windows).
        """
        state, runtime = self.state, self.runtime
        interrupted = False
        if runtime.is_main:
            try:
                self._validate_main(stop)
            except StopRequested:
                interrupted = True
        if runtime.distributed:  # every process follows rank 0's early-stopping and plateau decisions
            shared = [state.bad_evals, state.best, state.best_epoch, self.plateau.factor, state.threshold,
                      state.val_seconds, state.last_val_cost, interrupted]  # fmt: skip
            torch.distributed.broadcast_object_list(shared, src=0)
            (state.bad_evals, state.best, state.best_epoch, self.plateau.factor, state.threshold,
             state.val_seconds, state.last_val_cost, interrupted) = shared  # fmt: skip
        if interrupted:
            raise StopRequested("stopped during validation")

    def _validate_main(self, stop: StopSignal) -> None:
        """Rank 0's evaluation: metrics, threshold, best checkpoint, plateau, samples."""
        cfg, state, runtime = self.cfg, self.state, self.runtime
        tic = time.time()
        metrics, threshold, samples = evaluate(
            self.model,
            self.eval_ds,
            self.loss_fn,
            runtime,
            self.info.class_names,
            cfg.samples,
            cfg.workers,
            should_stop=lambda: stop.signum is not None,
        )
        state.last_val_cost = time.time() - tic
        state.val_seconds += state.last_val_cost
        self.record |= {f"val/{k}": v for k, v in metrics.items()} | {"val_s": state.last_val_cost}
        state.threshold = threshold
        value = metrics[cfg.best_metric]  # NaN when no image has the class, nor a prediction of it
        if cfg.schedule == "plateau" and not math.isnan(value):
            self.plateau.update(value)
        if is_better(cfg.best_metric, value, state.best):
            state.best, state.best_epoch, state.bad_evals = value, state.epoch, 0
            self.save("best.pt", with_optimizer=False)
        else:
            state.bad_evals += 1
        self.logger.samples(samples, state.epoch, state.step)

    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.session_start

    def save(self, name: str, with_optimizer: bool = True) -> None:
        self.check_finite()
        self.state.elapsed = self.elapsed()
        self.state.loss_sum, self.state.loss_count = self.loss_sum.item(), self.loss_count
        training = {"config": self.cfg.to_dict(), "state": asdict(self.state), "plateau": asdict(self.plateau)}
        if with_optimizer:
            training |= {
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": rng_state(),
            }
        save_checkpoint(self.run_dir / "checkpoints" / name, self.model, self.info, self.state.threshold, training)

    def release(self, remove_if_empty: bool = False) -> None:
        """Give the run folder's lock back; a folder this session made and left empty goes too."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None
            if remove_if_empty and self.run_dir.is_dir() and not any(self.run_dir.iterdir()):
                self.run_dir.rmdir()

    def finish(self, signum: int | None) -> TrainResult:
        if self.runtime.is_main:
            if self.stopped in ("interrupted", "max_steps"):
                self.save("last.pt")
                print(
                    f"{self.stopped}: saved {self.run_dir / 'checkpoints' / 'last.pt'}; continue with "
                    f"`unetlab train --resume {self.run_dir}`",
                    flush=True,
                )
            self.logger.close()
        if self.runtime.owns_group:
            torch.distributed.destroy_process_group()
        return TrainResult(self.run_dir, self.state, self.record, self.stopped, signum, self.runtime.is_main)
