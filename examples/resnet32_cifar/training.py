"""Training profiles, training and the on-disk cache of trained models.

A study profile fixes everything that decides how long the study runs: how many
training images, epochs, which optimizer and learning-rate schedule, and how large
the test suites and the coverage profile's training subset are. Three are defined:

- `paper`: the settings of the study (FIELD.md): all 50,000 training images, 120
  epochs, SGD with momentum 0.9, batch 100, learning rate 0.1 divided by 10 at epochs
  60 and 90 (the step decay of He et al. 2016, shifted to a 120-epoch run). For an
  accelerator: on 2 CPU cores it would take most of a day.
- `cpu` (the default): the whole study in at most 30 minutes on 2 CPU cores, the base
  model above 50% test accuracy. See README.md for the measurements behind it.
- `smoke`: the smallest study that still trains on real images, for CI.

Trained models are saved as `.keras` files named after a fingerprint of what shaped
them, so that a second run with the same settings trains nothing, and a change to any
of them trains again: for the base model its training settings, images and seed; for
the retrained model its base model and the retraining settings and images.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pytest_dlcoverage.errors import DLCoverageError

PROFILE_OPTION = "--study-profile"
PROFILE_ENV_VAR = "DLCOV_STUDY_PROFILE"
CACHE_OPTION = "--study-cache-dir"
CACHE_ENV_VAR = "DLCOV_STUDY_CACHE_DIR"
DEFAULT_CACHE_DIR = Path(__file__).resolve().parent / ".cache"

# Part of every model fingerprint: bump it when the architecture or the training code
# changes in a way that makes older cached models wrong.
TRAINING_CODE_VERSION = 1


@dataclass(frozen=True)
class Schedule:
    """How one training run sets its optimizer and learning rate.

    Attributes:
        epochs: passes over the training images.
        batch_size: images per step.
        optimizer: "sgd" (plain momentum, not Nesterov) or "adam".
        learning_rate: the peak learning rate.
        momentum: SGD momentum (ignored by Adam).
        decay: "step" (divide by 10 at each epoch of `step_epochs`) or "cosine" (from the
            peak down to 0 over the run, after `warmup_epochs` of linear warm-up).
        step_epochs: the epochs at which a step decay divides the learning rate by 10.
        warmup_epochs: epochs of linear warm-up before a cosine decay (may be fractional).
    """

    epochs: int
    batch_size: int
    optimizer: str
    learning_rate: float
    momentum: float = 0.9
    decay: str = "cosine"
    step_epochs: tuple[int, ...] = ()
    warmup_epochs: float = 0.0


@dataclass(frozen=True)
class StudyProfile:
    """The sizes and training settings of one run of the study.

    Attributes:
        name: "paper", "cpu" or "smoke".
        train_images: training images of the base model (a class-balanced subset of the
            50,000); the retrained model sees these and one augmented copy of each.
        base: how the base model is trained from scratch.
        retrain: how the base model is trained further into the retrained model.
        test_images: images of each test suite (a class-balanced subset of the 10,000
            test images, the same for every suite).
        profile_images: training images from which each model's coverage profile is
            built.
        seed: seed of every random choice (subsets, initial weights, augmentations).
    """

    name: str
    train_images: int
    base: Schedule
    retrain: Schedule
    test_images: int
    profile_images: int
    seed: int = 0


PROFILES: dict[str, StudyProfile] = {
    "paper": StudyProfile(
        name="paper",
        train_images=50_000,
        base=Schedule(
            epochs=120,
            batch_size=100,
            optimizer="sgd",
            learning_rate=0.1,
            decay="step",
            step_epochs=(60, 90),
        ),
        # The study does not give its retraining settings; these continue the base run
        # at its middle learning rate, with the same step decay, for a quarter as long.
        retrain=Schedule(
            epochs=30,
            batch_size=100,
            optimizer="sgd",
            learning_rate=0.01,
            decay="step",
            step_epochs=(15, 25),
        ),
        test_images=10_000,
        profile_images=10_000,
    ),
    "cpu": StudyProfile(
        name="cpu",
        train_images=20_000,
        base=Schedule(
            epochs=4,
            batch_size=100,
            optimizer="adam",
            learning_rate=2e-3,
            decay="cosine",
            warmup_epochs=0.25,
        ),
        # A short warm-up: fresh Adam moments would otherwise take full-size first steps
        # away from the trained weights.
        retrain=Schedule(
            epochs=1,
            batch_size=100,
            optimizer="adam",
            learning_rate=5e-4,
            decay="cosine",
            warmup_epochs=0.1,
        ),
        test_images=2_000,
        profile_images=3_000,
    ),
    "smoke": StudyProfile(
        name="smoke",
        train_images=400,
        base=Schedule(epochs=1, batch_size=50, optimizer="adam", learning_rate=1e-3),
        retrain=Schedule(epochs=1, batch_size=50, optimizer="adam", learning_rate=5e-4),
        test_images=100,
        profile_images=200,
    ),
}


def resolve_profile(option: str | None, environ: Mapping[str, str] | None = None) -> StudyProfile:
    """Returns the study profile named by the option, else by the environment, else `cpu`.

    Raises:
        DLCoverageError: when the name is not one of `PROFILES`.
    """
    environ = os.environ if environ is None else environ
    if option is not None:
        origin, name = PROFILE_OPTION, option
    elif environ.get(PROFILE_ENV_VAR):
        origin, name = PROFILE_ENV_VAR, environ[PROFILE_ENV_VAR]
    else:
        return PROFILES["cpu"]
    if name not in PROFILES:
        raise DLCoverageError(
            f"expected {origin} to be one of {', '.join(PROFILES)}; received {name!r}"
        )
    return PROFILES[name]


def resolve_cache_dir(option: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """Returns the folder of cached models: the option, else the environment, else
    `.cache` beside this file.

    Raises:
        DLCoverageError: when the path names a file, or lies below one, so that the first
            trained model could not be saved there.
    """
    environ = os.environ if environ is None else environ
    if option is not None:
        origin, path = CACHE_OPTION, Path(option).expanduser()
    elif environ.get(CACHE_ENV_VAR):
        origin, path = CACHE_ENV_VAR, Path(environ[CACHE_ENV_VAR]).expanduser()
    else:
        return DEFAULT_CACHE_DIR
    # Checked now rather than when the first model is saved, after its training.
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise DLCoverageError(
            f"expected {origin} to name a folder (existing or not) for the cached models; "
            f"received {str(path)!r}, but {str(existing)!r} is a file"
        )
    return path


def fingerprint(*parts: Any) -> str:
    """Returns a SHA-256 digest of arrays (their dtype, shape and bytes) and of
    JSON-serialisable values, in order."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            part = np.ascontiguousarray(part)
            digest.update(f"{part.dtype.str}{part.shape}".encode())
            digest.update(part.data)
        else:
            digest.update(json.dumps(part, sort_keys=True).encode())
    return digest.hexdigest()


