"""The plugin's settings: what each option means, its default, and how its value is read.

Every setting has a command-line option and an ini twin (`dl_coverage_*`); the command
line wins over the ini file, which wins over the default. Values are parsed and
checked here, before any test runs, so that a malformed value is reported as a usage
error naming the option, what was expected and what was received.

This module imports neither pytest nor TensorFlow: the plugin reads the raw values
and hands them to `resolve_settings`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from .errors import DLCoverageError

# The engine's DEFAULT_CRITERIA and REGISTRY hold the same names, but importing the
# engine imports TensorFlow, which must not happen while pytest merely parses options.
CRITERIA = ("nc", "kmnc", "nbc", "snac", "tknc", "idc")
REPORT_TYPES = ("term", "term-verbose", "json", "markdown", "html")
DEFAULT_DESTINATIONS = {
    "json": "dlcoverage.json",
    "markdown": "dlcoverage.md",
    "html": "dlcoverage_html",
}
DEFAULT_CACHE_DIR = ".dlcoverage"


@dataclass(frozen=True)
class OptionSpec:
    """One setting as the plugin registers it.

    Attributes:
        key: the setting's name; the option's dest and ini name are `dl_coverage_<key>`.
        flag: the command-line flag.
        metavar: how the help text shows the value.
        help: what the setting does, without the default.
        default_text: the default, as the help text shows it.
        repeatable: the option may be given several times (a list of values).
        ini_type: pytest's ini type of the twin: "string", "args" or "bool".
    """

    key: str
    flag: str
    metavar: str | None
    help: str
    default_text: str
    repeatable: bool = False
    ini_type: str = "string"

    @property
    def dest(self) -> str:
        """Returns the attribute name of the parsed command-line value."""
        return f"dl_coverage_{self.key}"

    @property
    def ini_name(self) -> str:
        """Returns the ini twin's name."""
        return f"dl_coverage_{self.key}"

    @property
    def full_help(self) -> str:
        """Returns the help text, ending with the default."""
        return f"{self.help} (default: {self.default_text})"


OPTIONS = (
    OptionSpec(
        "criteria",
        "--dl-coverage-criteria",
        "LIST",
        "comma-separated coverage criteria to measure, among " + ", ".join(CRITERIA),
        ",".join(CRITERIA),
    ),
    OptionSpec(
        "fail_under",
        "--dl-coverage-fail-under",
        "[MODEL.]CRITERION:MIN",
        "fail the run when a model's coverage by CRITERION is below MIN, a fraction (0.6) "
        "or a percentage (60%); without MODEL it applies to every tracked model; repeatable",
        "none",
        repeatable=True,
        ini_type="args",
    ),
    OptionSpec(
        "report",
        "--dl-coverage-report",
        "TYPE[:DEST]",
        "report type: term, term-verbose (per layer and per suite), json:PATH, "
        "markdown:PATH (appends), html:DIR; an empty value shows no terminal report; "
        "repeatable",
        "term",
        repeatable=True,
        ini_type="args",
    ),
    OptionSpec(
        "compare",
        "--dl-coverage-compare",
        "PATH",
        "an earlier JSON report; show the change of every model's coverage against it",
        "none",
    ),
    OptionSpec(
        "compare_fail",
        "--dl-coverage-compare-fail",
        "[MODEL.]CRITERION:MAXDROP",
        "with --dl-coverage-compare, fail the run when coverage by CRITERION fell by more "
        "than MAXDROP, a fraction (0.05) or percentage points (5%); repeatable",
        "none",
        repeatable=True,
        ini_type="args",
    ),
    OptionSpec(
        "nc_threshold",
        "--dl-coverage-nc-threshold",
        "T",
        "NC: a neuron is covered when its per-layer scaled value exceeds T, in [0, 1]",
        "0.75",
    ),
    OptionSpec(
        "kmnc_k", "--dl-coverage-kmnc-k", "K", "KMNC: sections per neuron's training range", "1000"
    ),
    OptionSpec("tknc_k", "--dl-coverage-tknc-k", "K", "TKNC: top neurons per layer and input", "3"),
    OptionSpec("idc_m", "--dl-coverage-idc-m", "M", "IDC: number of important neurons", "6"),
    OptionSpec(
        "idc_layer",
        "--dl-coverage-idc-layer",
        "NAME",
        "IDC: the subject layer whose important neurons are clustered",
        "the penultimate layer",
    ),
    OptionSpec(
        "cache_dir",
        "--dl-coverage-cache-dir",
        "DIR",
        "folder where training profiles are cached between sessions",
        f"{DEFAULT_CACHE_DIR} under the rootdir",
    ),
)


