"""Figures from the paper (Li et al., CVPR 2021), kept as data: what hetero is checked against.

Table 1's baselines in the paper's accounting (conv + linear MACs, BN 2 per output element,
ReLU/ReLU6 1 per element once per module; params with BN's affine): the README's table, the
tests and ``bench/table1.py`` all read this list.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Table1Row", "TABLE1"]


class Table1Row(NamedTuple):
    dataset: str        # as the paper names it
    network: str
    model: str          # what a user types
    num_classes: int
    input_size: int
    gflops: float       # paper accounting
    mparams: float


TABLE1 = (
    Table1Row("CIFAR-10", "DenseNet-40", "densenet40", 10, 32, 0.2901, 1.059),
    Table1Row("CIFAR-100", "DenseNet-40", "densenet40", 100, 32, 0.2901, 1.100),
    Table1Row("CIFAR-100", "RegNet X-400MF", "regnetx_400mf", 100, 32, 0.4698, 4.810),
    Table1Row("CIFAR-100", "RegNet Y-400MF", "regnety_400mf", 100, 32, 0.4585, 3.947),
    Table1Row("CIFAR-100", "EfficientNet (B0)", "efficientnet_b0", 100, 32, 0.4161, 4.136),
    Table1Row("CIFAR-10", "ResNet-56", "resnet56", 10, 32, 0.1274, 0.856),
    Table1Row("Tiny-ImageNet", "MobileNetV1", "mobilenet_v1", 200, 64, 0.0478, 3.412),
    Table1Row("Tiny-ImageNet", "MobileNetV2", "mobilenet_v2", 200, 64, 0.0930, 2.480),
    Table1Row("Tiny-ImageNet", "MobileNetV3-small", "mobilenet_v3_small", 200, 64, 0.0207, 2.083),
    Table1Row("Tiny-ImageNet", "MnasNet", "mnasnet", 200, 64, 0.0271, 3.359),
    Table1Row("ImageNet", "ResNet-50", "resnet50", 1000, 224, 4.1177, 25.557),
    Table1Row("ImageNet", "RegNet X-4.0GF", "regnetx_4gf", 1000, 224, 4.0005, 22.118),
    Table1Row("ImageNet", "MobileNetV3-small", "mobilenet_v3_small", 1000, 224, 0.0612, 3.108),
)
