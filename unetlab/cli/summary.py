"""`unetlab summary MODEL`: a per-stage table of a model's shapes, parameters, FLOPs and activation memory."""

from unetlab.cli.common import add_model_options, model_kwargs, parse_shape, record_flags
from unetlab.errors import UnetlabError, plural
from unetlab.models import create_model, list_models
from unetlab.models.summary import format_summary, summarize
from unetlab.settings import settings_under


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "summary",
        help="per-stage shapes, parameters, FLOPs and activation memory of a model",
        description="Print each stage's output shape, parameters, FLOPs and activation memory, with totals.",
    )
    parser.add_argument("model", metavar="MODEL", help=f"one of: {', '.join(list_models())}")
    parser.add_argument(
        "--input",
        metavar="C,H,W",
        help="input shape (default: 1,572,572 for valid-padding models, the paper's; otherwise C,256,256)",
    )
    add_model_options(parser)
    record_flags(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    kwargs = model_kwargs(args)
    shape = parse_shape(args.input, "--input") if args.input else None
    if shape is not None:
        if len(shape) != 3:
            raise UnetlabError(f"--input {args.input!r} is not valid; give channels, height and width like 3,256,256")
        if kwargs.setdefault("in_channels", shape[0]) != shape[0]:
            raise UnetlabError(
                f"--input has {plural(shape[0], 'channel')} but --in-channels is {kwargs['in_channels']}; make them "
                "agree"
            )
    with settings_under("model_kwargs"):
        model = create_model(args.model, **kwargs)
    if shape is None:
        side = 572 if model.padding == "valid" else 256
        shape = (model.in_channels, side, side)
    c, h, w = shape
    fitted = (c, model.valid_input_size(h), model.valid_input_size(w))
    if fitted != shape:
        print(f"note: {h} x {w} does not fit {args.model}; summarising the next valid size, {fitted[1]} x {fitted[2]}")
    print(format_summary(summarize(model, fitted, name=args.model)))
    return 0
