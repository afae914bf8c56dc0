"""Draws augmentations.png: each augmentation at each severity on real CIFAR-10 images.

Usage, from the repository root:

    python -m examples.resnet32_cifar.plot_augmentations [OUT.png]

The CIFAR-10 test images are looked up as the study does (`cifar10.find_cifar10`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .augment import AUGMENTATIONS, SEVERITIES, augment
from .cifar10 import CLASS_NAMES, find_cifar10

# The classes shown: the first test image of each.
SHOWN = ("cat", "ship", "horse")


def plot(images: np.ndarray, labels: np.ndarray, path: Path, seed: int = 0) -> None:
    """Saves a grid: a row per (augmentation, image), the original then severities 1-5.

    Args:
        images: `(n, 32, 32, 3)` uint8 images, each shown under every augmentation.
        labels: `(n,)` their classes, for the row titles.
        path: the PNG file to write.
        seed: the augmentations' seed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(AUGMENTATIONS) * len(images)
    columns = 1 + len(SEVERITIES)
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.1))
    for a, kind in enumerate(AUGMENTATIONS):
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            row = axes[a * len(images) + i]
            row[0].imshow(image, interpolation="nearest")
            row[0].set_ylabel(f"{kind}\n{CLASS_NAMES[label]}", fontsize=6)
            for severity in SEVERITIES:
                out = augment(image[None], kind, severity, seed=seed + i)[0]
                row[severity].imshow(out, interpolation="nearest")
            for axis in row:
                axis.set_xticks([])
                axis.set_yticks([])
    for severity in SEVERITIES:
        axes[0][severity].set_title(f"severity {severity}", fontsize=6)
    axes[0][0].set_title("original", fontsize=6)
    figure.tight_layout(pad=0.2)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv else Path(__file__).with_name("augmentations.png")
    cifar = find_cifar10()
    index = np.array([np.flatnonzero(cifar.y_test == CLASS_NAMES.index(c))[0] for c in SHOWN])
    plot(cifar.x_test[index], cifar.y_test[index], out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
