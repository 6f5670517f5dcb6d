"""Names and shapes of the datasets hetero loads (stdlib only: the CLI reads it without torch)."""

DATASETS = ("digits", "cifar10", "cifar100", "tinyimagenet", "imagefolder", "imagenet")

# (in_channels, input_size, num_classes); imagefolder's come from the folder itself, and a
# folder given for the others may hold fewer classes (a test or a subset): the folder decides.
DATASET_SHAPES = {"digits": (1, 8, 10), "cifar10": (3, 32, 10), "cifar100": (3, 32, 100),
                  "tinyimagenet": (3, 64, 200), "imagenet": (3, 224, 1000)}
