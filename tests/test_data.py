"""The data layer: digits, image folders, CIFAR errors, fractions, batch order, augmentation."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from _images import crop_kind, to_pixels
from PIL import Image

from hetero.data import DATASET_SHAPES, dataset_shape, load_dataset

CIFAR_SUBSET = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-subset"


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _concat(batches):
    xs, ys = zip(*batches, strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_digits_shapes(digits):
    assert (digits.in_channels, digits.input_size, digits.num_classes) == DATASET_SHAPES["digits"]
    assert dataset_shape("digits") == (1, 8, 10)
    assert (digits.num_train, digits.num_test) == (1437, 360)
    x, y = next(digits.train_batches(64))
    assert x.shape == (64, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    x_all, y_all = _concat(digits.test_batches(100))
    assert x_all.shape == (360, 1, 8, 8) and set(y_all.tolist()) == set(range(10))
    # normalized with the train split's statistics
    x_train, _ = _concat(digits.train_batches(500, augment=False))
    assert abs(x_train.mean().item()) < 1e-3 and abs(x_train.std().item() - 1) < 1e-2


def test_digits_split_does_not_depend_on_trial_seed(digits):
    other = load_dataset("digits", seed=7)
    assert torch.equal(other.test_x, digits.test_x) and torch.equal(other.test_y, digits.test_y)
    assert torch.equal(other.train_x, digits.train_x)


def _rows(data):
    return [(x.numpy().tobytes(), int(y))
            for x, y in zip(data.train_x, data.train_y, strict=True)]


def test_fraction_keeps_a_stratified_part_of_train_only(digits):
    part = load_dataset("digits", fraction=0.25, seed=3)
    assert torch.equal(part.test_x, digits.test_x) and part.num_test == digits.num_test
    full_counts = torch.bincount(digits.train_y, minlength=10)
    part_counts = torch.bincount(part.train_y, minlength=10)
    assert torch.equal(part_counts, torch.round(full_counts * 0.25).long())
    # every kept image is a training image with its own label
    full = set(_rows(digits))
    assert all(row in full for row in _rows(part))
    again = load_dataset("digits", fraction=0.25, seed=3)
    other = load_dataset("digits", fraction=0.25, seed=4)
    assert torch.equal(again.train_x, part.train_x)
    assert not torch.equal(other.train_x, part.train_x)


def test_batch_order_is_a_pure_function_of_seed_and_epoch(digits):
    def epoch(seed, ep):
        return _concat(digits.train_batches(100, seed=seed, epoch=ep))

    x1, y1 = epoch(1, 2)
    x2, y2 = epoch(1, 2)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(epoch(1, 3)[1], y1)
    assert not torch.equal(epoch(2, 2)[1], y1)
    # one epoch covers every training image exactly once
    plain, labels = _concat(digits.train_batches(100, augment=False, seed=1, epoch=2))
    assert len(labels) == digits.num_train
    assert torch.equal(torch.bincount(labels), torch.bincount(digits.train_y))
    reference = _concat(digits.train_batches(digits.num_train, augment=False, seed=9))[0]
    assert torch.equal(plain.flatten(1).sum(1).sort().values,
                       reference.flatten(1).sum(1).sort().values)


def test_augmentation_shifts_without_flipping_digits(digits):
    plain, y_plain = next(digits.train_batches(64, augment=False, seed=5))
    augmented, y_aug = next(digits.train_batches(64, augment=True, seed=5))
    assert augmented.shape == plain.shape and torch.equal(y_plain, y_aug)
    assert (augmented != plain).flatten(1).any(1).float().mean() > 0.5
    originals, results = to_pixels(digits, plain, 16), to_pixels(digits, augmented, 16)
    kinds = {crop_kind(r, o, pad=1) for o, r in zip(originals, results, strict=True)}
    # a crop of the 1-pixel zero-padded image, never mirrored (digits are not symmetric)
    assert kinds == {"plain"}


# ---- image folders -----------------------------------------------------------------------


def _write_folder(root: Path, *, size=8, mode="RGB", test_split="test") -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), (test_split, 2)):
        for cls in ("cat", "dog"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                shape = (size, size, 3) if mode == "RGB" else (size, size)
                pixels = rng.integers(0, 256, shape, dtype=np.uint8)
                Image.fromarray(pixels, mode).save(folder / f"{i}.png")
    return root


def test_imagefolder_loads_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("HETERO_CACHE", str(tmp_path / "cache"))
    root = _write_folder(tmp_path / "pets", test_split="val")
    assert dataset_shape("imagefolder", root) == (3, 8, 2)
    first = load_dataset("imagefolder", root)
    assert (first.num_train, first.num_test, first.num_classes) == (6, 4, 2)
    assert torch.equal(torch.bincount(first.train_y), torch.tensor([3, 3]))
    assert not first.from_cache
    second = load_dataset("imagefolder", root)
    assert second.from_cache and torch.equal(second.train_x, first.train_x)
    with Image.open(root / "train" / "dog" / "1.png") as img:
        original = torch.tensor(np.array(img)).permute(2, 0, 1)
    assert torch.equal(first.train_x[4], original)
    stat = (root / "train" / "cat" / "0.png").stat()
    os.utime(root / "train" / "cat" / "0.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert not load_dataset("imagefolder", root).from_cache  # a changed file invalidates


def test_grayscale_imagefolder_has_one_channel(tmp_path, monkeypatch):
    monkeypatch.setenv("HETERO_CACHE", str(tmp_path / "cache"))
    root = _write_folder(tmp_path / "grey", size=12, mode="L")
    assert dataset_shape("imagefolder", root) == (1, 12, 2)
    x, _ = next(load_dataset("imagefolder", root).train_batches(4))
    assert x.shape == (4, 1, 12, 12)


@pytest.mark.parametrize("make", ["missing", "no_test", "empty_train", "unknown_test_class"])
def test_bad_folder_errors_show_the_layout(tmp_path, make):
    root = tmp_path / "data"
    if make != "missing":
        _write_folder(root)
    if make == "no_test":
        for path in sorted((root / "test").rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        (root / "test").rmdir()
    elif make == "empty_train":
        for path in (root / "train").rglob("*.png"):
            path.unlink()
    elif make == "unknown_test_class":
        (root / "test" / "dog").rename(root / "test" / "wolf")
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("imagefolder", root)
    assert "train/<class>/*.jpg" in str(err.value) and "test/<class>/*.jpg" in str(err.value)
    assert str(root) in str(err.value)


def test_imagenet_streams_with_standard_transforms(tmp_path):
    root = _write_folder(tmp_path / "tiny-imagenet", size=40)
    data = load_dataset("imagenet", root)
    assert dataset_shape("imagenet", root) == (3, 224, 2)
    assert (data.num_train, data.num_test, data.input_size) == (6, 4, 224)
    first = _concat(data.train_batches(4, seed=1, epoch=2))
    again = _concat(data.train_batches(4, seed=1, epoch=2))
    assert first[0].shape == (6, 3, 224, 224)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    x, y = _concat(data.test_batches(3))
    assert x.shape == (4, 3, 224, 224) and y.tolist() == [0, 0, 1, 1]
    assert load_dataset("imagenet", root, fraction=0.5).num_train == 4  # 2 of 3 per class


def test_imagefolder_needs_a_data_dir():
    with pytest.raises(ValueError, match="data_dir"):
        load_dataset("imagefolder")


def test_cifar10_without_files_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("cifar10", tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message and "--download" in message
    assert "cifar-10-batches-py" in message


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(ValueError, match="imagefolder"):
        load_dataset("mnist")


@pytest.mark.skipif(not CIFAR_SUBSET.is_dir(), reason=f"{CIFAR_SUBSET} not present "
                    "(shared test data exists on developer and CI machines only)")
def test_cifar10_subset_folder_uses_the_cache_on_the_second_load():
    # The user's real cache: decoding happens once per machine, later runs read the cache.
    first = load_dataset("imagefolder", CIFAR_SUBSET)
    second = load_dataset("imagefolder", CIFAR_SUBSET)
    assert second.from_cache
    assert (second.num_train, second.num_test, second.num_classes) == (10000, 2000, 10)
    assert (second.in_channels, second.input_size) == (3, 32)
    assert torch.equal(first.test_x, second.test_x)
    assert torch.equal(torch.bincount(second.train_y), torch.full((10,), 1000))
    augmented, _ = next(second.train_batches(64, seed=0))
    plain, _ = next(second.train_batches(64, augment=False, seed=0))
    assert augmented.shape == (64, 3, 32, 32) and abs(plain.mean().item()) < 0.2
    originals, results = to_pixels(second, plain, 255), to_pixels(second, augmented, 255)
    kinds = [crop_kind(r, o, pad=4) for o, r in zip(originals, results, strict=True)]
    # pad-4 crops, about half of them mirrored
    assert None not in kinds and 16 < kinds.count("flip") < 48
