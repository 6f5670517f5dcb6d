"""In-memory datasets: uint8 tensors on one device, batches augmented there (airbench style).

Batch order and augmentation are a pure function of (seed, epoch), so a resumed run sees the
same batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F


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
