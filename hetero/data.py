"""Datasets as tensors on the training device, with batched augmentation (airbench style).

Small datasets (digits, CIFAR, Tiny-ImageNet, image folders up to ``MAX_IN_MEMORY`` images) are
decoded once, cached as uint8 tensors, and held as one tensor on the device; crop and flip run on
whole batches.
ImageNet is streamed through a DataLoader. Both kinds share the :class:`ImageData` interface.
Batch order and augmentation are a pure function of (seed, epoch), so a resumed run sees the
same batches as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hetero.dataset_info import DATASET_SHAPES, DATASETS

__all__ = ["DATASET_SHAPES", "DATASETS", "ImageData", "TensorImageData", "StreamingImageData",
           "dataset_shape", "load_dataset", "check_data", "data_digest"]


# Reference code (option.py): the same statistics for CIFAR-10 and CIFAR-100.
CIFAR_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The reference code's Tiny-ImageNet loader (ofsoundof/dhp).
TINY_MEAN = (0.4802, 0.4481, 0.3975)
TINY_STD = (0.2302, 0.2265, 0.2262)
CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}

DIGITS_SPLIT_SEED = 0   # constant: every trial seed sees the same digits test set
MAX_IN_MEMORY = 200_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
CACHE_FORMAT = 1        # bump when the cached tensors change meaning

FOLDER_LAYOUT = ("DIR/train/<class>/*.jpg and DIR/test/<class>/*.jpg (or DIR/val/<class>/...), "
                 "one subfolder per class, the same class names in both splits")
TINY_SHIPPED = ("the archive as shipped: DIR/wnids.txt, DIR/train/<wnid>/images/*.JPEG, "
                "DIR/val/images/*.JPEG and DIR/val/val_annotations.txt (<file> TAB <wnid> per line)")
TINY_LAYOUT = (f"{TINY_SHIPPED}; or an image folder: DIR/train/<class>/*.jpg and "
               "DIR/val/<class>/*.jpg (or DIR/test/<class>/)")


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    # SeedSequence mixes (seed, epoch) so neighbouring pairs give unrelated streams.
    entropy = [int(seed) % 2**64, int(epoch) % 2**64]  # SeedSequence rejects negatives
    state = np.random.SeedSequence(entropy).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _crop_padding(input_size: int) -> int:
    # The CIFAR recipe pads 4 at 32x32; scale that with the image (1 at 8x8).
    return max(1, round(input_size / 8))


class ImageData:
    """The interface every dataset shares: shape attributes plus train/test batch iterators."""

    name: str
    in_channels: int
    input_size: int
    num_classes: int
    num_train: int
    num_test: int
    device: torch.device
    # Per-channel normalisation of images scaled to [0, 1]: a batch is (x - mean) / std. A
    # network handed out carries them as its first layer (hetero.preprocess).
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def train_batches(self, batch_size: int, *, augment: bool = True, flip: bool = True,
                      seed: int = 0, epoch: int = 0, device=None
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``flip=False`` turns the horizontal flip off where the dataset has one."""
        raise NotImplementedError

    def test_batches(self, batch_size: int, device=None
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    def test_images(self, count: int) -> torch.Tensor:
        """The first ``count`` test images as a user has them: float32, scaled to [0, 1], not
        normalised (CPU)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name!r}, train={self.num_train}, "
                f"test={self.num_test}, shape={self.in_channels}x{self.input_size}"
                f"x{self.input_size}, classes={self.num_classes}, device={self.device})")


class TensorImageData(ImageData):
    """A dataset held as uint8 tensors on one device; batches are augmented and normalized there.

    Pixels stay uint8 (4x less memory than float) and are zero-padded before normalization,
    as the reference's RandomCrop on PIL images does.
    """

    def __init__(self, name: str, train: tuple[torch.Tensor, torch.Tensor],
                 test: tuple[torch.Tensor, torch.Tensor], *, num_classes: int, scale: float,
                 mean, std, flip: bool, device="cpu", from_cache: bool = False) -> None:
        self.device = torch.device(device)
        self.train_x, self.train_y = (t.to(self.device) for t in train)
        self.test_x, self.test_y = (t.to(self.device) for t in test)
        self.name, self.num_classes, self.flip = name, num_classes, flip
        self.in_channels, self.input_size = self.train_x.shape[1], self.train_x.shape[2]
        self.num_train, self.num_test = len(self.train_y), len(self.test_y)
        self.pad = _crop_padding(self.input_size)
        self.mean, self.std, self.from_cache = tuple(mean), tuple(std), from_cache
        self.scale = scale
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self._mul = scale / std_t
        self._add = -torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) / std_t
        self._norm_on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _normalize(self, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        if device not in self._norm_on:
            self._norm_on[device] = (self._mul.to(device), self._add.to(device))
        mul, add = self._norm_on[device]
        return torch.addcmul(add, x.to(device, non_blocking=True).float(), mul)

    def train_batches(self, batch_size, *, augment=True, flip=True, seed=0, epoch=0,
                      device=None):
        device = self.device if device is None else torch.device(device)
        gen = _epoch_generator(seed, epoch)
        order = torch.randperm(self.num_train, generator=gen).to(self.device)
        if augment:
            shifts = torch.randint(0, 2 * self.pad + 1, (self.num_train, 2), generator=gen)
            flips = torch.rand(self.num_train, generator=gen) < 0.5
            shifts, flips = shifts.to(self.device), flips.to(self.device)
        for start in range(0, self.num_train, batch_size):
            part = slice(start, start + batch_size)
            idx = order[part]
            x = self.train_x[idx]
            if augment:
                x = _random_crop(x, shifts[part], self.pad)
                if self.flip and flip:  # flips are drawn either way: crops stay the same
                    x = torch.where(flips[part].view(-1, 1, 1, 1), x.flip(3), x)
            yield self._normalize(x, device), self.train_y[idx].to(device)

    def test_batches(self, batch_size, device=None):
        device = self.device if device is None else torch.device(device)
        for start in range(0, self.num_test, batch_size):
            x, y = self.test_x[start:start + batch_size], self.test_y[start:start + batch_size]
            yield self._normalize(x, device), y.to(device)

    def test_images(self, count):
        return self.test_x[:count].cpu().float() * self.scale


def _random_crop(x: torch.Tensor, shifts: torch.Tensor, pad: int) -> torch.Tensor:
    """Per-image translated crop of the zero-padded batch: two gathers, no Python per image."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    ar = torch.arange(max(h, w), device=x.device)
    rows = (shifts[:, :1] + ar[:h]).view(b, 1, h, 1).expand(b, c, h, w + 2 * pad)
    cols = (shifts[:, 1:] + ar[:w]).view(b, 1, 1, w).expand(b, c, h, w)
    return padded.gather(2, rows).gather(3, cols)


class _FileDataset(torch.utils.data.Dataset):
    def __init__(self, samples: list[tuple[str, int]], transform) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        from PIL import Image

        path, label = self.samples[i]
        try:
            with Image.open(path) as img:
                return self.transform(img.convert("RGB")), label
        except OSError as exc:  # streamed data is decoded mid-epoch: too late to skip silently
            raise ValueError(f"unreadable image {path} ({exc}): replace or delete it") from None


class StreamingImageData(ImageData):
    """ImageNet-sized folders: decoded per batch by DataLoader workers with torchvision transforms.

    Order is a pure function of (seed, epoch); the random crops are seeded through the loader's
    generator, so they are reproducible when ``workers > 0``.
    """

    def __init__(self, name: str, train: list[tuple[str, int]], test: list[tuple[str, int]], *,
                 num_classes: int, input_size: int = 224, device="cpu", workers: int | None = None
                 ) -> None:
        self.name, self.num_classes, self.input_size, self.in_channels = name, num_classes, \
            input_size, 3
        self.train, self.test = train, test
        self.num_train, self.num_test = len(train), len(test)
        self.device = torch.device(device)
        self.workers = min(8, os.cpu_count() or 1) if workers is None else workers
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD

    def _transform(self, train: bool, flip: bool = True, normalize: bool = True):
        from torchvision import transforms as T

        size = self.input_size
        head = ([T.RandomResizedCrop(size), *([T.RandomHorizontalFlip()] if flip else [])]
                if train else [T.Resize(round(size * 256 / 224)), T.CenterCrop(size)])
        tail = [T.Normalize(IMAGENET_MEAN, IMAGENET_STD)] if normalize else []
        return T.Compose([*head, T.ToTensor(), *tail])

    def test_images(self, count):
        dataset = _FileDataset(self.test[:count], self._transform(False, normalize=False))
        return torch.stack([dataset[i][0] for i in range(len(dataset))])

    def _batches(self, samples, transform, batch_size, sampler, gen, device):
        device = self.device if device is None else torch.device(device)
        loader = torch.utils.data.DataLoader(
            _FileDataset(samples, transform), batch_size=batch_size, sampler=sampler,
            num_workers=self.workers, generator=gen, pin_memory=device.type == "cuda")
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def train_batches(self, batch_size, *, augment=True, flip=True, seed=0, epoch=0,
                      device=None):
        gen = _epoch_generator(seed, epoch)
        order = torch.randperm(self.num_train, generator=gen).tolist()
        yield from self._batches(self.train, self._transform(augment, flip), batch_size, order,
                                 gen, device)

    def test_batches(self, batch_size, device=None):
        order = list(range(self.num_test))
        yield from self._batches(self.test, self._transform(False), batch_size, order, None,
                                 device)


# ---------------------------------------------------------------------------------------------
# Loading


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


def _load_digits(device) -> TensorImageData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.uint8)).unsqueeze(1)  # values 0..16
    labels = torch.from_numpy(digits.target.astype(np.int64))
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=0.2,
                                           stratify=digits.target,
                                           random_state=DIGITS_SPLIT_SEED)
    train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    train_x = images[train_idx]
    mean, std = _channel_stats(train_x, scale=1 / 16)
    # Digits are not mirror-symmetric: no flip.
    return TensorImageData("digits", (train_x, labels[train_idx]),
                           (images[test_idx], labels[test_idx]), num_classes=10, scale=1 / 16,
                           mean=mean, std=std, flip=False, device=device)


