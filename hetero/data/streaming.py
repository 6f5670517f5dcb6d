"""ImageNet-sized folders, streamed: images decoded per batch by DataLoader workers."""

from __future__ import annotations

import os

import torch

from hetero.data.batches import ImageData, _epoch_generator
from hetero.data.stats import IMAGENET_MEAN, IMAGENET_STD


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
