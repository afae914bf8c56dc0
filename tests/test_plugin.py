"""The pytest plugin end to end: pytest runs in a subprocess (pytester) on a small
project of tiny Keras models, as a user would run it.

A subprocess that imports TensorFlow takes seconds, so each run checks several things.
Expected coverage totals are counted by hand from the models' layers; the `hand`
model's NC is exactly 1/2 by construction, which puts thresholds on the boundary.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from pytest_dlcoverage.options import OPTIONS

CONFTEST = """
import numpy as np
import pytest
import keras


def dense_model(seed, name):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu", name="h1"),
            keras.layers.Dense(6, activation="relu", name="h2"),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ],
        name=name,
    )


@pytest.fixture(scope="session")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1).astype("int64")
    return x, y


@pytest.fixture(scope="session")
def base(dl_coverage, data):
    return dl_coverage.track(dense_model(0, "base"), name="base", train=data)


@pytest.fixture(scope="session")
def retrained(dl_coverage, data):
    model = dense_model(1, "retrained")
    return dl_coverage.track(model, name="retrained", train=data, baseline="base")


@pytest.fixture(scope="session")
def hand(dl_coverage):
    # hidden = relu(x * [1, 0.9, 0.5, 0.1]); scaled per input to [0, 1] this is
    # [1, 0.89, 0.44, 0] for every x > 0, so NC (threshold 0.75) covers exactly 2 of 4
    # neurons. The output says class 1 when x > 0.5.
    model = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(4, activation="relu", name="hidden"),
            keras.layers.Dense(2, activation="softmax", name="out"),
        ],
        name="hand",
    )
    model.layers[0].set_weights([np.array([[1.0, 0.9, 0.5, 0.1]]), np.zeros(4)])
    model.layers[1].set_weights(
        [np.array([[-1.0, 1.0], [0, 0], [0, 0], [0, 0]]), np.array([0.5, -0.5])]
    )
    x = np.linspace(0.01, 1.0, 60, dtype="float32")[:, None]
    return dl_coverage.track(model, name="hand", train=(x, (x[:, 0] > 0.5).astype("int64")))
"""

TESTS = """
import numpy as np
import pytest


def test_original(base, retrained, data):
    x, y = data
    for model in (base, retrained):
        accuracy = model.evaluate(x[:60], y[:60], suite="original")
        assert 0 <= accuracy <= 1


@pytest.mark.parametrize("scale", [0.5, 2.0, 3.0])
def test_scaled(base, retrained, data, scale):
    x, y = data
    for model in (base, retrained):
        model.evaluate(x[60:100] * scale, y[60:100], suite=f"scaled-{scale}")


def test_default_suite(base, data):
    assert base.predict(data[0][:5]).shape == (5, 3)


def test_hand(hand):
    hand.predict(np.array([[1.0], [0.25]], dtype="float32"), suite="hand")


@pytest.mark.no_dl_coverage
def test_excluded(base):
    base.predict(np.full((4, 4), 50.0, dtype="float32"), suite="excluded")


def test_behaves_like_the_model(base, data):
    assert base.name == "base" and len(base.layers) == 3
    assert tuple(base(data[0][:2]).shape) == (2, 3)
