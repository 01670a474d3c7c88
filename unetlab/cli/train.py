"""`unetlab train`: train a model; with no arguments, the default model on the built-in synthetic cells.

Settings resolve in three layers: `TrainConfig` defaults, then `--config FILE.yaml`, then the flags given here.
`--resume RUN` continues a run from its `checkpoints/last.pt` with the run's own settings; only the settings in
`RESUME_OVERRIDABLE` may change (`--epochs` is then the new total).
"""

import argparse
from pathlib import Path

from unetlab.cli.common import MODEL_OPTIONS, add_folder_options, add_model_options
from unetlab.data.datasets import SETTING_FLAGS
from unetlab.data.transforms import PIPELINES
from unetlab.device import AMP_DTYPES
from unetlab.errors import UnetlabError
from unetlab.models import list_models
from unetlab.training.checkpoint import load_training_checkpoint
from unetlab.training.config import TrainConfig, absolute_paths, load_config, merge, resolve_config
from unetlab.training.losses import LOSS_OPTIONS
from unetlab.training.optim import OPTIMIZERS, SCHEDULES

RESUME_OVERRIDABLE = {
    "data",  # the same dataset, moved (checked against the checkpoint's data info)
    "epochs",
    "max_steps",
    "workers",
    "device",
    "progress",
    "tensorboard",
    "patience",
    "eval_every",
    "samples",
    "cache",
}
FLAG_OF: dict[str, str] = {}  # settings name (argparse dest) -> its flag as typed, filled by add_parser
# flags that set a field of the data config (TrainConfig.data): dest -> DataConfig field
DATA_FLAGS = {"data": "source", **{flag: setting for setting, flag in SETTING_FLAGS.items()}} | {
    name: name
    for name in (
        "image_dir",
        "mask_dir",
        "val_list",
        "val_fraction",
        "class_values",
        "class_names",
        "ignore_values",
        "mean",
        "std",
        "patch_size",
        "patches_per_image",
        "foreground_fraction",
        "weight_map",
        "num_train",
        "num_val",
        "image_size",
        "cache",
    )
}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model (default: the default model on built-in synthetic data)",
        description=__doc__.split("\n")[0],
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", metavar="FILE.yaml", help="settings file; flags given here override it")
    parser.add_argument("--resume", metavar="RUN", help="run folder or checkpoint to continue (its own settings)")
    parser.add_argument("--out", metavar="DIR", help="run folder (default: runs/<timestamp>)")
    # model
    parser.add_argument("--model", choices=list_models(), help="registered model")
    add_model_options(
        parser,
        default=argparse.SUPPRESS,
        title="model options (default: the model's registered "
        "ones; the default model, unet, trains with --base-channels 16 --depth 4)",
    )
    # data
    group = parser.add_argument_group("data (default: the built-in synthetic cells)")
    group.add_argument("--data", metavar="DIR", help="dataset folder, or synthetic-cells / synthetic-shapes")
    add_folder_options(group)  # defaults: TrainConfig's, shown by show_defaults
    group.add_argument("--mean", nargs="+", type=float, metavar="M", help="fixed per-channel mean on [0, 1]")
    group.add_argument("--std", nargs="+", type=float, metavar="S", help="fixed per-channel std on [0, 1]")
    group.add_argument("--patch-size", type=int, help="training patch side in px")
    group.add_argument("--patches-per-image", type=int, help="patches per image per epoch")
    group.add_argument("--foreground-fraction", type=float, help="share of patches centred on foreground")
    group.add_argument("--weight-map", action="store_true", help="the paper's border weight map on the CE term")
    group.add_argument("--w0", type=float, help="weight-map border weight (paper: 10)")
    group.add_argument("--sigma", type=float, help="weight-map border width in px (paper: 5)")
    group.add_argument("--num-train", type=int, help="synthetic training images")
    group.add_argument("--num-val", type=int, help="synthetic validation images")
    group.add_argument("--image-size", type=int, help="synthetic image side in px")
    group.add_argument("--no-cache", dest="cache", action="store_false", help="read images when needed, not once")
    group.add_argument("--augment", choices=list(PIPELINES), help="augmentation pipeline")
    # loss
    group = parser.add_argument_group("loss")
    group.add_argument("--loss", choices=list(LOSS_OPTIONS), help="loss on the logits")
    group.add_argument("--class-weights", nargs="+", type=float, metavar="W", help="per-class cross-entropy weights")
    # optimisation
    group = parser.add_argument_group("optimisation")
    group.add_argument("--epochs", type=int, help="passes over the training set (on --resume: the new total)")
    group.add_argument("--batch-size", type=int, help="patches per step (per process)")
    group.add_argument("--accumulate", type=int, help="batches per optimiser step (gradient accumulation)")
    group.add_argument("--optimizer", choices=OPTIMIZERS, help="sgd uses Nesterov momentum")
    group.add_argument("--lr", type=float, help="peak learning rate")
    group.add_argument("--weight-decay", type=float, help="decoupled for AdamW, L2 for Adam and SGD")
    group.add_argument("--momentum", type=float, help="SGD momentum / Adam beta1")
    group.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule")
    group.add_argument("--warmup-epochs", type=float, help="linear warm-up, in epochs")
    group.add_argument("--min-lr", type=float, help="floor of the cosine schedule")
    group.add_argument("--step-epochs", type=float, help="step: epochs between reductions; plateau: evaluations")
    group.add_argument("--gamma", type=float, help="step and plateau: factor of each reduction")
    group.add_argument("--clip-grad", type=float, help="max gradient norm; 0 = off")
    # evaluation
    group = parser.add_argument_group("evaluation and checkpoints")
    group.add_argument("--eval-every", type=int, help="epochs between validations")
    group.add_argument("--best-metric", help="validation metric for best.pt (dice, iou, ..., or loss)")
    group.add_argument(
        "--patience", type=int, help="evaluations without improvement before stopping (0 acts as 1); -1 = never"
    )
    group.add_argument("--samples", type=int, help="validation images drawn in the sample grids")
    # engine
    group = parser.add_argument_group("engine")
    group.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    group.add_argument(
        "--amp",
        choices=["auto", *AMP_DTYPES],
        help="mixed precision: auto (bf16, or fp16 on older GPUs; none on the CPU), none, bf16, fp16",
    )
    group.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    group.add_argument("--compile", action="store_true", help="torch.compile the model")
    group.add_argument("--workers", type=int, help="data-loading processes; 0 = main process")
    group.add_argument("--seed", type=int, help="seeds everything: weights, data, order, augmentation")
    group.add_argument("--deterministic", action="store_true", help="deterministic algorithms (exact resume)")
    group.add_argument("--max-steps", type=int, help="stop resumably after N steps of this session; -1 = no limit")
    group.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", help="no TensorBoard events")
    group.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    show_defaults(parser)
    FLAG_OF.update({a.dest: max(a.option_strings, key=len) for a in parser._actions if a.option_strings})
    parser.set_defaults(func=run)


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Append each setting's default (from TrainConfig and DataConfig) to its help text."""
    defaults = TrainConfig().to_dict()
    data_defaults = defaults.pop("data")
    for action in parser._actions:
        field = DATA_FLAGS.get(action.dest, action.dest)
        table = data_defaults if action.dest in DATA_FLAGS else defaults
        value = table.get(field)
        if action.help and field in table and value is not None and not isinstance(value, bool) and value != []:
            action.help += f" (default: {value})"


