"""`unetlab twin check|train`: the NumPy twin side by side with PyTorch, and the twin trained on synthetic data.

unetlab twin check                                   # unet-classic (the paper's net) at 2 x 1 x 188 x 188
unetlab twin check --model unet --depth 3 --base-channels 8 --input 3,45,45
unetlab twin train                                   # unet, base 8, depth 3, on 64 x 64 synthetic cells

Only the model options the twin implements are offered (no group or instance norm, no bilinear upsampling, no
encoder weights or gradient checkpointing), with `unetlab train`'s spelling for the rest (--batch-size,
--image-size, --num-train, --num-val).
"""

import math

import numpy as np
import torch

from unetlab.cli.common import LeafParser, model_kwargs, parse_shape
from unetlab.data.synthetic import CLASS_NAMES, generate
from unetlab.errors import UnetlabError
from unetlab.models import create_model, model_options
from unetlab.options import PADDINGS, TWIN_NORMS
from unetlab.twin import NumpyUNet
from unetlab.twin.bridge import check_twin, format_check, within_tolerance
from unetlab.twin.train import TwinTrainConfig, train_twin

TWIN_MODELS = ("unet-classic", "unet")  # the registered models the twin mirrors


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
    check.set_defaults(func=run_check, command_name="twin check")

    train = commands.add_parser(
        "train",
        help="train the twin on synthetic cells and report its validation Dice",
        description="Train the NumPy twin (Adam, cross-entropy + soft Dice) on the built-in synthetic cell images "
        "and report the validation Dice. Its model defaults are small (--base-channels 8 --depth 3) so that it "
        "trains in seconds on a CPU; other model options default to the registered model's.",
    )
    train.add_argument("--model", choices=TWIN_MODELS, default="unet", help="registered model whose options to use")
    # data
    train.add_argument("--image-size", type=int, default=64, help="synthetic image side in px (32 or more)")
    train.add_argument("--num-train", type=int, default=256, help="synthetic training images")
    train.add_argument("--num-val", type=int, default=64, help="synthetic validation images")
    # optimisation
    defaults = TwinTrainConfig()
    train.add_argument("--steps", type=int, default=defaults.steps, help="optimizer steps")
    train.add_argument("--batch-size", type=int, default=defaults.batch_size, help="images per step")
    train.add_argument("--lr", type=float, default=defaults.lr, help="Adam learning rate (> 0)")
    train.add_argument("--dice-weight", type=float, default=defaults.dice_weight, help=">= 0; 0 = cross-entropy only")
    train.add_argument("--eval-every", type=int, default=defaults.eval_every, help="steps; 0 = only at the end")
    train.add_argument("--seed", type=int, default=0, help="seeds the data, the weights and the batch order")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_twin_model_options(train, "model options (default: --base-channels 8 --depth 3, then the registered model's)")
    train.set_defaults(func=run_train, command_name="twin train", base_channels=8, depth=3)


def add_twin_model_options(parser, title: str = "model options (default: the registered model's own)") -> None:
    """The model options of `NumpyUNet`, as flags named like `unetlab train`'s; left out: the model's default."""
    group = parser.add_argument_group(title)
    group.add_argument("--in-channels", type=int, help="image channels C")
    group.add_argument("--num-classes", type=int, help="output channels K: 1 = binary (sigmoid), >= 2 = softmax")
    group.add_argument("--base-channels", type=int, help="channels of the first stage (doubled at each level)")
    group.add_argument("--depth", type=int, help="number of down-sampling levels, 1 to 8")
    group.add_argument("--padding", choices=PADDINGS, help="convolutions: same (padded) or valid (the paper)")
    norms = ["none" if n is None else n for n in TWIN_NORMS]
    group.add_argument("--norm", choices=norms, help="batch norm after every 3x3 conv, or none")
    group.add_argument("--dropout", type=float, help="dropout probability at the end of the contracting path")


def run_check(args) -> int:
    if args.batch_size < 1:
        raise UnetlabError(f"--batch-size {args.batch_size} is not valid; use 1 or more")
    if not (math.isfinite(args.tol) and args.tol >= 0):
        raise UnetlabError(f"--tol {args.tol} is not valid; give the largest relative error that passes, >= 0")
    torch.manual_seed(args.seed)  # the initial weights
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
    mask = rng.integers(0, max(model.num_classes, 2), (args.batch_size, out_h, out_w))
    print(
        f"twin check: {args.model} ({_describe(model)}), input {args.batch_size}x{'x'.join(map(str, shape))}, "
        f"float64, {'eval' if args.eval else 'train'} mode, loss {'BCE' if model.num_classes == 1 else 'CE'}"
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
    for option, value, low in (
        ("--image-size", args.image_size, 32),
        ("--num-train", args.num_train, 1),
        ("--num-val", args.num_val, 1),
    ):
        if value < low:
            raise UnetlabError(f"{option} {value} is not valid; use {low} or more")
    kwargs = model_kwargs(args)
    classes = CLASS_NAMES["cells"]
    if kwargs.get("num_classes", 1) not in (1, len(classes)):
        raise UnetlabError(
            f"--num-classes {kwargs['num_classes']} does not fit the synthetic cells, which have {len(classes)} "
            f"classes ({', '.join(classes)}); use 1 (one sigmoid output) or 2 (softmax)"
        )
    cfg = TwinTrainConfig(args.steps, args.batch_size, args.lr, args.dice_weight, args.eval_every, args.seed)
    cfg.check()  # before the data are generated
    train_data = _cells(range(args.num_train), args.seed, args.image_size)
    val_data = _cells(range(args.num_train, args.num_train + args.num_val), args.seed, args.image_size)
    channels = train_data[0].shape[1]
    if kwargs.setdefault("in_channels", channels) != channels:
        raise UnetlabError(f"--in-channels {kwargs['in_channels']} does not fit the {channels}-channel images")
    options = {k: v for k, v in model_options(args.model).items() if k in NumpyUNet.CONFIG}
    twin = NumpyUNet(**{**options, **kwargs}, seed=args.seed)
    count = sum(p.size for p in twin.params.values())
    print(
        f"twin train: {args.model} ({_describe(twin)}), {count:,} parameters; synthetic cells "
        f"{args.image_size}x{args.image_size}, {args.num_train} train / {args.num_val} val images"
    )
    history = train_twin(twin, cfg, train_data, val_data, progress=not args.no_progress)
    step, dice = history["val_dice"][-1]
    print(
        f"validation Dice {dice:.4f} after {step} steps, {history['seconds']:.0f} s "
        f"(final training loss {history['losses'][-1]:.4f})"
    )
    return 0


def _cells(indices, seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic cell images (n, C, size, size) float32 and masks (n, size, size) int64."""
    pairs = [generate("cells", i, seed=seed, size=size) for i in indices]
    return np.stack([p[0] for p in pairs]).astype(np.float32), np.stack([p[1] for p in pairs]).astype(np.int64)


def _describe(model) -> str:
    norm = model.norm or "no norm"
    return (
        f"{model.padding} padding, {norm}, depth {model.depth}, base {model.base_channels}, dropout {model.dropout_p}"
    )
