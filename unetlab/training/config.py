"""`TrainConfig`: every setting of a training run, each declared once with its help, range and flag.

A run's settings are resolved in three layers: the defaults below, then a YAML file (`--config FILE.yaml`), then
the command-line flags that were given. Each value is checked against its field's type and range
(`unetlab.settings`), with an error that names the setting; input paths become absolute (a YAML file's relative to
the file's own folder), so the resolved config, written to `RUN/config.yaml` and into every checkpoint, can be
read, repeated and resumed from anywhere.

    model: unet
    model_kwargs: {base_channels: 16, depth: 4}
    data: {source: /data/cells, patch_size: 256, val_fraction: 0.2}    # or just  data: /data/cells
    epochs: 100
    loss: dice_ce
"""

from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from unetlab.data.config import DataConfig
from unetlab.data.transforms import PIPELINES
from unetlab.device import AMP_DTYPES
from unetlab.logits import output_channels
from unetlab.models import MODELS
from unetlab.settings import SettingError, check_settings, from_dict, invalid, setting
from unetlab.training.budget import parse_duration
from unetlab.training.checkpoint import MACHINE_KWARGS
from unetlab.training.losses import LOSS_OPTIONS
from unetlab.training.optim import OPTIMIZERS, SCHEDULES

# The default model's training width: the registered `unet` (base 64) is too slow to train on a CPU in minutes.
DEFAULT_MODEL_KWARGS = {"base_channels": 16, "depth": 4}
DEFAULT_BUDGET = "20m"  # the time budget of a planned run when none is given


@dataclass
class TrainConfig:
    """The settings of a training run; see the module docstring for how they are resolved."""

    # model
    model: str = setting("unet", "registered model", choices=tuple(MODELS), group="model")
    model_kwargs: dict = setting(
        help="create_model options (the model flags); another model starts from its own registered defaults, and "
        "in_channels and num_classes follow the data unless given",
        default_factory=lambda: dict(DEFAULT_MODEL_KWARGS),
        cli=False,
    )
    # data
    data: DataConfig = setting(help="the dataset and its patches", default_factory=DataConfig, cli=False)
    augment: str = setting(
        "default", "augmentation pipeline (unetlab.data.transforms)", choices=tuple(PIPELINES), group="loss"
    )
    # loss
    loss: str = setting(
        "dice_ce", "loss on the logits (unetlab.training.losses)", choices=tuple(LOSS_OPTIONS), group="loss"
    )
    class_weights: list[float] | None = setting(
        None,
        "per-class weights of the cross-entropy term (binary: background, foreground)",
        low=0,
        metavar="W",
        group="loss",
        default_text="equal",
    )
    # optimisation
    epochs: int = setting(
        40, "passes over the training set (on resume: the new total)", low=1, group="optim", resumable=True
    )
    batch_size: int = setting(8, "patches per optimiser step (per process)", low=1, group="optim")
    accumulate: int = setting(1, "batches whose gradients add up before a step", low=1, group="optim")
    optimizer: str = setting("adamw", "optimiser (sgd: Nesterov momentum)", choices=OPTIMIZERS, group="optim")
    lr: float = setting(2e-3, "peak learning rate", low=0, low_open=True, group="optim")
    weight_decay: float = setting(1e-4, "decoupled for AdamW, L2 for Adam and SGD", low=0, group="optim")
    momentum: float = setting(0.9, "SGD momentum, or Adam's beta1", low=0, high=1, high_open=True, group="optim")
    schedule: str = setting("cosine", "learning-rate schedule", choices=SCHEDULES, group="optim")
    warmup_epochs: float = setting(
        1.0, "linear warm-up (cosine, poly, step, constant)", unit="epochs", low=0, group="optim"
    )
    min_lr: float = setting(0.0, "floor of the cosine schedule", low=0, group="optim")
    step_epochs: float = setting(
        10.0, "step: epochs between reductions; plateau: evaluations of patience", low=0, low_open=True, group="optim"
    )
    gamma: float = setting(
        0.1, "step and plateau: factor of each reduction", low=0, high=1, low_open=True, group="optim"
    )
    clip_grad: float = setting(0.0, "largest global gradient norm; 0 = no clipping", low=0, group="optim")
    time_budget: str | None = setting(
        None,
        "end the run on time, validation included: a duration such as 90s, 20m or 1.5h; the learning-rate schedule "
        "spans it, and epochs is then only an upper bound",
        group="optim",
        resumable=True,
        metavar="D",
        default_text=f"none; a planned run: {DEFAULT_BUDGET}",
    )
    # evaluation and checkpoints
    eval_every: int = setting(1, "epochs between validations", low=1, group="eval", resumable=True)
    best_metric: str = setting(
        "dice", "validation metric that picks checkpoints/best.pt (dice, iou, ..., or loss)", group="eval"
    )
    patience: int = setting(
        -1,
        "evaluations without improvement before stopping early (0 acts as 1); -1 = never",
        low=-1,
        group="eval",
        resumable=True,
    )
    val_share: float = setting(
        0.1,
        "with a time budget: the largest share of the time validation may take (evaluations are skipped to keep it)",
        low=0,
        high=1,
        low_open=True,
        group="eval",
        resumable=True,
    )
    val_subset: int = setting(
        0,
        "validation images evaluated at each evaluation, a fixed seeded subset; 0 = all of them",
        low=0,
        group="eval",
        resumable=True,
    )
    samples: int = setting(
        4, "validation images drawn as input | truth | prediction grids", low=0, group="eval", resumable=True
    )
    # engine
    device: str = setting("auto", "auto (CUDA when available) | cpu | cuda | cuda:N", group="engine", resumable=True)
    amp: str = setting(
        "auto",
        "mixed precision: auto (bf16, or fp16 on older GPUs; none on the CPU), none, bf16, fp16",
        choices=("auto", *AMP_DTYPES),
        group="engine",
    )
    channels_last: bool = setting(False, "NHWC memory format (faster convolutions on recent GPUs)", group="engine")
    compile: bool = setting(False, "torch.compile the model", group="engine")
    workers: int = setting(0, "data-loading processes; 0 = the main process", low=0, group="engine", resumable=True)
    seed: int = setting(0, "seeds everything: weights, data, order, augmentation, dropout", low=0, group="engine")
    deterministic: bool = setting(False, "deterministic algorithms (exact resume; slower on GPU)", group="engine")
    max_steps: int = setting(
        -1,
        "stop resumably after this many optimiser steps of this session; -1 = no limit",
        low=-1,
        group="engine",
        resumable=True,
    )
    out: str | None = setting(
        None, "run folder, new or empty", metavar="DIR", group="run", default_text="runs/<timestamp>"
    )
    tensorboard: bool = setting(True, "no TensorBoard events", group="engine", resumable=True)
    progress: bool = setting(True, "no progress bar", group="engine", resumable=True)

    def __post_init__(self):
        check_settings(self)
        if self.time_budget is not None and parse_duration(self.time_budget) is None:
            raise invalid("time_budget", self.time_budget, "a duration such as 90s, 20m, 1.5h or 1h30m")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "TrainConfig":
        """Build from nested plain values (a YAML file's), checking names and types; see `resolve_config`."""
        return from_dict(cls, values, source)


