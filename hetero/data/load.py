"""`load_dataset`: pick the reader for a dataset name, keep a fraction, resize."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from hetero.data.batches import ImageData, _crop_padding
from hetero.data.checks import _require_dir
from hetero.data.cifar import CIFAR_FOLDERS, _load_cifar
from hetero.data.digits import _load_digits
from hetero.data.fixed_stats import _load_tinyimagenet
from hetero.data.folders import _load_imagefolder, _load_imagenet
from hetero.data.streaming import StreamingImageData
from hetero.dataset_info import DATASETS


def load_dataset(name: str = "digits", data_dir: str | os.PathLike | None = None, *,
                 download: bool = False, fraction: float = 1.0, seed: int = 0,
                 device="cpu", input_size: int | None = None) -> ImageData:
    """Load ``name``; ``fraction`` < 1 keeps a seeded, class-stratified part of the train split;
    ``input_size`` resizes the images (square, in pixels)."""
    data = _load(name, data_dir, download=download, fraction=fraction, seed=seed, device=device)
    return _resized(data, input_size) if input_size and input_size != data.input_size else data


def _load(name, data_dir, *, download, fraction, seed, device) -> ImageData:
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if name == "digits":
        data = _load_digits(device)
    elif name in CIFAR_FOLDERS:
        data = _load_cifar(name, data_dir, download, device)
    elif name == "tinyimagenet":
        data = _load_tinyimagenet(_require_dir(name, data_dir), device)
    elif name == "imagefolder":
        data = _load_imagefolder(_require_dir(name, data_dir), device)
    elif name == "imagenet":
        data = _load_imagenet(_require_dir(name, data_dir), device)
    else:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return _keep_fraction(data, fraction, seed) if fraction < 1 else data


def _resized(data: ImageData, size: int, chunk: int = 512) -> ImageData:
    """``data`` with its images resized to ``size`` x ``size`` (bilinear, antialiased; a
    decoded dataset once, in chunks; a streamed one as it decodes)."""
    data.input_size = size
    if isinstance(data, StreamingImageData):
        return data

    def resize(x: torch.Tensor) -> torch.Tensor:
        parts = [F.interpolate(x[i:i + chunk].float(), size=(size, size), mode="bilinear",
                               antialias=True, align_corners=False).round_().clamp_(0, 255)
                 .to(x.dtype) for i in range(0, len(x), chunk)]
        return torch.cat(parts)

    data.train_x, data.test_x = resize(data.train_x), resize(data.test_x)
    data.pad = _crop_padding(size)
    return data


def _keep_fraction(data: ImageData, fraction: float, seed: int) -> ImageData:
    if isinstance(data, StreamingImageData):
        labels = torch.tensor([label for _, label in data.train])
        keep = _stratified_subset(labels, fraction, seed).tolist()
        data.train = [data.train[i] for i in keep]
        data.num_train = len(data.train)
        return data
    keep = _stratified_subset(data.train_y.cpu(), fraction, seed).to(data.device)
    data.train_x, data.train_y = data.train_x[keep], data.train_y[keep]
    data.num_train = len(keep)
    return data


def _stratified_subset(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Indices of round(fraction * n_c) (at least 1) random samples of every class, sorted."""
    gen = torch.Generator().manual_seed(int(seed))
    kept = []
    for cls in torch.unique(labels):
        members = torch.nonzero(labels == cls).flatten()
        count = max(1, round(len(members) * fraction))
        kept.append(members[torch.randperm(len(members), generator=gen)[:count]])
    return torch.cat(kept).sort().values
