"""`unetlab twin check|train`: the NumPy twin side by side with PyTorch, and the twin trained on synthetic data.

unetlab twin check                                   # unet-classic (the paper's net) at 2 x 1 x 188 x 188
unetlab twin check --model unet --depth 3 --base-channels 8 --input 3,45,45
unetlab twin train                                   # unet, base 8, depth 3, on 64 x 64 synthetic cells

Only the model options the twin implements are offered (no group or instance norm, no bilinear upsampling, no
encoder weights or gradient checkpointing), with `unetlab train`'s spelling for the rest (--batch-size,
--image-size, --num-train, --num-val).
"""

import math
from dataclasses import fields

import numpy as np
import torch

from unetlab.cli.common import MODEL_TITLE, LeafParser, add_model_options, model_kwargs, parse_shape, record_flags
from unetlab.data.synthetic import CLASS_NAMES
from unetlab.errors import UnetlabError
from unetlab.logits import is_binary, num_labels, output_channels
from unetlab.models import create_model, model_options
from unetlab.options import TWIN_NORMS
from unetlab.settings import add_flags, invalid, settings_under
from unetlab.twin import NumpyUNet
from unetlab.twin.bridge import check_twin, format_check, within_tolerance
from unetlab.twin.train import TwinTrainConfig, synthetic_cells, train_twin

TWIN_MODELS = ("unet-classic", "unet")  # the registered models the twin mirrors
TWIN_OPTIONS = ("in_channels", "num_classes", "base_channels", "depth", "padding", "norm", "dropout")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "twin",
        help="the NumPy twin: check it against PyTorch, or train it",
        description="The NumPy U-Net with hand-written backward passes: compare it with PyTorch, or train it.",
    )
    commands = parser.add_subparsers(
        dest="twin_command", required=True, metavar="{check,train}", parser_class=LeafParser
    )

    check = commands.add_parser(
        "check",
        help="compare the twin with PyTorch, stage by stage and parameter by parameter",
        description="Run one step of a PyTorch U-Net and of its NumPy twin (same weights, same batch, float64) and "
        "print the max absolute and relative error of every stage output, every gradient and every buffer. "
        "Exit status 1 when an error exceeds --tol.",
    )
    check.add_argument("--model", choices=TWIN_MODELS, default="unet-classic", help="registered model to mirror")
    check.add_argument(
        "--input",
        metavar="C,H,W",
        help="input shape (default: the smallest side a valid-padding net takes, e.g. 188 at depth 4; "
        "37 for same padding, an odd side that exercises ceil-mode pooling)",
    )
    check.add_argument("--batch-size", type=int, default=2, help="images per batch")
    check.add_argument("--eval", action="store_true", help="evaluation mode (running estimates, no dropout)")
    check.add_argument("--seed", type=int, default=0, help="seeds the weights, the batch and the dropout mask")
    check.add_argument("--tol", type=float, default=1e-9, help="largest relative error that passes (>= 0)")
    add_twin_model_options(check)
    record_flags(check)
    check.set_defaults(func=run_check, command_name="twin check")

    train = commands.add_parser(
        "train",
        help="train the twin on synthetic cells and report its validation Dice",
        description="Train the NumPy twin (Adam, cross-entropy + soft Dice) on the built-in synthetic cell images "
        "and report the validation Dice. Its model defaults are small (--base-channels 8 --depth 3) so that it "
        "trains in seconds on a CPU; other model options default to the registered model's.",
    )
    train.add_argument("--model", choices=TWIN_MODELS, default="unet", help="registered model whose options to use")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_flags(train, TwinTrainConfig)
    add_twin_model_options(train, "model options (default: --base-channels 8 --depth 3, then the registered model's)")
    record_flags(train)
    train.set_defaults(func=run_train, command_name="twin train", **{"model_kwargs.base_channels": 8,
                                                                     "model_kwargs.depth": 3})  # fmt: skip


def add_twin_model_options(parser, title: str = MODEL_TITLE) -> None:
    """The model options of `NumpyUNet` (those of `ModelOptions` it implements), named as `unetlab train`'s."""
    norms = ["none" if n is None else n for n in TWIN_NORMS]
    add_model_options(parser, title, only=TWIN_OPTIONS, choices={"norm": norms})