def flag_settings(args: argparse.Namespace) -> dict:
    """The flags given on the command line as a nested settings dict (model options under model_kwargs)."""
    given = {k: v for k, v in vars(args).items() if k not in ("func", "command", "config", "resume")}
    settings = {}
    model_kwargs = {k: given.pop(k) for k in MODEL_OPTIONS if k in given}
    if model_kwargs:
        settings["model_kwargs"] = model_kwargs
    data = {field: given.pop(dest) for dest, field in DATA_FLAGS.items() if dest in given}
    if "seed" in given:  # --seed seeds everything: the data's images, split and patches too
        data["seed"] = given["seed"]
    if data:
        settings["data"] = data
    return settings | given


SYNTHETIC_ONLY = ("num_train", "num_val", "image_size")


def resolve(args: argparse.Namespace) -> TrainConfig:
    """The run's settings: defaults <- --config file <- flags; or, with --resume, the run's own <- a few flags."""
    flags = flag_settings(args)
    ignored = [f"--{k.replace('_', '-')}" for k in SYNTHETIC_ONLY if hasattr(args, k)]
    if ignored and not str(getattr(args, "data", "synthetic-")).startswith("synthetic-"):
        print(f"note: {', '.join(ignored)} set(s) the built-in synthetic data only; ignored for --data {args.data}")
    resume = getattr(args, "resume", None)
    if resume is None:
        layers = [(flags, Path.cwd(), "command line")]
        if getattr(args, "config", None):
            path = Path(args.config)
            layers.insert(0, (load_config(path), path.resolve().parent, str(path)))
        return resolve_config(*layers)
    saved = load_training_checkpoint(resume).training["config"]  # first: is there a run to resume at all?
    if getattr(args, "config", None):
        raise UnetlabError("--config cannot be combined with --resume: a resumed run keeps its own settings")
    if getattr(args, "out", None) is not None:
        raise UnetlabError(
            f"--out cannot be combined with --resume: a resumed run continues in its own folder; drop --out, or "
            f"drop --resume to start a new run in {args.out}"
        )
    given = set(vars(args)) - {"func", "command", "command_name", "config", "resume"}  # flags not given are absent
    changed = [FLAG_OF[dest] for dest in sorted(given - RESUME_OVERRIDABLE)]
    if changed:
        raise UnetlabError(
            f"--resume keeps the run's settings; {', '.join(changed)} cannot change on resume (only "
            f"{', '.join(FLAG_OF[d] for d in sorted(RESUME_OVERRIDABLE))} can); drop --resume to start a new run "
            "with other settings"
        )
    flags = absolute_paths(flags, Path.cwd())  # a moved --data, saved absolute like the run's other paths
    return TrainConfig.from_dict(merge(saved, flags), f"{resume} + command line")


def run(args) -> int:
    from unetlab.training.engine import train  # imported here: keeps `unetlab --help` quick

    cfg = resolve(args)
    result = train(cfg, resume=getattr(args, "resume", None))
    if result.is_main:
        best = result.state.best
        shown = f"{best:.4f} at epoch {result.state.best_epoch}" if best is not None else "n/a"
        print(f"{result.stopped}: best val/{cfg.best_metric} {shown}; run folder {result.run_dir}")
    return 128 + result.signal if result.signal else 0  # the shell's convention for a process ended by a signal
