"""Unit tests of the study's parts: the CIFAR-10 loader and its lookup, the model, the
augmentations, the training helpers and the checks of the study's options. They need no
CIFAR-10 and run in seconds."""

from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from scipy import ndimage

from pytest_dlcoverage.errors import DLCoverageError

from .augment import AUGMENTATIONS, SEVERITIES, augment, augment_mixed, augmented_copies
from .cifar10 import (
    ENV_VAR,
    OFFLINE_SCRIPT,
    TEST_FILE,
    TRAIN_FILES,
    Cifar10,
    Cifar10NotFoundError,
    class_balanced_subset,
    find_cifar10,
    load_batches,
)
from .resnet import build_resnet32
from .study import StudyData, base_key, retrained_key
from .training import (
    CACHE_ENV_VAR,
    PROFILE_ENV_VAR,
    PROFILES,
    Schedule,
    _learning_rate,
    cached_training,
    fingerprint,
    resolve_cache_dir,
    resolve_profile,
)

# -- the loader ------------------------------------------------------------------------


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def _write_batch(path: Path, images: np.ndarray, labels: list[int]) -> None:
    # The documented layout written out plane by plane, independently of the loader's
    # reshape: all red values of an image row by row, then all green, then all blue.
    rows = [
        np.concatenate([image[:, :, channel].reshape(-1) for channel in range(3)])
        for image in images
    ]
    batch = {b"data": np.array(rows, dtype=np.uint8), b"labels": labels, b"batch_label": b"x"}
    with open(path, "wb") as f:
        pickle.dump(batch, f)


