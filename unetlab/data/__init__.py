"""Data: datasets from folders or built-in synthetic data, the shared `DataInfo` contract, and `IGNORE_INDEX`."""

from unetlab.data.datasets import DataConfig, ImageDataset, PatchDataset, build_datasets
from unetlab.data.info import IGNORE_INDEX, DataInfo

__all__ = ["IGNORE_INDEX", "DataConfig", "DataInfo", "ImageDataset", "PatchDataset", "build_datasets"]
