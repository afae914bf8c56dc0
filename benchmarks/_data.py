"""Real CIFAR-10 images for the benchmarks, decoded on demand.

The images come from the JPEG archive `cifar10-jpeg.npz` (all 60,000 CIFAR-10 images as
their original 32x32 JPEG files, see the README beside it), decoded with Pillow. When the
environment variable `DLCOV_CIFAR10_DIR` names a folder in the standard python layout of
CIFAR-10 (`data_batch_1` .. `data_batch_5`, `test_batch`, as `cifar-10-python.tar.gz`
unpacks), that folder is read instead.

Rows of the archive are round-robin over the classes, so any prefix of 10*m rows is
class-balanced.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "cifar10-jpeg.npz"
ENV_DIR = "DLCOV_CIFAR10_DIR"
SPLITS = ("train", "test")


def _archive_path() -> Path:
    # The archive sits beside the repository on the project's machines; an explicit
    # path wins so that the benchmarks also run from another checkout.
    explicit = os.environ.get("DLCOV_CIFAR10_ARCHIVE")
    return Path(explicit) if explicit else ARCHIVE


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"expected split in {SPLITS}; received split={split!r}")


@lru_cache(maxsize=2)
def _jpeg_split(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.load(_archive_path()) as archive:
        return (
            archive[f"{split}_jpeg"],
            archive[f"{split}_offsets"],
            archive[f"y_{split}"].astype(np.int64),
        )


def _decode(buffer: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    from PIL import Image

    images = np.empty((len(rows), 32, 32, 3), np.uint8)
    for out, row in enumerate(rows):
        blob = buffer[offsets[row] : offsets[row + 1]].tobytes()
        with Image.open(io.BytesIO(blob)) as image:
            images[out] = np.asarray(image.convert("RGB"))
    return images


@lru_cache(maxsize=2)
def _python_layout(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    images, labels = [], []
    for name in names:
        with open(folder / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        # Rows are channel-major (3 x 32 x 32); the models take channels last.
        images.append(batch[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def split_size(split: str) -> int:
    """Returns the number of images of `split` ("train": 50,000, "test": 10,000)."""
    _check_split(split)
    return 50_000 if split == "train" else 10_000


def load_cifar10(split: str, n: int, *, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Returns `n` CIFAR-10 images of `split` and their labels.

    Args:
        split: "train" or "test".
        n: number of images; more than the split holds wraps around to its start
            (benchmarks that need more CIFAR-sized inputs than the split holds reuse
            images rather than invent them).
        start: index of the first image.

    Returns:
        Images `(n, 32, 32, 3)` uint8 pixel values in [0, 255], and labels `(n,)` int64.
    """
    _check_split(split)
    rows = (start + np.arange(n)) % split_size(split)
    folder = os.environ.get(ENV_DIR)
    if folder:
        images, labels = _python_layout(Path(folder), split)
        return images[rows], labels[rows]
    buffer, offsets, labels = _jpeg_split(split)
    return _decode(buffer, offsets, rows), labels[rows]


def stream_cifar10(
    split: str, n: int, batch_size: int = 128
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yields `(images, labels)` batches of `n` images in all, decoded one batch at a
    time, so that the images are never all in memory together.

    Args:
        split: "train" or "test".
        n: images in all (wrapping around the split as `load_cifar10` does).
        batch_size: images per batch.
    """
    for start in range(0, n, batch_size):
        yield load_cifar10(split, min(batch_size, n - start), start=start)
