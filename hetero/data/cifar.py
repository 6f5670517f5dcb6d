"""CIFAR-10/100 as torchvision's python-pickle files (or, through `fixed_stats`, as an image
folder).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from hetero.data.batches import TensorImageData
from hetero.data.cache import _cached
from hetero.data.fixed_stats import _load_cifar_folder
from hetero.data.stats import CIFAR_MEAN, CIFAR_STD
from hetero.dataset_info import DATASET_SHAPES

CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def _default_data_dir() -> Path:
    return Path(os.environ.get("HETERO_DATA", "data")).expanduser().resolve()


def _load_cifar(name: str, data_dir, download: bool, device) -> TensorImageData:
    root = Path(data_dir).expanduser().resolve() if data_dir else _default_data_dir()
    if not download and (root / "train").is_dir():
        return _load_cifar_folder(name, root, device)
    if download:
        _torchvision_cifar(name, root, train=True, download=True)
        _torchvision_cifar(name, root, train=False, download=True)
    folder = root / CIFAR_FOLDERS[name]
    files = sorted(folder.glob("*")) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(_cifar_missing_message(name, root))
    arrays, from_cache = _cached(f"{name}", folder, files, lambda: _decode_cifar(name, root))
    return TensorImageData(name, (arrays["train_x"], arrays["train_y"]),
                           (arrays["test_x"], arrays["test_y"]),
                           num_classes=DATASET_SHAPES[name][2], scale=1 / 255, mean=CIFAR_MEAN,
                           std=CIFAR_STD, flip=True, device=device, from_cache=from_cache)


def _cifar_missing_message(name: str, root: Path) -> str:
    layout = ("data_batch_1..5, test_batch, batches.meta" if name == "cifar10"
              else "train, test, meta")
    return (f"{name} not found: searched {root / CIFAR_FOLDERS[name]}. No network download "
            f"happens unless --download (download=True) is given. Expected layout: "
            f"{root}/{CIFAR_FOLDERS[name]}/{{{layout}}} (torchvision's python version), or "
            f"pass --data-dir pointing at the folder that contains {CIFAR_FOLDERS[name]}/, or at "
            f"an image folder DIR/train/<class>/*.png and DIR/test/<class>/*.png of 32x32 images")


def _torchvision_cifar(name: str, root: Path, *, train: bool, download: bool):
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        return cls(str(root), train=train, download=download)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise FileNotFoundError(f"{_cifar_missing_message(name, root)} ({err})") from err


def _decode_cifar(name: str, root: Path) -> dict:
    out = {}
    for split, train in (("train", True), ("test", False)):
        ds = _torchvision_cifar(name, root, train=train, download=False)
        out[f"{split}_x"] = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        out[f"{split}_y"] = torch.tensor(ds.targets, dtype=torch.int64)
    return out
