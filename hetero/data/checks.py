"""What a dataset is from its folders alone (no image decoded): its shape, and whether it can
be loaded. Cheap enough to run before a sweep starts.
"""

from __future__ import annotations

import os
from pathlib import Path

from hetero.data.cifar import CIFAR_FOLDERS, _cifar_missing_message, _default_data_dir
from hetero.data.fixed_stats import (
    FIXED_STATS_FOLDERS,
    TINY_LAYOUT,
    _check_fixed_size,
    _fixed_stats_classes,
    _tiny_samples,
)
from hetero.data.folders import FOLDER_LAYOUT, _class_names, _folder_samples, _inspect_folder
from hetero.dataset_info import DATASET_SHAPES, DATASETS


def dataset_shape(name: str, data_dir: str | os.PathLike | None = None) -> tuple[int, int, int]:
    """(in_channels, input_size, num_classes) without loading the data."""
    if name == "imagefolder":
        return _inspect_folder(_require_dir(name, data_dir))
    if name == "imagenet" and data_dir is not None and (Path(data_dir) / "train").is_dir():
        return 3, 224, len(_class_names(Path(data_dir) / "train"))
    if name in FIXED_STATS_FOLDERS and data_dir is not None and (Path(data_dir) / "train").is_dir():
        channels, size, _ = DATASET_SHAPES[name]
        return channels, size, len(_fixed_stats_classes(name, Path(data_dir).expanduser()))
    if name not in DATASET_SHAPES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASET_SHAPES[name]


def check_data(name: str, data_dir: str | os.PathLike | None = None, *,
                download: bool = False) -> None:
    """Raise a one-line error unless ``name`` can be loaded from ``data_dir`` (files not read).

    Cheap enough to run before a sweep starts: it looks at folders, never decodes an image.
    """
    if data_dir is not None and not download and not Path(data_dir).expanduser().is_dir():
        raise FileNotFoundError(f"data_dir {os.fspath(data_dir)} does not exist (dataset "
                                f"{name!r}); pass the folder that holds the data")
    if name in CIFAR_FOLDERS and not download:
        root = Path(data_dir).expanduser().resolve() if data_dir else _default_data_dir()
        folder = root / CIFAR_FOLDERS[name]
        if (root / "train").is_dir():   # CIFAR as an image folder
            _check_fixed_size(name, root, _folder_samples(root))
        elif not (folder.is_dir() and any(folder.iterdir())):
            raise FileNotFoundError(_cifar_missing_message(name, root))
    elif name == "imagefolder":
        _inspect_folder(_require_dir(name, data_dir))
    elif name == "imagenet":   # streamed and resized: only its classes are checked here
        _folder_samples(_require_dir(name, data_dir))
    elif name == "tinyimagenet":
        root = _require_dir(name, data_dir)
        _check_fixed_size(name, root, _tiny_samples(root))
    elif name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def _require_dir(name: str, data_dir) -> Path:
    if data_dir is None:
        layout = TINY_LAYOUT if name == "tinyimagenet" else FOLDER_LAYOUT
        raise ValueError(f"dataset {name!r} needs data_dir (--data-dir), laid out as {layout}")
    return Path(data_dir).expanduser().resolve()
