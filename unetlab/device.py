"""Where a model computes: the device ("auto" = CUDA when there is one) and the autocast dtype of `--amp`.

Shared by training, validation and prediction, so that `--device` and `--amp` mean the same in every command.
"""

import torch

from unetlab.settings import SettingError, invalid

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str | torch.device) -> torch.device:
    """ "auto" -> the first CUDA device when there is one, else the CPU; anything else as torch reads it.

    Raises:
        SettingError: for a device name torch does not know, or CUDA asked for where there is none.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise invalid("device", device, "auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SettingError(
            lambda n: (
                f"{n('device')} {device} asked for, but this torch sees no CUDA GPU; use {n('device')} cpu or auto"
            ),
            ["device"],
        )
    return device


def available_memory(device: torch.device) -> int | None:
    """Bytes free for a new allocation on `device`: CUDA's free memory, or the system's MemAvailable for the CPU
    (None where it cannot be read)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `--amp` ("auto", "none", "bf16", "fp16") on `device`; None = full precision.

    "auto" is bf16 on GPUs that support it (fp16 on older ones) and full precision on the CPU.
    """
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp not in AMP_DTYPES:
        raise invalid("amp", amp, "one of auto, none, bf16, fp16")
    if amp == "fp16" and device.type != "cuda":
        raise SettingError(lambda n: f"{n('amp')} fp16 needs a CUDA device; on the CPU use bf16 or none", ["amp"])
    return AMP_DTYPES[amp]
