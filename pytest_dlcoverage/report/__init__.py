"""The report model: what every report format shows, built once per session.

`pytest_dlcoverage.session.build_report` turns the session's measurements into a
`Report`; each format (`term`, `jsonreport`, `markdown`, `html`) only renders it, from
table cells that `tables` writes once for all of them. Numbers stay exact here (`Coverage`
integers, `Fraction` deltas and thresholds); formats round them for display only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from ..results import Coverage

if TYPE_CHECKING:
    from ..options import ReportSpec


@dataclass(frozen=True)
class SuiteResult:
    """One suite (a named set of test inputs) of one model.

    Attributes:
        name: the suite's name (by default the id of the test that fed it).
        inputs: inputs seen.
        correct, labelled: correctly classified inputs among the `labelled` ones (those
            given to `evaluate` with labels).
        coverage: per criterion, the coverage by this suite alone.
        delta: per criterion, this suite's coverage minus the coverage of the
            baseline model's suite of the same name; empty when there is none.
    """

    name: str
    inputs: int
    correct: int
    labelled: int
    coverage: Mapping[str, Coverage]
    delta: Mapping[str, Fraction | None] = field(default_factory=dict)

    @property
    def accuracy(self) -> float | None:
        """Returns the fraction of labelled inputs classified correctly, or `None`."""
        return self.correct / self.labelled if self.labelled else None

    @property
    def accuracy_exact(self) -> Fraction | None:
        """Returns the accuracy as an exact fraction, or `None` without labels."""
        return Fraction(self.correct, self.labelled) if self.labelled else None


@dataclass(frozen=True)
class ModelResult:
    """One tracked model: its coverage over all suites, per layer and per suite.

    Attributes:
        name: the name given to `dl_coverage.track`.
        baseline: the name of the model it is compared with, or `None`.
        baseline_found: whether the baseline was tracked in this session.
        coverage: per criterion, the union over all suites.
        delta: per criterion, coverage minus the baseline's coverage; empty without a
            tracked baseline; `None` where either value is undefined.
        layers: per layer, per criterion with a per-layer breakdown, the coverage.
        suites: the model's suites, sorted by name.
        params: per criterion, the parameters it was measured with.
    """

    name: str
    baseline: str | None
    baseline_found: bool
    coverage: Mapping[str, Coverage]
    delta: Mapping[str, Fraction | None]
    layers: Mapping[str, Mapping[str, Coverage]]
    suites: tuple[SuiteResult, ...]
    params: Mapping[str, Mapping[str, object]]

    @property
    def inputs(self) -> int:
        """Returns the inputs seen over all suites."""
        return sum(s.inputs for s in self.suites)


@dataclass(frozen=True)
class Correlation:
    """Correlation between accuracy and one criterion's coverage over (model, suite) pairs.

    Attributes:
        criterion: the criterion.
        n: pairs used.
        dropped: pairs left out because accuracy or coverage was undefined.
        pearson_r, p_value: Pearson's r and its two-sided p-value, or `None`.
        spearman_rho: Spearman's rank correlation, or `None`.
        reason: why the coefficients are `None` (too few pairs, a constant value).
        short_reason: the reason in a few words, short enough for a table cell in 80
            columns ("needs 3 pairs, has 2").
    """

    criterion: str
    n: int
    dropped: int
    pearson_r: float | None = None
    p_value: float | None = None
    spearman_rho: float | None = None
    reason: str | None = None
    short_reason: str | None = None


@dataclass(frozen=True)
class Verdict:
    """One threshold checked against the exact coverage.

    Attributes:
        kind: "fail-under" (a minimum coverage) or "max-drop" (a largest fall against
            the compared report).
        model: the model, or "*" when a check without a model name found no model to
            check (none tracked; for a fall, none in both reports).
        criterion: the criterion.
        required: the minimum coverage, or the largest allowed fall, exact.
        measured: the coverage, or its fall, exact; `None` when it could not be measured.
        passed: the verdict.
        reason: why nothing could be measured, if so.
    """

    kind: str
    model: str
    criterion: str
    required: Fraction
    measured: Fraction | None
    passed: bool
    reason: str | None = None

    def message(self) -> str:
        """Returns one line naming the model, the criterion, the measured and the
        required value, written so that two different values never read the same."""
        name = f"model {self.model!r} {self.criterion.upper()}"
        unit = percent if self.kind == "fail-under" else points
        measured, required = distinct_texts(self.measured, self.required, unit)
        if self.kind == "fail-under":
            if self.measured is None:
                return f"{name}: coverage {self.reason}; required at least {required}"
            relation = "meets" if self.passed else "is below"
            return f"{name}: coverage {measured} {relation} the required {required}"
        if self.measured is None:
            return f"{name}: fall {self.reason}; allowed at most {required}"
        relation = "within" if self.passed else "more than"
        return (
            f"{name}: coverage fell by {measured} against the compared report, "
            f"{relation} the allowed {required}"
        )


@dataclass(frozen=True)
class Change:
    """One model's coverage by one criterion, before (compared report) and now.

    `before` or `after` is `None` when the model or criterion is missing on that side;
    `note` says when the two were measured with different settings.
    """

    model: str
    criterion: str
    before: Coverage | None
    after: Coverage | None
    note: str | None = None

    @property
    def change(self) -> Fraction | None:
        """Returns after minus before, exact, or `None` when either is undefined."""
        if self.before is None or self.after is None or self.note:
            return None
        if self.before.exact is None or self.after.exact is None:
            return None
        return self.after.exact - self.before.exact


@dataclass(frozen=True)
class Comparison:
    """The change of every model's coverage against an earlier JSON report."""

    source: str
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class Report:
    """Everything a session's reports show.

    Attributes:
        criteria: the measured criteria, in order.
        models: the tracked models, sorted by name.
        correlation: per criterion, accuracy/coverage correlation.
        verdicts: every threshold's verdict, decided from exact values.
        comparison: the change against an earlier report, or `None`.
        missing: descriptions of data that did not arrive (e.g. a crashed pytest-xdist
            worker); any entry fails the run.
    """

    criteria: tuple[str, ...]
    models: tuple[ModelResult, ...]
    correlation: tuple[Correlation, ...]
    verdicts: tuple[Verdict, ...] = ()
    comparison: Comparison | None = None
    missing: tuple[str, ...] = ()

    @property
    def failures(self) -> tuple[Verdict, ...]:
        """Returns the verdicts that failed."""
        return tuple(v for v in self.verdicts if not v.passed)

    @property
    def failed(self) -> bool:
        """Returns whether the coverage checks fail the run."""
        return bool(self.failures or self.missing)

    def failure_summary(self) -> str:
        """Returns why the coverage checks fail, in a few words ("" when they pass)."""
        parts = []
        if self.failures:
            parts.append(f"{counted(len(self.failures), 'threshold')} not met")
        if self.missing:
            parts.append(f"{counted(len(self.missing), 'part')} of the data missing")
        return ", ".join(parts)


