"""The trainer's hot loop reads nothing back to the host per step (on a GPU each read is a sync).

On CPU a read costs nothing, so the test counts the calls that would sync on CUDA instead of
timing them: their number per epoch must not grow with the number of steps.
"""

from __future__ import annotations

import pytest
import torch

from hetero.data import load_dataset
from hetero.models import create_model
from hetero.protocol import TrainProtocol
from hetero.train import Trainer

# Tensor -> host conversions: each is a device synchronisation on CUDA.
HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")


@pytest.fixture(scope="module")
def small_digits():
    return load_dataset("digits", fraction=0.1, seed=0)


def _host_reads_in_one_epoch(data, batch_size: int, monkeypatch) -> int:
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, input_size=8, in_channels=1)
    trainer = Trainer(model, data, TrainProtocol(epochs=1, batch_size=batch_size, device="cpu"))
    count = 0

    def counting(original):
        def wrapper(*args, **kwargs):
            nonlocal count
            count += 1
            return original(*args, **kwargs)
        return wrapper

    with monkeypatch.context() as patch:
        for name in HOST_READS:
            patch.setattr(torch.Tensor, name, counting(getattr(torch.Tensor, name)))
        trainer.fit()
    return count


def test_host_reads_per_epoch_do_not_grow_with_the_steps(small_digits, monkeypatch):
    few = _host_reads_in_one_epoch(small_digits, batch_size=64, monkeypatch=monkeypatch)
    many = _host_reads_in_one_epoch(small_digits, batch_size=8, monkeypatch=monkeypatch)
    steps_few, steps_many = -(-small_digits.num_train // 64), -(-small_digits.num_train // 8)
    assert steps_many >= steps_few + 10
    assert few > 0  # the counter sees the once-per-epoch reads (loss, accuracy)
    assert many == few, f"{many - few} host reads added by {steps_many - steps_few} extra steps"
