"""What a test session measured, and the report built from it.

`Measurements` holds, per tracked model and per suite (a named set of test inputs),
the criterion states and the accuracy counts. Everything in it is exact and merges by
union, so measurements from several processes (pytest-xdist workers) combine into the
numbers a single process would give; `to_payload` and `merge_payload` carry them
between processes.

`build_report` turns the measurements into the report model (`report.Report`):
coverage per model, layer and suite, deltas against baselines, accuracy/coverage
correlation, the change against an earlier report, and the threshold verdicts, which
are decided here, once, from the exact integers.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from .criteria.base import Criterion
from .errors import DLCoverageError, IncompatibleStateError
from .report import (
    Change,
    Comparison,
    Correlation,
    ModelResult,
    Report,
    SuiteResult,
    Verdict,
)
from .results import Coverage

if TYPE_CHECKING:
    from .options import MaxDrop, Threshold
    from .report.jsonreport import PreviousReport

PAYLOAD_FORMAT = 1


@dataclass
class SuiteRecord:
    """What one suite fed to one model.

    Attributes:
        states: per criterion, the coverage state of this suite's inputs.
        inputs: inputs seen.
        correct, labelled: correctly classified inputs among those with labels.
    """

    states: dict[str, Criterion]
    inputs: int = 0
    correct: int = 0
    labelled: int = 0

    def merge(self, other: SuiteRecord) -> None:
        """Adds another record of the same suite (from another process) to this one."""
        for name, state in other.states.items():
            self.states[name].merge(state)
        self.inputs += other.inputs
        self.correct += other.correct
        self.labelled += other.labelled


@dataclass
class ModelRecord:
    """What was measured on one tracked model.

    Attributes:
        name: the model's name in the reports.
        baseline: the name of the model it is compared with, or `None`.
        template: per criterion, a serialised empty state; it gives the totals of a
            model without inputs and the starting point of every union.
        suites: the suites, in the order they were first fed.
    """

    name: str
    baseline: str | None
    template: dict[str, bytes]
    suites: dict[str, SuiteRecord] = field(default_factory=dict)

    def empty_states(self) -> dict[str, Criterion]:
        """Returns fresh empty states of every criterion (without a profile)."""
        return {name: Criterion.from_bytes(data) for name, data in self.template.items()}

    def union(self) -> dict[str, Criterion]:
        """Returns per criterion the union of all suites' states."""
        total = self.empty_states()
        for suite in self.suites.values():
            for name, state in suite.states.items():
                total[name].merge(state)
        return total


