"""The example study, run end to end on real CIFAR-10 with the smallest profile.

Runs `pytest examples/resnet32_cifar --dl-coverage --study-profile=smoke
--dl-coverage-report=json:PATH` in a subprocess, as a user would, and checks that the
JSON report is complete: every criterion, both models, all seven suites, the deltas of
the retrained model and the correlation rows. Skipped when the CIFAR-10 batches are
nowhere on this machine (the study never fakes CIFAR-10, and a test never downloads it),
except in CI (`CI` set), where missing data fails the test.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "resnet32_cifar"
CRITERIA = ("nc", "kmnc", "nbc", "snac", "tknc", "idc")
SUITES = ("original", "point_noise", "spot_noise", "brightness", "weather", "zoom", "rotation")

pytestmark = pytest.mark.slow


def _example_module(name: str) -> ModuleType:
    """Imports a module of the example (a package beside `tests`, not installed)."""
    sys.path.insert(0, str(EXAMPLE.parent))
    try:
        return importlib.import_module(f"resnet32_cifar.{name}")
    finally:
        sys.path.remove(str(EXAMPLE.parent))


SMOKE_TEST_IMAGES = _example_module("training").PROFILES["smoke"].test_images


def _missing_data(reason: str) -> None:
    # In CI (.ci/run provides the data) a missing data set is a broken set-up, not a
    # reason to pass silently.
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _cifar10_folder() -> Path:
    cifar10 = _example_module("cifar10")
    try:
        folder, tried = cifar10.locate_cifar10()
    except cifar10.Cifar10NotFoundError as error:
        _missing_data(f"CIFAR-10 not found: {error}")
    if folder is None:
        _missing_data(
            f"CIFAR-10 batches not found on this machine (looked at: {'; '.join(tried)}); "
            f"run `python {cifar10.OFFLINE_SCRIPT} DIR` and set DLCOV_CIFAR10_DIR=DIR"
        )
    return folder


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = _cifar10_folder()
    report = tmp_path_factory.mktemp("study") / "report.json"
    environ = {
        **os.environ,
        "DLCOV_CIFAR10_DIR": str(folder),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "examples/resnet32_cifar",
            "--dl-coverage",
            "--study-profile=smoke",
            f"--dl-coverage-report=json:{report}",
            # Fresh caches: the study trains its models and builds its profiles here.
            f"--study-cache-dir={report.parent / 'models'}",
            f"--dl-coverage-cache-dir={report.parent / 'profiles'}",
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = completed.stdout[-6000:] + completed.stderr[-3000:]
    assert completed.returncode == 0, output
    assert report.is_file(), output
    return json.loads(report.read_text())


def test_report_has_every_criterion_and_both_models(smoke_report: dict) -> None:
    assert set(smoke_report["criteria"]) == set(CRITERIA)
    assert set(smoke_report["models"]) == {"base", "retrained"}
    assert smoke_report["models"]["base"]["baseline"] is None
    assert smoke_report["models"]["retrained"]["baseline"] == "base"
    assert smoke_report["missing"] == []
    for name, model in smoke_report["models"].items():
        for criterion in CRITERIA:
            coverage = model["criteria"][criterion]
            assert coverage["total"] > 0, (name, criterion)
            assert 0 <= coverage["covered"] <= coverage["total"], (name, criterion)


def test_report_has_all_suites_with_accuracy(smoke_report: dict) -> None:
    for name, model in smoke_report["models"].items():
        assert set(model["suites"]) == set(SUITES), name
        for suite_name, suite in model["suites"].items():
            assert suite["inputs"] == suite["labelled"] == SMOKE_TEST_IMAGES, (name, suite_name)
            assert suite["accuracy"] == pytest.approx(suite["correct"] / suite["labelled"])
            assert set(suite["criteria"]) == set(CRITERIA), (name, suite_name)
        assert model["inputs"] == len(SUITES) * SMOKE_TEST_IMAGES


def test_model_coverage_is_the_union_of_its_suites(smoke_report: dict) -> None:
    # A union covers at least what each part covers, and no more than all parts together.
    for model in smoke_report["models"].values():
        for criterion in CRITERIA:
            whole = model["criteria"][criterion]["covered"]
            parts = [suite["criteria"][criterion]["covered"] for suite in model["suites"].values()]
            assert max(parts) <= whole <= sum(parts), criterion


def test_retrained_deltas_against_base(smoke_report: dict) -> None:
    base = smoke_report["models"]["base"]
    retrained = smoke_report["models"]["retrained"]
    for criterion in CRITERIA:
        expected = (
            retrained["criteria"][criterion]["coverage"] - base["criteria"][criterion]["coverage"]
        )
        assert retrained["delta"][criterion] == pytest.approx(expected, abs=1e-12), criterion
        for suite in SUITES:
            expected = (
                retrained["suites"][suite]["criteria"][criterion]["coverage"]
                - base["suites"][suite]["criteria"][criterion]["coverage"]
            )
            delta = retrained["suites"][suite]["delta"][criterion]
            assert delta == pytest.approx(expected, abs=1e-12), (suite, criterion)


def test_correlation_rows_for_every_criterion(smoke_report: dict) -> None:
    pairs = 2 * len(SUITES)
    assert set(smoke_report["correlation"]) == set(CRITERIA)
    for criterion, row in smoke_report["correlation"].items():
        assert row["n"] + row["dropped"] == pairs, criterion
        if row["pearson_r"] is not None:
            assert -1.0 <= row["pearson_r"] <= 1.0
        else:
            assert row["reason"], f"{criterion}: an undefined correlation must say why"