def run_check(args) -> int:
    if args.batch_size < 1:
        raise UnetlabError(f"--batch-size {args.batch_size} is not valid; use 1 or more")
    if not (math.isfinite(args.tol) and args.tol >= 0):
        raise UnetlabError(f"--tol {args.tol} is not valid; give the largest relative error that passes, >= 0")
    torch.manual_seed(args.seed)  # the initial weights
    with settings_under("model_kwargs"):
        model = create_model(args.model, **model_kwargs(args)).double().train(not args.eval)
    if args.input:
        shape = parse_shape(args.input, "--input")
        if len(shape) != 3 or shape[0] != model.in_channels:
            raise UnetlabError(
                f"--input {args.input!r} is not valid; give {model.in_channels},H,W (channels = --in-channels)"
            )
    else:
        side = model.valid_input_size(1) if model.padding == "valid" else 37
        shape = (model.in_channels, side, side)
    out_h, out_w = model.output_size(shape[1]), model.output_size(shape[2])  # raises for sizes that do not fit
    rng = np.random.default_rng(args.seed)
    image = rng.standard_normal((args.batch_size, *shape))
    mask = rng.integers(0, num_labels(model.num_classes), (args.batch_size, out_h, out_w))
    print(
        f"twin check: {args.model} ({_describe(model)}), input {args.batch_size}x{'x'.join(map(str, shape))}, "
        f"float64, {'eval' if args.eval else 'train'} mode, loss {'BCE' if is_binary(model.num_classes) else 'CE'}"
    )
    report = check_twin(model, image, mask, seed=args.seed)
    print(format_check(report))
    failed = [r for r in report["rows"] if not within_tolerance(r.max_abs, r.max_rel, args.tol)]
    worst = max((r for r in report["rows"] if not np.isnan(r.max_rel)), key=lambda r: r.max_rel)
    print(
        f"\nworst relative error {worst.max_rel:.1e} ({worst.section} {worst.name}); tolerance {args.tol:g}: "
        + ("OK" if not failed else f"FAIL ({', '.join(r.name for r in failed)})")
    )
    ok = not failed
    return 0 if ok else 1


def run_train(args) -> int:
    cfg = TwinTrainConfig(**{f.name: getattr(args, f.name) for f in fields(TwinTrainConfig)})
    kwargs = model_kwargs(args)
    classes, valid = CLASS_NAMES["cells"], output_channels(len(CLASS_NAMES["cells"]))
    if kwargs.get("num_classes", valid[0]) not in valid:
        raise invalid(
            "model_kwargs.num_classes",
            kwargs["num_classes"],
            f"1 (one sigmoid output) or 2 (softmax) for the {len(classes)} classes of the synthetic cells",
        )
    train_data, val_data = synthetic_cells(cfg)
    channels = train_data[0].shape[1]
    if kwargs.setdefault("in_channels", channels) != channels:
        raise UnetlabError(f"--in-channels {kwargs['in_channels']} does not fit the {channels}-channel images")
    options = {k: v for k, v in model_options(args.model).items() if k in NumpyUNet.CONFIG}
    with settings_under("model_kwargs"):
        twin = NumpyUNet(**{**options, **kwargs}, seed=args.seed)
    count = sum(p.size for p in twin.params.values())
    print(
        f"twin train: {args.model} ({_describe(twin)}), {count:,} parameters; synthetic cells "
        f"{cfg.image_size}x{cfg.image_size}, {cfg.num_train} train / {cfg.num_val} val images"
    )
    history = train_twin(twin, cfg, train_data, val_data, progress=not args.no_progress)
    step, dice = history["val_dice"][-1]
    print(
        f"validation Dice {dice:.4f} after {step} steps, {history['seconds']:.0f} s "
        f"(final training loss {history['losses'][-1]:.4f})"
    )
    return 0


def _describe(model) -> str:
    norm = model.norm or "no norm"
    return (
        f"{model.padding} padding, {norm}, depth {model.depth}, base {model.base_channels}, dropout {model.dropout_p}"
    )
