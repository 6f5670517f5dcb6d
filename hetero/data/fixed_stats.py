"""The paper's datasets brought as folders: Tiny-ImageNet (as shipped, or an image folder) and
CIFAR as an image folder. Unlike `imagefolder` they keep the reference's fixed statistics
(the reference code's), so a subset normalises exactly as the full dataset does.
"""

from __future__ import annotations

from pathlib import Path

from hetero.data.batches import TensorImageData
from hetero.data.folders import _class_names, _folder_samples, _image_headers, _images_in, _load_decoded
from hetero.data.stats import CIFAR_MEAN, CIFAR_STD, TINY_MEAN, TINY_STD
from hetero.dataset_info import DATASET_SHAPES

TINY_SHIPPED = ("the archive as shipped: DIR/wnids.txt, DIR/train/<wnid>/images/*.JPEG, "
                "DIR/val/images/*.JPEG and DIR/val/val_annotations.txt (<file> TAB <wnid> per line)")
TINY_LAYOUT = (f"{TINY_SHIPPED}; or an image folder: DIR/train/<class>/*.jpg and "
               "DIR/val/<class>/*.jpg (or DIR/test/<class>/)")
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
