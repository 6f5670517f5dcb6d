"""scikit-learn's 8x8 digits, bundled with scikit-learn: no files, no download."""

from __future__ import annotations

import numpy as np
import torch

from hetero.data.batches import TensorImageData
from hetero.data.stats import _channel_stats

DIGITS_SPLIT_SEED = 0   # constant: every trial seed sees the same digits test set


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