"""

MAIN_ARGS = ("--dl-coverage-idc-m=3", "--dl-coverage-kmnc-k=20", "-p", "no:cacheprovider")


@pytest.fixture(autouse=True)
def _quiet_tensorflow(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture
def project(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_models=TESTS)
    return pytester


def run(pytester, *args, timeout=300):
    result = pytester.runpytest_subprocess(*args, timeout=timeout)
    result.text = result.stdout.str() + "\n" + result.stderr.str()
    return result


def section(result) -> list[str]:
    """Returns the lines of the dl-coverage terminal report (its tables)."""
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if re.match(r"^-+ dl-coverage -+$", line))
    end = next(
        i
        for i in range(start + 1, len(lines))
        if lines[i].startswith("FAIL") or "report written to" in lines[i] or "==" in lines[i]
    )
    return lines[start:end]


def has_terminal_report(result) -> bool:
    return re.search(r"^-+ dl-coverage -+$", result.stdout.str(), re.MULTILINE) is not None


def cache_files(pytester):
    return {p.name: p.stat().st_mtime_ns for p in (pytester.path / ".dlcoverage").glob("*.npz")}


# -- start-up --------------------------------------------------------------------------------


def test_importing_the_plugin_does_not_import_tensorflow():
    code = (
        "import sys, pytest_dlcoverage.plugin, pytest_dlcoverage.options;"
        "import pytest_dlcoverage.session, pytest_dlcoverage.report.jsonreport;"
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_session_without_coverage_does_not_import_tensorflow(pytester):
    pytester.makepyfile(
        "import sys\n"
        "def test_fast(dl_coverage):\n"
        "    assert not dl_coverage.enabled\n"
        "    assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    result = run(pytester, "-p", "no:cacheprovider")
    assert result.ret == 0, result.text


def test_help_lists_every_option_with_its_default(pytester):
    result = run(pytester, "--help")
    assert result.ret == 0
    squeezed = "".join(result.stdout.str().split())
    for spec in OPTIONS:
        assert "".join(f"{spec.flag}={spec.metavar}".split()) in squeezed
        assert "".join(spec.full_help.split()) in squeezed, spec.flag
        assert f"{spec.ini_name}(" in squeezed, spec.ini_name
    assert "--no-dl-coverage" in squeezed
    assert "dl_coverage(bool)" in squeezed


def test_fixture_and_marker_are_documented(pytester):
    result = run(pytester, "--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["dl_coverage [[]session scope[]]*", "*Tracks Keras models*"])
    result = run(pytester, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.no_dl_coverage: keep this test's inputs*"])


# -- usage errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (["--dl-coverage-criteria=nc,bogus"], "", "--dl-coverage-criteria: expected a comma-sep*"),
        (["--dl-coverage-fail-under=nc:1.5"], "", r"expected a value in [[]0, 1[]]*'1.5'"),
        (["--dl-coverage-nc-threshold=2"], "", "--dl-coverage-nc-threshold: expected a number in*"),
        (["--dl-coverage-report=xml:c.xml"], "", "expected a report type among*'xml:c.xml'"),
        (
            ["--dl-coverage", "--dl-coverage-compare=missing.json"],
            "",
            "*missing.json cannot be read*",
        ),
        (["--dl-coverage", "--dl-coverage-compare=old.json"], "", "*old.json has report schema 0*"),
        ([], "dl_coverage = maybe", "ini value dl_coverage: *maybe*"),
        (
            ["--dl-coverage-fail-under=idc:0.1"],
            "dl_coverage_criteria = nc,kmnc",
            "*'idc', which is not measured*",
        ),
        # A threshold from the ini file is named by its ini name, where the user wrote it.
        (
            [],
            "dl_coverage_criteria = nc\ndl_coverage_fail_under = kmnc:0.5",
            "dl_coverage_fail_under: 'kmnc:0.5' names criterion 'kmnc', which is not measured",
        ),
        (
            [],
            "dl_coverage_criteria = nc\ndl_coverage_compare_fail = kmnc:0.1",
            "dl_coverage_compare_fail: 'kmnc:0.1' names criterion 'kmnc', which is not *",
        ),
    ],
)
def test_malformed_values_are_usage_errors(pytester, args, ini, message):
    pytester.makefile(".json", old='{"schema": 0, "models": {}}')
    pytester.makefile(".ini", pytest=f"[pytest]\n{ini}\n")
    result = run(pytester, *args)
    assert result.ret == 4
    result.stderr.fnmatch_lines([f"ERROR: pytest-dlcoverage: *{message}*"])
    assert "Traceback" not in result.text


# -- report files -------------------------------------------------------------------------------


def run_json_term_markdown(pytester, json_path: str, warnings_as_errors: bool):
    """Runs a one-test session without a tracked model (so without TensorFlow) that asks
    for a JSON report at `json_path`, the terminal report and a Markdown report; checks
    that the session ends normally with the terminal and Markdown reports, and returns
    the result."""
    pytester.makepyfile("def test_fast():\n    pass\n")
    args = ["-W", "error"] if warnings_as_errors else []
    result = run(
        pytester,
        "--dl-coverage",
        "-p",
        "no:cacheprovider",
        *args,
        f"--dl-coverage-report=json:{json_path}",
        "--dl-coverage-report=term",
        "--dl-coverage-report=markdown:ok.md",
    )
    # Only the JSON report failed, which fails no test, and the session ends normally.
    assert result.ret == 0, result.text
    assert "Traceback" not in result.text and "INTERNALERROR" not in result.text
    assert "## DL coverage" in (pytester.path / "ok.md").read_text()
    assert has_terminal_report(result)
    return result


@pytest.mark.parametrize("warnings_as_errors", [False, True])
def test_a_report_that_cannot_be_written_does_not_stop_the_others(pytester, warnings_as_errors):
    # No model is tracked, so this session does not import TensorFlow and runs fast.
    (pytester.path / "blocker").write_text("a file where a folder should be")
    result = run_json_term_markdown(pytester, "blocker/cov.json", warnings_as_errors)
    result.stdout.fnmatch_lines(
        [
            "No model was tracked*",
            "dl-coverage: cannot write json report to *blocker*cov.json: *",
            "markdown report written to *ok.md",
            "*1 passed*",
        ]
    )
    if not warnings_as_errors:
        # The warning points at the option value that asked for the file.
        result.stdout.fnmatch_lines(
            [
                "*warnings summary*",
                "--dl-coverage-report=json:blocker/cov.json:0",
                "*ReportWriteWarning: cannot write json report to *blocker*cov.json: *",
            ]
        )


@pytest.mark.parametrize("warnings_as_errors", [False, True])
def test_a_report_writer_that_raises_is_a_warning_and_the_others_still_appear(
    pytester, warnings_as_errors
):
    # Any error of a writer, not only the file system's, e.g. json refusing a value.
    pytester.makeconftest(
        """