def _channel_stats(x: torch.Tensor, scale: float, chunk: int = 4096
                   ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images times ``scale`` (chunked: no full float copy)."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk].to(torch.float64)
        total += part.sum(dim=(0, 2, 3))
        squares += part.square().sum(dim=(0, 2, 3))
    count = x.numel() / x.shape[1]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    return tuple((mean * scale).tolist()), tuple((std * scale).tolist())


# ---------------------------------------------------------------------------------------------
# CIFAR (torchvision's python-pickle files)


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


# ---------------------------------------------------------------------------------------------
# Image folders: DIR/train/<class>/*.jpg and DIR/test/<class>/*.jpg (or val/)


def _layout_error(root: Path, problem: str) -> FileNotFoundError:
    return FileNotFoundError(f"image folder {root}: {problem}. Expected layout: "
                             f"{FOLDER_LAYOUT.replace('DIR', str(root))}")


def _class_names(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _split_dirs(root: Path) -> tuple[Path, Path]:
    if not root.is_dir():
        raise _layout_error(root, "the folder does not exist")
    test = next((root / s for s in ("test", "val") if (root / s).is_dir()), None)
    if not (root / "train").is_dir() or test is None:
        raise _layout_error(root, "it needs a train/ and a test/ (or val/) subfolder")
    return root / "train", test


def _list_images(split_dir: Path, classes: list[str], root: Path) -> list[tuple[str, int]]:
    index = {name: i for i, name in enumerate(classes)}
    samples = []
    for name in _class_names(split_dir):
        if name not in index:
            raise _layout_error(root, f"class {name!r} in {split_dir.name}/ is not in train/")
        samples += [(str(p), index[name]) for p in _images_in(split_dir / name)]
    if not samples:
        suffixes = ", ".join(IMAGE_SUFFIXES)
        raise _layout_error(root, f"no images ({suffixes}) in {split_dir}/<class>/")
    return samples


def _folder_samples(root: Path):
    train_dir, test_dir = _split_dirs(root)
    classes = _class_names(train_dir)
    if not classes:
        raise _layout_error(root, "train/ has no class subfolders")
    train, test = _list_images(train_dir, classes, root), _list_images(test_dir, classes, root)
    _check_classes(root, classes, {"train": train, test_dir.name: test})
    return classes, train, test


def _check_classes(root: Path, classes: list[str], splits: dict[str, list]) -> None:
    """Every class has images in every split, and there are two or more: an empty class folder
    would add a class no image teaches, a class missing from the test split is never scored."""
    if len(classes) < 2:
        raise ValueError(f"image folder {root}: one class only ({classes[0]!r}); a classifier "
                         "needs two or more class subfolders")
    for split, samples in splits.items():
        present = {label for _, label in samples}
        missing = [name for i, name in enumerate(classes) if i not in present]
        if missing:
            names = ", ".join(repr(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise ValueError(f"image folder {root}: {split}/ has no images of class "
                             f"{names} ({len(missing)} of {len(classes)}); every class needs "
                             "images in train/ and in the test split: add them, or remove the "
                             "class everywhere")


GRAYSCALE_MODES = frozenset({"L", "LA", "1", "I", "I;16", "F"})


def _inspect_folder(root: Path) -> tuple[int, int, int]:
    """(channels, size, classes) of an image folder, decided from every image (headers only):
    1 channel only when every image is grayscale, one square size or a one-line error."""
    classes, train, test = _folder_samples(root)
    profile = _image_headers(root, [p for p, _ in train + test])
    if not profile["sizes"]:
        raise _layout_error(root, "it has no readable images in class subfolders")
    size = _one_square_size(root, profile["sizes"])
    channels = 1 if set(profile["modes"]) <= GRAYSCALE_MODES else 3
    return channels, size, len(classes)


def _one_square_size(root: Path, sizes: dict[str, list]) -> int:
    """The one square size of a folder's images (``sizes``: "WxH" -> [count, an example])."""
    if len(sizes) == 1:
        (shape, _), = sizes.items()
        width, height = map(int, shape.split("x"))
        if width == height:
            return width
    shown = ", ".join(f"{shape} ({count}, e.g. {Path(example).relative_to(root)})"
                      for shape, (count, example) in sorted(sizes.items(),
                                                            key=lambda kv: -kv[1][0])[:3])
    raise ValueError(f"image folder {root}: the images must all have one square size, found "
                     f"{shown}: resize them, or use dataset 'imagenet' (resizes while "
                     "streaming)")


def _image_headers(root: Path, paths: list[str]) -> dict:
    """The modes and sizes of ``paths`` from their headers (no pixel decoded), cached like the
    decoded tensors: {"modes": [...], "sizes": {"WxH": [count, first path]}}."""
    import json

    def scan() -> dict:
        from PIL import Image

        def header(path: str):
            try:
                with Image.open(path) as img:
                    return img.mode, f"{img.size[0]}x{img.size[1]}"
            except OSError:   # unreadable: the loader skips it (with a warning)
                return None

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            found = list(pool.map(header, paths, chunksize=256))
        sizes: dict[str, list] = {}
        for path, got in zip(paths, found, strict=True):
            if got is not None:
                sizes.setdefault(got[1], [0, path])[0] += 1
        return {"modes": sorted({got[0] for got in found if got}), "sizes": sizes}

    key = _cache_key("headers", root, [Path(p) for p in paths])
    cached = cache_dir() / f"headers-{root.name}-{key}.json"
    try:
        return json.loads(cached.read_text())
    except (OSError, ValueError):
        pass
    profile = scan()
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(profile))
        os.replace(tmp, cached)
    except OSError:
        pass   # an unwritable cache costs a rescan, nothing else
    return profile


def _load_imagefolder(root: Path, device) -> TensorImageData:
    classes, train, test = _folder_samples(root)
    channels, size, _ = _inspect_folder(root)
    return _load_decoded("imagefolder", root, (classes, train, test), channels, size, device)


def _load_decoded(name: str, root: Path, samples, channels: int, size: int, device, *,
                  stats: tuple | None = None, extra_files: list[Path] = ()) -> TensorImageData:
    """An image folder decoded once into memory (and cached): every in-memory folder dataset
    loads through here. ``stats`` (mean, std) are fixed ones, or None to compute them from the
    training images; ``extra_files`` also decide the labels, so they key the cache too."""
    classes, train, test = samples
    if len(train) > MAX_IN_MEMORY:
        raise ValueError(f"{root} has {len(train)} training images, more than the {MAX_IN_MEMORY} "
                         f"held in memory; use dataset 'imagenet' to stream it")
    files = [Path(p) for p, _ in train + test] + list(extra_files)
    arrays, from_cache = _cached(name, root, files, lambda: _decode_folder(
        train, test, channels, size, root, with_stats=stats is None))
    _warn_skipped(root, arrays.get("skipped", []))
    mean, std = stats or (arrays["mean"], arrays["std"])
    return TensorImageData(name, (arrays["train_x"], arrays["train_y"]),
                           (arrays["test_x"], arrays["test_y"]), num_classes=len(classes),
                           scale=1 / 255, mean=mean, std=std, flip=True, device=device,
                           from_cache=from_cache)


def _decode_folder(train, test, channels: int, size: int, root: Path, *,
                   with_stats: bool = True) -> dict:
    out = {"skipped": []}
    for split, samples in (("train", train), ("test", test)):
        images, readable = _decode_images([p for p, _ in samples], channels, size, root)
        out[f"{split}_x"] = images
        out[f"{split}_y"] = torch.tensor([label for (_, label), ok in zip(samples, readable, strict=True)
                                          if ok], dtype=torch.int64)
        out["skipped"] += [p for (p, _), ok in zip(samples, readable, strict=True)
                           if not ok]
    if with_stats:
        out["mean"], out["std"] = _channel_stats(out["train_x"], scale=1 / 255)
    return out


def _warn_skipped(root: Path, skipped: list[str]) -> None:
    """One warning for all unreadable images of a folder (also when loaded from the cache)."""
    if not skipped:
        return
    names = ", ".join(str(Path(p).relative_to(root)) for p in skipped[:5])
    more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    warnings.warn(f"skipped {len(skipped)} unreadable image(s) in {root}: {names}{more} "
                  "(corrupt or truncated files; replace or delete them)", stacklevel=3)


def _decode_images(paths: list[str], channels: int, size: int,
                   root: Path) -> tuple[torch.Tensor, list[bool]]:
    """The readable images as one uint8 tensor, and which of ``paths`` were readable."""
    from PIL import Image

    mode = "L" if channels == 1 else "RGB"

    def decode(path: str) -> np.ndarray | None:
        try:
            with Image.open(path) as img:
                if img.size != (size, size):
                    raise ValueError(f"{path} is {img.size[0]}x{img.size[1]}, but {root} holds "
                                     f"{size}x{size} images: resize all images to one square "
                                     f"size, or use dataset 'imagenet' (resizes while streaming)")
                return np.asarray(img.convert(mode), dtype=np.uint8).reshape(size, size, channels)
        except OSError:  # PIL: unidentified, corrupt or truncated file (skipped, and warned of)
            return None

    # PIL releases the GIL while decoding, so threads use every core.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        decoded = list(pool.map(decode, paths, chunksize=256))
    images = [a for a in decoded if a is not None]
    if not images:
        raise ValueError(f"no readable image among {len(paths)} in {root}: check the files")
    stacked = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return stacked, [a is not None for a in decoded]


def _load_imagenet(root: Path, device) -> StreamingImageData:
    classes, train, test = _folder_samples(root)
    return StreamingImageData("imagenet", train, test, num_classes=len(classes), device=device)


# ---------------------------------------------------------------------------------------------
# The paper's datasets brought as folders: Tiny-ImageNet (as shipped, or an image folder) and
# CIFAR as an image folder. Unlike `imagefolder` they keep the reference's fixed statistics
# (the reference code's), so a subset normalises exactly as the full dataset does.

FIXED_STATS_FOLDERS = {"tinyimagenet": (TINY_MEAN, TINY_STD), "cifar10": (CIFAR_MEAN, CIFAR_STD),
                       "cifar100": (CIFAR_MEAN, CIFAR_STD)}


def _load_cifar_folder(name: str, root: Path, device) -> TensorImageData:
    return _load_fixed_stats(name, root, _folder_samples(root), device)


def _load_tinyimagenet(root: Path, device) -> TensorImageData:
    return _load_fixed_stats("tinyimagenet", root, _tiny_samples(root), device)


def _tiny_samples(root: Path):
    if not root.is_dir():
        raise _tiny_error(root, "the folder does not exist")
    if _is_shipped_tiny(root):
        return _tiny_shipped_samples(root)
    try:
        return _folder_samples(root)
    except FileNotFoundError as err:
        shipped = TINY_SHIPPED.replace("DIR", str(root))
        raise FileNotFoundError(f"tinyimagenet: {err}; or {shipped}") from None


def _check_fixed_size(name: str, root: Path, samples) -> None:
    """Every readable image of a CIFAR or Tiny-ImageNet folder has the dataset's size."""
    _, train, test = samples
    sizes = _image_headers(root, [path for path, _ in train + test])["sizes"]
    size = DATASET_SHAPES[name][1]
    wrong = {shape: found for shape, found in sizes.items() if shape != f"{size}x{size}"}
    if wrong:
        shape, (count, example) = max(wrong.items(), key=lambda item: item[1][0])
        raise ValueError(f"{name} images are {size}x{size}, but {count} in {root} are not "
                         f"({example} is {shape}): use dataset 'imagefolder' for other sizes")


def _load_fixed_stats(name: str, root: Path, samples, device) -> TensorImageData:
    channels, size, _ = DATASET_SHAPES[name]
    _check_fixed_size(name, root, samples)
    # The label files decide the val labels: a change to them must invalidate the cache too.
    label_files = [p for p in (root / "wnids.txt", root / "val" / "val_annotations.txt")
                   if p.is_file()]
    return _load_decoded(name, root, samples, channels, size, device,
                         stats=FIXED_STATS_FOLDERS[name], extra_files=label_files)


def _fixed_stats_classes(name: str, root: Path) -> list[str]:
    return _tiny_classes(root) if name == "tinyimagenet" else _class_names(root / "train")


def _tiny_error(root: Path, problem: str) -> FileNotFoundError:
    return FileNotFoundError(f"tinyimagenet folder {root}: {problem}. Expected layout: "
                             f"{TINY_LAYOUT.replace('DIR', str(root))}")


def _is_shipped_tiny(root: Path) -> bool:
    val = root / "val"
    return ((root / "wnids.txt").is_file() or (val / "images").is_dir()
            or (val / "val_annotations.txt").is_file())


def _tiny_classes(root: Path) -> list[str]:
    wnids = root / "wnids.txt"
    if wnids.is_file():
        names = [line.strip() for line in wnids.read_text().splitlines() if line.strip()]
    else:
        names = _class_names(root / "train") if (root / "train").is_dir() else []
    if not names:
        raise _tiny_error(root, "no classes: wnids.txt and train/<wnid>/ are empty or missing")
    return sorted(names)  # sorted, as ImageFolder does: both layouts give the same labels


def _tiny_shipped_samples(root: Path):
    classes = _tiny_classes(root)
    index = {wnid: i for i, wnid in enumerate(classes)}
    train = []
    for wnid in classes:
        folder = root / "train" / wnid / "images"
        if not folder.is_dir():
            raise _tiny_error(root, f"train/{wnid}/images/ is missing")
        train += [(str(p), index[wnid]) for p in _images_in(folder)]
    if not train:
        raise _tiny_error(root, "no images in train/<wnid>/images/")
    return classes, train, _tiny_val_samples(root, index)


def _tiny_val_samples(root: Path, index: dict[str, int]) -> list[tuple[str, int]]:
    annotations = root / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise _tiny_error(root, "val/val_annotations.txt is missing (it gives each val image's "
                                "wnid)")
    samples = []
    for number, line in enumerate(annotations.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"val/val_annotations.txt line {number}"
        if len(fields) < 2:
            raise _tiny_error(root, f"{where} is not '<file> TAB <wnid>': {line.strip()!r}")
        if fields[1] not in index:
            raise _tiny_error(root, f"{where} names wnid {fields[1]!r}, which is not a class "
                                    f"(wnids.txt, train/<wnid>/)")
        path = root / "val" / "images" / fields[0]
        if not path.is_file():
            raise _tiny_error(root, f"{where} names val/images/{fields[0]}, which is missing")
        samples.append((str(path), index[fields[1]]))
    if not samples:
        raise _tiny_error(root, "val/val_annotations.txt lists no images")
    return samples


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


# ---------------------------------------------------------------------------------------------
# Decode-once cache


def cache_dir() -> Path:
    return Path(os.environ.get("HETERO_CACHE") or Path.home() / ".cache" / "hetero")


def _cache_key(kind: str, root: Path, files: list[Path]) -> str:
    digest = hashlib.sha256(f"{CACHE_FORMAT}|{kind}|{root}|{len(files)}".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"|{path.relative_to(root)}|{stat.st_mtime_ns}|{stat.st_size}".encode())
    return digest.hexdigest()[:20]


def _cached(kind: str, root: Path, files: list[Path], build) -> tuple[dict, bool]:
    """``build()``'s tensors, from the cache when the folder is unchanged. True if cached."""
    path = cache_dir() / f"{kind}-{root.name}-{_cache_key(kind, root, files)}.pt"
    if path.is_file():
        try:
            return torch.load(path, weights_only=True), True
        except (OSError, RuntimeError, EOFError):
            pass  # a truncated or stale file: rebuild it
    arrays = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(arrays, tmp)
    os.replace(tmp, path)  # atomic: concurrent loaders never read half a file
    return arrays, False


def data_digest(data) -> str:
    """sha256 (12 hex digits) of what a network sees: the training split and the test split.

    In-memory datasets hash their uint8 pixels and labels; streamed ones (ImageNet layout)
    hash their file lists and labels, which is what changes between two folders.
    """
    h = hashlib.sha256()
    if hasattr(data, "train_x"):
        for tensor in (data.train_x, data.train_y, data.test_x, data.test_y):
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    else:
        for path, label in (*data.train, *data.test):
            h.update(f"{path}\t{label}\n".encode())
    return h.hexdigest()[:12]
