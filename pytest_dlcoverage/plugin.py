"""pytest glue of pytest-dlcoverage: options, the `dl_coverage` fixture, the
`no_dl_coverage` marker, and the hooks that report and gate coverage.

The work lives elsewhere: option values are parsed in `options`, tracked models in
`tracking`, measurements, verdicts and the report model in `session`, report formats
in `report`. The session's state is kept in `config.stash`.

TensorFlow and the engine are imported only when a model is tracked with coverage on,
so that pytest starts fast without `--dl-coverage`.

With pytest-xdist every worker sends its measurements to the controller in
`workeroutput` (criterion states serialised and base64-encoded); the controller
merges them, so the numbers equal those of a single process.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Generator
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .errors import DLCoverageError, ReportWriteWarning
from .options import OPTIONS, Settings, resolve_enabled, resolve_settings

if TYPE_CHECKING:
    from .report import Report, WriteOutcome
    from .report.jsonreport import PreviousReport
    from .session import Measurements
    from .tracking import CoverageTracker, RunningTest

PAYLOAD_KEY = "dl_coverage"
SUMMARY_KEY = "dl-coverage failed"


@dataclass
class PluginState:
    """What the plugin keeps for one session.

    Attributes:
        settings: the parsed settings.
        worker: this process is a pytest-xdist worker (it measures, never reports).
        context: which test is running (kept only while coverage is on).
        measurements: the session's measurements (merged from workers on the controller).
        previous: the earlier report to compare with.
        report: the report, built once after the tests ran.
        files_written: the file reports were written (or tried).
        outcomes: what became of each file report.
        shown: the terminal summary showed the report and the outcomes.
        stopped: the test loop stopped early (`-x`, `--maxfail`, `--sw`), so the report
            covers the tests that ran.
    """

    settings: Settings
    worker: bool
    context: RunningTest | None = None
    measurements: Measurements | None = None
    previous: PreviousReport | None = None
    report: Report | None = None
    files_written: bool = False
    outcomes: list[WriteOutcome] = field(default_factory=list)
    shown: bool = False
    stopped: bool = False


STATE = pytest.StashKey[PluginState]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Registers the command-line options and their ini twins."""
    group = parser.getgroup("dl-coverage", "deep-learning test adequacy (pytest-dlcoverage)")
    group.addoption(
        "--dl-coverage",
        action="store_true",
        default=False,
        dest="dl_coverage",
        help="measure the coverage of tracked Keras models by the tests (default: off)",
    )
    group.addoption(
        "--no-dl-coverage",
        action="store_true",
        default=False,
        dest="no_dl_coverage",
        help="do not measure coverage, even if --dl-coverage or the ini file says so "
        "(default: off)",
    )
    parser.addini(
        "dl_coverage",
        "measure the coverage of tracked Keras models by the tests (default: false)",
        type="bool",
        default=None,
    )
    for spec in OPTIONS:
        group.addoption(
            spec.flag,
            action="append" if spec.repeatable else "store",
            default=None,
            dest=spec.dest,
            metavar=spec.metavar,
            help=spec.full_help.replace("%", "%%"),  # argparse %-formats help texts
        )
        parser.addini(
            spec.ini_name, f"{spec.flag}: {spec.full_help}", type=spec.ini_type, default=None
        )


def _ini(config: pytest.Config, name: str) -> Any:
    """Returns an ini value, `None` when unset."""
    try:
        return config.getini(name)
    except ValueError as error:  # a bool ini value that is not a boolean
        raise DLCoverageError(f"ini value {name}: {error}") from None