def merge(base: dict, override: dict) -> dict:
    """`base` updated by `override`, recursing into nested dicts (so `data: {patch_size: 64}` keeps the rest)."""
    merged = dict(base)
    for key, value in override.items():
        nested = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = merge(merged[key], value) if nested else value
    return merged


def resolve_config(*layers: tuple[dict, Path, str]) -> TrainConfig:
    """The defaults, updated by each layer in turn: (settings, folder its relative paths start from, its name).

    A layer that picks another model starts from that model's registered defaults (`model_kwargs` empty, then
    the layer's own); `data: PATH` is short for `data: {source: PATH}`.
    """
    values = TrainConfig().to_dict()
    for settings, folder, _name in layers:
        settings = dict(settings)
        if isinstance(settings.get("data"), str):
            settings["data"] = {"source": settings["data"]}
        if "model" in settings and settings["model"] != values["model"]:
            values["model_kwargs"] = {}
        values = merge(values, absolute_paths(settings, folder))
    return TrainConfig.from_dict(values, " + ".join(name for *_, name in layers) or "config")


def absolute_paths(settings: dict, folder: Path) -> dict:
    """Paths (data source, validation list, encoder weights, the run folder `out`) made absolute against `folder`.

    A relative validation list that is not found there is left as it is: the data module also looks for it in
    the dataset folder.
    """
    settings = dict(settings)
    if isinstance(settings.get("out"), str):
        settings["out"] = str((folder / settings["out"]).resolve())
    data = settings.get("data")
    if isinstance(data, dict):
        data = dict(data)
        source = data.get("source")
        if isinstance(source, str) and not source.startswith("synthetic-"):
            data["source"] = str((folder / source).resolve())
        val_list = data.get("val_list")
        if isinstance(val_list, str) and (folder / val_list).is_file():
            data["val_list"] = str((folder / val_list).resolve())
        settings["data"] = data
    kwargs = settings.get("model_kwargs")
    if isinstance(kwargs, dict) and isinstance(kwargs.get("encoder_weights"), str):
        settings["model_kwargs"] = {**kwargs, "encoder_weights": str((folder / kwargs["encoder_weights"]).resolve())}
    return settings


def model_kwargs_for_data(cfg: TrainConfig, info, resuming: bool = False) -> dict:
    """The model options: the config's, with channels and classes taken from the data (`DataInfo`) where not given.

    Two-class data gets one sigmoid output unless `num_classes: 2` is asked for (`unetlab.logits.output_channels`).
    On resume, options naming files of the first session (ImageNet weights) are dropped: the checkpoint holds the
    weights.
    """
    kwargs = {k: v for k, v in cfg.model_kwargs.items() if not (resuming and k in MACHINE_KWARGS)}
    kwargs.setdefault("in_channels", info.in_channels)
    valid = output_channels(info.num_classes)
    kwargs.setdefault("num_classes", valid[0])
    if kwargs["num_classes"] not in valid:
        raise SettingError(
            lambda n: (
                f"the data has {info.num_classes} classes but {n('model_kwargs.num_classes')} is "
                f"{kwargs['num_classes']}; use {' or '.join(map(str, valid))}, or leave it out"
            ),
            ["model_kwargs.num_classes"],
        )
    if kwargs["in_channels"] != info.in_channels:
        raise SettingError(
            lambda n: (
                f"the images have {info.in_channels} channel(s) but {n('model_kwargs.in_channels')} is "
                f"{kwargs['in_channels']}; leave it out to follow the data"
            ),
            ["model_kwargs.in_channels"],
        )
    return kwargs


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