# -- display helpers shared by the formats ----------------------------------------------


def counted(n: int, noun: str) -> str:
    """Returns "1 suite", "2 suites": a count with its noun, plural unless it is one."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def model_summary(model: ModelResult) -> str:
    """Returns how many inputs and suites a model saw, e.g. "5 inputs in 1 suite"."""
    return f"{counted(model.inputs, 'input')} in {counted(len(model.suites), 'suite')}"


def percent(value: Fraction | None, digits: int = 2) -> str:
    """Returns a fraction in [0, 1] as a percentage, "n/a" when undefined.

    Like `Coverage.percent_text`, rounding never shows 0% or 100% for a value that is
    not exactly 0 or 1.
    """
    if value is None:
        return "n/a"
    if value == 0:
        return "0%"
    if value == 1:
        return "100%"
    step = Fraction(1, 10**digits)
    hundred = value * 100
    if hundred < step:
        return f"<{float(step):.{digits}f}%"
    if hundred > 100 - step:
        return f">{100 - float(step):.{digits}f}%"
    text = f"{float(hundred):.{digits}f}".rstrip("0").rstrip(".")
    return f"{text}%"


def distinct_texts(
    a: Fraction | None, b: Fraction | None, unit: Callable[[Fraction | None, int], str]
) -> tuple[str, str]:
    """Returns `unit(a)` and `unit(b)` with the fewest decimals (2 to 6) at which two
    different values read differently; values that still read the same get their exact
    fractions added."""
    digits = 2
    while a is not None and b is not None and a != b and digits < 6:
        if unit(a, digits) != unit(b, digits):
            break
        digits += 1
    first, second = unit(a, digits), unit(b, digits)
    if a is not None and b is not None and a != b and first == second:
        first, second = f"{first} ({a})", f"{second} ({b})"
    return first, second


def points(value: Fraction | None, digits: int = 2, signed: bool = False) -> str:
    """Returns a difference of two fractions in percentage points ("+3.12 pp"), "n/a"
    when undefined; a non-zero value never shows as zero."""
    if value is None:
        return "n/a"
    sign = ("+" if value > 0 else "-" if value < 0 else "") if signed else ""
    if value < 0 and not signed:
        sign = "-"
    magnitude = abs(value) * 100
    step = Fraction(1, 10**digits)
    if 0 < magnitude < step:
        return f"{sign}<{float(step):.{digits}f} pp"
    return f"{sign}{float(magnitude):.{digits}f} pp"


def coverage_cell(coverage: Coverage | None) -> str:
    """Returns "covered/total" for display, "-" when absent."""
    return "-" if coverage is None else f"{coverage.covered}/{coverage.total}"


def coverage_percent(coverage: Coverage | None) -> str:
    """Returns a coverage as a percentage for display, "-" when absent."""
    return "-" if coverage is None else percent(coverage.exact)


def number(value: float | None, digits: int = 3) -> str:
    """Returns a float for display, "n/a" when undefined."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def p_value_text(value: float | None) -> str:
    """Returns a p-value for display: three significant digits, "n/a" when undefined."""
    if value is None:
        return "n/a"
    return f"{value:.3g}"