def pytest_configure(config: pytest.Config) -> None:
    """Registers the marker and checks the settings; a malformed value is a usage error."""
    config.addinivalue_line(
        "markers",
        "no_dl_coverage: keep this test's inputs to tracked models out of the DL coverage "
        "measurement",
    )
    option = config.option
    ini_base = config.inipath.parent if config.inipath else config.rootpath
    try:
        enabled = resolve_enabled(
            option.dl_coverage, option.no_dl_coverage, _ini(config, "dl_coverage")
        )
        settings = resolve_settings(
            enabled,
            {spec.key: getattr(option, spec.dest) for spec in OPTIONS},
            {spec.key: _ini(config, spec.ini_name) for spec in OPTIONS},
            cli_base=Path(config.invocation_params.dir),
            ini_base=Path(ini_base),
            rootdir=Path(config.rootpath),
        )
        state = PluginState(settings, hasattr(config, "workerinput"))
        if settings.enabled:
            from .session import Measurements
            from .tracking import RunningTest

            state.measurements = Measurements()
            state.context = RunningTest()
            if settings.compare is not None and not state.worker:
                from .report.jsonreport import load_previous

                previous = load_previous(settings.compare)
                state.previous = replace(
                    previous, source=_shown(previous.source, config.invocation_params.dir)
                )
    except DLCoverageError as error:
        raise pytest.UsageError(f"pytest-dlcoverage: {error}") from None
    config.stash[STATE] = state


def _shown(path: Path, base: Path) -> Path:
    """Returns `path` relative to `base` when it lies inside, for shorter report titles."""
    try:
        return Path(path).relative_to(base)
    except ValueError:
        return Path(path)


def _state(config: pytest.Config) -> PluginState | None:
    return config.stash.get(STATE, None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, Any, None]:
    """Tells tracked models which test runs, the default suite name."""
    state = _state(item.config)
    context = state.context if state is not None else None
    if context is not None:
        context.nodeid = item.nodeid
        context.excluded = item.get_closest_marker("no_dl_coverage") is not None
    yield
    if context is not None:
        context.nodeid = None
        context.excluded = False


@pytest.fixture(scope="session")
def dl_coverage(request: pytest.FixtureRequest) -> CoverageTracker:
    """Tracks Keras models so that pytest --dl-coverage measures the coverage of their
    test inputs.

    `dl_coverage.track(model, name=..., train=(x_train, y_train), baseline=None,
    layers=None)` returns a wrapper that behaves like the model; its `predict(x,
    suite=...)` records coverage and `evaluate(x, y, suite=...)` coverage and accuracy.
    The suite defaults to the running test's id. Without --dl-coverage the wrapper only
    forwards to the model.
    """
    from .tracking import CoverageTracker, RunningTest

    config = request.config
    state = _state(config)
    assert state is not None
    capture = config.pluginmanager.getplugin("capturemanager")

    def quiet_capture() -> Any:
        # The profiling progress bar must reach the terminal, past pytest's capture.
        return capture.global_and_fixture_disabled() if capture is not None else nullcontext()

    settings = state.settings if state.settings.enabled else None
    context = state.context if state.context is not None else RunningTest()
    return CoverageTracker(settings, state.measurements, context, quiet_capture)


def _stop_signals() -> tuple[type[BaseException], ...]:
    """Returns the exceptions that end the test loop early on purpose: pytest's for
    `-x`/`--maxfail` (`Failed`) and for a plugin's request to stop such as `--sw`
    (`Interrupted`), and pytest-xdist's own `Interrupted`, when it is loaded."""
    signals: list[type[BaseException]] = [pytest.Session.Failed, pytest.Session.Interrupted]
    xdist = sys.modules.get("xdist.dsession")
    if xdist is not None and isinstance(getattr(xdist, "Interrupted", None), type):
        signals.append(xdist.Interrupted)
    return tuple(signals)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, Any, None]:
    """Builds the report and decides the verdicts once the tests ran (on the
    pytest-xdist controller, once every worker's data arrived), before any report is
    shown; a failing check makes the exit status 1.

    A run stopped early (`-x`, `--maxfail`, `--sw`) is reported with what its tests
    measured, as pytest-cov does; a run that ran no test because collection failed, or
    that was interrupted from the keyboard, is not.
    """
    config = session.config
    # pytest runs no test at all after a collection error, unless told to continue.
    keep_going = config.option.continue_on_collection_errors
    collection_failed = bool(session.testsfailed) and not keep_going
    outcome = yield
    state = _state(config)
    if state is None or state.measurements is None or state.worker or config.option.collectonly:
        return
    if outcome.excinfo is not None:
        if collection_failed or not isinstance(outcome.excinfo[1], _stop_signals()):
            return
        state.stopped = True
    from .session import build_report

    settings = state.settings
    state.report = build_report(
        state.measurements,
        settings.criteria,
        settings.thresholds,
        state.previous,
        settings.max_drops,
    )
    if state.report.failed:
        session.testsfailed += 1


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On a pytest-xdist worker, hands the measurements to the controller."""
    state = _state(session.config)
    if state is not None and state.worker and state.measurements is not None:
        session.config.workeroutput[PAYLOAD_KEY] = state.measurements.to_payload()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """Merges a pytest-xdist worker's measurements; notes what is missing."""
    state = _state(node.config)
    if state is None or state.measurements is None:
        return
    worker = getattr(node, "workerinput", {}).get("workerid", str(node))
    payload = getattr(node, "workeroutput", {}).get(PAYLOAD_KEY)
    if error is not None:
        state.measurements.missing.append(
            f"the measurements of worker {worker}, which stopped with an error: {error}"
        )
        return
    if payload is None:
        state.measurements.missing.append(f"worker {worker} returned no coverage data")
        return
    try:
        state.measurements.merge_payload(payload, f"worker {worker}")
    except DLCoverageError as problem:
        state.measurements.missing.append(
            f"the data of worker {worker} cannot be merged: {problem}"
        )