class Measurements:
    """The measurements of a session: tracked models and their suites."""

    def __init__(self) -> None:
        self.models: dict[str, ModelRecord] = {}
        self.missing: list[str] = []

    def add_model(self, name: str, baseline: str | None, template: Mapping[str, Criterion]) -> None:
        """Registers a tracked model; registering it again with the same baseline is a
        no-op.

        Args:
            name: the model's name.
            baseline: the name of the model it is compared with, or `None`.
            template: per criterion, a state (only its settings are kept).
        """
        if name in self.models:
            self.check_baseline(name, baseline)
            return
        if baseline == name:
            raise DLCoverageError(f"model {name!r} cannot be its own baseline")
        self.models[name] = ModelRecord(
            name, baseline, {c: s.empty_copy().to_bytes() for c, s in template.items()}
        )

    def check_baseline(self, name: str, baseline: str | None) -> None:
        """Raises `DLCoverageError` unless model `name` has the baseline `baseline`."""
        known = self.models[name].baseline
        if known != baseline:
            raise DLCoverageError(
                f"model {name!r} was tracked with baseline {known!r} and again with "
                f"baseline {baseline!r}; expected the same baseline each time"
            )

    def suite(
        self, model: str, suite: str, new_states: Callable[[], dict[str, Criterion]]
    ) -> SuiteRecord:
        """Returns the record of `suite` on `model`, created with `new_states()` if new."""
        suites = self.models[model].suites
        if suite not in suites:
            suites[suite] = SuiteRecord(new_states())
        return suites[suite]

    # -- between processes ------------------------------------------------------------

    def to_payload(self) -> dict[str, Any]:
        """Returns the measurements as plain values (str, int, dict) that pytest-xdist can
        send; states are serialised with `Criterion.to_bytes` and base64."""

        def encode(data: bytes) -> str:
            return base64.b64encode(data).decode("ascii")

        return {
            "format": PAYLOAD_FORMAT,
            "models": {
                name: {
                    "baseline": record.baseline,
                    "template": {c: encode(b) for c, b in record.template.items()},
                    "suites": {
                        suite_name: {
                            "inputs": suite.inputs,
                            "correct": suite.correct,
                            "labelled": suite.labelled,
                            "states": {c: encode(s.to_bytes()) for c, s in suite.states.items()},
                        }
                        for suite_name, suite in record.suites.items()
                    },
                }
                for name, record in self.models.items()
            },
        }

    def merge_payload(self, payload: Mapping[str, Any], source: str) -> None:
        """Unites measurements from `to_payload` (of another process) into these.

        Args:
            payload: what `to_payload` returned there.
            source: where the payload came from, for error messages.

        Raises:
            DLCoverageError: the payload is of another format, or the same model name
                was measured with different models or settings in the two places.
        """
        if payload.get("format") != PAYLOAD_FORMAT:
            raise DLCoverageError(
                f"coverage data from {source} has format {payload.get('format')!r}; "
                f"expected {PAYLOAD_FORMAT}"
            )
        for name, data in payload["models"].items():
            template = {c: base64.b64decode(b) for c, b in data["template"].items()}
            if name in self.models:
                self.check_baseline(name, data["baseline"])
                self._check_template(name, template, source)
            else:
                self.models[name] = ModelRecord(name, data["baseline"], template)
            record = self.models[name]
            for suite_name, suite in data["suites"].items():
                incoming = SuiteRecord(
                    {
                        c: Criterion.from_bytes(base64.b64decode(b))
                        for c, b in suite["states"].items()
                    },
                    int(suite["inputs"]),
                    int(suite["correct"]),
                    int(suite["labelled"]),
                )
                if suite_name in record.suites:
                    try:
                        record.suites[suite_name].merge(incoming)
                    except IncompatibleStateError as error:
                        raise self._differs(name, source, error) from None
                else:
                    record.suites[suite_name] = incoming

    def _check_template(self, name: str, template: Mapping[str, bytes], source: str) -> None:
        mine = self.models[name].empty_states()
        if sorted(mine) != sorted(template):
            raise DLCoverageError(
                f"model {name!r} was measured with criteria {sorted(mine)} here and "
                f"{sorted(template)} in {source}"
            )
        for criterion, data in template.items():
            try:
                mine[criterion].merge(Criterion.from_bytes(data))
            except IncompatibleStateError as error:
                raise self._differs(name, source, error) from None

    @staticmethod
    def _differs(name: str, source: str, error: Exception) -> DLCoverageError:
        return DLCoverageError(
            f"model {name!r} in {source} differs from the model of that name measured "
            f"elsewhere ({error}); give every distinct model its own name, and build it "
            "the same way (same weights, training data and settings) in every process"
        )


# -- the report -------------------------------------------------------------------------


def _delta(a: Coverage | None, b: Coverage | None) -> Fraction | None:
    if a is None or b is None or a.exact is None or b.exact is None:
        return None
    return a.exact - b.exact


def _per_layer(states: Mapping[str, Criterion]) -> dict[str, dict[str, Coverage]]:
    layers: dict[str, dict[str, Coverage]] = {}
    for criterion, state in states.items():
        try:
            breakdown = state.per_layer()
        except NotImplementedError:  # IDC counts combinations of one layer, not neurons
            continue
        for layer, coverage in breakdown.items():
            layers.setdefault(layer, {})[criterion] = coverage
    return layers


def _model_coverage(record: ModelRecord) -> tuple[dict[str, Coverage], dict, dict]:
    """Returns the model's coverage, per-layer coverage and parameters."""
    total = record.union()
    coverage = {c: s.coverage() for c, s in total.items()}
    params = {c: dict(s.params) for c, s in total.items()}
    return coverage, _per_layer(total), params