from pytest_dlcoverage.report import jsonreport


def broken(report, path):
    raise ValueError("Out of range float values are not JSON compliant")


jsonreport.write = broken
"""
    )
    result = run_json_term_markdown(pytester, "cov.json", warnings_as_errors)
    message = "cannot write json report to *cov.json: ValueError: Out of range float values*"
    result.stdout.fnmatch_lines(
        ["No model was tracked*", f"dl-coverage: {message}", "markdown report written to *ok.md"]
    )
    if not warnings_as_errors:
        result.stdout.fnmatch_lines(["*warnings summary*", f"*ReportWriteWarning: {message}"])


# -- coverage off ---------------------------------------------------------------------------------


def test_off_by_default_the_fixture_passes_through(project):
    result = run(project, *MAIN_ARGS)
    assert result.ret == 0, result.text
    result.assert_outcomes(passed=8)
    assert not has_terminal_report(result)
    assert not (project.path / ".dlcoverage").exists()


def test_no_dl_coverage_wins_over_the_flag_and_the_ini_file(project):
    project.makefile(".ini", pytest="[pytest]\ndl_coverage = true\n")
    result = run(project, "--dl-coverage", "--no-dl-coverage", *MAIN_ARGS)
    assert result.ret == 0, result.text
    assert not has_terminal_report(result)


# -- coverage on ---------------------------------------------------------------------------


def test_reports_thresholds_and_comparison(project):
    summary = project.path / "summary.md"
    summary.write_text("# CI summary\n")
    result = run(
        project,
        "--dl-coverage",
        *MAIN_ARGS,
        "--dl-coverage-report=term-verbose",
        "--dl-coverage-report=json:out/cov.json",
        f"--dl-coverage-report=markdown:{summary}",
        "--dl-coverage-report=html:site",
        "--dl-coverage-fail-under=hand.nc:0.5",
        "--dl-coverage-fail-under=hand.nc:50%",
    )
    assert result.ret == 0, result.text
    result.assert_outcomes(passed=8)

    data = json.loads((project.path / "out" / "cov.json").read_text())
    assert data["schema"] == 1
    assert data["criteria"] == ["nc", "kmnc", "nbc", "snac", "tknc", "idc"]
    base, retrained, hand = (data["models"][m] for m in ("base", "retrained", "hand"))
    assert base["baseline"] is None and retrained["baseline"] == "base"
    # The measured layers are the hidden ReLU layers: 8 + 6 neurons (h1, h2), 4 (hidden).
    assert [base["criteria"][c]["total"] for c in ("nc", "kmnc", "nbc", "snac", "tknc")] == [
        14,
        14 * 20,
        28,
        14,
        14,
    ]
    assert hand["criteria"]["nc"] == {"covered": 2, "total": 4, "coverage": 0.5}
    assert set(base["layers"]) == {"h1", "h2"}
    # The excluded test's inputs are not measured; the default suite is the test's id.
    assert set(base["suites"]) == {
        "original",
        "scaled-0.5",
        "scaled-2.0",
        "scaled-3.0",
        "test_models.py::test_default_suite",
    }
    assert base["inputs"] == 60 + 3 * 40 + 5
    original = base["suites"]["original"]
    assert original["inputs"] == 60 and original["labelled"] == 60
    assert original["accuracy"] == original["correct"] / 60
    assert base["suites"]["test_models.py::test_default_suite"]["accuracy"] is None
    # The delta against the baseline is the difference of the exact coverages.
    for c in data["criteria"]:
        b, r = base["criteria"][c], retrained["criteria"][c]
        expected = r["covered"] / r["total"] - b["covered"] / b["total"]
        assert retrained["delta"][c] == pytest.approx(expected, abs=1e-12)
    # Pairs with an accuracy: 4 suites of base and 4 of retrained; dropped: base's default
    # suite and hand's suite, which only predicted.
    for c in data["criteria"]:
        assert (data["correlation"][c]["n"], data["correlation"][c]["dropped"]) == (8, 2)
    assert [(t["model"], t["criterion"], t["passed"]) for t in data["thresholds"]] == [
        ("hand", "nc", True),
        ("hand", "nc", True),
    ]

    report = section(result)
    assert max(len(line) for line in report) <= 80
    text = "\n".join(report)
    for heading in ("Model base:", "Model retrained:", "vs base", "per layer", "per suite"):
        assert heading in text
    assert "Accuracy/coverage correlation" in text and "Thresholds" in text
    assert re.search(r"NC\s+2/4\s+50%", text)
    result.stdout.fnmatch_lines(["json report written to *cov.json", "*8 passed*"])

    markdown = summary.read_text()
    assert markdown.startswith("# CI summary\n") and "## DL coverage" in markdown
    assert "| NC | 2/4 | 50% |" in markdown
    page = (project.path / "site" / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 2

    # Second session: the profiles come from the cache; the compared report claims that
    # hand covered 3 of 4 neurons, so its NC fell by 1/4, more than the allowed 0.2.
    cached = cache_files(project)
    assert len(cached) == 3
    data["models"]["hand"]["criteria"]["nc"]["covered"] = 3
    (project.path / "previous.json").write_text(json.dumps(data))
    (project.path / "blocker").write_text("a file where a folder should be")
    result = run(
        project,
        "--dl-coverage",
        *MAIN_ARGS,
        "--dl-coverage-compare=previous.json",
        "--dl-coverage-compare-fail=nc:0.2",
        "--dl-coverage-fail-under=hand.nc:0.5000001",
        "--dl-coverage-report=term",
        "--dl-coverage-report=json:blocker/cov.json",
    )
    assert result.ret == 1, result.text
    assert cache_files(project) == cached
    text = "\n".join(section(result))
    assert "Change against previous.json" in text
    assert re.search(r"hand\s+NC\s+75%\s+50%\s+-25.00 pp", text)
    out = result.stdout.str()
    assert "ReportWriteWarning: cannot write json report to" in out
    assert len(re.findall("^FAIL dl-coverage", out, re.MULTILINE)) == 2
    result.stdout.fnmatch_lines(
        [
            "FAIL dl-coverage: model 'hand' NC: coverage 50% is below the required 50.00001%",
            "FAIL dl-coverage: model 'hand' NC: coverage fell by 25.00 pp against the compared "
            "report, more than the allowed 20.00 pp",
            "*8 passed*2 dl-coverage failed*",
        ]
    )


def test_ini_twins_and_command_line_precedence(project):
    project.makefile(
        ".ini",
        pytest="\n".join(
            [
                "[pytest]",
                "dl_coverage = true",
                "dl_coverage_criteria = nc,tknc",
                "dl_coverage_nc_threshold = 0.95",
                "dl_coverage_tknc_k = 1",
                "dl_coverage_report = json:reports/ini.json",
                "dl_coverage_fail_under = hand.nc:0.25 hand.tknc:10%",
                "dl_coverage_cache_dir = profiles",
            ]
        ),
    )
    result = run(project, "--dl-coverage-tknc-k=2", "-p", "no:cacheprovider")
    assert result.ret == 0, result.text
    data = json.loads((project.path / "reports" / "ini.json").read_text())
    assert data["criteria"] == ["nc", "tknc"]
    # nc threshold from the ini file; tknc k from the command line, over the ini file.
    assert data["models"]["hand"]["params"] == {
        "nc": {"threshold": 0.95, "scaled": True},
        "tknc": {"k": 2},
    }
    # With threshold 0.95 only the top neuron of hand (scaled value 1) is covered.
    assert data["models"]["hand"]["criteria"]["nc"]["covered"] == 1
    assert [t["criterion"] for t in data["thresholds"]] == ["nc", "tknc"]
    # The ini file asked for a JSON report only, so there is no terminal report.
    assert not has_terminal_report(result)
    result.stdout.fnmatch_lines(["json report written to *ini.json"])
    assert list((project.path / "profiles").glob("*.npz"))


# -- runs that stop early -------------------------------------------------------------------


STOPPING_TESTS = """
import numpy as np


