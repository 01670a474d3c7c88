"""unetlab: U-Nets for image segmentation, built from scratch and built twice.

The public API below loads on first use (PEP 562), so that `import unetlab.twin`, the NumPy twin, imports
NumPy alone and never torch.
"""

import importlib

__version__ = "0.1.0"

from unetlab.errors import UnetlabError  # noqa: E402 (after __version__, which checkpoint files record)

_PUBLIC = {  # name -> the module that defines it
    "AttentionUNet": "unetlab.models",
    "ResNetUNet": "unetlab.models",
    "UNet": "unetlab.models",
    "create_model": "unetlab.models",
    "list_models": "unetlab.models",
    "Prediction": "unetlab.inference.predictor",
    "Predictor": "unetlab.inference.predictor",
    "predict": "unetlab.inference.predictor",
    "DataConfig": "unetlab.data.config",
    "build_datasets": "unetlab.data.datasets",
    "TrainConfig": "unetlab.training.config",
    "train": "unetlab.training.engine",
}

__all__ = ["UnetlabError", "__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'unetlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
