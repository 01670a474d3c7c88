"""`TrainConfig`: every setting of a training run, with its unit and typical value, and its YAML form.

A run's settings are resolved in three layers: the defaults below, then a YAML file (`--config FILE.yaml`), then
the command-line flags that were given. Each value is checked against its field's type and range, with an error
that names the setting; input paths become absolute (a YAML file's relative to the file's own folder), so the
resolved config, written to `RUN/config.yaml` and into every checkpoint, can be read, repeated and resumed from
anywhere.

    model: unet
    model_kwargs: {base_channels: 16, depth: 4}
    data: {source: /data/cells, patch_size: 256, val_fraction: 0.2}    # or just  data: /data/cells
    epochs: 100
    loss: dice_ce
"""

import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

import yaml

from unetlab.data import DataConfig
from unetlab.data.io import read_text
from unetlab.data.transforms import PIPELINES
from unetlab.device import AMP_DTYPES
from unetlab.errors import UnetlabError
from unetlab.training.checkpoint import MACHINE_KWARGS
from unetlab.training.losses import LOSS_OPTIONS
from unetlab.training.optim import OPTIMIZERS, SCHEDULES

# The default model's training width: the registered `unet` (base 64) is too slow to train on a CPU in minutes.
DEFAULT_MODEL_KWARGS = {"base_channels": 16, "depth": 4}


