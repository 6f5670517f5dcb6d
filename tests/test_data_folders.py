"""The paper's datasets brought as folders: Tiny-ImageNet (as shipped or an image folder) and
CIFAR as an image folder, with the reference's statistics and augmentation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _images import crop_kind, to_pixels
from PIL import Image

from hetero.data import CIFAR_MEAN, CIFAR_STD, TINY_MEAN, TINY_STD, dataset_shape, load_dataset
from hetero.models import create_model
from hetero.protocol import TrainProtocol
from hetero.train import Trainer

WNIDS = ("n01443537", "n01629819", "n02124075")  # deliberately not in sorted order below
TRAIN_PER_CLASS, VAL_PER_CLASS = 3, 2


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HETERO_CACHE", str(tmp_path / "cache"))


def _save(path: Path, rng, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    fmt = "JPEG" if path.suffix == ".JPEG" else None
    Image.fromarray(pixels, "RGB").save(path, format=fmt)


def _shipped_tiny(root: Path, *, size: int = 64) -> Path:
    """Tiny-ImageNet's own layout, with its extras (bounding boxes, an unlabelled test split)."""
    rng = np.random.default_rng(0)
    (root / "wnids.txt").parent.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(reversed(WNIDS)) + "\n")
    lines = []
    for wnid in WNIDS:
        for i in range(TRAIN_PER_CLASS):
            _save(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", rng, size)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(VAL_PER_CLASS):
            name = f"val_{wnid}_{i}.JPEG"
            _save(root / "val" / "images" / name, rng, size)
            lines.append(f"{name}\t{wnid}\t0\t0\t{size - 1}\t{size - 1}")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    _save(root / "test" / "images" / "test_0.JPEG", rng, size)
    return root


def _as_image_folder(shipped: Path, root: Path, val_split: str = "val") -> Path:
    """The same images as a plain image folder: train/<class>/, val/<class>/."""
    for wnid in WNIDS:
        for src in sorted((shipped / "train" / wnid / "images").iterdir()):
            (root / "train" / wnid).mkdir(parents=True, exist_ok=True)
            (root / "train" / wnid / src.name).write_bytes(src.read_bytes())
    for line in (shipped / "val" / "val_annotations.txt").read_text().splitlines():
        name, wnid = line.split("\t")[:2]
        (root / val_split / wnid).mkdir(parents=True, exist_ok=True)
        (root / val_split / wnid / name).write_bytes((shipped / "val" / "images" / name).read_bytes())
    return root


def _concat(batches):
    xs, ys = zip(*batches, strict=True)
    return torch.cat(xs), torch.cat(ys)


def _normalized(data, x_uint8: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    return (x_uint8.float() / 255 - mean) / std


def _augmentation_kinds(data, pad: int, seeds=range(4), flip: bool = True) -> list:
    """How each augmented training image relates to its original, over a few epochs' batches."""
    kinds = []
    for seed in seeds:
        plain, _ = next(data.train_batches(64, augment=False, seed=seed))
        augmented, _ = next(data.train_batches(64, augment=True, flip=flip, seed=seed))
        pairs = zip(to_pixels(data, plain), to_pixels(data, augmented), strict=True)
        kinds += [crop_kind(result, original, pad) for original, result in pairs]
    return kinds


# ---- Tiny-ImageNet --------------------------------------------------------------------------


def test_tinyimagenet_as_shipped_reads_val_labels_from_the_annotations(tmp_path):
    root = _shipped_tiny(tmp_path / "tiny-imagenet-200")
    data = load_dataset("tinyimagenet", root)
    assert (data.name, data.in_channels, data.input_size, data.num_classes) == \
        ("tinyimagenet", 3, 64, 3)
    assert dataset_shape("tinyimagenet", root) == (3, 64, 3)
    assert (data.num_train, data.num_test) == (9, 6)  # the unlabelled test/images/ is not used
    classes = sorted(WNIDS)
    expected = [classes.index(w) for w in WNIDS for _ in range(VAL_PER_CLASS)]
    assert data.test_y.tolist() == expected
    with Image.open(root / "val" / "images" / f"val_{WNIDS[2]}_1.JPEG") as img:
        decoded = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(data.test_x[5], decoded)
    assert (data.mean, data.std) == (TINY_MEAN, TINY_STD)
    x, _ = _concat(data.test_batches(4))
    assert torch.allclose(x, _normalized(data, data.test_x), atol=1e-5)
    assert not data.from_cache and load_dataset("tinyimagenet", root).from_cache


def test_tinyimagenet_augments_with_an_8_pixel_crop_and_a_flip(tmp_path):
    data = load_dataset("tinyimagenet", _shipped_tiny(tmp_path / "tiny"))
    kinds = _augmentation_kinds(data, pad=8)
    # every image is a crop of the 8-px zero-padded image; the flip is on (the intended
    # augmentation, not the reference's inverted default that drops it)
    assert None not in kinds and {"plain", "flip"} == set(kinds)
    assert None in _augmentation_kinds(data, pad=4)  # shifts beyond 4 px happen: the pad is 8


def test_protocol_flip_false_drops_the_flip_and_keeps_the_crops(tmp_path):
    data = load_dataset("tinyimagenet", _shipped_tiny(tmp_path / "tiny"))
    assert set(_augmentation_kinds(data, pad=8, flip=False)) == {"plain"}
    with_flip, _ = _concat(data.train_batches(4, seed=2))
    without, _ = _concat(data.train_batches(4, seed=2, flip=False))
    kinds = [crop_kind(a, b, 0) for a, b in zip(with_flip, without, strict=True)]
    assert set(kinds) == {"plain", "flip"}  # the same crop, mirrored or not


def test_the_trainer_passes_the_protocol_flip_to_the_data():
    class Recording:
        def __init__(self, data):
            self.data, self.flips = data, []

        def __getattr__(self, name):
            return getattr(self.data, name)

        def train_batches(self, *args, **kwargs):
            self.flips.append(kwargs.get("flip"))
            return self.data.train_batches(*args, **kwargs)

    data = Recording(load_dataset("digits", fraction=0.05))
    model = create_model("resnet20", num_classes=10, input_size=8, in_channels=1)
    protocol = TrainProtocol(epochs=1, batch_size=64, device="cpu", flip=False)
    Trainer(model, data, protocol).fit()
    assert data.flips == [False]


@pytest.mark.parametrize("val_split", ["val", "test"])
def test_tinyimagenet_as_an_image_folder_gives_the_same_tensors(tmp_path, val_split):
    shipped = load_dataset("tinyimagenet", _shipped_tiny(tmp_path / "shipped"))
    folder_root = _as_image_folder(tmp_path / "shipped", tmp_path / "plain", val_split)
    folder = load_dataset("tinyimagenet", folder_root)
    assert dataset_shape("tinyimagenet", folder_root) == (3, 64, 3)
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(folder, name), getattr(shipped, name)), name
    assert folder.mean == TINY_MEAN and folder.num_classes == 3


def _drop_annotations(root):
    (root / "val" / "val_annotations.txt").unlink()


def _unknown_wnid(root):
    path = root / "val" / "val_annotations.txt"
    path.write_text(path.read_text() + "val_x.JPEG\tn99999999\t0\t0\t1\t1\n")


def _missing_val_image(root):
    next((root / "val" / "images").iterdir()).unlink()


def _missing_train_class(root):
    for path in sorted((root / "train" / WNIDS[0]).rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (root / "train" / WNIDS[0]).rmdir()


@pytest.mark.parametrize("damage, needle", [
    (_drop_annotations, "val/val_annotations.txt is missing"),
    (_unknown_wnid, "line 7 names wnid 'n99999999', which is not a class"),
    (_missing_val_image, "which is missing"),
    (_missing_train_class, f"train/{WNIDS[0]}/images/ is missing"),
])
def test_broken_shipped_tinyimagenet_is_a_one_line_error_with_the_layout(tmp_path, damage,
                                                                         needle):
    root = _shipped_tiny(tmp_path / "tiny")
    damage(root)
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("tinyimagenet", root)
    message = str(err.value)
    assert "\n" not in message and str(root) in message
    assert needle in message
    assert f"{root}/val/val_annotations.txt (<file> TAB <wnid> per line)" in message


def test_tinyimagenet_plain_folder_errors_name_both_layouts(tmp_path):
    root = tmp_path / "tiny"
    (root / "train" / "cat").mkdir(parents=True)  # no val/ or test/
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("tinyimagenet", root)
    message = str(err.value)
    assert "\n" not in message and "train/<class>/*.jpg" in message
    assert f"{root}/val/images/*.JPEG" in message


def test_tinyimagenet_missing_folder_and_missing_data_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*val_annotations.txt"):
        load_dataset("tinyimagenet", tmp_path / "nowhere")
    with pytest.raises(ValueError, match="--data-dir.*val_annotations.txt"):
        load_dataset("tinyimagenet")


def test_tinyimagenet_of_the_wrong_size_says_so(tmp_path):
    root = _shipped_tiny(tmp_path / "tiny", size=32)
    with pytest.raises(ValueError, match="images are 64x64.*is 32x32.*imagefolder"):
        load_dataset("tinyimagenet", root)


# ---- CIFAR as an image folder ------------------------------------------------------------------


def _cifar_folder(root: Path, classes=("apple", "bear", "bee", "castle")) -> Path:
    rng = np.random.default_rng(1)
    for split, count in (("train", 4), ("test", 2)):
        for cls in classes:
            for i in range(count):
                _save(root / split / cls / f"{i}.png", rng, 32)
    return root


def test_cifar100_from_an_image_folder_uses_cifar_statistics_and_augmentation(tmp_path):
    root = _cifar_folder(tmp_path / "cifar100")
    data = load_dataset("cifar100", root)
    assert (data.name, data.num_classes, data.num_train, data.num_test) == ("cifar100", 4, 16, 8)
    assert dataset_shape("cifar100", root) == (3, 32, 4)
    assert (data.mean, data.std) == (CIFAR_MEAN, CIFAR_STD)
    x, y = _concat(data.test_batches(8))
    assert torch.allclose(x, _normalized(data, data.test_x), atol=1e-5)
    assert y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    kinds = _augmentation_kinds(data, pad=4)
    assert None not in kinds and {"plain", "flip"} == set(kinds)


def test_cifar100_without_files_names_both_layouts(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("cifar100", tmp_path)
    message = str(err.value)
    assert "cifar-100-python" in message and "train/<class>" in message and "\n" not in message


# ---- the command line --------------------------------------------------------------------------


def _hetero(*args):
    out = subprocess.run([sys.executable, "-m", "hetero_cli", *args], capture_output=True,
                         text=True)
    assert out.returncode == 0, f"hetero {' '.join(args)} failed:\n{out.stderr}"
    return json.loads(out.stdout)


def test_run_on_a_tinyimagenet_folder_end_to_end(tmp_path):
    root = _shipped_tiny(tmp_path / "tiny")
    result = _hetero("run", "--dataset", "tinyimagenet", "--data-dir", str(root), "--epochs", "1",
                     "--width-mult", "2", "--target", "1.0", "--criterion", "l1",
                     "--out", str(tmp_path / "run"),
                     "--json")
    assert 0.0 <= result["accuracy"] <= 1.0
    assert result["flops"] == pytest.approx(result["baseline_flops"], rel=0.005)
    config = json.loads((tmp_path / "run" / "lwdna.json").read_text())
    assert (config["input_size"], config["num_classes"]) == (64, 3)


def test_complexity_knows_the_tinyimagenet_shape():
    out = _hetero("complexity", "resnet20", "--dataset", "tinyimagenet", "--json")
    assert out["input"] == [3, 64, 64] and out["num_classes"] == 200
