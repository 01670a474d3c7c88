"""What a model would take before it is built: its weights' bytes, counted on PyTorch's meta device.

A model built under `torch.device("meta")` has tensors with shapes and dtypes but no memory, so any size of model
can be counted in a fraction of a second (the way `unetlab.models.summary` runs models on the meta device). This
lets a checkpoint, a config or a command line that asks for an absurd model (base_channels 200000: a million GiB
of weights) be refused with the figure, before anything is allocated.
"""

import torch
from torch import nn

from unetlab.errors import UnetlabError
from unetlab.models import create_model

# The most bytes of weights (parameters and buffers) unetlab builds a model with. 64 GiB is twice the largest
# model the registry's options allow for a U-Net (depth 8 at 64 base channels: 8.0 G parameters, 30 GiB) and more
# than any single accelerator holds with room to train; anything larger was asked for by mistake.
MAX_MODEL_BYTES = 64 * 2**30


def meta_model(name: str, kwargs: dict) -> nn.Module:
    """`create_model(name, **kwargs)` on the meta device: shapes only, no memory.

    Raises:
        UnetlabError: for an unknown name or an invalid option, as `create_model` does.
    """
    with torch.device("meta"):
        return create_model(name, **kwargs)


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the model's state dict (parameters and buffers), each tensor counted once."""
    tensors = {id(t): t for t in model.state_dict(keep_vars=True).values()}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def check_model_size(
    name: str,
    kwargs: dict,
    limit: int = MAX_MODEL_BYTES,
    fix: str | None = "choose fewer base_channels or a smaller depth",
) -> nn.Module:
    """The meta-device model of `create_model(name, **kwargs)`, after checking that its weights fit in `limit`.

    `fix` ends the error message (what the user should do); None ends it at the figures.

    Raises:
        UnetlabError: for an invalid option, or a model whose weights would take more than `limit` bytes (the
            message gives the parameter count and the GiB needed).
    """
    model = meta_model(name, kwargs)
    needed = weight_bytes(model)
    if needed > limit:
        params = sum(p.numel() for p in model.parameters())
        raise UnetlabError(
            f"{name} with {kwargs} has {params:,} parameters, whose weights alone would take {needed / 2**30:,.1f} "
            f"GiB, more than the {limit / 2**30:.0f} GiB unetlab builds" + (f"; {fix}" if fix else "")
        )
    return model
