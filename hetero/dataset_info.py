"""Names and shapes of the datasets hetero loads (stdlib only: the CLI reads it without torch)."""

DATASETS = ("digits", "cifar10", "cifar100", "imagefolder", "imagenet")

# (in_channels, input_size, num_classes); imagefolder's come from the folder itself.
DATASET_SHAPES = {"digits": (1, 8, 10), "cifar10": (3, 32, 10), "cifar100": (3, 32, 100),
                  "imagenet": (3, 224, 1000)}