def _learning_rate(schedule: Schedule, steps_per_epoch: int) -> Any:
    import keras

    total = schedule.epochs * steps_per_epoch
    if schedule.decay == "step":
        boundaries = [epoch * steps_per_epoch for epoch in schedule.step_epochs]
        values = [schedule.learning_rate / 10**i for i in range(len(boundaries) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    if schedule.decay == "cosine":
        warmup = math.ceil(schedule.warmup_epochs * steps_per_epoch)
        if warmup == 0:
            return keras.optimizers.schedules.CosineDecay(schedule.learning_rate, total)
        return keras.optimizers.schedules.CosineDecay(
            0.0,
            max(total - warmup, 1),
            warmup_target=schedule.learning_rate,
            warmup_steps=warmup,
        )
    raise DLCoverageError(
        f"expected a learning-rate decay 'step' or 'cosine'; received {schedule.decay!r}"
    )


def _optimizer(schedule: Schedule, steps_per_epoch: int) -> Any:
    import keras

    rate = _learning_rate(schedule, steps_per_epoch)
    if schedule.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=schedule.momentum)
    if schedule.optimizer == "adam":
        return keras.optimizers.Adam(rate)
    raise DLCoverageError(f"expected an optimizer 'sgd' or 'adam'; received {schedule.optimizer!r}")


class _TrainingProgress:
    """Shows training progress: a rich progress bar on a terminal, one line per epoch
    otherwise (so that a log shows how far training went)."""

    def __init__(self, description: str, epochs: int, steps_per_epoch: int) -> None:
        import keras
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.description = description
        self.epochs = epochs
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[logs]}"),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,
        )
        self.task = self.progress.add_task(description, total=epochs * steps_per_epoch, logs="")
        self.started = time.perf_counter()
        progress = self

        class Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
                text = _logs_text(logs)
                progress.progress.update(progress.task, advance=1, logs=text)

            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                if not progress.console.is_terminal:
                    elapsed = time.perf_counter() - progress.started
                    progress.console.print(
                        f"{progress.description}: epoch {epoch + 1}/{progress.epochs} "
                        f"{_logs_text(logs)} ({elapsed:.0f} s)",
                        highlight=False,
                        soft_wrap=True,
                    )

        self.callback = Callback()

    def __enter__(self) -> _TrainingProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)


