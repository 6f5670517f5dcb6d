"""Datasets as tensors on the training device, with batched augmentation (airbench style).

Small datasets (digits, CIFAR, Tiny-ImageNet, image folders up to ``MAX_IN_MEMORY`` images) are
decoded once, cached as uint8 tensors, and held as one tensor on the device; crop and flip run on
whole batches.
ImageNet is streamed through a DataLoader. Both kinds share the :class:`ImageData` interface.
Batch order and augmentation are a pure function of (seed, epoch), so a resumed run sees the
same batches as an uninterrupted one.

The modules, one concept each: ``batches`` (in-memory data and its batches), ``streaming``
(the DataLoader one), ``load`` (``load_dataset``), ``checks`` (shape and checks without
decoding), ``cache`` (decode-once cache, ``data_digest``), ``stats`` (normalisation), and the
readers ``digits``, ``cifar``, ``folders`` (imagefolder, imagenet), ``fixed_stats``
(Tiny-ImageNet, CIFAR as a folder). Everything other code imports is re-exported here.
"""

from hetero.data.batches import ImageData, TensorImageData
from hetero.data.cache import CACHE_FORMAT, cache_dir, data_digest
from hetero.data.checks import check_data, dataset_shape
from hetero.data.cifar import CIFAR_FOLDERS
from hetero.data.digits import DIGITS_SPLIT_SEED
from hetero.data.fixed_stats import FIXED_STATS_FOLDERS, TINY_LAYOUT, TINY_SHIPPED
from hetero.data.folders import FOLDER_LAYOUT, GRAYSCALE_MODES, IMAGE_SUFFIXES, MAX_IN_MEMORY
from hetero.data.load import load_dataset
from hetero.data.stats import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD, TINY_MEAN, TINY_STD
from hetero.data.streaming import StreamingImageData
from hetero.dataset_info import DATASET_SHAPES, DATASETS

__all__ = ["DATASET_SHAPES", "DATASETS", "ImageData", "TensorImageData", "StreamingImageData",
           "dataset_shape", "load_dataset", "check_data", "data_digest",
           # The constants and cache_dir, importable here as from the single module this
           # package replaced.
           "CACHE_FORMAT", "CIFAR_FOLDERS", "CIFAR_MEAN", "CIFAR_STD", "DIGITS_SPLIT_SEED",
           "FIXED_STATS_FOLDERS", "FOLDER_LAYOUT", "GRAYSCALE_MODES", "IMAGE_SUFFIXES",
           "IMAGENET_MEAN", "IMAGENET_STD", "MAX_IN_MEMORY", "TINY_LAYOUT", "TINY_MEAN",
           "TINY_SHIPPED", "TINY_STD", "cache_dir"]
