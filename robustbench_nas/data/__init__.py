"""Datasets by name (``digits`` embedded; CIFAR-10/100, ImageNet16-120 and ``npz`` from local roots) and loaders."""

from . import sources as _sources  # noqa: F401  (registers the datasets)
from .base import DataError, DataSplit, Dataset, DatasetInfo, get_dataset, list_datasets, register_dataset, sample_indices
from .loader import DeviceLoader, random_crop_flip
from .sources import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DataError",
    "DataSplit",
    "Dataset",
    "DatasetInfo",
    "DeviceLoader",
    "get_dataset",
    "list_datasets",
    "random_crop_flip",
    "register_dataset",
    "sample_indices",
]