def _logs_text(logs: Mapping[str, Any] | None) -> str:
    logs = logs or {}
    return " ".join(f"{k} {float(v):.3f}" for k, v in logs.items() if k in ("loss", "accuracy"))


def train(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    schedule: Schedule,
    *,
    seed: int,
    description: str = "training",
) -> Any:
    """Trains `model` in place.

    Args:
        model: a Keras classifier with softmax outputs, `(batch, 32, 32, 3)` pixel values
            to `(batch, 10)` probabilities; compiled here.
        x: `(n, 32, 32, 3)` uint8 training images.
        y: `(n,)` integer labels.
        schedule: the optimizer and learning-rate settings.
        seed: seed of the shuffling.
        description: names the run in the progress display.

    Returns:
        `model`, trained.
    """
    import keras

    keras.utils.set_random_seed(seed)
    steps_per_epoch = math.ceil(len(x) / schedule.batch_size)
    model.compile(
        optimizer=_optimizer(schedule, steps_per_epoch),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    with _TrainingProgress(description, schedule.epochs, steps_per_epoch) as progress:
        model.fit(
            x.astype(np.float32),
            y,
            batch_size=schedule.batch_size,
            epochs=schedule.epochs,
            shuffle=True,
            verbose=0,
            callbacks=[progress.callback],
        )
    return model


def save_model(model: Any, path: Path) -> None:
    """Saves `model` as a `.keras` file so that a reader never sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keras chooses the format from the suffix, so the temporary name ends in .keras.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".keras")
    os.close(fd)
    try:
        with warnings.catch_warnings():
            # Keras converts each TensorFlow variable with numpy 2's copy keyword, which
            # TensorFlow's variables do not take yet: one harmless warning per weight.
            warnings.filterwarnings(
                "ignore", "__array__ implementation doesn't accept", DeprecationWarning
            )
            model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_training(cache_dir: Path, name: str, key: str, make: Callable[[], Any]) -> Any:
    """Returns the model cached under `name` and `key`, or makes, saves and returns it.

    Args:
        cache_dir: folder of the cached `.keras` files.
        name: what the model is ("base", "retrained"), the start of its file name.
        key: the fingerprint of everything the model depends on.
        make: called without arguments to train the model when it is not cached.

    Returns:
        The model as read back from its file, uncompiled: the same whether it was just
        trained or cached by an earlier run.
    """
    import keras

    path = cache_dir / f"{name}-{key[:16]}.keras"
    if not path.is_file():
        save_model(make(), path)
    return keras.models.load_model(path, compile=False)


def base_settings(profile: StudyProfile) -> dict[str, Any]:
    """Returns the settings of `profile` that shape the base model, for its fingerprint:
    its training schedule, the number of training images, the seed and the versions of
    the training code and of Keras. The retraining, the test suites and the coverage
    profile do not change the base model, so they are left out."""
    return {
        "train_images": profile.train_images,
        "schedule": asdict(profile.base),
        "seed": profile.seed,
        "code_version": TRAINING_CODE_VERSION,
        "keras_major": _keras_major(),
    }


def retrain_settings(profile: StudyProfile) -> dict[str, Any]:
    """Returns the settings of `profile` that shape the retrained model beyond its base
    model, for its fingerprint: the retraining schedule."""
    return {"schedule": asdict(profile.retrain)}


def _keras_major() -> str:
    import keras

    return keras.__version__.split(".")[0]
