"""Options and session fixtures of the ResNet32 CIFAR-10 study.

Options (each with an environment twin, the option winning):

- `--cifar10-dir=DIR` (`DLCOV_CIFAR10_DIR`): the folder of the CIFAR-10 batches; see
  `cifar10.find_cifar10` for where else the data is looked for.
- `--study-profile=paper|cpu|smoke` (`DLCOV_STUDY_PROFILE`): the training profile;
  `cpu` by default. See `training.PROFILES`.
- `--study-cache-dir=DIR` (`DLCOV_STUDY_CACHE_DIR`): where trained models are kept;
  `.cache` beside this file by default.

A bad value of any of them (an unknown profile, a data folder without the batches, a
cache path that is a file) stops pytest with a usage error before any test runs.

These options exist only when this folder is named on the command line, since pytest
reads a folder's conftest.py before parsing the options only for the paths it is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import pytest

from pytest_dlcoverage.errors import DLCoverageError

from .cifar10 import ENV_VAR, OPTION, Cifar10, find_cifar10, locate_cifar10
from .training import (
    CACHE_ENV_VAR,
    CACHE_OPTION,
    PROFILE_ENV_VAR,
    PROFILE_OPTION,
    PROFILES,
    StudyProfile,
    resolve_cache_dir,
    resolve_profile,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("resnet32-cifar", "the ResNet32 CIFAR-10 coverage study")
    group.addoption(
        OPTION,
        default=None,
        metavar="DIR",
        help=f"folder of the CIFAR-10 python batches (default: ${ENV_VAR}, then Keras's "
        "dataset cache, then Keras's downloader)",
    )
    group.addoption(
        PROFILE_OPTION,
        default=None,
        choices=tuple(PROFILES),
        help=f"training profile of the study (default: ${PROFILE_ENV_VAR}, else cpu)",
    )
    group.addoption(
        CACHE_OPTION,
        default=None,
        metavar="DIR",
        help=f"folder of the cached trained models (default: ${CACHE_ENV_VAR}, else "
        "examples/resnet32_cifar/.cache)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Checks the study's options and their environment twins before any test runs, so
    that a bad value stops pytest with a usage error (exit status 4) instead of failing
    every test that needs it."""
    try:
        resolve_profile(config.getoption(PROFILE_OPTION, None))
        resolve_cache_dir(config.getoption(CACHE_OPTION, None))
        # Only a folder named by the option or the environment can be wrong here; the
        # Keras cache and the download are tried when the data is first needed.
        locate_cifar10(config.getoption(OPTION, None))
    except DLCoverageError as error:
        raise pytest.UsageError(str(error)) from None


def pytest_report_header(config: pytest.Config) -> str:
    profile = resolve_profile(config.getoption(PROFILE_OPTION, None))
    return (
        f"resnet32-cifar study: profile {profile.name} ({profile.train_images} training "
        f"images, {profile.base.epochs} + {profile.retrain.epochs} epochs, "
        f"{profile.test_images} images per suite)"
    )


@contextmanager
def _visible(request: pytest.FixtureRequest) -> Iterator[None]:
    """Lets the training progress reach the terminal past pytest's output capture."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    context = capture.global_and_fixture_disabled() if capture is not None else nullcontext()
    with context:
        yield


@pytest.fixture(scope="session")
def study_profile(request: pytest.FixtureRequest) -> StudyProfile:
    """The study profile chosen by `--study-profile` or `DLCOV_STUDY_PROFILE` (checked in
    `pytest_configure`)."""
    return resolve_profile(request.config.getoption(PROFILE_OPTION))


@pytest.fixture(scope="session")
def study_cache_dir(request: pytest.FixtureRequest) -> Path:
    """The folder of the cached trained models."""
    return resolve_cache_dir(request.config.getoption(CACHE_OPTION))


@pytest.fixture(scope="session")
def cifar10(request: pytest.FixtureRequest) -> Cifar10:
    """All of CIFAR-10, from the first place that holds it."""
    return find_cifar10(request.config.getoption(OPTION))


@pytest.fixture(scope="session")
def study_data(cifar10: Cifar10, study_profile: StudyProfile) -> Any:
    """The study's training subset, augmented copies, test suites and profile subsets."""
    from .study import prepare_data

    return prepare_data(cifar10, study_profile)


@pytest.fixture(scope="session")
def base_model(
    request: pytest.FixtureRequest,
    study_data: Any,
    study_profile: StudyProfile,
    study_cache_dir: Path,
) -> Any:
    """The base model: ResNet32 trained on the original training images."""
    from .study import base_model as make_base_model

    with _visible(request):
        return make_base_model(study_data, study_profile, study_cache_dir)


@pytest.fixture(scope="session")
def retrained_model(
    request: pytest.FixtureRequest,
    base_model: Any,
    study_data: Any,
    study_profile: StudyProfile,
    study_cache_dir: Path,
) -> Any:
    """The retrained model: the base model trained further on the training images plus
    their augmented copies."""
    from .study import retrained_model as make_retrained_model

    with _visible(request):
        return make_retrained_model(study_data, study_profile, study_cache_dir)


@pytest.fixture(scope="session")
def tracked_base(dl_coverage: Any, base_model: Any, study_data: Any) -> Any:
    """The base model as the plugin tracks it, under the name "base"."""
    return dl_coverage.track(base_model, name="base", train=study_data.profile_base)


@pytest.fixture(scope="session")
def tracked_retrained(
    dl_coverage: Any, retrained_model: Any, study_data: Any, tracked_base: Any
) -> Any:
    """The retrained model as the plugin tracks it, under the name "retrained", compared
    with "base"."""
    return dl_coverage.track(
        retrained_model,
        name="retrained",
        train=study_data.profile_retrained,
        baseline="base",
    )
