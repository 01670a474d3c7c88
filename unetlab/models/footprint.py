"""What a model would take before it is built: its weights' bytes, counted on PyTorch's meta device.

A model built under `torch.device("meta")` has tensors with shapes and dtypes but no memory, so any size of model
can be counted in a fraction of a second (the way `unetlab.models.summary` runs models on the meta device). This
lets a checkpoint, a config or a command line that asks for an absurd model (base_channels 200000: tens of thousands
of GiB of weights) be refused with the figure, before anything is allocated: `create_model` checks every model so.
"""

import torch
from torch import nn

from unetlab.device import available_memory
from unetlab.errors import UnetlabError

# The most bytes of weights unetlab builds a model with where the machine's free memory cannot be read: twice the
# largest U-Net the registry's options allow (depth 8 at 64 base channels: 8.0 G parameters, 30 GiB).
MAX_MODEL_BYTES = 64 * 2**30


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the model's state dict (parameters and buffers), each tensor counted once."""
    tensors = {id(t): t for t in model.state_dict(keep_vars=True).values()}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def check_model_fits(name: str, builder, kwargs: dict) -> None:
    """Refuse the model `builder(**kwargs)` when its weights alone would not fit in the machine's free memory, after
    building it on the meta device (a file it names, such as encoder weights, is not read there).

    Raises:
        UnetlabError: with the parameter count, the GiB needed and the GiB free.
    """
    with torch.device("meta"):
        probe = builder(**{k: v for k, v in kwargs.items() if k != "encoder_weights"})
    needed = weight_bytes(probe)
    limit = available_memory(torch.device("cpu")) or MAX_MODEL_BYTES
    if needed > limit:
        params = sum(p.numel() for p in probe.parameters())
        options = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        raise UnetlabError(
            f"model {name!r} with {options} has {params:,} parameters, whose weights alone would take "
            f"{needed / 2**30:,.1f} GiB, and this machine has {limit / 2**30:,.1f} GiB free; choose fewer "
            "base_channels or a smaller depth"
        )
