"""Data: datasets from folders or built-in synthetic data, the shared `DataInfo` contract, and `IGNORE_INDEX`.

The names below load on first use (PEP 562), so that the torch-free modules of this package (`synthetic`, `io`,
`config`) can be imported without torch, as the NumPy twin does.
"""

import importlib

_PUBLIC = {  # name -> the module that defines it
    "DataConfig": "unetlab.data.config",
    "DataInfo": "unetlab.data.info",
    "IGNORE_INDEX": "unetlab.data.info",
    "ImageDataset": "unetlab.data.datasets",
    "PatchDataset": "unetlab.data.datasets",
    "build_datasets": "unetlab.data.datasets",
}

__all__ = list(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'unetlab.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