def _write_folder(folder: Path, per_batch: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """Writes a tiny CIFAR-10 folder; returns the images and labels it holds."""
    folder.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = [], []
    for i, name in enumerate(TRAIN_FILES):
        images = _images(per_batch, seed + i)
        labels = [(i + j) % 10 for j in range(per_batch)]
        _write_batch(folder / name, images, labels)
        train_images.append(images)
        train_labels.extend(labels)
    test_images = _images(per_batch, seed + 99)
    test_labels = [9 - j % 10 for j in range(per_batch)]
    _write_batch(folder / TEST_FILE, test_images, test_labels)
    return {
        "x_train": np.concatenate(train_images),
        "y_train": np.array(train_labels),
        "x_test": test_images,
        "y_test": np.array(test_labels),
    }


def test_load_batches_reads_the_standard_layout(tmp_path: Path) -> None:
    expected = _write_folder(tmp_path / "cifar")

    data = load_batches(tmp_path / "cifar")

    for name, array in expected.items():
        np.testing.assert_array_equal(getattr(data, name), array)
    assert data.x_train.shape == (15, 32, 32, 3) and data.x_train.dtype == np.uint8
    assert data.y_train.dtype == np.int64


def test_load_batches_names_the_missing_files(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    (tmp_path / TEST_FILE).unlink()

    with pytest.raises(DLCoverageError, match="missing data_batch_3, test_batch"):
        load_batches(tmp_path)


def test_load_batches_rejects_a_file_that_is_not_a_batch(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    with open(tmp_path / "data_batch_2", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)

    with pytest.raises(DLCoverageError, match=r"rows of 3072 bytes.*shape \(2, 100\)"):
        load_batches(tmp_path)


class _Download:
    """Stands in for Keras's downloader, recording whether it was called."""

    def __init__(self, fails: bool) -> None:
        self.fails = fails
        self.calls = 0

    def __call__(self) -> Cifar10:
        self.calls += 1
        if self.fails:
            raise OSError("no internet")
        empty = np.zeros((0, 32, 32, 3), np.uint8)
        return Cifar10(empty, np.zeros(0, np.int64), empty, np.zeros(0, np.int64), "download")


def test_lookup_order(tmp_path: Path) -> None:
    for name in ("option", "env", "home"):
        _write_folder(tmp_path / name)
    _write_folder(tmp_path / "home" / "datasets" / "cifar-10-batches-py")
    environ = {ENV_VAR: str(tmp_path / "env"), "KERAS_HOME": str(tmp_path / "home")}
    download = _Download(fails=False)

    assert find_cifar10(tmp_path / "option", environ=environ, download=download).source == str(
        tmp_path / "option"
    )
    assert find_cifar10(None, environ=environ, download=download).source == str(tmp_path / "env")
    del environ[ENV_VAR]
    keras_cache = tmp_path / "home" / "datasets" / "cifar-10-batches-py"
    assert find_cifar10(None, environ=environ, download=download).source == str(keras_cache)
    environ["KERAS_HOME"] = str(tmp_path / "empty")
    assert find_cifar10(None, environ=environ, download=download).source == "download"
    assert download.calls == 1


def test_lookup_finds_the_keras_3_cache_layout(tmp_path: Path) -> None:
    nested = tmp_path / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    _write_folder(nested)

    data = find_cifar10(None, environ={"KERAS_HOME": str(tmp_path)}, download=None)

    assert data.source == str(nested)


def test_lookup_without_keras_home_uses_the_home_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    _write_folder(tmp_path / ".keras" / "datasets" / "cifar-10-batches-py")

    data = find_cifar10(None, environ={}, download=None)

    assert Path(data.source) == tmp_path / ".keras" / "datasets" / "cifar-10-batches-py"


def test_a_named_folder_without_the_data_is_an_error(tmp_path: Path) -> None:
    download = _Download(fails=False)

    with pytest.raises(Cifar10NotFoundError) as error:
        find_cifar10(tmp_path / "typo", environ={}, download=download)

    message = str(error.value)
    assert "--cifar10-dir=" in message and "missing data_batch_1" in message
    assert download.calls == 0


def test_error_lists_every_place_tried_and_how_to_provide_the_data(tmp_path: Path) -> None:
    download = _Download(fails=True)

    with pytest.raises(Cifar10NotFoundError) as error:
        find_cifar10(None, environ={"KERAS_HOME": str(tmp_path)}, download=download)

    message = str(error.value)
    places = [
        "--cifar10-dir: not given",
        f"{ENV_VAR}: not set",
        str(tmp_path / "datasets" / "cifar-10-batches-py"),
        str(tmp_path / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py"),
        "keras.datasets.cifar10.load_data(): OSError: no internet",
    ]
    positions = [message.index(place) for place in places]
    assert positions == sorted(positions), "places must be listed in the order tried"
    assert f"python {OFFLINE_SCRIPT} DIR" in message
    assert download.calls == 1


def test_class_balanced_subset() -> None:
    labels = np.repeat(np.arange(10), 50)[np.random.default_rng(3).permutation(500)]

    chosen = class_balanced_subset(labels, 120, seed=7)

    assert len(np.unique(chosen)) == 120
    np.testing.assert_array_equal(np.bincount(labels[chosen], minlength=10), [12] * 10)
    np.testing.assert_array_equal(chosen, class_balanced_subset(labels, 120, seed=7))
    assert not np.array_equal(np.sort(chosen), np.sort(class_balanced_subset(labels, 120, 8)))
    with pytest.raises(DLCoverageError, match="size=501"):
        class_balanced_subset(labels, 501, seed=0)


# -- the model ---------------------------------------------------------------------------


def test_resnet32_parameter_count_and_shape() -> None:
    model = build_resnet32()

    def conv(k: int, c_in: int, c_out: int) -> int:
        return k * k * c_in * c_out + c_out

    batch_norm = 4  # gamma, beta, moving mean, moving variance per channel
    expected = conv(3, 3, 16) + batch_norm * 16
    c_in = 16
    for filters in (16, 32, 64):
        for _block in range(5):
            expected += conv(3, c_in, filters) + conv(3, filters, filters)
            expected += 2 * batch_norm * filters
            if c_in != filters:
                expected += conv(1, c_in, filters)
            c_in = filters
    expected += 64 * 10 + 10

    assert model.count_params() == expected == 470_218
    assert model.output_shape == (None, 10)


def test_resnet32_depth_and_activation_layers() -> None:
    model = build_resnet32()
    # Depth counts the weight layers on the main path: shortcut projections excluded.
    main_path = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense)
        and not layer.name.endswith("_shortcut")
    ]
    relus = [layer for layer in model.layers if isinstance(layer, keras.layers.ReLU)]

    assert len(main_path) == 32
    # One after the stem, and two per residual block (after its first BN and its Add).
    assert len(relus) == 1 + 2 * 15
    assert model.get_layer("classifier").activation is keras.activations.softmax


def test_resnet32_outputs_probabilities() -> None:
    model = build_resnet32()

    probabilities = model.predict(_images(4, seed=1).astype(np.float32), verbose=0)

    assert probabilities.shape == (4, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


# -- the augmentations -------------------------------------------------------------------


def _photos(n: int = 24, seed: int = 0) -> np.ndarray:
    # Smooth random images: neighbouring pixels alike, as in photographs, so that the
    # geometric augmentations change them by a measurable but bounded amount.
    noise = np.random.default_rng(seed).random((n, 32, 32, 3))
    smooth = ndimage.gaussian_filter(noise, sigma=(0, 3, 3, 0))
    low, high = smooth.min(), smooth.max()
    return np.rint(40 + 175 * (smooth - low) / (high - low)).astype(np.uint8)


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("kind", AUGMENTATIONS)
def test_augmentation_keeps_shape_dtype_and_input(kind: str, severity: int) -> None:
    images = _photos()
    before = images.copy()

    out = augment(images, kind, severity, seed=0)

    assert out.shape == images.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(images, before)
    assert np.any(out != images)


@pytest.mark.parametrize("kind", AUGMENTATIONS)
def test_augmentation_is_deterministic_under_a_seed(kind: str) -> None:
    images = _photos()

    first = augment(images, kind, 3, seed=5)
    again = augment(images, kind, 3, seed=5)
    other = augment(images, kind, 3, seed=6)

    np.testing.assert_array_equal(first, again)
    assert np.any(first != other)


@pytest.mark.parametrize("kind", AUGMENTATIONS)
def test_stronger_severity_changes_images_more(kind: str) -> None:
    images = _photos(n=60)

    def change(severity: int) -> float:
        out = augment(images, kind, severity, seed=0).astype(np.float64)
        return float(np.abs(out - images).mean())

    assert change(5) > change(1)


def test_augment_rejects_bad_arguments() -> None:
    images = _photos(n=2)
    with pytest.raises(DLCoverageError, match="kind='blur'"):
        augment(images, "blur", 1, seed=0)
    with pytest.raises(DLCoverageError, match="severity=6"):
        augment(images, "zoom", 6, seed=0)
    with pytest.raises(DLCoverageError, match="dtype=float32"):
        augment(images.astype(np.float32), "zoom", 1, seed=0)


def test_augment_mixed_and_copies_are_deterministic_and_cover_every_kind() -> None:
    images = _photos(n=30)

    mixed = augment_mixed(images, "rotation", seed=1)
    copies = augmented_copies(images, seed=1)

    np.testing.assert_array_equal(mixed, augment_mixed(images, "rotation", seed=1))
    np.testing.assert_array_equal(copies, augmented_copies(images, seed=1))
    assert mixed.shape == copies.shape == images.shape
    # Image i gets AUGMENTATIONS[i % 6]: brightness shifts every pixel of its images.
    brightness = np.arange(30) % len(AUGMENTATIONS) == AUGMENTATIONS.index("brightness")
    shifted = np.abs(copies[brightness].astype(int) - images[brightness]).min(axis=(1, 2, 3))
    assert np.all(shifted > 0)


# -- training helpers --------------------------------------------------------------------


def test_resolve_profile_order() -> None:
    assert resolve_profile(None, environ={}) is PROFILES["cpu"]
    assert resolve_profile(None, environ={PROFILE_ENV_VAR: "smoke"}) is PROFILES["smoke"]
    assert resolve_profile("paper", environ={PROFILE_ENV_VAR: "smoke"}) is PROFILES["paper"]
    with pytest.raises(DLCoverageError, match=f"{PROFILE_ENV_VAR}.*'fast'"):
        resolve_profile(None, environ={PROFILE_ENV_VAR: "fast"})


def test_resolve_cache_dir_order(tmp_path: Path) -> None:
    environ = {"DLCOV_STUDY_CACHE_DIR": str(tmp_path / "env")}
    assert resolve_cache_dir(str(tmp_path / "opt"), environ) == tmp_path / "opt"
    assert resolve_cache_dir(None, environ) == tmp_path / "env"
    assert resolve_cache_dir(None, {}).name == ".cache"


def test_resolve_cache_dir_rejects_a_file(tmp_path: Path) -> None:
    (tmp_path / "models").write_text("not a folder")

    with pytest.raises(DLCoverageError, match=f"{CACHE_ENV_VAR}.*is a file"):
        resolve_cache_dir(None, {CACHE_ENV_VAR: str(tmp_path / "models")})
    with pytest.raises(DLCoverageError, match="--study-cache-dir.*is a file"):
        resolve_cache_dir(str(tmp_path / "models" / "below"), {})


def test_paper_profile_follows_the_study() -> None:
    paper = PROFILES["paper"]
    assert (paper.train_images, paper.base.epochs, paper.base.batch_size) == (50_000, 120, 100)
    assert (paper.base.optimizer, paper.base.learning_rate, paper.base.momentum) == (
        "sgd",
        0.1,
        0.9,
    )


def test_step_schedule_divides_by_ten_at_each_step() -> None:
    schedule = Schedule(
        epochs=120,
        batch_size=100,
        optimizer="sgd",
        learning_rate=0.1,
        decay="step",
        step_epochs=(60, 90),
    )
    rate = _learning_rate(schedule, steps_per_epoch=500)

    def at(step: int) -> float:
        return float(rate(step))

    assert at(0) == pytest.approx(0.1)
    assert at(60 * 500 - 1) == pytest.approx(0.1)
    assert at(60 * 500 + 1) == pytest.approx(0.01)
    assert at(90 * 500 + 1) == pytest.approx(0.001)


def test_cosine_schedule_warms_up_then_decays_to_zero() -> None:
    schedule = Schedule(
        epochs=4, batch_size=100, optimizer="adam", learning_rate=2e-3, warmup_epochs=0.5
    )
    rate = _learning_rate(schedule, steps_per_epoch=100)

    assert float(rate(0)) == pytest.approx(0.0)
    assert float(rate(25)) == pytest.approx(1e-3)
    assert float(rate(50)) == pytest.approx(2e-3)
    # Half-way through the decay, cosine decay gives half the peak.
    assert float(rate(50 + 175)) == pytest.approx(1e-3, rel=1e-3)
    assert float(rate(400)) == pytest.approx(0.0, abs=1e-9)


def test_cached_training_trains_once(tmp_path: Path) -> None:
    calls = []

    def make() -> keras.Model:
        calls.append(1)
        inputs = keras.Input((3,))
        model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
        model.compile(loss="mse")
        return model

    first = cached_training(tmp_path, "tiny", fingerprint("key"), make)
    second = cached_training(tmp_path, "tiny", fingerprint("key"), make)
    cached_training(tmp_path, "tiny", fingerprint("other key"), make)

    assert len(calls) == 2
    # Trained now or read from the cache, the model comes back the same way: uncompiled.
    assert not first.compiled and not second.compiled
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    names = sorted(os.listdir(tmp_path))
    assert len(names) == 2 and all(n.startswith("tiny-") and n.endswith(".keras") for n in names)


def test_fingerprint_depends_on_every_part() -> None:
    x = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert fingerprint(x, {"a": 1}) == fingerprint(x.copy(), {"a": 1})
    assert fingerprint(x, {"a": 1}) != fingerprint(x, {"a": 2})
    assert fingerprint(x, {"a": 1}) != fingerprint(x.reshape(4, 3), {"a": 1})
    y = x.copy()
    y[0, 0] = 1
    assert fingerprint(x) != fingerprint(y)


def _study_data() -> StudyData:
    images = _images(4, seed=0)
    labels = np.arange(4)
    return StudyData(
        x_train=images,
        y_train=labels,
        x_augmented=_images(4, seed=1),
        suites={},
        profile_base=(images, labels),
        profile_retrained=(images, labels),
        key=fingerprint(images, labels),
    )


def test_model_keys_depend_only_on_what_shaped_each_model() -> None:
    data = _study_data()
    profile = PROFILES["smoke"]
    other_retraining = dataclasses.replace(
        profile, retrain=dataclasses.replace(profile.retrain, learning_rate=1e-4)
    )
    other_training = dataclasses.replace(profile, base=dataclasses.replace(profile.base, epochs=2))
    other_sizes = dataclasses.replace(profile, test_images=50, profile_images=100)
    other_copies = dataclasses.replace(data, x_augmented=_images(4, seed=2))

    # Retraining settings change the retrained model only.
    assert base_key(data, other_retraining) == base_key(data, profile)
    assert retrained_key(data, other_retraining) != retrained_key(data, profile)
    # The base model's training changes both; test and profile sizes change neither.
    assert base_key(data, other_training) != base_key(data, profile)
    assert retrained_key(data, other_training) != retrained_key(data, profile)
    assert base_key(data, other_sizes) == base_key(data, profile)
    assert retrained_key(data, other_sizes) == retrained_key(data, profile)
    # The augmented copies are the retrained model's data, not the base model's.
    assert base_key(other_copies, profile) == base_key(data, profile)
    assert retrained_key(other_copies, profile) != retrained_key(data, profile)


# -- the options ------------------------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parent
STUDY_VARIABLES = (PROFILE_ENV_VAR, CACHE_ENV_VAR, ENV_VAR)


class _NoOptions:
    """Stands in for a pytest config on whose command line no study option was given."""

    def getoption(self, name: str, default: object = None) -> object:
        return default


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (PROFILE_ENV_VAR, "fast", ["paper, cpu, smoke", "'fast'"]),
        (ENV_VAR, "{tmp}/typo", ["{tmp}/typo", "missing data_batch_1"]),
        (CACHE_ENV_VAR, "{tmp}/file", ["{tmp}/file", "is a file"]),
    ],
)
def test_configure_rejects_a_bad_environment_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: list[str]
) -> None:
    from .conftest import pytest_configure

    (tmp_path / "file").write_text("not a folder")
    for variable in STUDY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv(name, value.format(tmp=tmp_path))

    with pytest.raises(pytest.UsageError) as error:
        pytest_configure(_NoOptions())

    assert name in str(error.value)
    for text in expected:
        assert text.format(tmp=tmp_path) in str(error.value)


def test_a_bad_profile_variable_stops_pytest_with_a_usage_error() -> None:
    # --collect-only: should the check not stop pytest, nothing is trained either.
    environ = {key: v for key, v in os.environ.items() if key not in STUDY_VARIABLES}
    environ.update({PROFILE_ENV_VAR: "fast", "TF_CPP_MIN_LOG_LEVEL": "2"})
    options = ["--collect-only", "-q", "-p", "no:cacheprovider"]
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", str(EXAMPLE), *options],
        cwd=EXAMPLE.parents[1],
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert completed.returncode == 4, completed.stdout + completed.stderr
    message = "expected DLCOV_STUDY_PROFILE to be one of paper, cpu, smoke; received 'fast'"
    assert message in completed.stderr