def test_fails(hand):
    hand.predict(np.array([[1.0]], dtype="float32"), suite="before")
    assert False


def test_after(hand):
    hand.predict(np.array([[0.25]], dtype="float32"), suite="after")
"""


@pytest.mark.parametrize(
    "stop",
    [["-x"], ["--sw"], ["-n", "2", "--maxfail=1"]],
    ids=["exitfirst", "stepwise", "xdist-maxfail"],
)
def test_a_run_stopped_early_reports_what_its_tests_measured(project, stop):
    # -x stops with pytest's Failed, --sw with its Interrupted, pytest-xdist with its own.
    project.makepyfile(test_models=STOPPING_TESTS)
    cache = [] if "--sw" in stop else ["-p", "no:cacheprovider"]  # --sw needs the cache
    result = run(
        project,
        "--dl-coverage",
        "--dl-coverage-criteria=nc",
        "--dl-coverage-fail-under=hand.nc:0.9",
        "--dl-coverage-report=term",
        "--dl-coverage-report=json:cov.json",
        *cache,
        *stop,
    )
    # The exit status stays pytest's: 1 after -x, 2 (interrupted) after a stop request.
    assert result.ret == (1 if stop == ["-x"] else 2), result.text
    assert "INTERNALERROR" not in result.text
    assert re.search(r"NC\s+2/4\s+50%", "\n".join(section(result)))
    suites = json.loads((project.path / "cov.json").read_text())["models"]["hand"]["suites"]
    assert "before" in suites and (len(stop) > 1 or "after" not in suites)
    result.stdout.fnmatch_lines(
        [
            "dl-coverage: the run stopped early; the report covers only the tests that ran",
            "json report written to *cov.json",
            "FAIL dl-coverage: model 'hand' NC: coverage 50% is below the required 90%",
            # pytest counts the failed check in its last line only after every test ran.
            "*1 failed*",
        ]
    )


def test_a_run_whose_collection_failed_has_no_report(pytester):
    # pytest runs no test after a collection error: nothing was measured to report.
    pytester.makepyfile(test_ok="def test_fast():\n    pass\n", test_broken="import not_a_module\n")
    result = run(
        pytester, "--dl-coverage", "-p", "no:cacheprovider", "--dl-coverage-report=json:c.json"
    )
    assert result.ret == 2, result.text
    assert "INTERNALERROR" not in result.text and "dl-coverage" not in result.stdout.str()
    assert not (pytester.path / "c.json").exists()


# -- pytest-xdist --------------------------------------------------------------------------


XDIST_TESTS = """
import numpy as np
import pytest


