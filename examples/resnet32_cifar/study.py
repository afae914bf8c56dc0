"""The study's data and models, assembled from the loader, the augmentations and the
training code.

Steps of the study (FIELD.md) and where they happen:

1. train the base model: `base_model`, on a class-balanced subset of the training
   images;
2. and 5. measure coverage: `test_study.py`, through the plugin's `dl_coverage` fixture;
3. make augmented data: `prepare_data`, one augmented copy of every training image and
   one augmented test suite per augmentation;
4. retrain: `retrained_model`, the base model trained further on the training images
   plus their augmented copies;
6. and 7. accuracy/coverage correlation and deltas: the plugin's report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .augment import AUGMENTATIONS, augment_mixed, augmented_copies
from .cifar10 import Cifar10, class_balanced_subset
from .resnet import build_resnet32
from .training import (
    StudyProfile,
    base_settings,
    cached_training,
    fingerprint,
    retrain_settings,
    train,
)

ORIGINAL = "original"
SUITES = (ORIGINAL, *AUGMENTATIONS)
MODELS = ("base", "retrained")

# Offsets that keep the random draws of the study apart; any distinct values would do.
_TEST_SEED_OFFSET = 1
_PROFILE_SEED_OFFSET = 2


@dataclass(frozen=True)
class StudyData:
    """The images of one run of the study, all uint8 `(n, 32, 32, 3)` with int64 labels.

    Attributes:
        x_train: the base model's training images.
        y_train: their labels.
        x_augmented: one augmented copy of each training image (labels: `y_train`).
        suites: test suite name (`SUITES`) -> (images, labels): the test images as they
            are, and once through each augmentation.
        profile_base: (images, labels) from which the base model's coverage profile is
            built: a subset of its training images.
        profile_retrained: the same for the retrained model: half original training
            images, half augmented copies, as it was trained.
        key: a fingerprint of the training images and labels.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_augmented: np.ndarray
    suites: dict[str, tuple[np.ndarray, np.ndarray]]
    profile_base: tuple[np.ndarray, np.ndarray]
    profile_retrained: tuple[np.ndarray, np.ndarray]
    key: str


def prepare_data(cifar: Cifar10, profile: StudyProfile) -> StudyData:
    """Draws the subsets of `profile` from CIFAR-10 and makes the augmented images.

    Args:
        cifar: the whole data set.
        profile: the sizes and the seed.

    Returns:
        The study's images; see `StudyData`.
    """
    seed = profile.seed
    train_index = class_balanced_subset(cifar.y_train, profile.train_images, seed)
    x_train, y_train = cifar.x_train[train_index], cifar.y_train[train_index]
    x_augmented = augmented_copies(x_train, seed)

    test_index = class_balanced_subset(cifar.y_test, profile.test_images, seed + _TEST_SEED_OFFSET)
    x_test, y_test = cifar.x_test[test_index], cifar.y_test[test_index]
    suites = {ORIGINAL: (x_test, y_test)}
    for kind in AUGMENTATIONS:
        suites[kind] = (augment_mixed(x_test, kind, seed + _TEST_SEED_OFFSET), y_test)

    profile_index = class_balanced_subset(
        y_train, profile.profile_images, seed + _PROFILE_SEED_OFFSET
    )
    half = len(profile_index) // 2
    original_half, augmented_half = profile_index[:half], profile_index[half:]
    profile_retrained = (
        np.concatenate([x_train[original_half], x_augmented[augmented_half]]),
        np.concatenate([y_train[original_half], y_train[augmented_half]]),
    )
    return StudyData(
        x_train=x_train,
        y_train=y_train,
        x_augmented=x_augmented,
        suites=suites,
        profile_base=(x_train[profile_index], y_train[profile_index]),
        profile_retrained=profile_retrained,
        key=fingerprint(x_train, y_train),
    )


def base_key(data: StudyData, profile: StudyProfile) -> str:
    """Returns the fingerprint of the base model: its training settings, its training
    images and the seed (not the retraining settings)."""
    return fingerprint("base", base_settings(profile), data.key)


def retrained_key(data: StudyData, profile: StudyProfile) -> str:
    """Returns the fingerprint of the retrained model: its base model, the retraining
    settings and the augmented images."""
    return fingerprint(
        "retrained", base_key(data, profile), retrain_settings(profile), data.x_augmented
    )


def base_model(data: StudyData, profile: StudyProfile, cache_dir: Path) -> Any:
    """Returns the base model: ResNet32 trained on the training images (cached).

    Args:
        data: the study's images.
        profile: the training settings.
        cache_dir: folder of cached models.

    Returns:
        The trained Keras model.
    """

    def make() -> Any:
        import keras

        keras.utils.set_random_seed(profile.seed)
        model = build_resnet32()
        return train(
            model,
            data.x_train,
            data.y_train,
            profile.base,
            seed=profile.seed,
            description=f"training the base model ({profile.name} profile)",
        )

    return cached_training(cache_dir, f"base-{profile.name}", base_key(data, profile), make)


def retrained_model(data: StudyData, profile: StudyProfile, cache_dir: Path) -> Any:
    """Returns the retrained model: the base model trained further on the training images
    plus their augmented copies (cached).

    Args:
        data: the study's images.
        profile: the training settings.
        cache_dir: folder of cached models.

    Returns:
        The trained Keras model, a different object from the base model.
    """

    def make() -> Any:
        # Loaded afresh from the cache: the session's base model object stays as it is.
        model = base_model(data, profile, cache_dir)
        x = np.concatenate([data.x_train, data.x_augmented])
        y = np.concatenate([data.y_train, data.y_train])
        return train(
            model,
            x,
            y,
            profile.retrain,
            seed=profile.seed + 1,
            description=f"retraining with augmented images ({profile.name} profile)",
        )

    return cached_training(
        cache_dir, f"retrained-{profile.name}", retrained_key(data, profile), make
    )
