"""The report's tables as plain text, built once for every format.

Each builder turns part of a `Report` into a `Table` of display strings; `markdown`,
`html` and `term` only render it (escaping, alignment, colour). The terminal's thresholds
table is its own: it splits the measured and required values into columns where the
file reports show one sentence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from . import (
    Comparison,
    ModelResult,
    Report,
    Verdict,
    coverage_cell,
    coverage_percent,
    number,
    p_value_text,
    percent,
    points,
)


@dataclass(frozen=True)
class Table:
    """One table of the report, every cell already written as text.

    Attributes:
        header: the column titles.
        rows: the cells, row by row, each row as long as `header`.
        text_columns: how many leading columns hold text (aligned left); the others hold
            numbers (aligned right).
        tones: per row, per cell, what the value means for a format that marks it: "gain"
            or "loss" for a delta above or below zero, "pass" or "fail" for a verdict,
            "note" for words standing where a number would be, "" for nothing; empty when
            no cell has a tone.
        spans: per row, per cell, how many columns the cell takes: 1 as usual, more for
            a cell that stands for the next ones too, which then hold "" and span 0;
            empty when every cell takes one column. Formats that cannot merge cells
            (terminal, Markdown) show the cells as they are.
    """

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    text_columns: int = 1
    tones: tuple[tuple[str, ...], ...] = ()
    spans: tuple[tuple[int, ...], ...] = ()

    def tone(self, row: int, column: int) -> str:
        """Returns the tone of one cell, "" when it has none."""
        return self.tones[row][column] if self.tones else ""

    def span(self, row: int, column: int) -> int:
        """Returns how many columns one cell takes (0 for one inside another's span)."""
        return self.spans[row][column] if self.spans else 1


def _delta_tone(value: Fraction | None) -> str:
    if not value:
        return ""
    return "gain" if value > 0 else "loss"


def model_table(report: Report, model: ModelResult, quote: Callable[[str], str] = str) -> Table:
    """Returns a model's coverage per criterion, with its delta against the baseline
    when the baseline was tracked.

    Args:
        report: the session's report.
        model: one of `report.models`.
        quote: how the format writes the baseline's name in the header (Markdown: as code).
    """
    header = ["Criterion", "Covered", "Coverage"]
    if model.baseline_found:
        header.append(f"vs {quote(str(model.baseline))}")
    rows, tones = [], []
    for criterion in report.criteria:
        coverage = model.coverage.get(criterion)
        row = [criterion.upper(), coverage_cell(coverage), coverage_percent(coverage)]
        tone = ["", "", ""]
        if model.baseline_found:
            delta = model.delta.get(criterion)
            row.append(points(delta, signed=True))
            tone.append(_delta_tone(delta))
        rows.append(tuple(row))
        tones.append(tuple(tone))
    return Table(tuple(header), tuple(rows), tones=tuple(tones))


def suite_table(report: Report, model: ModelResult) -> Table | None:
    """Returns a model's inputs, accuracy and coverage per suite, or `None` when it has
    no suite."""
    if not model.suites:
        return None
    header = ("Suite", "Inputs", "Accuracy", *(c.upper() for c in report.criteria))
    rows = tuple(
        (
            suite.name,
            str(suite.inputs),
            percent(suite.accuracy_exact),
            *(coverage_percent(suite.coverage.get(c)) for c in report.criteria),
        )
        for suite in model.suites
    )
    return Table(header, rows)


def layer_table(report: Report, model: ModelResult) -> Table | None:
    """Returns a model's coverage per layer for the criteria that break it down by layer,
    or `None` when none does."""
    criteria = [c for c in report.criteria if any(c in v for v in model.layers.values())]
    if not model.layers or not criteria:
        return None
    header = ("Layer", *(c.upper() for c in criteria))
    rows = tuple(
        (layer, *(coverage_percent(coverage.get(c)) for c in criteria))
        for layer, coverage in model.layers.items()
    )
    return Table(header, rows)


def correlation_table(report: Report) -> Table | None:
    """Returns the accuracy/coverage correlation per criterion, or `None` when no model
    has a suite to correlate. A criterion without coefficients says why in their place
    ("needs 3 pairs, has 2")."""
    if not any(model.suites for model in report.models):
        return None
    header = ("Criterion", "Pearson r", "p-value", "Spearman rho", "n", "Dropped")
    rows, tones, spans = [], [], []
    for c in report.correlation:
        counts = (str(c.n), str(c.dropped))
        if c.short_reason is not None:
            rows.append((c.criterion.upper(), c.short_reason, "", "", *counts))
            tones.append(("", "note", "", "", "", ""))
            spans.append((1, 3, 0, 0, 1, 1))
        else:
            coefficients = (number(c.pearson_r), p_value_text(c.p_value), number(c.spearman_rho))
            rows.append((c.criterion.upper(), *coefficients, *counts))
            tones.append(("",) * len(header))
            spans.append((1,) * len(header))
    return Table(header, tuple(rows), tones=tuple(tones), spans=tuple(spans))


def comparison_table(comparison: Comparison) -> Table:
    """Returns each model's coverage before (in the compared report) and now."""
    changes = comparison.changes
    rows = tuple(
        (
            ch.model,
            ch.criterion.upper(),
            coverage_percent(ch.before),
            coverage_percent(ch.after),
            ch.note or points(ch.change, signed=True),
        )
        for ch in changes
    )
    tones = tuple(("", "", "", "", "" if ch.note else _delta_tone(ch.change)) for ch in changes)
    header = ("Model", "Criterion", "Before", "Now", "Change")
    return Table(header, rows, text_columns=2, tones=tones)


def threshold_table(verdicts: Sequence[Verdict]) -> Table:
    """Returns each threshold's verdict with its message."""
    rows = tuple(
        (v.model, v.criterion.upper(), "pass" if v.passed else "FAIL", v.message())
        for v in verdicts
    )
    tones = tuple(("", "", "pass" if v.passed else "fail", "") for v in verdicts)
    header = ("Model", "Criterion", "Result", "Detail")
    return Table(header, rows, text_columns=4, tones=tones)
