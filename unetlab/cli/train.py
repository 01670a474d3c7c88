"""`unetlab train`: train a model; with no arguments, the default model on the built-in synthetic cells.

Settings resolve in three layers: `TrainConfig` defaults, then `--config FILE.yaml`, then the flags given here (every
flag comes from a setting's declaration). `--resume RUN` continues a run from its `checkpoints/last.pt` with the run's
own settings; only the resumable ones may change (`unetlab.training.resume`), `--epochs` then being the new total.
"""

import argparse
from pathlib import Path

from unetlab.cli.common import MODEL_TITLE, add_model_options, add_reader_options, record_flags
from unetlab.data.config import DataConfig
from unetlab.errors import UnetlabError
from unetlab.settings import add_flags, given_settings, load_yaml
from unetlab.training.checkpoint import load_training_checkpoint
from unetlab.training.config import DEFAULT_MODEL_KWARGS, TrainConfig, resolve_config
from unetlab.training.resume import resume_config

TITLES = {
    "model": "model",
    "loss": "augmentation and loss",
    "optim": "optimisation",
    "eval": "evaluation and checkpoints",
    "engine": "engine",
    "run": "run folder",
}
DATA_TITLE = "data (default: the built-in synthetic cells)"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model (default: the default model on built-in synthetic data)",
        description=__doc__.split("\n")[0],
        argument_default=argparse.SUPPRESS,  # a flag not given is absent: a resumed run can tell what was typed
    )
    parser.add_argument("--config", metavar="FILE.yaml", help="settings file; flags given here override it")
    parser.add_argument("--resume", metavar="RUN", help="run folder or checkpoint to continue (its own settings)")
    dests = add_flags(parser, TrainConfig, titles=TITLES)
    defaults = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in DEFAULT_MODEL_KWARGS.items())
    title = f"{MODEL_TITLE.removesuffix(')')}; the default model, unet, trains with {defaults})"
    dests += add_model_options(parser, title, default=argparse.SUPPRESS)
    dests += add_flags(parser, DataConfig, prefix="data.", titles={"*": DATA_TITLE})
    add_reader_options(parser)
    record_flags(parser)
    parser.set_defaults(func=run, setting_dests=dests)


def flag_settings(args: argparse.Namespace) -> dict:
    """The flags given on the command line as nested settings ({"data": {"patch_size": 64}, "lr": 0.1})."""
    settings = given_settings(args, args.setting_dests)
    kwargs = {k: v for k, v in settings.get("model_kwargs", {}).items() if v is not None}
    settings.pop("model_kwargs", None)
    return settings | ({"model_kwargs": kwargs} if kwargs else {})


SYNTHETIC_ONLY = ("num_train", "num_val", "image_size")


def resolve(args: argparse.Namespace) -> TrainConfig:
    """The run's settings: defaults <- --config file <- flags; or, with --resume, the run's own <- the flags given."""
    flags = flag_settings(args)
    ignored = [f"--{k.replace('_', '-')}" for k in SYNTHETIC_ONLY if k in flags.get("data", {})]
    source = flags.get("data", {}).get("source", "synthetic-")
    if ignored and not source.startswith("synthetic-"):
        print(f"note: {', '.join(ignored)} set(s) the built-in synthetic data only; ignored for --data {source}")
    resume = getattr(args, "resume", None)
    if resume is None:
        layers = [(flags, Path.cwd(), "command line")]
        if getattr(args, "config", None):
            path = Path(args.config)
            layers.insert(0, (load_yaml(path), path.resolve().parent, str(path)))
        return resolve_config(*layers)
    saved = load_training_checkpoint(resume).training["config"]  # first: is there a run to resume at all?
    if getattr(args, "config", None):
        raise UnetlabError("--config cannot be combined with --resume: a resumed run keeps its own settings")
    return resume_config(saved, flags)


def run(args) -> int:
    from unetlab.training.engine import train  # imported here: keeps `unetlab --help` quick

    cfg = resolve(args)
    result = train(cfg, resume=getattr(args, "resume", None))
    if result.is_main:
        best = result.state.best
        shown = f"{best:.4f} at epoch {result.state.best_epoch}" if best is not None else "n/a"
        print(f"{result.stopped}: best val/{cfg.best_metric} {shown}; run folder {result.run_dir}")
    return 128 + result.signal if result.signal else 0  # the shell's convention for a process ended by a signal