@dataclass
class TrainConfig:
    """The settings of a training run; see the module docstring for how they are resolved."""

    # model
    model: str = "unet"  # registry name (unetlab.list_models())
    model_kwargs: dict = field(default_factory=lambda: dict(DEFAULT_MODEL_KWARGS))  # create_model options; another
    # model starts from its own registered defaults. in_channels and num_classes follow the data by default
    # (num_classes 1, a sigmoid, for two-class data).
    # data
    data: DataConfig = field(default_factory=DataConfig)  # source folder or built-in set, split, patches, ...
    augment: str = "default"  # augmentation pipeline: none | light | default | paper (unetlab.data.transforms)
    # loss
    loss: str = "dice_ce"  # ce | focal | dice | tversky | dice_ce (unetlab.training.losses)
    class_weights: list[float] | None = None  # per-class weights of the cross-entropy term; None = equal
    # (the paper's border weight map on the cross-entropy term is a data setting: data.weight_map)
    # optimisation
    epochs: int = 40  # passes over the training set (on resume: the new total)
    batch_size: int = 8  # patches per optimiser step (per process)
    accumulate: int = 1  # batches whose gradients add up before a step (effective batch = batch_size * this)
    optimizer: str = "adamw"  # adamw | adam | sgd (Nesterov momentum)
    lr: float = 2e-3  # peak learning rate
    weight_decay: float = 1e-4  # decoupled for AdamW, L2 for Adam and SGD
    momentum: float = 0.9  # SGD momentum, or Adam's beta1, in [0, 1)
    schedule: str = "cosine"  # cosine | poly | step | plateau | onecycle | constant
    warmup_epochs: float = 1.0  # linear warm-up length in epochs (cosine, poly, step, constant)
    min_lr: float = 0.0  # floor of the cosine schedule
    step_epochs: float = 10.0  # "step": epochs between reductions; "plateau": evaluations of patience
    gamma: float = 0.1  # "step" and "plateau" reduction factor, in (0, 1]
    clip_grad: float = 0.0  # max global gradient norm; 0 = no clipping
    # evaluation and checkpoints
    eval_every: int = 1  # epochs between validations
    best_metric: str = "dice"  # validation metric that picks checkpoints/best.pt ("loss" is minimised)
    patience: int = -1  # evaluations without improvement before stopping early (0 acts as 1); -1 = never
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

    def __post_init__(self):
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("loss", self.loss, tuple(LOSS_OPTIONS))
        _check_choice("augment", self.augment, tuple(PIPELINES))
        _check_choice("amp", self.amp, ("auto", *AMP_DTYPES))
        for name, low, high in _RANGES:
            value = getattr(self, name)
            if not (math.isfinite(value) and low(value) and high(value)):
                raise UnetlabError(f"--{name.replace('_', '-')} {value} is not valid; {_RANGE_TEXT[name]}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "TrainConfig":
        """Build from nested plain values (a YAML file's), checking names and types; see `resolve_config`."""
        return _from_dict(cls, values, source)


def _at_least(bound):
    return lambda v: v >= bound


def _above(bound):
    return lambda v: v > bound


def _any(_v):
    return True


_RANGES = [  # (field, lower check, upper check)
    ("epochs", _at_least(1), _any), ("batch_size", _at_least(1), _any), ("accumulate", _at_least(1), _any),
    ("lr", _above(0), _any), ("weight_decay", _at_least(0), _any), ("momentum", _at_least(0), lambda v: v < 1),
    ("warmup_epochs", _at_least(0), _any), ("min_lr", _at_least(0), _any), ("step_epochs", _above(0), _any),
    ("gamma", _above(0), lambda v: v <= 1), ("clip_grad", _at_least(0), _any), ("eval_every", _at_least(1), _any),
    ("patience", _at_least(-1), _any), ("samples", _at_least(0), _any), ("workers", _at_least(0), _any),
    ("seed", _at_least(0), _any), ("max_steps", _at_least(-1), _any),
]  # fmt: skip
_RANGE_TEXT = {
    "epochs": "train for at least 1 epoch", "batch_size": "use at least 1", "accumulate": "use at least 1",
    "lr": "the learning rate must be positive, e.g. 1e-3", "weight_decay": "use 0 or more",
    "momentum": "it lies in [0, 1), e.g. 0.9", "warmup_epochs": "use 0 or more", "min_lr": "use 0 or more",
    "step_epochs": "use more than 0", "gamma": "it lies in (0, 1], e.g. 0.1", "clip_grad": "use 0 (off) or more",
    "eval_every": "validate every 1 or more epochs", "patience": "use -1 (never stop early) or more",
    "samples": "use 0 or more", "workers": "use 0 (the main process) or more", "seed": "use 0 or more",
    "max_steps": "use -1 (no limit) or more",
}  # fmt: skip


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise UnetlabError(f"--{name.replace('_', '-')} {value!r} is not valid; choose one of {', '.join(choices)}")


def _from_dict(cls, values: dict, source: str):
    if not isinstance(values, dict):
        raise UnetlabError(f"{source}: expected a mapping of settings, got {values!r}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise UnetlabError(f"{source}: unknown setting {', '.join(unknown)}; valid settings are {', '.join(known)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        if is_dataclass(hints[name]):
            kwargs[name] = _from_dict(hints[name], value, f"{source}: {name}")
        else:
            kwargs[name] = _typed(value, hints[name], f"{source}: {name}")
    return cls(**kwargs)


def _typed(value, hint, where: str):
    """`value` checked against the type hint `hint` (ints accepted for floats, and PyYAML's "1e-3" strings)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        for option in (a for a in typing.get_args(hint) if a is not type(None)):
            try:
                return _typed(value, option, where)
            except UnetlabError:
                pass
    elif hint is bool and isinstance(value, bool):
        return value
    elif hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif hint is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            return float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        except ValueError:
            pass
    elif hint is str and isinstance(value, str):
        return value
    elif (hint is list or typing.get_origin(hint) is list) and isinstance(value, list):
        item = (typing.get_args(hint) or (typing.Any,))[0]
        return value if item is typing.Any else [_typed(v, item, where) for v in value]
    elif hint is dict and isinstance(value, dict):
        return value
    raise UnetlabError(f"{where} is {value!r}, which is not {_describe(hint)}")


def _describe(hint) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "text", dict: "a mapping",
             list: "a list", type(None): "null"}  # fmt: skip
    origin = typing.get_origin(hint)
    return names.get(hint) or (f"a list of {_describe(typing.get_args(hint)[0])}s" if origin is list else str(hint))


def load_config(path: str | Path) -> dict:
    """The settings in a YAML file, as a nested dict. Raises a `UnetlabError` naming the file when unreadable."""
    path = Path(path)
    text = read_text(path, "config file", "a YAML file such as configs/isbi.yaml")
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or "unreadable"
        raise UnetlabError(f"config file {path} is not valid YAML{line}: {problem}") from None
    if not isinstance(values, dict):
        raise UnetlabError(f"config file {path} must hold a mapping of settings (key: value lines)")
    return values


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

    Two-class data gets one sigmoid output unless `num_classes: 2` is asked for. On resume, options naming files
    of the first session (ImageNet weights) are dropped: the checkpoint holds the weights.
    """
    kwargs = {k: v for k, v in cfg.model_kwargs.items() if not (resuming and k in MACHINE_KWARGS)}
    kwargs.setdefault("in_channels", info.in_channels)
    kwargs.setdefault("num_classes", 1 if info.num_classes == 2 else info.num_classes)
    expected = (1, 2) if info.num_classes == 2 else (info.num_classes,)
    if kwargs["num_classes"] not in expected:
        raise UnetlabError(
            f"the data has {info.num_classes} classes but --num-classes is {kwargs['num_classes']}; "
            f"use {' or '.join(map(str, expected))}, or leave it out"
        )
    if kwargs["in_channels"] != info.in_channels:
        raise UnetlabError(
            f"the images have {info.in_channels} channel(s) but --in-channels is {kwargs['in_channels']}; "
            "leave it out to follow the data"
        )
    return kwargs


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