def build_report(
    measurements: Measurements,
    criteria: tuple[str, ...],
    thresholds: Iterable[Threshold] = (),
    previous: PreviousReport | None = None,
    max_drops: Iterable[MaxDrop] = (),
) -> Report:
    """Returns the report of a session, verdicts included.

    Args:
        measurements: what the session measured (merged over processes).
        criteria: the measured criteria, in display order.
        thresholds: minimum coverages to check.
        previous: an earlier report to compare with, or `None`.
        max_drops: largest allowed falls against `previous`.
    """
    records = dict(sorted(measurements.models.items()))
    computed = {name: _model_coverage(record) for name, record in records.items()}
    suite_coverage = {
        (name, suite_name): {c: s.coverage() for c, s in suite.states.items()}
        for name, record in records.items()
        for suite_name, suite in record.suites.items()
    }

    models = []
    for name, record in records.items():
        coverage, layers, params = computed[name]
        base = record.baseline if record.baseline in records else None
        delta = {}
        if base is not None:
            delta = {c: _delta(coverage.get(c), computed[base][0].get(c)) for c in criteria}
        suites = []
        # By name, not by first use, so that the report does not depend on how the
        # tests were spread over processes.
        for suite_name, suite in sorted(record.suites.items()):
            own = suite_coverage[(name, suite_name)]
            other = suite_coverage.get((base, suite_name)) if base is not None else None
            suite_delta = (
                {} if other is None else {c: _delta(own.get(c), other.get(c)) for c in own}
            )
            suites.append(
                SuiteResult(
                    suite_name, suite.inputs, suite.correct, suite.labelled, own, suite_delta
                )
            )
        models.append(
            ModelResult(
                name=name,
                baseline=record.baseline,
                baseline_found=base is not None,
                coverage=coverage,
                delta=delta,
                layers=layers,
                suites=tuple(suites),
                params=params,
            )
        )

    comparison = None
    if previous is not None:
        comparison = compare(models, previous, criteria)
    verdicts = check_thresholds(models, thresholds)
    if comparison is not None:
        verdicts += check_max_drops(comparison, max_drops)
    return Report(
        criteria=criteria,
        models=tuple(models),
        correlation=tuple(correlate(models, c) for c in criteria),
        verdicts=tuple(verdicts),
        comparison=comparison,
        missing=tuple(measurements.missing),
    )


def check_thresholds(
    models: Iterable[ModelResult], thresholds: Iterable[Threshold]
) -> list[Verdict]:
    """Returns the verdict of every minimum coverage, from the exact values: a coverage
    equal to the minimum passes. A threshold without a model to check fails, because a
    gate that measured nothing must not pass."""
    models = {m.name: m for m in models}
    verdicts = []
    for threshold in thresholds:
        names = [threshold.model] if threshold.model is not None else list(models)
        if not names:
            verdicts.append(
                Verdict(
                    "fail-under",
                    "*",
                    threshold.criterion,
                    threshold.required,
                    None,
                    False,
                    "was not measured: no model was tracked",
                )
            )
        for name in names:
            model = models.get(name)
            coverage = model.coverage.get(threshold.criterion) if model else None
            measured = coverage.exact if coverage is not None else None
            reason = None
            if model is None:
                reason = "was not measured: no model of this name was tracked"
            elif measured is None:
                reason = "is undefined (no items to cover)"
            verdicts.append(
                Verdict(
                    "fail-under",
                    name,
                    threshold.criterion,
                    threshold.required,
                    measured,
                    measured is not None and measured >= threshold.required,
                    reason,
                )
            )
    return verdicts


def compare(
    models: Iterable[ModelResult], previous: PreviousReport, criteria: tuple[str, ...]
) -> Comparison:
    """Returns every model's change of coverage against `previous`, for the criteria
    measured now; models on one side only appear with the other side `None`."""
    current = {m.name: m for m in models}
    changes = []
    for name in sorted(set(current) | set(previous.models)):
        model = current.get(name)
        before = previous.models.get(name)
        for criterion in criteria:
            after_cov = model.coverage.get(criterion) if model else None
            before_cov = before.coverage.get(criterion) if before else None
            note = None
            old_params = before.params.get(criterion) if before else None
            # Through JSON, as the compared report went, so that tuples equal lists.
            new_params = json.loads(json.dumps(model.params.get(criterion, {}))) if model else None
            if old_params is not None and new_params is not None and old_params != new_params:
                note = f"measured with {old_params} before and {new_params} now"
            if after_cov is None and before_cov is None:
                continue
            changes.append(Change(name, criterion, before_cov, after_cov, note))
    return Comparison(str(previous.source), tuple(changes))


