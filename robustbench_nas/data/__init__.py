"""Datasets by name (``digits`` embedded; CIFAR-10/100, ImageNet16-120 and ``npz`` from local roots), loaders, and
the one rule choosing evaluation subsets (:mod:`.subsets`)."""

from . import sources as _sources  # noqa: F401  (registers the datasets)
from .base import DataError, DataSplit, Dataset, DatasetInfo, get_dataset, list_datasets, register_dataset, sample_indices
from .loader import DeviceLoader, random_crop_flip
from .sources import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD
from .subsets import PURPOSES, ImageSubset, choose_images, read_indices, subset_indices

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DataError",
    "DataSplit",
    "Dataset",
    "DatasetInfo",
    "DeviceLoader",
    "ImageSubset",
    "PURPOSES",
    "choose_images",
    "get_dataset",
    "list_datasets",
    "random_crop_flip",
    "read_indices",
    "register_dataset",
    "sample_indices",
    "subset_indices",
]