@dataclass(frozen=True)
class Threshold:
    """A minimum coverage: `model`'s coverage by `criterion` must be at least `required`.

    Attributes:
        model: the model's name, or `None` for every tracked model.
        criterion: the criterion's name.
        required: the minimum, exact, in [0, 1].
        text: the value as the user wrote it, for messages.
    """

    model: str | None
    criterion: str
    required: Fraction
    text: str


@dataclass(frozen=True)
class MaxDrop:
    """A largest allowed fall of coverage against the compared report.

    Attributes:
        model: the model's name, or `None` for every model in both reports.
        criterion: the criterion's name.
        allowed: the largest allowed fall of the coverage fraction, exact, in [0, 1].
        text: the value as the user wrote it, for messages.
    """

    model: str | None
    criterion: str
    allowed: Fraction
    text: str


@dataclass(frozen=True)
class ReportSpec:
    """One requested report.

    Attributes:
        kind: the report type, one of `REPORT_TYPES`.
        dest: where a file report goes; `None` for a terminal report.
        origin: the option and value that asked for it, e.g.
            "--dl-coverage-report=json:out.json", for messages.
    """

    kind: str
    dest: Path | None = None
    origin: str = field(default="", compare=False)


@dataclass(frozen=True)
class Settings:
    """Every setting of a session, parsed and checked.

    Attributes:
        enabled: whether coverage is measured.
        criteria: the measured criteria, in the order given.
        params: per measured criterion, the parameters handed to the engine.
        thresholds: the minimum coverages (`--dl-coverage-fail-under`).
        reports: the requested reports.
        compare: the earlier JSON report to compare with, or `None`.
        max_drops: the largest allowed falls (`--dl-coverage-compare-fail`).
        cache_dir: the folder of cached training profiles.
    """

    enabled: bool
    criteria: tuple[str, ...]
    params: dict[str, dict[str, Any]]
    thresholds: tuple[Threshold, ...] = ()
    reports: tuple[ReportSpec, ...] = (ReportSpec("term"),)
    compare: Path | None = None
    max_drops: tuple[MaxDrop, ...] = ()
    cache_dir: Path = field(default_factory=lambda: Path(DEFAULT_CACHE_DIR))

    @property
    def terminal_report(self) -> str | None:
        """Returns "term", "term-verbose" or `None` when no terminal report is wanted."""
        kinds = {r.kind for r in self.reports}
        if "term-verbose" in kinds:
            return "term-verbose"
        return "term" if "term" in kinds else None

    @property
    def file_reports(self) -> tuple[ReportSpec, ...]:
        """Returns the requested reports that are written to files."""
        return tuple(r for r in self.reports if r.dest is not None)


# -- parsing single values --------------------------------------------------------------


def parse_fraction(text: str, option: str) -> Fraction:
    """Returns the exact value of a fraction ("0.6") or percentage ("60%") in [0, 1].

    Args:
        text: the value as written.
        option: the option's flag, for the error message.

    Raises:
        DLCoverageError: not a number, or outside [0, 1] (0% to 100%).
    """
    stripped = text.strip()
    percent = stripped.endswith("%")
    number = stripped[:-1].strip() if percent else stripped
    try:
        value = Fraction(number)
    except (ValueError, ZeroDivisionError):
        raise DLCoverageError(
            f"{option}: expected a fraction such as 0.6 or a percentage such as 60%; "
            f"received {text!r}"
        ) from None
    if percent:
        value /= 100
    if not 0 <= value <= 1:
        raise DLCoverageError(
            f"{option}: expected a value in [0, 1] (0% to 100%); received {text!r}"
        )
    return value


