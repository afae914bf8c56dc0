"""Shared fixtures of the test suite."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

# -- real CIFAR-10 images ---------------------------------------------------------------

CIFAR10_NPZ = Path(__file__).parents[1].parent / "shared" / "data" / "cifar10" / "cifar10-jpeg.npz"
CIFAR10_TRAIN = 500
CIFAR10_TEST = 200


class Cifar10Small(NamedTuple):
    """The first images of each CIFAR-10 split, pixels scaled to [0, 1].

    Attributes:
        x_train: `(CIFAR10_TRAIN, 32, 32, 3)` float32.
        y_train: `(CIFAR10_TRAIN,)` int64 class indices.
        x_test: `(CIFAR10_TEST, 32, 32, 3)` float32.
        y_test: `(CIFAR10_TEST,)` int64 class indices.
        class_names: the ten class names in label order.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]


def _decode_jpegs(buffer: np.ndarray, offsets: np.ndarray, count: int) -> np.ndarray:
    from PIL import Image

    images = [
        np.asarray(
            Image.open(io.BytesIO(buffer[offsets[i] : offsets[i + 1]].tobytes())).convert("RGB")
        )
        for i in range(count)
    ]
    return np.stack(images).astype(np.float32) / 255.0


@pytest.fixture(scope="session")
def cifar10_small() -> Cifar10Small:
    """Returns the first `CIFAR10_TRAIN` training and `CIFAR10_TEST` test images of the
    real CIFAR-10 archive (`DLCOV_CIFAR10_NPZ` overrides its path); rows are
    round-robin over the classes, so the prefixes are class-balanced."""
    path = Path(os.environ.get("DLCOV_CIFAR10_NPZ", CIFAR10_NPZ))
    if not path.is_file():
        reason = f"the CIFAR-10 archive is missing: {path} (set DLCOV_CIFAR10_NPZ)"
        # CI has the archive beside the repository; missing there, it is a broken set-up.
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with np.load(path, allow_pickle=False) as data:
        return Cifar10Small(
            _decode_jpegs(data["train_jpeg"], data["train_offsets"], CIFAR10_TRAIN),
            data["y_train"][:CIFAR10_TRAIN].astype(np.int64),
            _decode_jpegs(data["test_jpeg"], data["test_offsets"], CIFAR10_TEST),
            data["y_test"][:CIFAR10_TEST].astype(np.int64),
            tuple(str(name) for name in data["class_names"]),
        )


# -- pytester, for the plugin's tests (tests/test_plugin*.py) ---------------------------

pytest_plugins = ["pytester"]
