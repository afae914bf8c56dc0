"""The JSON report: the whole report model as data, versioned by `SCHEMA`.

The layout (documented in README.md) is

    {"schema": 1,
     "criteria": [CRIT, ...],
     "models": {NAME: {"baseline": NAME or null, "inputs": int,
                       "params": {CRIT: {...}},
                       "criteria": {CRIT: {"covered": int, "total": int,
                                           "coverage": float or null}},
                       "delta": {CRIT: float or null},
                       "layers": {LAYER: {CRIT: {...}}},
                       "suites": {SUITE: {"inputs": int, "accuracy": float or null,
                                          "correct": int, "labelled": int,
                                          "criteria": {...}, "delta": {...}}}}},
     "correlation": {CRIT: {"pearson_r", "p_value", "spearman_rho", "n", "dropped",
                            "reason"}},
     "thresholds": [{"kind", "model", "criterion", "required", "measured", "passed",
                     "reason"}],
     "comparison": null or {"source": PATH, "changes": [...]},
     "missing": [TEXT, ...]}

An earlier report read back by `load_previous` is what `--dl-coverage-compare` compares
with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..errors import DLCoverageError
from ..fileio import atomic_write
from ..results import Coverage
from . import Report

SCHEMA = 1


def _float(value: Fraction | float | None) -> float | None:
    return None if value is None else float(value)


def _coverage(coverage: Coverage) -> dict[str, Any]:
    return {
        "covered": coverage.covered,
        "total": coverage.total,
        "coverage": coverage.fraction,
    }


def _criteria(coverage: Mapping[str, Coverage]) -> dict[str, Any]:
    return {c: _coverage(v) for c, v in coverage.items()}


def to_dict(report: Report) -> dict[str, Any]:
    """Returns the report as JSON-ready data (see the module docstring)."""
    models = {}
    for model in report.models:
        models[model.name] = {
            "baseline": model.baseline,
            "inputs": model.inputs,
            "params": {c: dict(p) for c, p in model.params.items()},
            "criteria": _criteria(model.coverage),
            "delta": {c: _float(d) for c, d in model.delta.items()},
            "layers": {layer: _criteria(v) for layer, v in model.layers.items()},
            "suites": {
                suite.name: {
                    "inputs": suite.inputs,
                    "accuracy": suite.accuracy,
                    "correct": suite.correct,
                    "labelled": suite.labelled,
                    "criteria": _criteria(suite.coverage),
                    "delta": {c: _float(d) for c, d in suite.delta.items()},
                }
                for suite in model.suites
            },
        }
    comparison = None
    if report.comparison is not None:
        comparison = {
            "source": report.comparison.source,
            "changes": [
                {
                    "model": c.model,
                    "criterion": c.criterion,
                    "before": None if c.before is None else _coverage(c.before),
                    "after": None if c.after is None else _coverage(c.after),
                    "change": _float(c.change),
                    "note": c.note,
                }
                for c in report.comparison.changes
            ],
        }
    return {
        "schema": SCHEMA,
        "criteria": list(report.criteria),
        "models": models,
        "correlation": {
            c.criterion: {
                "pearson_r": c.pearson_r,
                "p_value": c.p_value,
                "spearman_rho": c.spearman_rho,
                "n": c.n,
                "dropped": c.dropped,
                "reason": c.reason,
            }
            for c in report.correlation
        },
        "thresholds": [
            {
                "kind": v.kind,
                "model": v.model,
                "criterion": v.criterion,
                "required": float(v.required),
                "measured": _float(v.measured),
                "passed": v.passed,
                "reason": v.reason,
            }
            for v in report.verdicts
        ],
        "comparison": comparison,
        "missing": list(report.missing),
    }


def write(report: Report, path: Path) -> Path:
    """Writes the JSON report to `path` atomically.

    Returns:
        The path written.
    """
    atomic_write(path, json.dumps(to_dict(report), indent=2, allow_nan=False) + "\n")
    return path


# -- reading an earlier report ----------------------------------------------------------


@dataclass(frozen=True)
class PreviousModel:
    """One model of an earlier report: its coverage and the parameters behind it."""

    coverage: dict[str, Coverage]
    params: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class PreviousReport:
    """The part of an earlier JSON report that a comparison needs."""

    source: Path
    models: dict[str, PreviousModel]


def load_previous(path: Path) -> PreviousReport:
    """Returns the models of the JSON report at `path`.

    Raises:
        DLCoverageError: the file cannot be read, is not JSON, is not a
            pytest-dlcoverage report of schema `SCHEMA`, or holds a covered or total
            that is not a count (a non-negative integer, at most total for covered).
    """
    what = f"--dl-coverage-compare: {path}"
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise DLCoverageError(f"{what} cannot be read: {error.strerror or error}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DLCoverageError(f"{what} is not a JSON file: {error}") from None
    if not isinstance(data, dict) or "schema" not in data or "models" not in data:
        raise DLCoverageError(
            f"{what} is not a pytest-dlcoverage JSON report; expected an object with "
            "'schema' and 'models'"
        )
    schema = data["schema"]
    if isinstance(schema, bool) or not isinstance(schema, int) or schema != SCHEMA:
        raise DLCoverageError(
            f"{what} has report schema {json.dumps(schema)}; this version reads schema "
            f"{SCHEMA} (an integer)"
        )
    try:
        models = {
            str(name): PreviousModel(
                {
                    str(c): _previous_coverage(what, name, c, v)
                    for c, v in model["criteria"].items()
                },
                {str(c): dict(p) for c, p in model.get("params", {}).items()},
            )
            for name, model in data["models"].items()
        }
    except DLCoverageError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise DLCoverageError(
            f"{what} has a malformed 'models' section ({type(error).__name__}: {error}); "
            "expected covered and total integers per model and criterion"
        ) from None
    return PreviousReport(Path(path), models)


def _previous_coverage(what: str, model: str, criterion: str, entry: Any) -> Coverage:
    """Returns the coverage of `criterion` for `model` in an earlier report, from its
    `entry` `{"covered": int, "total": int, ...}`.

    Raises:
        DLCoverageError: covered or total is not a non-negative integer (a bool, a float
            or a string is refused, not truncated), or covered exceeds total.
        KeyError, TypeError: `entry` is not an object with both keys.
    """
    where = f"{what}: models[{json.dumps(model)}].criteria[{json.dumps(criterion)}]"
    counts = {}
    for field in ("covered", "total"):
        value = entry[field]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DLCoverageError(
                f"{where}.{field}: expected a non-negative integer; received {json.dumps(value)}"
            )
        counts[field] = value
    if counts["covered"] > counts["total"]:
        raise DLCoverageError(
            f"{where}: expected covered <= total; received covered={counts['covered']}, "
            f"total={counts['total']}"
        )
    return Coverage(counts["covered"], counts["total"])
