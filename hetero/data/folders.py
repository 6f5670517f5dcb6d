"""Image folders: DIR/train/<class>/*.jpg and DIR/test/<class>/*.jpg (or val/).

The `imagefolder` reader (decoded once into memory, cached) and the `imagenet` reader
(streamed), plus the layout checks and header scans the other folder readers share.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from hetero.data.batches import TensorImageData
from hetero.data.cache import _cache_key, _cached, cache_dir
from hetero.data.stats import _channel_stats
from hetero.data.streaming import StreamingImageData

MAX_IN_MEMORY = 200_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
FOLDER_LAYOUT = ("DIR/train/<class>/*.jpg and DIR/test/<class>/*.jpg (or DIR/val/<class>/...), "
                 "one subfolder per class, the same class names in both splits")


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


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
