"""`TrainConfig`: every setting of a training run, with its unit and typical value, and its YAML form.

A run's settings are resolved in three layers: the defaults below, then a YAML file (`--config FILE.yaml`), then
the command-line flags that were given. The resolved config is written to `RUN/config.yaml` and into every
checkpoint, so a run can be read, repeated and resumed.

    model: unet
    model_kwargs: {base_channels: 16, depth: 4}
    data: {source: /data/cells, patch_size: 256, val_fraction: 0.2}
    epochs: 100
    loss: dice_ce
"""

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

import yaml

from unetlab.data import DataConfig
from unetlab.errors import UnetlabError


@dataclass
class TrainConfig:
    # model
    model: str = "unet"  # registry name (unetlab.list_models())
    model_kwargs: dict = field(default_factory=lambda: {"base_channels": 16, "depth": 4})  # create_model options;
    # in_channels and num_classes default to the data's (num_classes 1, a sigmoid, for two-class data)
    # data
    data: DataConfig = field(default_factory=DataConfig)  # source folder or built-in set, split, patches, ...
    augment: str = "default"  # augmentation pipeline name (unetlab.data.transforms), "none" to switch off
    # loss
    loss: str = "dice_ce"  # ce | dice | dice_ce | focal | tversky (unetlab.losses)
    class_weights: list[float] | None = None  # per-class weights of the cross-entropy term; None = equal
    # (the paper's border weight map on the cross-entropy term is a data setting: data.weight_map)
    # optimisation
    epochs: int = 40  # passes over the training set (on resume: the new total)
    batch_size: int = 8  # patches per optimiser step (per process)
    accumulate: int = 1  # batches whose gradients add up before a step (effective batch = batch_size * this)
    optimizer: str = "adamw"  # adamw | adam | sgd (Nesterov momentum)
    lr: float = 2e-3  # peak learning rate
    weight_decay: float = 1e-4  # decoupled for AdamW, L2 for Adam and SGD
    momentum: float = 0.9  # SGD momentum, or Adam's beta1
    schedule: str = "cosine"  # cosine | poly | step | plateau | onecycle | constant
    warmup_epochs: float = 1.0  # linear warm-up length in epochs (cosine, poly, step, constant)
    min_lr: float = 0.0  # floor of the cosine schedule
    step_epochs: float = 10.0  # "step": epochs between reductions; "plateau": evaluations of patience
    gamma: float = 0.1  # "step" and "plateau" reduction factor
    clip_grad: float = 0.0  # max global gradient norm; 0 = no clipping
    # evaluation and checkpoints
    eval_every: int = 1  # epochs between validations
    best_metric: str = "dice"  # validation metric that picks checkpoints/best.pt ("loss" is minimised)
    patience: int = -1  # evaluations without improvement before stopping early; -1 = never stop early
    samples: int = 4  # validation images drawn as input / truth / prediction grids at each evaluation
    # engine
    device: str = "auto"  # auto (cuda when available) | cpu | cuda | cuda:1
    amp: str = "auto"  # none | bf16 | fp16 | auto (bf16 on GPUs that support it, none on CPU)
    channels_last: bool = False  # NHWC memory format (faster convolutions on recent GPUs)
    compile: bool = False  # torch.compile the model
    workers: int = 0  # data-loading processes; 0 = in the main process (cached data: crops are cheap)
    seed: int = 0  # seeds model init, data order, augmentation and dropout (data.seed: images, split, patches)
    deterministic: bool = False  # deterministic algorithms (exact resume; slower on GPU)
    max_steps: int = -1  # stop (resumably) after this many optimiser steps in this session; -1 = no limit
    out: str | None = None  # run folder; None = runs/<timestamp>
    tensorboard: bool = True  # write TensorBoard events when tensorboard is installed
    progress: bool = True  # progress bar

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "TrainConfig":
        """Build from nested plain values (a YAML file's), refusing unknown keys with the valid ones named."""
        return _from_dict(cls, values, source)


def _from_dict(cls, values: dict, source: str):
    if not isinstance(values, dict):
        raise UnetlabError(f"{source}: expected a mapping of settings, got {type(values).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise UnetlabError(f"{source}: unknown setting {', '.join(unknown)}; valid settings are {', '.join(known)}")
    kwargs = {}
    for name, value in values.items():
        default = known[name].default_factory() if callable(known[name].default_factory) else known[name].default
        if is_dataclass(default) and isinstance(value, dict):
            value = _from_dict(type(default), value, f"{source}: {name}")
        kwargs[name] = value
    return cls(**kwargs)


def load_config(path: str | Path) -> dict:
    """The settings in a YAML file, as a nested dict. Raises a `UnetlabError` naming the file when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise UnetlabError(f"config file {path} not found; pass a YAML file such as configs/isbi_classic.yaml")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UnetlabError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(values, dict):
        raise UnetlabError(f"config file {path} must hold a mapping of settings (key: value lines)")
    return values


def merge(base: dict, override: dict) -> dict:
    """`base` updated by `override`, recursing into nested dicts (so `data: {patch_size: 64}` keeps the rest)."""
    merged = dict(base)
    for key, value in override.items():
        merged[key] = (
            merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def resolve_config(*layers: dict, sources: tuple[str, ...] = ()) -> TrainConfig:
    """The defaults, updated by each layer in turn (a YAML file's settings, then the flags given).

    `model_kwargs` defaults belong to the default model: a layer that picks another model without giving
    `model_kwargs` starts from that model's own registered defaults.
    """
    values = TrainConfig().to_dict()
    for layer in layers:
        if "model" in layer and layer["model"] != values["model"] and "model_kwargs" not in layer:
            values["model_kwargs"] = {}
        values = merge(values, layer)
    return TrainConfig.from_dict(values, " + ".join(sources) or "config")


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