def check_max_drops(comparison: Comparison, max_drops: Iterable[MaxDrop]) -> list[Verdict]:
    """Returns the verdict of every largest allowed fall, from the exact values. A limit
    without a model to check (none in both reports, or the named model in neither)
    fails, as a minimum coverage without a model does."""
    verdicts = []
    for drop in max_drops:
        changes = [
            c
            for c in comparison.changes
            if c.criterion == drop.criterion and (drop.model is None or c.model == drop.model)
        ]
        if drop.model is None:
            # A model that exists on one side only has no fall to check; but a limit
            # that finds no model on both sides checked nothing, and must not pass.
            changes = [c for c in changes if c.before is not None and c.after is not None]
            if not changes:
                verdicts.append(
                    Verdict(
                        "max-drop",
                        "*",
                        drop.criterion,
                        drop.allowed,
                        None,
                        False,
                        "cannot be checked: no model was measured both in this run and in "
                        "the compared report",
                    )
                )
        elif not changes:
            verdicts.append(
                Verdict(
                    "max-drop",
                    drop.model,
                    drop.criterion,
                    drop.allowed,
                    None,
                    False,
                    "cannot be checked: the model is in neither report",
                )
            )
        for change in changes:
            reason = None
            if change.after is None:
                reason = "cannot be checked: the model was not measured in this run"
            elif change.before is None:
                reason = "cannot be checked: the model is not in the compared report"
            elif change.note:
                reason = f"cannot be checked: {change.note}"
            elif change.change is None:
                reason = "cannot be checked: coverage is undefined"
            fall = -change.change if change.change is not None else None
            verdicts.append(
                Verdict(
                    "max-drop",
                    change.model,
                    drop.criterion,
                    drop.allowed,
                    fall,
                    fall is not None and fall <= drop.allowed,
                    reason,
                )
            )
    return verdicts


def correlate(models: Iterable[ModelResult], criterion: str) -> Correlation:
    """Returns the correlation of accuracy and coverage by `criterion` over every
    (model, suite) pair; a pair whose accuracy or coverage is undefined is dropped.

    Coverage and quality are at best weakly related in published studies (Harel-Canada
    et al., FSE 2020; Yan et al., FSE 2020), so the coefficient is shown with its p-value
    and the number of pairs, as a measurement rather than a verdict.
    """
    from scipy import stats

    accuracies, coverages, dropped = [], [], 0
    for model in models:
        for suite in model.suites:
            coverage = suite.coverage.get(criterion)
            value = coverage.fraction if coverage is not None else None
            if suite.accuracy is None or value is None or not math.isfinite(value):
                dropped += 1
                continue
            accuracies.append(suite.accuracy)
            coverages.append(value)

    n = len(accuracies)
    reason = short_reason = None
    if n < 3:
        reason = f"needs at least 3 pairs with accuracy and coverage; has {n}"
        short_reason = f"needs 3 pairs, has {n}"
    elif len(set(accuracies)) == 1:
        reason = "accuracy is the same for every pair"
        short_reason = "constant accuracy"
    elif len(set(coverages)) == 1:
        reason = "coverage is the same for every pair"
        short_reason = "constant coverage"
    if reason is not None:
        return Correlation(criterion, n, dropped, reason=reason, short_reason=short_reason)
    pearson = stats.pearsonr(accuracies, coverages)
    spearman = stats.spearmanr(accuracies, coverages)
    return Correlation(
        criterion,
        n,
        dropped,
        pearson_r=float(pearson.statistic),
        p_value=float(pearson.pvalue),
        spearman_rho=float(spearman.statistic),
    )
