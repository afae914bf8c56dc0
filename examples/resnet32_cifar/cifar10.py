"""CIFAR-10 in its standard python layout, and where to find it.

CIFAR-10 (Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009)
holds 60,000 32x32 RGB images of 10 classes: 50,000 for training, 10,000 for testing.
The official `cifar-10-python.tar.gz` unpacks to a folder `cifar-10-batches-py` of
pickled batches, `data_batch_1` .. `data_batch_5` and `test_batch`, each a dict with
`b"data"` (10,000 rows of 3,072 bytes: the red, green and blue planes of an image, row
after row) and `b"labels"`.

`find_cifar10` looks for the data in this order, and stops at the first place that
holds it:

1. the folder named by the `--cifar10-dir` option;
2. the folder named by the environment variable `DLCOV_CIFAR10_DIR`;
3. Keras's dataset cache, `$KERAS_HOME/datasets` (`~/.keras/datasets` when
   `KERAS_HOME` is unset), where `keras.datasets.cifar10.load_data` unpacks it;
4. Keras's downloader, `keras.datasets.cifar10.load_data`, which needs internet.

A folder named explicitly (1 or 2) must hold the data: a typo there is an error
rather than a silent download. When no place works, the error lists every place
tried, why it failed, and how to provide the data.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pytest_dlcoverage.errors import DLCoverageError

CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
FOLDER_NAME = "cifar-10-batches-py"
ENV_VAR = "DLCOV_CIFAR10_DIR"
OPTION = "--cifar10-dir"
IMAGE_SHAPE = (32, 32, 3)

# Keras 2 unpacked the archive to datasets/cifar-10-batches-py; Keras 3 unpacks it one
# level deeper, below the name it gives the download.
KERAS_CACHE_SUBFOLDERS = (
    Path("datasets") / FOLDER_NAME,
    Path("datasets") / "cifar-10-batches-py-target" / FOLDER_NAME,
)

# The script that writes the standard layout from the copy of CIFAR-10 kept for
# machines without internet, relative to the repository root.
OFFLINE_SCRIPT = "../shared/data/cifar10/make_cifar10_batches.py"


class Cifar10NotFoundError(DLCoverageError):
    """No place that `find_cifar10` looks in holds CIFAR-10."""


@dataclass(frozen=True)
class Cifar10:
    """The CIFAR-10 images and labels.

    Attributes:
        x_train: `(50000, 32, 32, 3)` uint8 training images.
        y_train: `(50000,)` int64 training labels, 0 to 9 (see `CLASS_NAMES`).
        x_test: `(10000, 32, 32, 3)` uint8 test images.
        y_test: `(10000,)` int64 test labels.
        source: where the data came from, for messages.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    try:
        rows = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (KeyError, TypeError) as error:
        raise DLCoverageError(
            f"expected {path} to be a pickled dict with b'data' and b'labels' (the CIFAR-10 "
            f"python layout); received {type(batch).__name__} without {error}"
        ) from None
    pixels = int(np.prod(IMAGE_SHAPE))
    if rows.ndim != 2 or rows.shape[1] != pixels or len(labels) != len(rows):
        raise DLCoverageError(
            f"expected {path} to hold n rows of {pixels} bytes and n labels; received data "
            f"of shape {rows.shape} and {len(labels)} labels"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise DLCoverageError(
            f"expected labels 0 to {len(CLASS_NAMES) - 1} in {path}; received labels from "
            f"{labels.min()} to {labels.max()}"
        )
    # Each row holds the red, then green, then blue plane; images are channels-last.
    images = rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def missing_files(folder: str | os.PathLike) -> list[str]:
    """Returns the names of the CIFAR-10 batch files that `folder` lacks (all of them
    when `folder` is not a folder)."""
    folder = Path(folder)
    return [name for name in (*TRAIN_FILES, TEST_FILE) if not (folder / name).is_file()]


def load_batches(folder: str | os.PathLike) -> Cifar10:
    """Reads CIFAR-10 from a folder in the standard python layout.

    Args:
        folder: holds `data_batch_1` .. `data_batch_5` and `test_batch`.

    Returns:
        The images and labels, training batches in file order.

    Raises:
        DLCoverageError: when a file is missing or is not a CIFAR-10 batch.
    """
    folder = Path(folder)
    missing = missing_files(folder)
    if missing:
        raise DLCoverageError(
            f"expected the CIFAR-10 batches in {folder}; missing {', '.join(missing)}"
        )
    train = [_read_batch(folder / name) for name in TRAIN_FILES]
    x_test, y_test = _read_batch(folder / TEST_FILE)
    return Cifar10(
        x_train=np.concatenate([images for images, _ in train]),
        y_train=np.concatenate([labels for _, labels in train]),
        x_test=x_test,
        y_test=y_test,
        source=str(folder),
    )


def keras_home(environ: Mapping[str, str] | None = None) -> Path:
    """Returns Keras's home folder: `$KERAS_HOME`, or `~/.keras` when unset."""
    environ = os.environ if environ is None else environ
    home = environ.get("KERAS_HOME")
    return Path(home).expanduser() if home else Path("~/.keras").expanduser()


def _keras_download() -> Cifar10:
    import keras

    (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    return Cifar10(
        x_train=x_train,
        y_train=y_train.reshape(-1).astype(np.int64),
        x_test=x_test,
        y_test=y_test.reshape(-1).astype(np.int64),
        source="keras.datasets.cifar10.load_data()",
    )


def _how_to_provide() -> str:
    return (
        "To provide CIFAR-10, do one of: pass "
        f"{OPTION}=DIR or set {ENV_VAR}=DIR, DIR holding {', '.join(TRAIN_FILES)} and "
        f"{TEST_FILE} (the folder {FOLDER_NAME} that the official cifar-10-python.tar.gz from "
        "https://www.cs.toronto.edu/~kriz/cifar.html unpacks to); or run "
        "`python -c 'import keras; keras.datasets.cifar10.load_data()'` once with internet; "
        f"or, without internet, run `python {OFFLINE_SCRIPT} DIR` (from the repository root) "
        f"and point {OPTION} or {ENV_VAR} at DIR."
    )


def locate_cifar10(
    folder: str | os.PathLike | None = None, *, environ: Mapping[str, str] | None = None
) -> tuple[Path | None, list[str]]:
    """Finds the folder of the CIFAR-10 batches on this machine, without downloading.

    Args:
        folder: the folder named by the `--cifar10-dir` option, or `None`.
        environ: the environment to read `DLCOV_CIFAR10_DIR` and `KERAS_HOME` from;
            `os.environ` by default.

    Returns:
        The first folder that holds the batches (or `None`), and a description of each
        place looked at in vain, in order.

    Raises:
        Cifar10NotFoundError: when the option or the environment variable names a
            folder that lacks a batch.
    """
    environ = os.environ if environ is None else environ

    if folder is not None:
        named = (f"{OPTION}={folder}", folder)
    elif environ.get(ENV_VAR):
        named = (f"{ENV_VAR}={environ[ENV_VAR]}", environ[ENV_VAR])
    else:
        named = None
    if named is not None:
        origin, path = named[0], Path(named[1]).expanduser()
        missing = missing_files(path)
        if missing:
            raise Cifar10NotFoundError(
                f"{origin} names a folder without the CIFAR-10 batches: missing "
                f"{', '.join(missing)} in {path}. {_how_to_provide()}"
            )
        return path, []

    tried = [f"{OPTION}: not given", f"{ENV_VAR}: not set"]
    home = keras_home(environ)
    for subfolder in KERAS_CACHE_SUBFOLDERS:
        path = home / subfolder
        missing = missing_files(path)
        if not missing:
            return path, tried
        state = "no such folder" if not path.is_dir() else f"missing {', '.join(missing)}"
        tried.append(f"Keras's dataset cache {path}: {state}")
    return None, tried


def find_cifar10(
    folder: str | os.PathLike | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    download: Callable[[], Cifar10] | None = _keras_download,
) -> Cifar10:
    """Loads CIFAR-10 from the first place that holds it (see the module docstring).

    Args:
        folder: the folder named by the `--cifar10-dir` option, or `None`.
        environ: the environment to read `DLCOV_CIFAR10_DIR` and `KERAS_HOME` from;
            `os.environ` by default.
        download: called last to fetch the data; `None` skips downloading.

    Returns:
        The images and labels; `source` says where they came from.

    Raises:
        Cifar10NotFoundError: when no place holds the data; the message lists every
            place tried and how to provide the data.
        DLCoverageError: when a folder holds files that are not CIFAR-10 batches.
    """
    path, tried = locate_cifar10(folder, environ=environ)
    if path is not None:
        return load_batches(path)

    if download is not None:
        try:
            return download()
        except Exception as error:  # any failure to download means: report every place
            tried.append(f"keras.datasets.cifar10.load_data(): {type(error).__name__}: {error}")
    else:
        tried.append("keras.datasets.cifar10.load_data(): not tried (downloading disabled)")

    places = "".join(f"\n  - {place}" for place in tried)
    raise Cifar10NotFoundError(
        f"CIFAR-10 was not found. Places tried, in order:{places}\n{_how_to_provide()}"
    )


def class_balanced_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Returns the indices of a random subset with (nearly) equally many of each class.

    Taking a prefix would depend on the order of the files, which differs between
    copies of CIFAR-10; a seeded draw per class does not.

    Args:
        labels: `(n,)` class labels.
        size: how many indices to draw; at most `n`.
        seed: fixes the draw.

    Returns:
        `(size,)` int64 indices into `labels`, in a random order.
    """
    labels = np.asarray(labels).reshape(-1)
    if not 0 <= size <= len(labels):
        raise DLCoverageError(
            f"expected a subset size from 0 to {len(labels)}; received size={size}"
        )
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    # Shuffle within each class, then deal the classes out in turns.
    shuffled = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    rank = np.empty(len(labels), dtype=np.int64)
    for members in shuffled:
        rank[members] = np.arange(len(members))
    order = np.lexsort((labels, rank))
    chosen = order[:size]
    return rng.permutation(chosen)