def parse_criteria(text: str, option: str = "--dl-coverage-criteria") -> tuple[str, ...]:
    """Returns the criterion names of a comma-separated list, duplicates dropped.

    Raises:
        DLCoverageError: an unknown name, or no name at all.
    """
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CRITERIA]
    if unknown or not names:
        raise DLCoverageError(
            f"{option}: expected a comma-separated list of criteria among "
            f"{', '.join(CRITERIA)}; received {text!r}"
        )
    return tuple(dict.fromkeys(names))


def _split_target(text: str, option: str, value_name: str) -> tuple[str | None, str, str]:
    """Splits "[MODEL.]CRITERION:VALUE" into its three parts."""
    key, sep, value = text.rpartition(":")
    if not sep or not key.strip() or not value.strip():
        raise DLCoverageError(
            f"{option}: expected CRITERION:{value_name} or MODEL.CRITERION:{value_name}, "
            f"e.g. nc:0.6; received {text!r}"
        )
    model, dot, criterion = key.strip().rpartition(".")
    criterion = criterion.strip().lower()
    if criterion not in CRITERIA:
        raise DLCoverageError(
            f"{option}: expected a criterion among {', '.join(CRITERIA)}; "
            f"received {criterion!r} in {text!r}"
        )
    if dot and not model.strip():
        raise DLCoverageError(f"{option}: the model name before '.' is empty in {text!r}")
    return (model.strip() if dot else None), criterion, value


def parse_threshold(text: str, option: str = "--dl-coverage-fail-under") -> Threshold:
    """Returns the minimum coverage that "[MODEL.]CRITERION:MIN" asks for."""
    model, criterion, value = _split_target(text, option, "MIN")
    return Threshold(model, criterion, parse_fraction(value, option), text.strip())


def parse_max_drop(text: str, option: str = "--dl-coverage-compare-fail") -> MaxDrop:
    """Returns the largest allowed fall that "[MODEL.]CRITERION:MAXDROP" asks for."""
    model, criterion, value = _split_target(text, option, "MAXDROP")
    return MaxDrop(model, criterion, parse_fraction(value, option), text.strip())


def parse_report(text: str, base: Path, option: str = "--dl-coverage-report") -> ReportSpec:
    """Returns the report that "TYPE[:DEST]" asks for.

    Args:
        text: the value as written.
        base: the folder a relative DEST is relative to.
        option: the option's name, for the error message.
    """
    origin = f"{option}={text.strip()}"
    kind, sep, dest = text.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in REPORT_TYPES:
        raise DLCoverageError(
            f"{option}: expected a report type among {', '.join(REPORT_TYPES)}; received {text!r}"
        )
    if kind in ("term", "term-verbose"):
        if sep:
            raise DLCoverageError(
                f"{option}: the terminal report {kind!r} takes no destination; received {text!r}"
            )
        return ReportSpec(kind, origin=origin)
    dest = dest.strip() or DEFAULT_DESTINATIONS[kind]
    return ReportSpec(kind, base / Path(dest).expanduser(), origin)