def _write_files(state: PluginState) -> None:
    """Writes every report file, once; failures are kept in `state.outcomes`."""
    if state.files_written or state.report is None:
        return
    state.files_written = True
    from .report import write_file_reports

    state.outcomes = write_file_reports(state.report, state.settings.file_reports)


def _warn_unwritten(state: PluginState) -> None:
    """Issues a `ReportWriteWarning` for every report file that could not be written.

    The warning points at the option value that asked for the file, its true origin.
    Under `-W error` the warning is raised as an exception; it is dropped here, because
    the failure was already written on the terminal, and a report file must not turn
    the end of the session into a crash.
    """
    for outcome in state.outcomes:
        if outcome.error is None:
            continue
        with suppress(ReportWriteWarning):
            warnings.warn_explicit(
                outcome.message(), ReportWriteWarning, filename=outcome.spec.origin, lineno=0
            )


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Writes the report files and shows the terminal report and the failed checks."""
    state = _state(config)
    if state is None or state.report is None:
        return
    report = state.report
    state.shown = True
    _write_files(state)

    kind = state.settings.terminal_report
    if kind is not None:
        from .report.term import render

        markup = bool(terminalreporter.hasmarkup)
        width = config.get_terminal_writer().fullwidth if markup else 80
        terminalreporter.write_sep("-", "dl-coverage")
        terminalreporter.write(
            render(report, verbose=kind == "term-verbose", markup=markup, width=width)
        )
    if state.stopped:
        # pytest itself says why it stopped ("stopping after 1 failures").
        terminalreporter.write_line(
            "dl-coverage: the run stopped early; the report covers only the tests that ran",
            yellow=True,
        )
    for outcome in state.outcomes:
        if outcome.error is None:
            terminalreporter.write_line(outcome.message())
        else:
            terminalreporter.write_line(f"dl-coverage: {outcome.message()}", yellow=True)

    for verdict in report.failures:
        terminalreporter.write_line(f"FAIL dl-coverage: {verdict.message()}", red=True, bold=True)
    for missing in report.missing:
        terminalreporter.write_line(
            f"FAIL dl-coverage: missing data: {missing}", red=True, bold=True
        )
    if report.failed:
        # Counted in the final summary line, so that it does not read as a clean pass.
        # pytest colours that line red only for failed tests and errors (this key makes it
        # yellow), and after a run stopped early it lists only the kinds of result seen
        # during the tests; changing either takes pytest's private state, so it stays so.
        failures = terminalreporter.stats.setdefault(SUMMARY_KEY, [])
        failures.extend(report.failures)
        failures.extend(report.missing)
    _warn_unwritten(state)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Writes the report files if the terminal summary did not run."""
    state = _state(config)
    if state is None or state.shown:
        return
    # The terminal summary, where the files are usually written, did not run (e.g.
    # pytest -p no:terminal), so the failures are told on stderr here.
    _write_files(state)
    for outcome in state.outcomes:
        if outcome.error is not None:
            sys.stderr.write(f"dl-coverage: {outcome.message()}\n")
    _warn_unwritten(state)