# -- writing the file reports -----------------------------------------------------------


@dataclass(frozen=True)
class WriteOutcome:
    """What became of one requested file report.

    Attributes:
        spec: the requested report.
        path: the file written (for HTML, its index page), or `None` when it could not be.
        error: why it could not be written (the file system's error, or any other the
            writer raised), or `None`.
    """

    spec: ReportSpec
    path: Path | None
    error: Exception | None = None

    def message(self) -> str:
        """Returns one line saying where the report went or why it could not be written."""
        if self.error is None:
            return f"{self.spec.kind} report written to {self.path}"
        # An OSError's text names the file and the cause; another error's text alone may
        # say little (nothing for a bare ValueError()), so its class is named too.
        cause = str(self.error)
        if not isinstance(self.error, OSError):
            name = type(self.error).__name__
            cause = f"{name}: {cause}" if cause else name
        return f"cannot write {self.spec.kind} report to {self.spec.dest}: {cause}"


def write_file_reports(report: Report, specs: tuple[ReportSpec, ...]) -> list[WriteOutcome]:
    """Writes every file report; one that cannot be written does not stop the others.

    Any error of a writer is kept, not only the file system's: a report is a by-product
    of the session, and a bug in one format, or a library's warning turned into an error
    by `-W error`, must not cost the other reports, the terminal report or the session.
    Telling the user about a failure (a `ReportWriteWarning`) is left to the caller, so
    that a warning turned into an error cannot keep the remaining reports unwritten.

    Args:
        report: the session's report.
        specs: the requested file reports.

    Returns:
        One outcome per report, in the order of `specs`.
    """
    from . import html, jsonreport, markdown

    writers = {"json": jsonreport.write, "markdown": markdown.write, "html": html.write}
    outcomes = []
    for spec in specs:
        assert spec.dest is not None
        try:
            outcomes.append(WriteOutcome(spec, writers[spec.kind](report, spec.dest)))
        except Exception as error:
            outcomes.append(WriteOutcome(spec, None, error))
    return outcomes