@pytest.mark.parametrize("part", range(8))
def test_part(base, retrained, data, part):
    x, y = data
    rows = slice(20 * part, 20 * part + 20)
    for model in (base, retrained):
        model.evaluate(x[rows], y[rows], suite=f"suite-{part % 3}")
"""


def test_xdist_numbers_equal_a_single_process(project):
    project.makepyfile(test_models="")
    project.makepyfile(test_parts=XDIST_TESTS)
    args = ("--dl-coverage", "--dl-coverage-criteria=nc,kmnc,nbc,tknc,idc", *MAIN_ARGS)
    single = run(project, *args, "--dl-coverage-report=json:single.json")
    assert single.ret == 0, single.text
    multi = run(project, *args, "-n", "2", "-v", "--dl-coverage-report=json:multi.json")
    assert multi.ret == 0, multi.text
    assert "[gw0]" in multi.stdout.str() and "[gw1]" in multi.stdout.str()
    one = json.loads((project.path / "single.json").read_text())
    two = json.loads((project.path / "multi.json").read_text())
    assert set(one["models"]) == {"base", "retrained"}
    assert one == two


def test_xdist_missing_worker_data_fails_the_run(project):
    project.makeconftest(
        CONFTEST
        + """

@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    # Every worker but gw0 loses its coverage data.
    workerinput = getattr(session.config, "workerinput", None)
    if workerinput and workerinput["workerid"] != "gw0":
        session.config.workeroutput.pop("dl_coverage", None)
"""
    )
    project.makepyfile(
        test_models="",
        test_parts=XDIST_TESTS
        + """

def test_crash(base, data):
    import os
    base.predict(data[0][:3], suite="crash")
    os._exit(3)
""",
    )
    result = run(project, "--dl-coverage", "--dl-coverage-criteria=nc", *MAIN_ARGS, "-n", "2")
    assert result.ret == 1, result.text
    out = result.stdout.str()
    assert re.search(
        r"FAIL dl-coverage: missing data: .*worker gw\d+ returned no coverage data", out
    )
    assert re.search(
        r"FAIL dl-coverage: missing data: .*worker gw\d+, which stopped with an error", out
    )
    assert "Missing coverage data" in out
