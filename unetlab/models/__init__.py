"""The model registry: every unetlab model by name, with the defaults that make it that model.

    >>> from unetlab import create_model, list_models
    >>> model = create_model("unet-classic")            # the 2015 paper's network: 1 x 572 x 572 -> 2 x 388 x 388
    >>> model = create_model("unet", in_channels=3, num_classes=4, depth=5, norm="group")

`create_model` records what it built in `model.spec = {"name": ..., "kwargs": ...}`, which checkpoints keep so
that the model can be rebuilt.
"""

import inspect
from functools import partial

from torch import nn

from unetlab.errors import UnetlabError, UnknownNameError
from unetlab.models.attention_unet import AttentionUNet
from unetlab.models.footprint import check_model_fits
from unetlab.models.resnet_unet import ResNetUNet
from unetlab.models.unet import UNet

MODELS = {
    # The paper: unpadded convs, cropped skips, no normalisation, dropout 0.5 at the end of the contracting path.
    "unet-classic": partial(UNet, base_channels=64, padding="valid", norm=None, upsample="transpose", dropout=0.5),
    # The modern U-Net: padded convs and BatchNorm; output the size of the input.
    "unet": partial(UNet, base_channels=64, padding="same", norm="batch"),
    "attention-unet": partial(AttentionUNet, base_channels=64, padding="same", norm="batch"),
    "resnet18-unet": partial(ResNetUNet, encoder="resnet18"),
    "resnet34-unet": partial(ResNetUNet, encoder="resnet34"),
    "resnet50-unet": partial(ResNetUNet, encoder="resnet50"),
}


def list_models() -> list[str]:
    """The registered model names, in registry order."""
    return list(MODELS)


def model_options(name: str) -> dict[str, object]:
    """The keyword arguments `create_model(name, ...)` accepts, with the registered defaults."""
    builder = _builder(name)
    params = inspect.signature(builder.func).parameters
    return {k: builder.keywords.get(k, p.default) for k, p in params.items()}


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model `name`; `kwargs` override its defaults (see the model class for each one).

    Raises:
        UnknownNameError: for an unregistered name (the message lists the valid ones).
        UnetlabError: for an option the model does not have, or an invalid value.
    """
    builder = _builder(name)
    unknown = sorted(set(kwargs) - set(model_options(name)))
    if unknown:
        raise UnetlabError(
            f"model {name!r} has no option {', '.join(unknown)}; its options are {', '.join(model_options(name))}"
        )
    check_model_fits(name, builder, kwargs)
    model = builder(**kwargs)
    model.spec = {"name": name, "kwargs": dict(kwargs)}
    return model


def _builder(name: str) -> partial:
    if name not in MODELS:
        raise UnknownNameError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name]


__all__ = ["AttentionUNet", "MODELS", "ResNetUNet", "UNet", "create_model", "list_models", "model_options"]