def _positive_int(text: Any, option: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        value = 0
    if value < 1:
        raise DLCoverageError(f"{option}: expected a positive integer; received {text!r}")
    return value


def _unit_float(text: Any, option: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise DLCoverageError(f"{option}: expected a number in [0, 1]; received {text!r}")
    return value


# -- putting the settings together ------------------------------------------------------


@dataclass(frozen=True)
class RawValue:
    """A setting's value as read, with the folder its relative paths are relative to."""

    value: Any
    base: Path
    source: str


def pick(cli: Any, ini: Any, cli_base: Path, ini_base: Path, spec: OptionSpec) -> RawValue | None:
    """Returns the value that applies, command line over ini file, or `None` for the
    default. An empty ini value counts as unset."""
    if cli is not None:
        return RawValue(cli, cli_base, spec.flag)
    if ini not in (None, "", []):
        return RawValue(ini, ini_base, spec.ini_name)
    return None


def resolve_enabled(on: bool, off: bool, ini: Any) -> bool:
    """Returns whether coverage is measured: `--no-dl-coverage` wins, then
    `--dl-coverage`, then the ini value `dl_coverage`."""
    if off:
        return False
    if on:
        return True
    if isinstance(ini, str):
        return ini.strip().lower() in ("1", "true", "yes", "on")
    return ini is True


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value]


def resolve_settings(
    enabled: bool,
    cli: Mapping[str, Any],
    ini: Mapping[str, Any],
    *,
    cli_base: Path,
    ini_base: Path,
    rootdir: Path,
) -> Settings:
    """Returns the checked settings of a session.

    Args:
        enabled: whether coverage is on (see `resolve_enabled`).
        cli: command-line values by `OptionSpec.key`; `None` where not given.
        ini: ini values by `OptionSpec.key`; `None`, "" or [] where not set.
        cli_base: the folder relative paths on the command line are relative to (the
            invocation folder).
        ini_base: the folder relative paths in the ini file are relative to.
        rootdir: pytest's rootdir, home of the default cache folder.

    Raises:
        DLCoverageError: a malformed value; the message names the option.
    """
    raw = {
        spec.key: pick(cli.get(spec.key), ini.get(spec.key), cli_base, ini_base, spec)
        for spec in OPTIONS
    }

    criteria = CRITERIA
    if raw["criteria"] is not None:
        criteria = parse_criteria(str(raw["criteria"].value), raw["criteria"].source)

    thresholds = ()
    if raw["fail_under"] is not None:
        r = raw["fail_under"]
        thresholds = tuple(parse_threshold(t, r.source) for t in _as_list(r.value))
        for threshold in thresholds:
            _check_measured(threshold.criterion, threshold.text, criteria, r.source)

    reports: tuple[ReportSpec, ...] = (ReportSpec("term"),)
    if raw["report"] is not None:
        r = raw["report"]
        values = _as_list(r.value)
        # An empty value (--dl-coverage-report=) asks for no terminal report.
        reports = tuple(parse_report(v, r.base, r.source) for v in values if v.strip())

    compare = None
    if raw["compare"] is not None:
        r = raw["compare"]
        compare = r.base / Path(str(r.value).strip()).expanduser()

    max_drops = ()
    if raw["compare_fail"] is not None:
        r = raw["compare_fail"]
        max_drops = tuple(parse_max_drop(t, r.source) for t in _as_list(r.value))
        # From the ini file the drop limits may stand ready for the runs that compare;
        # on the command line, without a report to compare with, they are a mistake.
        if compare is None and r.source.startswith("--"):
            raise DLCoverageError(
                f"{r.source}: needs an earlier report to compare with; "
                "give --dl-coverage-compare=PATH"
            )
        for drop in max_drops:
            _check_measured(drop.criterion, drop.text, criteria, r.source)

    cache_dir = rootdir / DEFAULT_CACHE_DIR
    if raw["cache_dir"] is not None:
        r = raw["cache_dir"]
        cache_dir = r.base / Path(str(r.value).strip()).expanduser()

    return Settings(
        enabled=enabled,
        criteria=criteria,
        params=_criterion_params(raw, criteria),
        thresholds=thresholds,
        reports=reports,
        compare=compare,
        max_drops=max_drops,
        cache_dir=cache_dir,
    )


def _check_measured(criterion: str, text: str, criteria: tuple[str, ...], option: str) -> None:
    if criterion not in criteria:
        raise DLCoverageError(
            f"{option}: {text!r} names criterion {criterion!r}, which is not measured; "
            f"measured criteria are {', '.join(criteria)}"
        )


def _criterion_params(
    raw: Mapping[str, RawValue | None], criteria: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """Returns the engine's per-criterion parameters for the measured criteria; a
    parameter of an unmeasured criterion is still checked, then left out."""
    params: dict[str, dict[str, Any]] = {}

    def put(criterion: str, name: str, value: Any) -> None:
        if criterion in criteria:
            params.setdefault(criterion, {})[name] = value

    if (r := raw["nc_threshold"]) is not None:
        put("nc", "threshold", _unit_float(r.value, r.source))
    if (r := raw["kmnc_k"]) is not None:
        put("kmnc", "k", _positive_int(r.value, r.source))
    if (r := raw["tknc_k"]) is not None:
        put("tknc", "k", _positive_int(r.value, r.source))
    if (r := raw["idc_m"]) is not None:
        put("idc", "m", _positive_int(r.value, r.source))
    if (r := raw["idc_layer"]) is not None:
        layer = str(r.value).strip()
        if not layer:
            raise DLCoverageError(f"{r.source}: expected a layer name; received an empty value")
        put("idc", "layer", layer)
    return params
